//! The correspondence view's feature source: the loaded model's descriptors alone, or fused with
//! a second source (a second checkpoint or a folder of external maps) under a weight. Fused
//! pairs are computed by the worker ([`super::fusion_job`]) from cached maps.

use eframe::egui;
use std::sync::Arc;

use super::fusion_job::{FuseJob, FuseKey, SecondChoice};
use super::job::{CorrImage, CorrSpec};
use super::{CorrespondenceTab, SecondPick};
use crate::analysis::sd_features::FeatureSource;
use crate::app::dialogs::Pick;
use crate::app::sd_images::source_row;
use crate::app::view::{Shared, ViewContext};

impl CorrespondenceTab {
    /// Fuses the matching descriptors with `second` (`None`: the model's descriptors alone).
    pub fn set_fusion(&mut self, second: Option<SecondChoice>) {
        self.fusion = second;
    }

    pub fn fusion(&self) -> Option<&SecondChoice> {
        self.fusion.as_ref()
    }

    /// The fused pair of the source with each target under the current settings.
    fn fuse_keys(&self, shared: Shared<'_>, spec: CorrSpec) -> Vec<FuseKey> {
        let (Some(second), Some(source)) = (&self.fusion, Self::source(shared)) else {
            return Vec::new();
        };
        let weight = shared.settings.correspondence.fusion_weight.clamp(0.0, 1.0);
        self.targets(shared)
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
    pub fn matching(
        &self,
        shared: Shared<'_>,
        spec: CorrSpec,
    ) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        if let Some(sd) = self.sd_matching(shared) {
            return sd;
        }
        if self.fusion.is_none() {
            return self.own_images(shared, spec);
        }
        let keys = self.fuse_keys(shared, spec);
        let pairs: Vec<&[Arc<CorrImage>; 2]> = keys
            .iter()
            .map(|k| self.fused.get(k))
            .collect::<Option<_>>()?;
        // Without co-PCA a fused map depends on its image alone: every pair's source is the same.
        let source = pairs.first()?[0].clone();
        Some((source, pairs.iter().map(|p| p[1].clone()).collect()))
    }

    /// Asks the worker for a missing fused pair once both images' descriptors are there.
    /// Returns whether a job was submitted.
    pub(super) fn request_fusion(&mut self, cx: &mut ViewContext<'_>, spec: CorrSpec) -> bool {
        let shared = cx.shared();
        let wanted = self
            .fuse_keys(shared, spec)
            .into_iter()
            .find(|k| self.fused.get(k).is_none() && !self.fuse_skipped.contains(k));
        let Some(key) = wanted else {
            return false;
        };
        let images = [key.source, key.target].map(|id| self.image(id, spec).cloned());
        let inputs = [key.source, key.target].map(|id| shared.input(id));
        let ([Some(a), Some(b)], [Some(ia), Some(ib)]) = (images, inputs) else {
            return false;
        };
        let label = format!("Fusing {} and {}", ia.name, ib.name);
        let job = FuseJob {
            key: key.clone(),
            images: [a, b],
            inputs: [ia, ib],
        };
        cx.worker.submit(cx.tasks, key, label, job);
        true
    }

    /// Opens the dialog that picks a second source.
    fn pick_source(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>, pick: SecondPick) {
        let dialog = match pick {
            SecondPick::Checkpoint => Pick::File {
                title: "Fuse with a second checkpoint".into(),
                filter: ("Checkpoints", &["pth", "pt", "safetensors"]),
            },
            SecondPick::Folder => Pick::Folder {
                title: "Fuse with the feature maps in a folder (<image stem>.npy)".into(),
            },
        };
        if let Err(e) = self.dialog.open(ctx, dialog, pick) {
            cx.notifications.error(&e);
        }
    }

    /// Takes the second source picked in the dialog.
    pub(super) fn take_picked_source(&mut self, cx: &mut ViewContext<'_>) {
        match self.dialog.poll() {
            Some((pick, Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    self.fusion = Some(match pick {
                        SecondPick::Checkpoint => SecondChoice::Checkpoint(path),
                        SecondPick::Folder => SecondChoice::Folder(path),
                    });
                }
            }
            Some((_, Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }

    pub(super) fn fusion_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Features matched");
        let source = &mut cx.settings.correspondence.features;
        source_row(
            ui,
            source,
            "SD-DINO: SD's features fused with this model's last-block tokens of the image placed \
             the same way",
        );
        if *source != FeatureSource::Dino {
            self.sd_controls(ui, cx);
            return;
        }
        match &self.fusion {
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
                self.pick_source(ui.ctx(), cx, SecondPick::Checkpoint);
            }
            if ui
                .button("Feature maps...")
                .on_hover_text(
                    "A folder with <image stem>.npy or .safetensors per image, [C, h, w] maps",
                )
                .clicked()
            {
                self.pick_source(ui.ctx(), cx, SecondPick::Folder);
            }
            if self.fusion.is_some() && ui.button("None").clicked() {
                self.fusion = None;
            }
        });
        if self.fusion.is_none() {
            return;
        }
        ui.add(
            egui::Slider::new(&mut cx.settings.correspondence.fusion_weight, 0.0..=1.0)
                .step_by(0.05)
                .text("Second-source weight"),
        )
        .on_hover_text(
            "Each source is L2-normalised, then scaled: this model by 1 - w, the second by w",
        );
    }
}
