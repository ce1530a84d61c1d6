//! The attention tab of the app: which attention result the settings ask for, asking the worker
//! for it, the tab's controls and its central view.

use eframe::egui;
use std::sync::Arc;

use super::worker::{self, AttentionResult, AttnKey, Job, query_key};
use super::{App, TaskKind, input_size_combo};
use crate::analysis::attention::Query;
use crate::analysis::colormap::Colormap;

impl App {
    /// The key of the view the settings ask for.
    pub fn current_key(&self) -> Option<AttnKey> {
        let model = self.model.as_ref()?;
        let image = self.gallery.selected?;
        Some(AttnKey {
            image,
            layer: self.layer(),
            query: query_key(self.query),
            input_size: self.settings.input_size,
            generation: model.generation,
        })
    }

    /// The result for the current settings, once computed.
    pub fn current_result(&self) -> Option<&Arc<AttentionResult>> {
        self.current_key().and_then(|k| self.cache.get(&k))
    }

    /// Asks the worker for the current view when it is neither cached nor under way.
    pub(super) fn request_attention(&mut self) {
        let Some(key) = self.current_key() else {
            return;
        };
        if self.cache.contains_key(&key) || self.skipped.contains(&key) {
            return;
        }
        // One attention job at a time: scrubbing the layer slider asks only for where it stops.
        if self
            .tasks
            .values()
            .any(|(k, _)| matches!(k, TaskKind::Attention(_) | TaskKind::Model))
        {
            return;
        }
        let Some(entry) = self.gallery.selected_entry() else {
            return;
        };
        let (rgb, name) = (entry.rgb.clone(), entry.name.clone());
        self.submit(
            TaskKind::Attention(key),
            format!("Attention of {name}"),
            Job::Attention { key, rgb, name },
        );
    }

    pub(super) fn attention_controls(&mut self, ui: &mut egui::Ui) {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        ui.heading("View");
        let mut layer = self.layer();
        ui.add_enabled(
            depth > 1,
            egui::Slider::new(&mut layer, 0..=depth - 1).text("Block (layer)"),
        )
        .on_hover_text("Which transformer block's attention to show (Up / Down)");
        if layer != self.layer() {
            self.set_layer(layer);
        }
        ui.horizontal(|ui| {
            let is_cls = self.query == Query::Cls;
            if ui
                .add(egui::Button::new("CLS").selected(is_cls))
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
        ui.separator();
        ui.checkbox(&mut self.settings.show_masks, "Mass-mask outlines");
        ui.add_enabled(
            self.settings.show_masks,
            egui::Slider::new(&mut self.settings.threshold, 0.05..=1.0)
                .step_by(0.05)
                .text("Mass kept"),
        )
        .on_hover_text(
            "Outline the fewest patches that hold this share of the attention (DINO: 0.6)",
        );
        egui::ComboBox::from_label("Colormap")
            .selected_text(format!("{:?}", self.settings.colormap))
            .show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut self.settings.colormap, c, format!("{c:?}"));
                }
            });
        ui.add(egui::Slider::new(&mut self.settings.opacity, 0.0..=1.0).text("Opacity"))
            .on_hover_text("Opacity of the attention colours over the image");
        ui.add(egui::Slider::new(&mut self.settings.tile_size, 80.0..=600.0).text("Tile size"));
        input_size_combo(ui, &mut self.settings.input_size);
        ui.separator();
        ui.heading("Under the pointer");
        match self.view.hover {
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

    pub(super) fn attention_central(&mut self, ui: &mut egui::Ui) {
        let key = self.current_key();
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
            super::centered(ui, |ui| {
                if self.gallery.entries.is_empty() && self.tasks.is_empty() {
                    ui.label("Drop images or folders here, or use File > Open images (Ctrl+O).");
                } else if key.is_some_and(|k| self.skipped.contains(&k)) {
                    if ui.button("Compute attention").clicked()
                        && let Some(k) = key
                    {
                        self.skipped.remove(&k);
                    }
                } else {
                    ui.spinner();
                }
            });
            return;
        };
        let name = self
            .gallery
            .selected_entry()
            .map(|e| e.name.clone())
            .unwrap_or_default();
        ui.horizontal(|ui| {
            ui.heading(name);
            ui.label(format!(
                "block {} of {}, {}",
                shown_key.layer,
                self.model.as_ref().map_or(0, |m| m.config.depth),
                match worker::query_of(shown_key.query) {
                    Query::Cls => "attention of [CLS]".to_string(),
                    Query::Patch { row, col } => format!("attention of patch ({row}, {col})"),
                }
            ));
            if Some(shown_key) != key {
                ui.spinner();
                if key.is_some_and(|k| self.skipped.contains(&k))
                    && ui
                        .button("Compute")
                        .on_hover_text("Compute this view")
                        .clicked()
                    && let Some(k) = key
                {
                    self.skipped.remove(&k);
                }
            }
        });
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                if let Some((row, col)) = self.view.ui(
                    ui,
                    shown_key,
                    &result,
                    &self.settings,
                    worker::query_of(shown_key.query),
                ) {
                    self.query = Query::Patch { row, col };
                }
            });
    }
}
