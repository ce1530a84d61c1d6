//! The correspondence view's Stable Diffusion sources, SD alone or SD+DINO: each image's SD output
//! and placed DINO tokens come from the view's [`SdImages`]; this module keeps the shown set's
//! descriptors, asks the worker for them ([`super::sd_job`]), and adds the weight to the shared SD
//! controls.

use eframe::egui;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::CorrespondenceTab;
use super::job::{CorrImage, SdSetKey};
use super::sd_job::{SdSetJob, SdSetOutput};
use crate::analysis::sd_features::FeatureSource;
use crate::app::cache::BoundedCache;
use crate::app::sd_images::{SdImages, SdWanted};
use crate::app::sd_model::PickerContext;
use crate::app::state::ViewTab;
use crate::app::tasks::{Output, Tasks};
use crate::app::view::{Shared, ViewContext};

/// A source's descriptors and its targets'.
type Matched = (Arc<CorrImage>, Vec<Arc<CorrImage>>);

/// Sets of descriptors kept in memory by the view.
const SETS_KEPT: usize = 32;

pub struct SdSources {
    images: SdImages,
    sets: BoundedCache<SdSetKey, Vec<Arc<CorrImage>>>,
    skipped_sets: HashSet<SdSetKey>,
}

impl Default for SdSources {
    fn default() -> Self {
        SdSources {
            images: SdImages::new(ViewTab::CORRESPONDENCE),
            sets: BoundedCache::with_capacity(SETS_KEPT),
            skipped_sets: HashSet::new(),
        }
    }
}

impl SdSources {
    pub fn set_cache_dir(&mut self, dir: Option<PathBuf>) {
        self.images.set_cache_dir(dir);
    }

    pub fn computed(&self) -> u64 {
        self.images.computed()
    }

    fn set_key(&self, wanted: &SdWanted, shared: Shared<'_>) -> SdSetKey {
        let weight = shared.settings.correspondence.fusion_weight.clamp(0.0, 1.0);
        let fused = wanted.dino_layer.is_some();
        SdSetKey {
            images: wanted.images.clone(),
            choice: wanted.choice.clone(),
            fused,
            weight_milli: if fused {
                (weight * 1000.0).round() as u16
            } else {
                0
            },
            generation: wanted.generation,
        }
    }

    /// The descriptors of a set (source first), once computed.
    pub fn set(&self, key: &SdSetKey) -> Option<&Vec<Arc<CorrImage>>> {
        self.sets.get(key)
    }

    /// Takes a worker result of an SD job (`Err`: not one).
    pub fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match self.images.take_output(output) {
            Ok(()) => return Ok(()),
            Err(other) => other,
        };
        let o = output.downcast::<SdSetOutput>()?;
        self.sets.insert(o.key, o.images);
        Ok(())
    }

    /// A cancelled or failed SD job: nothing more runs until Run is pressed again.
    pub fn task_dropped(&mut self, key: &dyn std::any::Any) {
        if let Some(key) = key.downcast_ref::<SdSetKey>() {
            self.skipped_sets.insert(key.clone());
        } else {
            self.images.task_dropped(key);
        }
    }

    /// A new ViT: its placed tokens and the fused sets are stale (SD's own output is not).
    pub fn model_loaded(&mut self) {
        self.images.model_loaded();
        self.sets.clear();
        self.skipped_sets.clear();
    }

    /// Some SD job is under way.
    pub fn busy(tasks: &Tasks) -> bool {
        SdImages::busy(tasks) || tasks.any::<SdSetKey>()
    }
}

impl CorrespondenceTab {
    fn sd_wanted(&self, shared: Shared<'_>) -> Option<SdWanted> {
        let c = &shared.settings.correspondence;
        if c.features == FeatureSource::Dino {
            return None;
        }
        let model = shared.model?;
        let mut images: Vec<_> = Self::source(shared).into_iter().collect();
        images.extend(self.targets(shared));
        Some(SdWanted {
            choice: c.sd.choice()?,
            dino_layer: (c.features == FeatureSource::Fused).then(|| model.config.depth - 1),
            images,
            generation: model.generation,
        })
    }

    /// The key of the SD or SD+DINO descriptors shown (`None` under DINO).
    pub(super) fn sd_set_key(&self, shared: Shared<'_>) -> Option<SdSetKey> {
        let wanted = self.sd_wanted(shared)?;
        Some(self.sd.set_key(&wanted, shared))
    }

    /// The SD or SD+DINO descriptors of the source and its targets, once computed (`None` when
    /// the view matches DINO's).
    pub(super) fn sd_matching(&self, shared: Shared<'_>) -> Option<Option<Matched>> {
        let wanted = self.sd_wanted(shared)?;
        let key = self.sd.set_key(&wanted, shared);
        Some(self.sd.sets.get(&key).and_then(|images| {
            let (source, targets) = images.split_first()?;
            Some((source.clone(), targets.to_vec()))
        }))
    }

    /// Starts SD work for the current model and recipe (the Run button).
    pub fn run_sd(&mut self, shared: Shared<'_>) {
        if let Some(wanted) = self.sd_wanted(shared) {
            self.sd.skipped_sets.clear();
            self.sd.images.start(&wanted);
        }
    }

    /// Asks the worker for the next SD step: the images' SD output and placed DINO tokens
    /// ([`SdImages::request`]), then the set's descriptors. Returns whether a job was submitted.
    pub(super) fn request_sd(&mut self, cx: &mut ViewContext<'_>) -> bool {
        let shared = cx.shared();
        let Some(wanted) = self.sd_wanted(shared) else {
            return false;
        };
        let key = self.sd.set_key(&wanted, shared);
        if self.sd.images.request(cx, &wanted) {
            return true;
        }
        if wanted.images.len() < 2
            || self.sd.sets.contains_key(&key)
            || self.sd.skipped_sets.contains(&key)
        {
            return false;
        }
        let Some(ready) = self.sd.images.ready(&wanted) else {
            return false;
        };
        let shared = cx.shared();
        let Some(inputs) = wanted
            .images
            .iter()
            .map(|&image| shared.input(image))
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        let label = if key.fused {
            "Fusing SD and DINO descriptors"
        } else {
            "SD descriptors"
        };
        let job = SdSetJob {
            key: key.clone(),
            sd: ready.sd,
            dino: ready.dino,
            inputs,
        };
        cx.worker.submit(cx.tasks, key, label, job);
        true
    }

    pub(super) fn poll_sd(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        if cx.settings.correspondence.features != FeatureSource::Dino {
            let (settings, picker) = PickerContext::split(cx);
            self.sd
                .images
                .poll(ctx, &mut settings.correspondence.sd, picker);
        }
    }

    /// The SD model picker, the estimate and Run, and the weight for SD+DINO.
    pub(super) fn sd_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let (settings, picker) = PickerContext::split(cx);
        self.sd
            .images
            .picker_ui(ui, &mut settings.correspondence.sd, picker);
        let wanted = self.sd_wanted(cx.shared());
        self.sd.images.status_ui(ui, wanted.as_ref());
        let Some(wanted) = wanted else {
            return;
        };
        if self.sd_matching(cx.shared()).flatten().is_none() {
            ui.label(egui::RichText::new("Shown meanwhile: DINO's matches").weak());
        }
        if wanted.dino_layer.is_some() {
            ui.add(
                egui::Slider::new(&mut cx.settings.correspondence.fusion_weight, 0.0..=1.0)
                    .step_by(0.05)
                    .text("SD weight"),
            )
            .on_hover_text(
                "Each source is L2-normalised, then scaled: SD by w, DINO by 1 - w \
                 (sd-dino: equal, 0.5)",
            );
        }
    }
}
