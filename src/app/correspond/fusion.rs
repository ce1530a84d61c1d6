//! The correspondence tab's feature source: the loaded model's descriptors alone, or fused with a
//! second source (a second checkpoint or a folder of external maps) under a weight. Fused pairs
//! are computed by the worker ([`super::fusion_job`]) from cached maps.

use eframe::egui;
use std::sync::Arc;

use super::correspond_job::{CorrImage, CorrSpec};
use super::fusion_job::{FuseKey, SecondChoice};
use super::worker::Job;
use super::{App, DialogKind, TaskKind};

impl App {
    /// Fuses the matching descriptors with `second` (`None`: the model's descriptors alone).
    pub fn set_corr_fusion(&mut self, second: Option<SecondChoice>) {
        self.corr.fusion = second;
    }

    pub fn corr_fusion(&self) -> Option<&SecondChoice> {
        self.corr.fusion.as_ref()
    }

    /// The fused pair of the source with each target under the current settings.
    fn fuse_keys(&self, spec: CorrSpec) -> Vec<FuseKey> {
        let (Some(second), Some(source)) = (&self.corr.fusion, self.corr_source()) else {
            return Vec::new();
        };
        let weight = self.settings.correspondence.fusion_weight.clamp(0.0, 1.0);
        self.corr_targets()
            .into_iter()
            .map(|target| FuseKey {
                source,
                target,
                spec,
                second: second.clone(),
                weight_milli: (weight * 1000.0).round() as u16,
            })
            .collect()
    }

    /// The descriptors a point is matched with: the fused source and targets when a second source
    /// is chosen (`None` until every pair is fused), else the model's.
    pub fn corr_matching(&self, spec: CorrSpec) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        if self.corr.fusion.is_none() {
            let source = self.corr.image(self.corr_source()?, spec)?.clone();
            let targets = self
                .corr_targets()
                .iter()
                .filter_map(|&id| self.corr.image(id, spec).cloned())
                .collect();
            return Some((source, targets));
        }
        let keys = self.fuse_keys(spec);
        let pairs: Vec<&[Arc<CorrImage>; 2]> = keys
            .iter()
            .map(|k| self.corr.fused(k))
            .collect::<Option<_>>()?;
        // Without co-PCA a fused map depends on its image alone: every pair's source is the same.
        let source = pairs.first()?[0].clone();
        Some((source, pairs.iter().map(|p| p[1].clone()).collect()))
    }

    /// Asks the worker for a missing fused pair once both images' descriptors are there.
    /// Returns whether a job was submitted.
    pub(super) fn request_fusion(&mut self, spec: CorrSpec) -> bool {
        let wanted = self
            .fuse_keys(spec)
            .into_iter()
            .find(|k| self.corr.fused(k).is_none() && !self.corr.fuse_skipped.contains(k));
        let Some(key) = wanted else {
            return false;
        };
        let images = [key.source, key.target].map(|id| self.corr.image(id, spec).cloned());
        let inputs = [key.source, key.target].map(|id| self.corr_input(id));
        let ([Some(a), Some(b)], [Some(ia), Some(ib)]) = (images, inputs) else {
            return false;
        };
        let label = format!("Fusing {} and {}", ia.name, ib.name);
        self.submit(
            TaskKind::Fuse(key.clone()),
            label,
            Job::Fuse {
                key,
                images: [a, b],
                inputs: [ia, ib],
            },
        );
        true
    }

    pub(super) fn fusion_controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Features matched");
        match &self.corr.fusion {
            Some(second) => ui.label(format!("This model fused with the {}", second.label())),
            None => ui.label("This model's descriptors"),
        };
        ui.horizontal(|ui| {
            ui.label("Fuse with:");
            if ui
                .button("Checkpoint...")
                .on_hover_text("A second model (.pth / .safetensors): its last block's tokens")
                .clicked()
            {
                self.open_dialog(DialogKind::FusionCheckpoint);
            }
            if ui
                .button("Feature maps...")
                .on_hover_text(
                    "A folder with <image stem>.npy or .safetensors per image, [C, h, w] maps",
                )
                .clicked()
            {
                self.open_dialog(DialogKind::FusionFolder);
            }
            if self.corr.fusion.is_some() && ui.button("None").clicked() {
                self.corr.fusion = None;
            }
        });
        if self.corr.fusion.is_none() {
            return;
        }
        ui.add(
            egui::Slider::new(&mut self.settings.correspondence.fusion_weight, 0.0..=1.0)
                .step_by(0.05)
                .text("Second-source weight"),
        )
        .on_hover_text(
            "Each source is L2-normalised, then scaled: this model by 1 - w, the second by w",
        );
    }
}
