//! The co-segmentation view: what the checked gallery images have in common. It is the heaviest
//! analysis, so it runs (on the worker, [`job`]) only when asked; results are cached per images
//! and settings.

pub mod export;
pub mod job;
pub mod panel;

use eframe::egui;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::dialogs::Pick;
use super::gallery::ImageEntry;
use super::state::{CosegShow, Settings, ViewTab};
use super::tasks::{ImageId, Output};
use super::view::{ExportItem, ExportJob, Shared, View, ViewContext};
use super::widgets::{add_images_hint, centered, input_size_combo, stride_combo, tile_size_slider};
use super::worker::{ImageInput, ModelInfo, patch_budget};
pub use crate::app::state::CosegMode;
use crate::model::Grid;
use crate::model::preprocess::resized_size;
use job::{CosegJob, CosegKey, CosegOutput, CosegResult, RefineSettings};
use panel::{CosegHover, CosegPanel, label_name};

/// Co-segmentation results kept in memory.
const CACHE_CAPACITY: usize = 8;

pub struct CosegTab {
    cache: BoundedCache<CosegKey, Arc<CosegResult>>,
    /// Gallery images left out of the set.
    excluded: HashSet<ImageId>,
    /// What is on screen (possibly computed with other settings than the current ones).
    shown: Option<(CosegKey, Arc<CosegResult>)>,
    pub panel: CosegPanel,
    /// Tokens of the run under way, and of the last finished run with its time (for estimates).
    running_tokens: usize,
    last_run: Option<(usize, f64)>,
    /// "Refine edges": GrabCut / dense CRF after the patch-level result, as the reference.
    pub refine_edges: bool,
    pub refine: RefineSettings,
}

impl Default for CosegTab {
    fn default() -> Self {
        CosegTab {
            cache: BoundedCache::with_capacity(CACHE_CAPACITY),
            excluded: HashSet::new(),
            shown: None,
            panel: CosegPanel::default(),
            running_tokens: 0,
            last_run: None,
            refine_edges: true,
            refine: RefineSettings::default(),
        }
    }
}

/// Half the patch size when it is even (the reference's 4 for 8-pixel patches), else the patch.
fn default_stride(patch: usize) -> usize {
    if patch.is_multiple_of(2) {
        patch / 2
    } else {
        patch
    }
}

impl CosegTab {
    /// The images of the set: the gallery's, minus those left out, in gallery order.
    fn entries<'a>(&self, shared: Shared<'a>) -> impl Iterator<Item = &'a ImageEntry> {
        let gallery = shared.gallery;
        gallery
            .entries
            .iter()
            .filter(|e| !self.excluded.contains(&e.id))
    }

    fn inputs(&self, shared: Shared<'_>) -> Vec<ImageInput> {
        self.entries(shared).map(|e| shared.input_of(e)).collect()
    }

    /// Leaves an image out of (or puts it back into) the co-segmented set.
    pub fn set_included(&mut self, image: ImageId, included: bool) {
        if included {
            self.excluded.remove(&image);
        } else {
            self.excluded.insert(image);
        }
    }

    /// The key the settings ask for (`None` without a model or images).
    pub fn current_key(&self, shared: Shared<'_>) -> Option<CosegKey> {
        let model = shared.model?;
        let images: Vec<ImageId> = self.entries(shared).map(|e| e.id).collect();
        if images.is_empty() {
            return None;
        }
        let patch = shared.patch_size();
        let c = &shared.settings.coseg;
        Some(CosegKey {
            images,
            mode: c.mode,
            num_parts: if c.mode == CosegMode::Parts {
                c.num_parts
            } else {
                0
            },
            stride: c
                .stride
                .filter(|s| *s > 0 && patch.is_multiple_of(*s))
                .unwrap_or(default_stride(patch)),
            saliency_milli: (c.saliency_threshold.clamp(0.0, 1.0) * 1000.0).round() as u16,
            votes_percentage: c.votes_percentage.clamp(1, 100),
            input_size: c.input_size,
            refine: self.refine_edges.then_some(self.refine),
            generation: model.generation,
        })
    }

    /// The result for the current settings, once computed.
    pub fn current_result(&self, shared: Shared<'_>) -> Option<&Arc<CosegResult>> {
        self.current_key(shared).and_then(|k| self.cache.get(&k))
    }

    /// Starts the co-segmentation of the current set (the "Run" button); nothing when it is
    /// cached or already running.
    pub fn run(&mut self, cx: &mut ViewContext<'_>) {
        let Some(key) = self.current_key(cx.shared()) else {
            return;
        };
        if self.cache.contains_key(&key) || cx.tasks.running::<CosegKey>().any(|(_, k)| *k == key) {
            return;
        }
        let inputs = self.inputs(cx.shared());
        let label = format!(
            "{} of {} images",
            match key.mode {
                CosegMode::Foreground => "Co-segmentation",
                CosegMode::Parts => "Part co-segmentation",
            },
            inputs.len()
        );
        self.running_tokens = self.planned_tokens(cx.shared()).unwrap_or(0);
        let job = CosegJob {
            key: key.clone(),
            inputs,
        };
        cx.worker.submit(cx.tasks, key, label, job);
    }

    fn settings_controls(ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let patch = cx.shared().patch_size();
        ui.heading("Co-segmentation");
        let c = &mut cx.settings.coseg;
        ui.radio_value(&mut c.mode, CosegMode::Foreground, "Common foreground")
            .on_hover_text("Cluster all images' patches; keep the clusters salient in most images");
        ui.radio_value(&mut c.mode, CosegMode::Parts, "Common parts")
            .on_hover_text("Then cluster the foreground into parts shared by the images");
        ui.add_enabled(
            c.mode == CosegMode::Parts,
            egui::Slider::new(&mut c.num_parts, 2..=10).text("Parts"),
        );
        stride_combo(ui, &mut c.stride, patch, default_stride(patch));
        ui.add(
            egui::Slider::new(&mut c.saliency_threshold, 0.0..=0.5)
                .step_by(0.005)
                .text("Saliency threshold"),
        )
        .on_hover_text("An image votes for a cluster whose mean saliency is above this");
        ui.add(egui::Slider::new(&mut c.votes_percentage, 1..=100).text("Votes %"))
            .on_hover_text("Share of the images that must vote for a cluster to be foreground");
        ui.horizontal(|ui| {
            ui.label("Show:");
            ui.radio_value(&mut c.show, CosegShow::Labels, "labels");
            ui.radio_value(&mut c.show, CosegShow::Foreground, "foreground");
        });
        input_size_combo(ui, &mut c.input_size);
        tile_size_slider(ui, &mut cx.settings.tile_size);
    }

    /// A checkbox per gallery image: in the set or left out.
    fn image_checkboxes(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>) {
        ui.label(egui::RichText::new("Images").strong());
        for e in &cx.gallery.entries {
            let mut included = !self.excluded.contains(&e.id);
            if ui.checkbox(&mut included, &e.name).changed() {
                self.set_included(e.id, included);
            }
        }
    }

    /// Tokens the model will see for the checked images at the current settings (the sizes the
    /// worker's preparation gives them, CLS included).
    pub fn planned_tokens(&self, shared: Shared<'_>) -> Option<usize> {
        let key = self.current_key(shared)?;
        let patch = shared.patch_size();
        let budget = patch_budget(patch, key.stride);
        let tokens = self.entries(shared).map(|e| {
            let [w, h] = e.size;
            let (tw, th, _) = resized_size(w, h, key.input_size.resize(), patch, budget);
            let crop = |side: u32| side as usize - side as usize % patch;
            Grid::for_image(crop(th), crop(tw), patch, key.stride).map_or(0, |g| g.len() + 1)
        });
        Some(tokens.sum())
    }

    /// "N tokens", and a time scaled from the last run when there is one.
    fn cost_label(&self, tokens: usize) -> String {
        match self.last_run {
            Some((last_tokens, seconds)) if last_tokens > 0 => format!(
                "{tokens} tokens, about {:.0} s (last run: {last_tokens} tokens in {seconds:.1} s)",
                seconds * tokens as f64 / last_tokens as f64
            ),
            _ => format!("{tokens} tokens"),
        }
    }

    fn run_button(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        if let Some(tokens) = self.planned_tokens(cx.shared()) {
            ui.label(self.cost_label(tokens))
                .on_hover_text("Patch tokens of all checked images at these settings");
        }
        let key = self.current_key(cx.shared());
        let cached = key.as_ref().is_some_and(|k| self.cache.contains_key(k));
        let running = cx.tasks.any::<CosegKey>();
        if ui
            .add_enabled(
                key.is_some() && !cached && !running,
                egui::Button::new("Run"),
            )
            .on_hover_text("Co-segment the checked images with these settings")
            .clicked()
        {
            self.run(cx);
        }
    }

    fn placeholder(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        self.panel.tiles.clear();
        self.panel.hover = None;
        centered(ui, |ui| {
            if cx.is_empty() {
                add_images_hint(ui);
            } else if cx.tasks.any::<CosegKey>() {
                ui.spinner();
            } else if ui
                .button("Run co-segmentation")
                .on_hover_text("Find what the checked images have in common (takes a while)")
                .clicked()
            {
                self.run(cx);
            }
        });
    }

    fn heading(ui: &mut egui::Ui, result: &CosegResult, stale: bool) {
        ui.horizontal(|ui| {
            ui.heading(match result.mode {
                CosegMode::Foreground => "Common foreground",
                CosegMode::Parts => "Common parts",
            });
            let mut text = format!("k = {} clusters (elbow)", result.k);
            if result.mode == CosegMode::Parts {
                text.push_str(&format!(", {} parts", result.labels));
            }
            text.push_str(&format!(
                ", {} images, {:.1} s",
                result.images.len(),
                result.elapsed.as_secs_f64()
            ));
            ui.label(text);
            if stale {
                ui.label(egui::RichText::new("(other settings: Run to update)").weak());
            }
        });
    }
}

impl View for CosegTab {
    fn id(&self) -> ViewTab {
        ViewTab::COSEG
    }

    fn title(&self) -> &'static str {
        "Co-segmentation"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        Self::settings_controls(ui, cx);
        let mode = cx.settings.coseg.mode;
        panel::refine_edges_checkbox(ui, &mut self.refine_edges, mode);
        if self.refine_edges {
            panel::refine_settings(ui, &mut self.refine, mode);
        }
        ui.separator();
        self.image_checkboxes(ui, cx);
        ui.separator();
        self.run_button(ui, cx);
        ui.separator();
        let mode = self
            .shown
            .as_ref()
            .map_or(cx.settings.coseg.mode, |(_, r)| r.mode);
        hover_ui(ui, self.panel.hover, mode);
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let key = self.current_key(cx.shared());
        if let Some(k) = &key
            && let Some(r) = self.cache.get(k)
        {
            self.shown = Some((k.clone(), r.clone()));
        }
        let shown = self
            .shown
            .clone()
            .filter(|(k, _)| key.as_ref().is_some_and(|c| c.generation == k.generation));
        let Some((shown_key, result)) = shown else {
            self.placeholder(ui, cx);
            return;
        };
        Self::heading(ui, &result, Some(&shown_key) != key.as_ref());
        CosegPanel::legend(ui, &result, result.images.len());
        ui.separator();
        let (show, tile) = (cx.settings.coseg.show, cx.settings.tile_size);
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| self.panel.ui(ui, &result, show, tile));
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let CosegOutput { key, result } = *output.downcast::<CosegOutput>()?;
        self.last_run = Some((self.running_tokens, result.elapsed.as_secs_f64()));
        self.cache.insert(key.clone(), result.clone());
        self.shown = Some((key, result));
        Ok(())
    }

    fn model_loaded(&mut self, _info: &ModelInfo, _settings: &mut Settings) {
        self.cache.clear();
        self.shown = None;
    }

    fn exports(&self, shared: Shared<'_>) -> Vec<ExportItem> {
        vec![ExportItem {
            id: "coseg",
            label: "Export co-segmentation (PNG + .npy + JSON)...",
            hover: "Per image <name>_coseg.png, <name>_labels.npy, <name>_foreground.npy; \
                    coseg_legend.json",
            available: self.current_result(shared).is_some(),
            pick: Pick::Folder {
                title: "Export the co-segmentation (PNG + .npy per image, legend) to a folder"
                    .into(),
            },
        }]
    }

    fn export(&self, _id: &str, dir: PathBuf, shared: Shared<'_>) -> Option<ExportJob> {
        let result = self.current_result(shared)?.clone();
        let show = shared.settings.coseg.show;
        Some(Box::new(move || export::export_coseg(&dir, &result, show)))
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The read-out of the label under the pointer.
fn hover_ui(ui: &mut egui::Ui, hover: Option<CosegHover>, mode: CosegMode) {
    ui.heading("Under the pointer");
    match hover {
        Some(h) => {
            ui.label(format!("patch row {}, col {}", h.row, h.col));
            ui.label(match h.label {
                Some(l) => format!(
                    "{}{}",
                    label_name(mode, l),
                    if h.foreground { ", foreground" } else { "" }
                ),
                None => "background".into(),
            });
        }
        None => {
            ui.label(egui::RichText::new("(hover an image)").weak());
        }
    }
}
