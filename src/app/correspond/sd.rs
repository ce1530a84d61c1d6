//! The correspondence view's Stable Diffusion sources, SD alone or SD+DINO: what is cached on the
//! UI side (each image's SD output and placed DINO tokens, the shown set's descriptors), what to
//! ask the worker next ([`super::sd_job`]), and the controls: model picker, recipe, the cost
//! estimate before a run, Run, and the weight.

use eframe::egui;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::CorrespondenceTab;
use super::job::CorrImage;
use super::sd_job::{
    DinoPlacedJob, DinoPlacedKey, DinoPlacedOutput, SdImageJob, SdImageKey, SdImageOutput,
    SdSetJob, SdSetKey, SdSetOutput,
};
use crate::analysis::sd_features::{FeatureSource, Placed, SdImageFeatures};
use crate::app::cache::BoundedCache;
use crate::app::sd_model::{SdInfoJob, SdInfoKey, SdInfoOutput, SdModelInfo, SdPicker};
use crate::app::state::SdChoice;
use crate::app::tasks::{ImageId, Output, Tasks};
use crate::app::view::{Shared, ViewContext};
use crate::model::sd::sd_cache_dir;

/// A source's descriptors and its targets'.
type Matched = (Arc<CorrImage>, Vec<Arc<CorrImage>>);

/// Images whose SD output is kept in memory by the view.
const SD_IMAGES_KEPT: usize = 32;

pub struct SdSources {
    picker: SdPicker,
    /// Where the SD session caches prompts and features (`None`: in memory only).
    cache_dir: Option<PathBuf>,
    info: HashMap<PathBuf, Arc<SdModelInfo>>,
    /// Folders that could not be read (the error was shown); asked again when re-chosen.
    unreadable: HashSet<PathBuf>,
    /// The model and recipe the user pressed Run for: only then do the networks run.
    run: Option<SdChoice>,
    features: BoundedCache<SdImageKey, Arc<SdImageFeatures>>,
    dino: BoundedCache<DinoPlacedKey, Arc<Placed>>,
    sets: BoundedCache<SdSetKey, Vec<Arc<CorrImage>>>,
    skipped_sets: HashSet<SdSetKey>,
    /// Images whose SD features the networks computed (not read from a cache).
    computed: u64,
    /// The last failure to write the SD feature cache (the features are still used).
    cache_problem: Option<String>,
}

impl Default for SdSources {
    fn default() -> Self {
        SdSources {
            picker: SdPicker::default(),
            cache_dir: sd_cache_dir(),
            info: HashMap::new(),
            unreadable: HashSet::new(),
            run: None,
            features: BoundedCache::with_capacity(SD_IMAGES_KEPT),
            dino: BoundedCache::with_capacity(SD_IMAGES_KEPT),
            sets: BoundedCache::with_capacity(SD_IMAGES_KEPT),
            skipped_sets: HashSet::new(),
            computed: 0,
            cache_problem: None,
        }
    }
}

/// SD's keys under the current settings, once a model is chosen and a source is selected.
struct Wanted {
    choice: SdChoice,
    fused: bool,
    /// Source first, then the targets.
    images: Vec<ImageId>,
    generation: u64,
}

impl SdSources {
    pub fn set_cache_dir(&mut self, dir: Option<PathBuf>) {
        self.cache_dir = dir;
    }

    pub fn computed(&self) -> u64 {
        self.computed
    }

    /// The model and recipe Run was pressed for.
    pub fn running(&self) -> Option<&SdChoice> {
        self.run.as_ref()
    }

    fn image_key(&self, image: ImageId, choice: &SdChoice) -> SdImageKey {
        SdImageKey {
            image,
            choice: choice.clone(),
            cache: self.cache_dir.clone(),
        }
    }

    fn set_key(&self, wanted: &Wanted, shared: Shared<'_>) -> SdSetKey {
        let weight = shared.settings.correspondence.fusion_weight.clamp(0.0, 1.0);
        SdSetKey {
            images: wanted.images.clone(),
            choice: wanted.choice.clone(),
            fused: wanted.fused,
            weight_milli: if wanted.fused {
                (weight * 1000.0).round() as u16
            } else {
                0
            },
            generation: wanted.generation,
        }
    }

    /// Images shown that have no SD output yet.
    fn missing(&self, wanted: &Wanted) -> Vec<ImageId> {
        wanted
            .images
            .iter()
            .copied()
            .filter(|&id| {
                !self
                    .features
                    .contains_key(&self.image_key(id, &wanted.choice))
            })
            .collect()
    }

    /// Takes a worker result of an SD job (`Err`: not one).
    pub fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<SdImageOutput>() {
            Ok(o) => {
                self.computed += u64::from(o.computed);
                self.cache_problem = o.cache_problem;
                self.features.insert(o.key, o.features);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<DinoPlacedOutput>() {
            Ok(o) => {
                self.dino.insert(o.key, o.placed);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<SdSetOutput>() {
            Ok(o) => {
                self.sets.insert(o.key, o.images);
                return Ok(());
            }
            Err(other) => other,
        };
        let o = output.downcast::<SdInfoOutput>()?;
        self.info.insert(o.folder, o.info);
        Ok(())
    }

    /// A cancelled or failed SD job: nothing more runs until Run is pressed again.
    pub fn task_dropped(&mut self, key: &dyn std::any::Any) {
        if key.is::<SdImageKey>() || key.is::<DinoPlacedKey>() {
            self.run = None;
        } else if let Some(key) = key.downcast_ref::<SdSetKey>() {
            self.skipped_sets.insert(key.clone());
        } else if let Some(SdInfoKey(folder)) = key.downcast_ref::<SdInfoKey>() {
            self.unreadable.insert(folder.clone());
        }
    }

    /// A new ViT: its placed tokens and the fused sets are stale (SD's own output is not).
    pub fn model_loaded(&mut self) {
        self.dino.clear();
        self.sets.clear();
        self.skipped_sets.clear();
    }

    /// Some SD job is under way.
    pub fn busy(tasks: &Tasks) -> bool {
        tasks.any::<SdInfoKey>()
            || tasks.any::<SdImageKey>()
            || tasks.any::<DinoPlacedKey>()
            || tasks.any::<SdSetKey>()
    }
}

impl CorrespondenceTab {
    fn sd_wanted(&self, shared: Shared<'_>) -> Option<Wanted> {
        let c = &shared.settings.correspondence;
        if c.features == FeatureSource::Dino {
            return None;
        }
        let mut images: Vec<ImageId> = Self::source(shared).into_iter().collect();
        images.extend(self.targets(shared));
        Some(Wanted {
            choice: c.sd.choice()?,
            fused: c.features == FeatureSource::Fused,
            images,
            generation: shared.model?.generation,
        })
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
            self.sd.unreadable.remove(&wanted.choice.folder);
            self.sd.skipped_sets.clear();
            self.sd.run = Some(wanted.choice);
        }
    }

    /// Asks the worker for the next SD step: the model's configs (for the estimate), then after
    /// Run each image's SD output, its placed DINO tokens (SD+DINO), and the set's descriptors.
    /// Returns whether a job was submitted.
    pub(super) fn request_sd(&mut self, cx: &mut ViewContext<'_>) -> bool {
        let shared = cx.shared();
        let Some(wanted) = self.sd_wanted(shared) else {
            return false;
        };
        let folder = &wanted.choice.folder;
        if !self.sd.info.contains_key(folder) {
            if self.sd.unreadable.contains(folder) {
                return false;
            }
            let label = format!("Reading the SD model {}", folder.display());
            let job = SdInfoJob {
                folder: folder.clone(),
                generation: wanted.generation,
            };
            cx.worker
                .submit(cx.tasks, SdInfoKey(folder.clone()), label, job);
            return true;
        }
        if self.sd.run.as_ref() != Some(&wanted.choice) {
            return false;
        }
        for &image in &wanted.images {
            let key = self.sd.image_key(image, &wanted.choice);
            if self.sd.features.contains_key(&key) {
                continue;
            }
            let Some(input) = shared.input(image) else {
                return false;
            };
            let label = format!("SD features of {}", input.name);
            let job = SdImageJob {
                key: key.clone(),
                input,
                generation: wanted.generation,
            };
            cx.worker.submit(cx.tasks, key, label, job);
            return true;
        }
        if wanted.fused {
            for &image in &wanted.images {
                let key = DinoPlacedKey {
                    image,
                    preset: wanted.choice.preset,
                    generation: wanted.generation,
                };
                if self.sd.dino.contains_key(&key) {
                    continue;
                }
                let Some(input) = shared.input(image) else {
                    return false;
                };
                let label = format!("DINO tokens of {}", input.name);
                cx.worker
                    .submit(cx.tasks, key, label, DinoPlacedJob { key, input });
                return true;
            }
        }
        let key = self.sd.set_key(&wanted, shared);
        if wanted.images.len() < 2
            || self.sd.sets.contains_key(&key)
            || self.sd.skipped_sets.contains(&key)
        {
            return false;
        }
        let mut sd = Vec::new();
        let mut dino = Vec::new();
        let mut inputs = Vec::new();
        for &image in &wanted.images {
            let features = self
                .sd
                .features
                .get(&self.sd.image_key(image, &wanted.choice));
            let Some((features, input)) = features.zip(shared.input(image)) else {
                return false;
            };
            sd.push(features.clone());
            inputs.push(input);
            if wanted.fused {
                let placed = self.sd.dino.get(&DinoPlacedKey {
                    image,
                    preset: wanted.choice.preset,
                    generation: wanted.generation,
                });
                let Some(placed) = placed else {
                    return false;
                };
                dino.push(placed.clone());
            }
        }
        let label = if wanted.fused {
            "Fusing SD and DINO descriptors"
        } else {
            "SD descriptors"
        };
        let job = SdSetJob {
            key: key.clone(),
            sd,
            dino,
            inputs,
        };
        cx.worker.submit(cx.tasks, key, label, job);
        true
    }

    pub(super) fn poll_sd(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        if cx.settings.correspondence.features != FeatureSource::Dino {
            self.sd
                .picker
                .poll(ctx, &mut cx.settings.correspondence.sd, cx.notifications);
        }
    }

    /// The SD model picker, the estimate and Run, and the weight for SD+DINO.
    pub(super) fn sd_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        self.sd
            .picker
            .ui(ui, &mut cx.settings.correspondence.sd, cx.notifications);
        let shared = cx.shared();
        let Some(wanted) = self.sd_wanted(shared) else {
            ui.label(
                egui::RichText::new(
                    "Choose a Stable Diffusion model (diffusers folder, e.g. from \
                     `dinoscope download sd15`)",
                )
                .weak(),
            );
            return;
        };
        let folder = &wanted.choice.folder;
        let Some(info) = self.sd.info.get(folder).cloned() else {
            if self.sd.unreadable.contains(folder) {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("Cannot open {}", folder.display()),
                );
            } else {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading the model");
                });
            }
            return;
        };
        ui.label(format!("{}; {}", info.version, wanted.choice.recipe()));
        let missing = self.sd.missing(&wanted);
        let running = self.sd.run.as_ref() == Some(&wanted.choice);
        if !missing.is_empty() {
            ui.label(info.estimate_text(&wanted.choice, missing.len()))
                .on_hover_text(
                    "Counted from the model's configs and this device's measured speed; images \
                     in the SD feature cache take no time",
                );
        }
        if running {
            if !missing.is_empty() {
                ui.label(
                    egui::RichText::new("Computing SD features (Cancel in the status bar)").weak(),
                );
            }
        } else if ui
            .button("Run")
            .on_hover_text("Compute the SD features of the images shown")
            .clicked()
        {
            self.run_sd(shared);
        }
        if self.sd_matching(shared).flatten().is_none() {
            ui.label(egui::RichText::new("Shown meanwhile: DINO's matches").weak());
        }
        if let Some(problem) = &self.sd.cache_problem {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("Not kept for next time: {problem}"),
            );
        }
        if wanted.fused {
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
