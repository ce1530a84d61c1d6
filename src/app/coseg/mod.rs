//! The co-segmentation tab of the app: which images and settings, running the job when asked
//! (it is the heaviest analysis), the results cache, the tab's controls and its view.

use eframe::egui;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::coseg_job::{CosegKey, CosegMode, CosegResult};
use super::coseg_panel::{CosegPanel, label_name};
use super::pca_job::PcaInput;
use super::pca_panel::stride_combo;
use super::state::CosegShow;
use super::worker::{ImageId, Job};
use super::{App, TaskKind, input_size_combo};

/// Co-segmentation results kept in memory.
const COSEG_CACHE_CAPACITY: usize = 8;

#[derive(Default)]
pub struct CosegState {
    cache: HashMap<CosegKey, Arc<CosegResult>>,
    order: VecDeque<CosegKey>,
    /// Gallery images left out of the set.
    pub excluded: HashSet<ImageId>,
    /// What is on screen (possibly computed with other settings than the current ones).
    shown: Option<(CosegKey, Arc<CosegResult>)>,
    pub panel: CosegPanel,
}

impl CosegState {
    pub fn insert(&mut self, key: CosegKey, result: Arc<CosegResult>) {
        if self.cache.insert(key.clone(), result.clone()).is_none() {
            self.order.push_back(key.clone());
        }
        self.shown = Some((key, result));
        while self.order.len() > COSEG_CACHE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Forgets everything (a new model).
    pub fn clear(&mut self) {
        self.cache.clear();
        self.order.clear();
        self.shown = None;
    }
}

impl App {
    /// The images of the set: the gallery's, minus those left out, in gallery order.
    fn coseg_inputs(&self) -> Vec<PcaInput> {
        self.gallery
            .entries
            .iter()
            .filter(|e| !self.coseg.excluded.contains(&e.id))
            .map(|e| PcaInput {
                id: e.id,
                name: e.name.clone(),
                rgb: e.rgb.clone(),
            })
            .collect()
    }

    /// Leaves an image out of (or puts it back into) the co-segmented set.
    pub fn set_coseg_included(&mut self, image: ImageId, included: bool) {
        if included {
            self.coseg.excluded.remove(&image);
        } else {
            self.coseg.excluded.insert(image);
        }
    }

    /// The key the settings ask for (`None` without a model or images).
    pub fn current_coseg_key(&self) -> Option<CosegKey> {
        let model = self.model.as_ref()?;
        let images: Vec<ImageId> = self.coseg_inputs().iter().map(|i| i.id).collect();
        if images.is_empty() {
            return None;
        }
        let patch = model.config.patch_size.max(1);
        let c = &self.settings.coseg;
        let default_stride = if patch.is_multiple_of(2) {
            patch / 2
        } else {
            patch
        };
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
                .unwrap_or(default_stride),
            saliency_milli: (c.saliency_threshold.clamp(0.0, 1.0) * 1000.0).round() as u16,
            votes_percentage: c.votes_percentage.clamp(1, 100),
            input_size: self.settings.input_size,
            generation: model.generation,
        })
    }

    /// The result for the current settings, once computed.
    pub fn current_coseg_result(&self) -> Option<&Arc<CosegResult>> {
        self.current_coseg_key()
            .and_then(|k| self.coseg.cache.get(&k))
    }

    /// The co-segmentation view of the last frame.
    pub fn coseg_view(&self) -> &CosegPanel {
        &self.coseg.panel
    }

    /// Starts the co-segmentation of the current set (the "Run" button); nothing when it is
    /// cached or already running.
    pub fn run_coseg(&mut self) {
        let Some(key) = self.current_coseg_key() else {
            return;
        };
        if self.coseg.cache.contains_key(&key)
            || self
                .tasks
                .values()
                .any(|(k, _)| *k == TaskKind::Coseg(key.clone()))
        {
            return;
        }
        let inputs = self.coseg_inputs();
        let label = format!(
            "{} of {} images",
            match key.mode {
                CosegMode::Foreground => "Co-segmentation",
                CosegMode::Parts => "Part co-segmentation",
            },
            inputs.len()
        );
        self.submit(
            TaskKind::Coseg(key.clone()),
            label,
            Job::Coseg { key, inputs },
        );
    }

    pub(super) fn coseg_controls(&mut self, ui: &mut egui::Ui) {
        let patch = self.model.as_ref().map_or(16, |m| m.config.patch_size);
        ui.heading("Co-segmentation");
        let c = &mut self.settings.coseg;
        ui.radio_value(&mut c.mode, CosegMode::Foreground, "Common foreground")
            .on_hover_text("Cluster all images' patches; keep the clusters salient in most images");
        ui.radio_value(&mut c.mode, CosegMode::Parts, "Common parts")
            .on_hover_text("Then cluster the foreground into parts shared by the images");
        ui.add_enabled(
            c.mode == CosegMode::Parts,
            egui::Slider::new(&mut c.num_parts, 2..=10).text("Parts"),
        );
        let default_stride = if patch.is_multiple_of(2) {
            patch / 2
        } else {
            patch
        };
        stride_combo(ui, &mut c.stride, patch, default_stride);
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
        input_size_combo(ui, &mut self.settings.input_size);
        ui.add(egui::Slider::new(&mut self.settings.tile_size, 80.0..=600.0).text("Tile size"));
        ui.separator();
        ui.label(egui::RichText::new("Images").strong());
        let entries: Vec<(ImageId, String)> = self
            .gallery
            .entries
            .iter()
            .map(|e| (e.id, e.name.clone()))
            .collect();
        for (id, name) in entries {
            let mut included = !self.coseg.excluded.contains(&id);
            if ui.checkbox(&mut included, name).changed() {
                self.set_coseg_included(id, included);
            }
        }
        ui.separator();
        let key = self.current_coseg_key();
        let cached = key
            .as_ref()
            .is_some_and(|k| self.coseg.cache.contains_key(k));
        let running = self
            .tasks
            .values()
            .any(|(k, _)| matches!(k, TaskKind::Coseg(_)));
        if ui
            .add_enabled(
                key.is_some() && !cached && !running,
                egui::Button::new("Run"),
            )
            .on_hover_text("Co-segment the checked images with these settings")
            .clicked()
        {
            self.run_coseg();
        }
        ui.separator();
        let mode = self
            .coseg
            .shown
            .as_ref()
            .map_or(self.settings.coseg.mode, |(_, r)| r.mode);
        hover_ui(ui, self.coseg.panel.hover, mode);
    }

    pub(super) fn coseg_central(&mut self, ui: &mut egui::Ui) {
        let key = self.current_coseg_key();
        if let Some(k) = &key
            && let Some(r) = self.coseg.cache.get(k)
        {
            self.coseg.shown = Some((k.clone(), r.clone()));
        }
        let shown = self
            .coseg
            .shown
            .clone()
            .filter(|(k, _)| key.as_ref().is_some_and(|c| c.generation == k.generation));
        let Some((shown_key, result)) = shown else {
            self.coseg.panel.tiles.clear();
            self.coseg.panel.hover = None;
            super::centered(ui, |ui| {
                let running = self
                    .tasks
                    .values()
                    .any(|(k, _)| matches!(k, TaskKind::Coseg(_)));
                if self.gallery.entries.is_empty() && self.tasks.is_empty() {
                    ui.label("Drop images or folders here, or use File > Open images (Ctrl+O).");
                } else if running {
                    ui.spinner();
                } else if ui
                    .button("Run co-segmentation")
                    .on_hover_text("Find what the checked images have in common (takes a while)")
                    .clicked()
                {
                    self.run_coseg();
                }
            });
            return;
        };
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
            if Some(&shown_key) != key.as_ref() {
                ui.label(egui::RichText::new("(other settings: Run to update)").weak());
            }
        });
        CosegPanel::legend(ui, &result, result.images.len());
        ui.separator();
        let show = self.settings.coseg.show;
        let tile = self.settings.tile_size;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| self.coseg.panel.ui(ui, &result, show, tile));
    }
}

/// The read-out of the label under the pointer.
fn hover_ui(ui: &mut egui::Ui, hover: Option<super::coseg_panel::CosegHover>, mode: CosegMode) {
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
