//! The token-norms view (Darcet et al., "Vision Transformers Need Registers"): the L2 norm of
//! every patch token of a block's output over the selected image, the high-norm outliers
//! outlined above an adjustable threshold, a histogram of the norms, and for register models the
//! attention CLS and every patch pay to each register. A second checkpoint (the same model with
//! or without registers) can be shown in its place with one toggle. Norms are computed by the
//! worker ([`job`]) and cached per image, block and model; the threshold and head only redraw.

pub mod job;
pub mod panel;

use eframe::egui;
use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::dialogs::{Dialog, Pick};
use super::notifications::file_label;
use super::state::{Settings, ViewTab};
use super::tasks::Output;
use super::view::{Shared, View, ViewContext};
use super::widgets::{
    add_images_hint, block_slider, centered, colormap_combo, input_size_combo, tile_size_slider,
};
use super::worker::{ModelInfo, ModelLoad};
use crate::analysis::token_norms::MODIFIED_Z_CUTOFF;
use job::{NormsJob, NormsKey, NormsOutput, NormsResult};
use panel::NormsPanel;

/// Results kept in memory.
const CACHE_CAPACITY: usize = 32;

pub struct NormsTab {
    cache: BoundedCache<NormsKey, Arc<NormsResult>>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    skipped: HashSet<NormsKey>,
    /// What is on screen (may be an older result while the next one computes).
    shown: Option<(NormsKey, Arc<NormsResult>)>,
    /// The dialog that picks the second checkpoint.
    dialog: Dialog<()>,
    pub panel: NormsPanel,
}

impl Default for NormsTab {
    fn default() -> Self {
        NormsTab {
            cache: BoundedCache::with_capacity(CACHE_CAPACITY),
            skipped: HashSet::new(),
            shown: None,
            dialog: Dialog::default(),
            panel: NormsPanel::default(),
        }
    }
}

/// The block measured: the chosen one, or the last block (where DINOv2's artifacts are).
pub fn block(shared: Shared<'_>) -> usize {
    shared.block(shared.settings.norms.block, 0)
}

/// The threshold in force for a result: the chosen one, or the suggested one.
pub fn threshold(settings: &Settings, result: &NormsResult) -> f32 {
    settings.norms.threshold.unwrap_or(result.suggested)
}

impl NormsTab {
    /// The key of the result the settings ask for (`None` without a model or a selected image).
    pub fn current_key(&self, shared: Shared<'_>) -> Option<NormsKey> {
        let model = shared.model?;
        let image = shared.gallery.selected_entry()?.id;
        let norms = &shared.settings.norms;
        Some(NormsKey {
            image,
            block: block(shared),
            input_size: shared.settings.input_size,
            generation: model.generation,
            second: norms.second.clone().filter(|_| norms.show_second),
        })
    }

    /// The result on screen, with its key.
    pub fn shown(&self) -> Option<&(NormsKey, Arc<NormsResult>)> {
        self.shown.as_ref()
    }

    fn heading(&mut self, ui: &mut egui::Ui, shown: &NormsKey, key: Option<&NormsKey>) {
        ui.horizontal(|ui| {
            ui.heading("Token norms");
            let of = match &shown.second {
                Some(path) => format!(" of {}", file_label(path)),
                None => String::new(),
            };
            ui.label(format!(
                "block {}{of}, output tokens before the final norm",
                shown.block
            ));
            if Some(shown) != key {
                ui.spinner();
                if let Some(k) = key.filter(|k| self.skipped.contains(k))
                    && ui
                        .button("Compute")
                        .on_hover_text("Compute this view")
                        .clicked()
                {
                    self.skipped.remove(k);
                }
            }
        });
    }

    fn threshold_controls(&self, ui: &mut egui::Ui, settings: &mut Settings) {
        let Some((_, result)) = &self.shown else {
            return;
        };
        let norms = &result.tokens.norms.patches;
        let max = norms.iter().copied().fold(0.0f32, f32::max);
        let mut value = threshold(settings, result);
        let range = 0.0..=(max * 1.05).max(value).max(1e-3);
        let slider = egui::Slider::new(&mut value, range).text("Outlier threshold");
        if ui
            .add(slider)
            .on_hover_text("Patches whose norm is above this are outliers (outlined in red)")
            .changed()
        {
            settings.norms.threshold = Some(value);
        }
        let suggested = settings.norms.threshold.is_none();
        if ui
            .add_enabled(!suggested, egui::Button::new("Suggested threshold"))
            .on_hover_text(format!(
                "median + {:.2} x MAD of the image's patch norms (a modified z-score above \
                 {MODIFIED_Z_CUTOFF}, Iglewicz & Hoaglin); Darcet et al. use a norm of 150 for ViT-g",
                MODIFIED_Z_CUTOFF / 0.6745
            ))
            .clicked()
        {
            settings.norms.threshold = None;
        }
    }
}

impl NormsTab {
    /// The second checkpoint: picked in a dialog, then a toggle between it and the loaded model.
    fn second_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.separator();
        ui.horizontal(|ui| {
            ui.label("Compare with:");
            if ui
                .button("Checkpoint...")
                .on_hover_text(
                    "A second model (.pth / .safetensors), e.g. the same DINOv2 with registers \
                     when the one loaded has none, or the other way round",
                )
                .clicked()
            {
                let pick = Pick::File {
                    title: "Compare the token norms with a second checkpoint".into(),
                    filter: ("Checkpoints", &["pth", "pt", "safetensors"]),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                    cx.notifications.error(&e);
                }
            }
            if cx.settings.norms.second.is_some() && ui.button("None").clicked() {
                cx.settings.norms.second = None;
                cx.settings.norms.show_second = false;
            }
        });
        let norms = &mut cx.settings.norms;
        if let Some(second) = &norms.second {
            let loaded = cx
                .model
                .map_or("the loaded model".into(), |m| m.file_name());
            let label = file_label(second);
            ui.radio_value(&mut norms.show_second, false, loaded);
            ui.radio_value(&mut norms.show_second, true, label);
        }
    }
}

impl View for NormsTab {
    fn id(&self) -> ViewTab {
        ViewTab::NORMS
    }

    fn title(&self) -> &'static str {
        "Token norms"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let current = block(cx.shared());
        let depth = cx.shared().depth();
        ui.heading("Token norms");
        let chosen = block_slider(
            ui,
            current,
            depth,
            "Which block's output tokens (Up / Down)",
        );
        if chosen != current {
            cx.settings.norms.block = Some(chosen);
        }
        self.threshold_controls(ui, cx.settings);
        let heads = cx.model.map_or(0, |m| m.config.heads);
        if cx.model.is_some_and(|m| m.config.registers > 0) {
            let head = &mut cx.settings.norms.head;
            egui::ComboBox::from_label("Register attention")
                .selected_text(match head {
                    Some(h) => format!("head {h}"),
                    None => "mean over heads".into(),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(head, None, "mean over heads");
                    for h in 0..heads {
                        ui.selectable_value(head, Some(h), format!("head {h}"));
                    }
                });
        }
        self.second_controls(ui, cx);
        ui.separator();
        input_size_combo(ui, &mut cx.settings.input_size);
        tile_size_slider(ui, &mut cx.settings.tile_size);
        colormap_combo(ui, &mut cx.settings.colormap);
        ui.add(egui::Slider::new(&mut cx.settings.opacity, 0.0..=1.0).text("Opacity"));
        if let Some((_, result)) = &self.shown {
            ui.separator();
            ui.label(format!(
                "computed in {:.0} ms",
                result.elapsed.as_secs_f64() * 1e3
            ));
            if let Some(note) = &result.prepared.note {
                ui.label(egui::RichText::new(note).weak());
            }
        }
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let key = self.current_key(cx.shared());
        if let Some(k) = &key
            && let Some(r) = self.cache.get(k)
        {
            self.shown = Some((k.clone(), r.clone()));
        }
        // Keep an older result of the same model on screen while the next one computes.
        let shown = self
            .shown
            .clone()
            .filter(|(k, _)| key.as_ref().is_some_and(|c| c.generation == k.generation));
        let Some((shown_key, result)) = shown else {
            self.panel.hover = None;
            self.panel.map_rect = None;
            centered(ui, |ui| {
                if cx.is_empty() {
                    add_images_hint(ui);
                } else if let Some(k) = key.as_ref().filter(|k| self.skipped.contains(k)) {
                    if ui.button("Compute token norms").clicked() {
                        self.skipped.remove(k);
                    }
                } else {
                    ui.spinner();
                }
            });
            return;
        };
        self.heading(ui, &shown_key, key.as_ref());
        let threshold = threshold(cx.settings, &result);
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| self.panel.ui(ui, &result, threshold, cx.settings));
    }

    /// Asks the worker for the current result when it is neither cached nor under way; one
    /// under way for other settings is cancelled.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        let Some(key) = self.current_key(cx.shared()) else {
            return;
        };
        if self.cache.contains_key(&key) || self.skipped.contains(&key) {
            return;
        }
        if cx.tasks.any::<ModelLoad>() {
            return;
        }
        if cx.tasks.cancel_others(&key) {
            return;
        }
        let Some(input) = cx.shared().input(key.image) else {
            return;
        };
        let label = format!("Token norms of {}, block {}", input.name, key.block);
        let job = NormsJob {
            key: key.clone(),
            input,
        };
        cx.worker.submit(cx.tasks, key, label, job);
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let NormsOutput { key, result } = *output.downcast::<NormsOutput>()?;
        self.cache.insert(key, result);
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<NormsKey>() {
            self.skipped.insert(key.clone());
        }
    }

    fn model_loaded(&mut self, info: &ModelInfo, settings: &mut Settings) {
        self.cache.clear();
        self.skipped.clear();
        self.shown = None;
        let norms = &mut settings.norms;
        if norms.block.is_some_and(|b| b >= info.config.depth) {
            norms.block = None;
        }
        if norms.head.is_some_and(|h| h >= info.config.heads) {
            norms.head = None;
        }
        // Norms scale with the model: a threshold chosen for another one means nothing here.
        norms.threshold = None;
    }

    fn poll(&mut self, _ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        match self.dialog.poll() {
            Some((_, Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    cx.settings.norms.second = Some(path);
                    cx.settings.norms.show_second = true;
                }
            }
            Some((_, Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }

    fn step_block(&mut self, step: isize, cx: &mut ViewContext<'_>) {
        let depth = cx.shared().depth();
        let block = block(cx.shared()).saturating_add_signed(step);
        cx.settings.norms.block = Some(block.min(depth - 1));
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }
}
