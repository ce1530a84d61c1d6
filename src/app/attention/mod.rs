//! The attention view: every head's attention of the chosen block over the selected image, for
//! the \[CLS\] token or a clicked patch. Results are computed by the worker ([`job`]) and cached
//! per image, block, query and input size.

pub mod export;
pub mod figure;
pub mod job;
pub mod panel;
pub mod patch_overlay;

use eframe::egui;
use std::any::Any;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::dialogs::Pick;
use super::state::{Settings, ViewTab};
use super::tasks::Output;
use super::view::{AppRequest, ExportItem, ExportJob, Shared, View, ViewContext};
use super::widgets::{
    add_images_hint, block_slider, centered, colormap_combo, input_size_combo, tile_size_slider,
};
use super::worker::{ModelInfo, ModelLoad};
use crate::analysis::attention::Query;
use figure::AttentionFigure;
use image::RgbImage;
use job::{AttentionJob, AttentionOutput, AttentionResult, AttnKey};
use panel::AttentionPanel;

/// Attention results kept in memory (per image, block and query).
const CACHE_CAPACITY: usize = 96;

pub struct AttentionTab {
    query: Query,
    cache: BoundedCache<AttnKey, Arc<AttentionResult>>,
    /// What is on screen (may be a slightly older result while the next one computes).
    shown: Option<(AttnKey, Arc<AttentionResult>)>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    skipped: HashSet<AttnKey>,
    pub panel: AttentionPanel,
    /// The DINO paper figure, shown instead of the tiles once its preset is chosen.
    figure: Option<AttentionFigure>,
}

impl Default for AttentionTab {
    fn default() -> Self {
        AttentionTab {
            query: Query::Cls,
            cache: BoundedCache::with_capacity(CACHE_CAPACITY),
            shown: None,
            skipped: HashSet::new(),
            panel: AttentionPanel::default(),
            figure: None,
        }
    }
}

/// The block shown: the chosen one, or the last block of the model.
pub fn layer(shared: Shared<'_>) -> usize {
    shared.block(shared.settings.layer, 0)
}

pub fn set_layer(settings: &mut Settings, shared_depth: usize, layer: usize) {
    settings.layer = Some(layer.min(shared_depth.max(1) - 1));
}

impl AttentionTab {
    pub fn query(&self) -> Query {
        self.query
    }

    pub fn set_query(&mut self, query: Query) {
        self.query = query;
    }

    /// The key of the view the settings ask for.
    pub fn current_key(&self, shared: Shared<'_>) -> Option<AttnKey> {
        Some(AttnKey {
            image: shared.gallery.selected?,
            layer: layer(shared),
            query: self.query,
            input_size: shared.settings.input_size,
            generation: shared.model?.generation,
        })
    }

    /// The result for the current settings, once computed.
    pub fn current_result(&self, shared: Shared<'_>) -> Option<&Arc<AttentionResult>> {
        self.current_key(shared).and_then(|k| self.cache.get(&k))
    }

    /// The heads of the paper figure: those chosen, or all of them before the preset.
    pub fn figure_heads(&self, heads: usize) -> Vec<usize> {
        self.figure
            .as_ref()
            .map_or_else(|| (0..heads).collect(), |f| f.heads.clone())
    }

    /// Whether the paper figure is shown instead of the tiles.
    pub fn shows_figure(&self) -> bool {
        self.figure.is_some()
    }

    /// The paper figure of the current settings, once composed.
    pub fn figure_image(&self, shared: Shared<'_>) -> Option<&Arc<RgbImage>> {
        let figure = self.figure.as_ref()?;
        let key = figure.key(self.current_key(shared)?, shared.settings.threshold);
        figure.preview.image(&key)
    }

    /// The "Paper figure" preset and, once chosen, its heads, export and way back.
    fn figure_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Figure of the paper");
        let heads = cx.model.map_or(0, |m| m.config.heads);
        let available = self.current_result(cx.shared()).is_some();
        if ui
            .add(egui::Button::new("Paper figure").selected(self.figure.is_some()))
            .on_hover_text(
                "DINO's attention figure: the last block's [CLS] attention, each head's mask \
                 keeping 60% of its mass, in its own colour over the image \
                 (visualize_attention.py --threshold 0.6)",
            )
            .clicked()
        {
            figure::apply_preset(cx.settings);
            self.query = Query::Cls;
            if self.figure.is_none() {
                self.figure = Some(AttentionFigure::with_heads(heads));
            }
        }
        let Some(figure) = &mut self.figure else {
            return;
        };
        figure.head_controls(ui, heads);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(available, egui::Button::new("Export figure (PNG)..."))
                .clicked()
            {
                cx.requests.push(AppRequest::Export {
                    tab: ViewTab::ATTENTION,
                    id: figure::EXPORT_ID,
                });
            }
            if ui
                .button("Back to the heads")
                .on_hover_text("Show every head's tile again")
                .clicked()
            {
                self.figure = None;
            }
        });
    }

    /// The paper figure of `result` (composed off the UI thread when it changes).
    fn figure_ui(
        &mut self,
        ui: &mut egui::Ui,
        cx: &mut ViewContext<'_>,
        shown: AttnKey,
        result: &Arc<AttentionResult>,
    ) {
        let Some(figure) = &mut self.figure else {
            return;
        };
        let keep = cx.settings.threshold;
        let key = figure.key(shown, keep);
        let (result, heads) = (result.clone(), figure.heads.clone());
        let composed = figure.preview.update(ui.ctx(), &key, move || {
            figure::compose(&result, &heads, keep)
        });
        if let Err(e) = composed {
            cx.notifications.error(&e);
        }
        figure.preview.ui(ui, "DINO paper figure");
    }

    /// A file name for the export of the view shown.
    fn export_name(&self, shared: Shared<'_>) -> String {
        let stem = shared
            .gallery
            .selected_entry()
            .and_then(|e| e.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "image".into());
        let query = match self.query {
            Query::Cls => "cls".to_string(),
            Query::Patch { row, col } => format!("patch{row}-{col}"),
        };
        format!("{stem}-block{}-{query}", layer(shared))
    }

    fn query_controls(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if ui
                .add(egui::Button::new("CLS").selected(self.query == Query::Cls))
                .on_hover_text("Show the [CLS] token's attention (Escape)")
                .clicked()
            {
                self.query = Query::Cls;
            }
            ui.label(match self.query {
                Query::Cls => "query: [CLS] token".to_string(),
                Query::Patch { row, col } => format!("query: patch ({row}, {col})"),
            });
        });
        ui.label(egui::RichText::new("Click a patch to see its attention.").weak());
    }

    fn read_outs(&self, ui: &mut egui::Ui) {
        ui.heading("Under the pointer");
        match self.panel.hover {
            Some(h) => {
                ui.label(format!(
                    "{}: patch row {}, col {}",
                    match h.head {
                        Some(head) => format!("head {head}"),
                        None => "head mean".into(),
                    },
                    h.row,
                    h.col
                ));
                ui.label(format!("attention {:.5}", h.value));
            }
            None => {
                ui.label(egui::RichText::new("(hover a tile)").weak());
            }
        }
        if let Some((_, result)) = &self.shown {
            ui.separator();
            let g = result.maps.grid;
            ui.label(format!(
                "input {}x{} px, grid {}x{} patches of {} px",
                result.prepared.width(),
                result.prepared.height(),
                g.rows,
                g.cols,
                g.patch
            ));
            if let Some(note) = &result.prepared.note {
                ui.label(egui::RichText::new(note).weak());
            }
            ui.label(format!(
                "computed in {:.0} ms",
                result.elapsed.as_secs_f64() * 1e3
            ));
        }
    }

    /// The empty view: a hint, a spinner, or the button that computes a skipped view.
    fn placeholder(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>, key: Option<AttnKey>) {
        centered(ui, |ui| {
            if cx.is_empty() {
                add_images_hint(ui);
            } else if let Some(k) = key.filter(|k| self.skipped.contains(k)) {
                if ui.button("Compute attention").clicked() {
                    self.skipped.remove(&k);
                }
            } else {
                ui.spinner();
            }
        });
    }

    /// The heading: image, block, query, and a spinner while a newer view computes.
    fn heading(
        &mut self,
        ui: &mut egui::Ui,
        cx: &ViewContext<'_>,
        shown: AttnKey,
        key: Option<AttnKey>,
    ) {
        let name = cx
            .gallery
            .selected_entry()
            .map(|e| e.name.clone())
            .unwrap_or_default();
        ui.horizontal(|ui| {
            ui.heading(name);
            ui.label(format!(
                "block {} of {}, {}",
                shown.layer,
                cx.model.map_or(0, |m| m.config.depth),
                match shown.query {
                    Query::Cls => "attention of [CLS]".to_string(),
                    Query::Patch { row, col } => format!("attention of patch ({row}, {col})"),
                }
            ));
            if Some(shown) != key {
                ui.spinner();
                if let Some(k) = key.filter(|k| self.skipped.contains(k))
                    && ui
                        .button("Compute")
                        .on_hover_text("Compute this view")
                        .clicked()
                {
                    self.skipped.remove(&k);
                }
            }
        });
    }
}

impl View for AttentionTab {
    fn id(&self) -> ViewTab {
        ViewTab::ATTENTION
    }

    fn title(&self) -> &'static str {
        "Attention"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let (depth, block) = (cx.shared().depth(), layer(cx.shared()));
        ui.heading("View");
        let chosen = block_slider(
            ui,
            block,
            depth,
            "Which transformer block's attention to show (Up / Down)",
        );
        if chosen != block {
            set_layer(cx.settings, depth, chosen);
        }
        self.query_controls(ui);
        ui.separator();
        let s = &mut *cx.settings;
        ui.checkbox(&mut s.show_masks, "Mass-mask outlines");
        ui.add_enabled(
            s.show_masks,
            egui::Slider::new(&mut s.threshold, 0.05..=1.0)
                .step_by(0.05)
                .text("Mass kept"),
        )
        .on_hover_text(
            "Outline the fewest patches that hold this share of the attention (DINO: 0.6)",
        );
        colormap_combo(ui, &mut s.colormap);
        ui.add(egui::Slider::new(&mut s.opacity, 0.0..=1.0).text("Opacity"))
            .on_hover_text("Opacity of the attention colours over the image");
        tile_size_slider(ui, &mut s.tile_size);
        input_size_combo(ui, &mut s.input_size);
        ui.separator();
        self.figure_controls(ui, cx);
        ui.separator();
        self.read_outs(ui);
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let key = self.current_key(cx.shared());
        if let Some(k) = key
            && let Some(r) = self.cache.get(&k)
        {
            self.shown = Some((k, r.clone()));
        }
        // Keep an older result of the same image on screen while the new one computes.
        let shown = self.shown.clone().filter(|(k, _)| {
            key.is_some_and(|c| c.image == k.image && c.generation == k.generation)
        });
        let Some((shown_key, result)) = shown else {
            self.placeholder(ui, cx, key);
            return;
        };
        self.heading(ui, cx, shown_key, key);
        if self.figure.is_some() {
            egui::ScrollArea::vertical()
                .auto_shrink(false)
                .show(ui, |ui| self.figure_ui(ui, cx, shown_key, &result));
            return;
        }
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                if let Some((row, col)) =
                    self.panel
                        .ui(ui, shown_key, &result, cx.settings, shown_key.query)
                {
                    self.query = Query::Patch { row, col };
                }
            });
    }

    /// Asks the worker for the current view when it is neither cached nor under way.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        let Some(key) = self.current_key(cx.shared()) else {
            return;
        };
        if self.cache.contains_key(&key) || self.skipped.contains(&key) {
            return;
        }
        // One attention job at a time: scrubbing the layer slider asks only for where it stops.
        if cx.tasks.any::<AttnKey>() || cx.tasks.any::<ModelLoad>() {
            return;
        }
        let Some(input) = cx.shared().input(key.image) else {
            return;
        };
        let label = format!("Attention of {}", input.name);
        cx.worker
            .submit(cx.tasks, key, label, AttentionJob { key, input });
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let AttentionOutput { key, result } = *output.downcast::<AttentionOutput>()?;
        self.cache.insert(key, result);
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<AttnKey>() {
            self.skipped.insert(*key);
        }
    }

    fn model_loaded(&mut self, info: &ModelInfo, settings: &mut Settings) {
        if settings.layer.is_some_and(|l| l >= info.config.depth) {
            settings.layer = None;
        }
        self.query = Query::Cls;
        self.cache.clear();
        self.skipped.clear();
        self.shown = None;
        if self.figure.is_some() {
            self.figure = Some(AttentionFigure::with_heads(info.config.heads));
        }
    }

    fn escape(&mut self) {
        self.query = Query::Cls;
    }

    fn step_block(&mut self, step: isize, cx: &mut ViewContext<'_>) {
        let depth = cx.shared().depth();
        let block = layer(cx.shared()).saturating_add_signed(step);
        set_layer(cx.settings, depth, block);
    }

    fn exports(&self, shared: Shared<'_>) -> Vec<ExportItem> {
        let available = self.current_result(shared).is_some();
        let name = self.export_name(shared);
        vec![
            ExportItem {
                id: "png",
                label: "Export head-mean view (PNG)...",
                hover: "The attention tab's head mean over the image",
                available,
                pick: Pick::Save {
                    title: "Export the head-mean view".into(),
                    file_name: format!("{name}.png"),
                    filter: ("PNG", &["png"]),
                },
            },
            ExportItem {
                id: "npy",
                label: "Export attention values (.npy)...",
                hover: "[heads, rows, cols] float32",
                available,
                pick: Pick::Save {
                    title: "Export the attention values".into(),
                    file_name: format!("{name}.npy"),
                    filter: ("NumPy", &["npy"]),
                },
            },
            ExportItem {
                id: figure::EXPORT_ID,
                label: "Export paper figure (PNG)...",
                hover: "DINO's attention figure: the image beside the chosen heads' mass masks",
                available,
                pick: Pick::Save {
                    title: "Export the paper figure".into(),
                    file_name: format!("{name}-figure.png"),
                    filter: ("PNG", &["png"]),
                },
            },
        ]
    }

    fn export(&self, id: &str, path: PathBuf, shared: Shared<'_>) -> Option<ExportJob> {
        let result = self.current_result(shared)?.clone();
        match id {
            "png" => {
                let settings = shared.settings.clone();
                Some(Box::new(move || {
                    export::export_png(&path, &result, &settings).map(|()| vec![path])
                }))
            }
            "npy" => Some(Box::new(move || {
                export::export_npy(&path, &result).map(|()| vec![path])
            })),
            figure::EXPORT_ID => {
                let heads = self.figure_heads(result.maps.heads);
                let keep = shared.settings.threshold;
                Some(Box::new(move || {
                    export::export_figure(&path, &result, &heads, keep).map(|()| vec![path])
                }))
            }
            _ => None,
        }
    }

    fn use_wgpu(&mut self, render_state: &eframe::egui_wgpu::RenderState) {
        patch_overlay::install(render_state);
        self.panel.gpu = true;
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }
}
