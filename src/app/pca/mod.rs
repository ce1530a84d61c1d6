//! The PCA tab of the app: which colouring the settings ask for, asking the worker for it
//! (cancelling a stale one), the results cache, the tab's controls and its central view.

use eframe::egui;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::pca_job::{PcaInput, PcaKey, PcaResult};
use super::pca_panel::{self, PcaPanel};
use super::worker::{Job, TaskId};
use super::{App, TaskKind, input_size_combo};

/// PCA results kept in memory.
const PCA_CACHE_CAPACITY: usize = 16;

/// Results, what failed or was cancelled, what is on screen, and the view.
#[derive(Default)]
pub struct PcaState {
    cache: HashMap<PcaKey, Arc<PcaResult>>,
    order: VecDeque<PcaKey>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    pub skipped: HashSet<PcaKey>,
    /// What is on screen (may be an older result while the next one computes).
    shown: Option<(PcaKey, Arc<PcaResult>)>,
    pub panel: PcaPanel,
}

impl PcaState {
    pub fn insert(&mut self, key: PcaKey, result: Arc<PcaResult>) {
        if self.cache.insert(key.clone(), result).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > PCA_CACHE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
    }

    pub fn get(&self, key: &PcaKey) -> Option<&Arc<PcaResult>> {
        self.cache.get(key)
    }

    /// Results kept.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Forgets everything (a new model).
    pub fn clear(&mut self) {
        self.cache.clear();
        self.order.clear();
        self.skipped.clear();
        self.shown = None;
    }
}

impl App {
    /// The block the PCA uses: the chosen one, or the last block of the model.
    pub fn pca_layer(&self) -> usize {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings.pca.layer.unwrap_or(depth - 1).min(depth - 1)
    }

    pub fn set_pca_layer(&mut self, layer: usize) {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings.pca.layer = Some(layer.min(depth - 1));
    }

    /// The images the PCA tab shows: all of the gallery, or the selected one.
    fn pca_images(&self) -> Vec<PcaInput> {
        let entries = &self.gallery.entries;
        let chosen: Vec<_> = if self.settings.pca.all_images {
            entries.iter().collect()
        } else {
            self.gallery.selected_entry().into_iter().collect()
        };
        chosen
            .into_iter()
            .map(|e| PcaInput {
                id: e.id,
                name: e.name.clone(),
                rgb: e.rgb.clone(),
            })
            .collect()
    }

    /// The key of the colouring the settings ask for (`None` without a model or images).
    pub fn current_pca_key(&self) -> Option<PcaKey> {
        let model = self.model.as_ref()?;
        let images: Vec<_> = self.pca_images().iter().map(|i| i.id).collect();
        if images.is_empty() {
            return None;
        }
        let patch = model.config.patch_size.max(1);
        let pca = &self.settings.pca;
        Some(PcaKey {
            joint: pca.joint && images.len() > 1,
            images,
            layer: self.pca_layer(),
            facet: pca.facet,
            stride: pca
                .stride
                .filter(|s| *s > 0 && patch.is_multiple_of(*s))
                .unwrap_or(patch),
            foreground_milli: pca
                .foreground
                .then(|| (pca.threshold.clamp(0.0, 1.0) * 1000.0).round() as u16),
            input_size: self.settings.input_size,
            generation: model.generation,
        })
    }

    /// The colouring for the current settings, once computed.
    pub fn current_pca_result(&self) -> Option<&Arc<PcaResult>> {
        self.current_pca_key().and_then(|k| self.pca.get(&k))
    }

    /// The PCA view (tile rectangles, hover) of the last frame.
    pub fn pca_view(&self) -> &PcaPanel {
        &self.pca.panel
    }

    /// Asks the worker for the current colouring when it is neither cached nor under way; a
    /// colouring under way for other settings is cancelled (its features stay cached).
    pub(super) fn request_pca(&mut self) {
        let Some(key) = self.current_pca_key() else {
            return;
        };
        if self.pca.get(&key).is_some() || self.pca.skipped.contains(&key) {
            return;
        }
        if self.tasks.values().any(|(k, _)| *k == TaskKind::Model) {
            return;
        }
        let mut running = false;
        let stale: Vec<TaskId> = self
            .tasks
            .iter()
            .filter_map(|(id, (kind, _))| match kind {
                TaskKind::Pca(k) if *k == key => {
                    running = true;
                    None
                }
                TaskKind::Pca(_) => Some(*id),
                _ => None,
            })
            .collect();
        for id in stale {
            if let Some((_, task)) = self.tasks.remove(&id) {
                task.token.cancel();
            }
        }
        if running {
            return;
        }
        let inputs = self.pca_images();
        let label = match inputs.as_slice() {
            [one] => format!("PCA of {}", one.name),
            many => format!("PCA of {} images", many.len()),
        };
        self.submit(TaskKind::Pca(key.clone()), label, Job::Pca { key, inputs });
    }

    pub(super) fn pca_controls(&mut self, ui: &mut egui::Ui) {
        let layer = self.pca_layer();
        pca_panel::controls(
            ui,
            &mut self.settings.pca,
            self.model.as_ref().map(|m| &m.config),
            self.gallery.entries.len(),
            layer,
        );
        input_size_combo(ui, &mut self.settings.input_size);
        ui.add(egui::Slider::new(&mut self.settings.tile_size, 80.0..=600.0).text("Tile size"));
        ui.separator();
        pca_panel::hover_ui(ui, self.pca.panel.hover);
        if let Some((_, result)) = &self.pca.shown {
            ui.separator();
            ui.label(format!(
                "computed in {:.0} ms",
                result.elapsed.as_secs_f64() * 1e3
            ));
            for image in &result.images {
                if let Some(note) = &image.prepared.note {
                    ui.label(egui::RichText::new(format!("{}: {note}", image.name)).weak());
                }
            }
        }
    }

    pub(super) fn pca_central(&mut self, ui: &mut egui::Ui) {
        let key = self.current_pca_key();
        if let Some(k) = &key
            && let Some(r) = self.pca.get(k)
        {
            self.pca.shown = Some((k.clone(), r.clone()));
        }
        // Keep an older result of the same model on screen while the next one computes.
        let shown = self
            .pca
            .shown
            .clone()
            .filter(|(k, _)| key.as_ref().is_some_and(|c| c.generation == k.generation));
        let skipped = key.as_ref().is_some_and(|k| self.pca.skipped.contains(k));
        let Some((shown_key, result)) = shown else {
            self.pca.panel.hover = None;
            self.pca.panel.tiles.clear();
            super::centered(ui, |ui| {
                if self.gallery.entries.is_empty() && self.tasks.is_empty() {
                    ui.label("Drop images or folders here, or use File > Open images (Ctrl+O).");
                } else if skipped {
                    if ui.button("Compute PCA").clicked()
                        && let Some(k) = &key
                    {
                        self.pca.skipped.remove(k);
                    }
                } else {
                    ui.spinner();
                }
            });
            return;
        };
        ui.horizontal(|ui| {
            ui.heading("PCA of the patch features");
            ui.label(format!(
                "block {}, {:?}, stride {} px{}",
                shown_key.layer,
                shown_key.facet,
                shown_key.stride,
                match shown_key.foreground_threshold() {
                    Some(t) => format!(", foreground above {t:.2}"),
                    None => String::new(),
                }
            ));
            if Some(&shown_key) != key.as_ref() {
                ui.spinner();
                if skipped
                    && ui
                        .button("Compute")
                        .on_hover_text("Compute this view")
                        .clicked()
                    && let Some(k) = &key
                {
                    self.pca.skipped.remove(k);
                }
            }
        });
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                self.pca
                    .panel
                    .ui(ui, &result, shown_key.joint, self.settings.tile_size)
            });
    }
}
