//! A view's Stable Diffusion features of its images, UI side: what is cached (each image's SD
//! output and, for SD+DINO, its placed DINO tokens), what to ask the worker next
//! ([`super::sd_jobs`]), and the controls every SD source shares: the model picker, the recipe,
//! the cost estimate before a run, and Run. The networks run only after Run.

use eframe::egui;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::sd_jobs::{
    DinoPlacedJob, DinoPlacedKey, DinoPlacedOutput, SdImageJob, SdImageKey, SdImageOutput,
};
use super::sd_model::{PickerContext, SdInfoJob, SdInfoKey, SdInfoOutput, SdModelInfo, SdPicker};
use super::state::{SdChoice, SdSettings, ViewTab};
use super::tasks::{ImageId, Output, Tasks};
use super::view::ViewContext;
use crate::analysis::sd_features::{FeatureSource, Placed, SdImageFeatures};
use crate::model::sd::sd_cache_dir;

/// Images whose SD output a view keeps in memory.
const SD_IMAGES_KEPT: usize = 32;

/// What a view needs SD features of.
#[derive(Clone, Debug, PartialEq)]
pub struct SdWanted {
    pub choice: SdChoice,
    /// The block whose tokens are fused with SD's (SD+DINO); `None`: SD alone.
    pub dino_layer: Option<usize>,
    pub images: Vec<ImageId>,
    /// The loaded ViT.
    pub generation: u64,
}

/// Per image of a [`SdWanted`]: its SD output and, when fused, its placed DINO tokens.
pub struct SdReady {
    pub sd: Vec<Arc<SdImageFeatures>>,
    pub dino: Vec<Arc<Placed>>,
}

pub struct SdImages {
    owner: ViewTab,
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
    /// Images whose SD features the networks computed (not read from a cache).
    computed: u64,
    /// The last failure to write the SD feature cache (the features are still used).
    cache_problem: Option<String>,
}

impl SdImages {
    /// The SD features of the view `owner`.
    pub fn new(owner: ViewTab) -> Self {
        SdImages {
            picker: SdPicker::new(owner.clone()),
            owner,
            cache_dir: sd_cache_dir(),
            info: HashMap::new(),
            unreadable: HashSet::new(),
            run: None,
            features: BoundedCache::with_capacity(SD_IMAGES_KEPT),
            dino: BoundedCache::with_capacity(SD_IMAGES_KEPT),
            computed: 0,
            cache_problem: None,
        }
    }

    pub fn set_cache_dir(&mut self, dir: Option<PathBuf>) {
        self.cache_dir = dir;
    }

    /// Images whose SD features the networks computed (not read from a cache).
    pub fn computed(&self) -> u64 {
        self.computed
    }

    /// The model and recipe Run was pressed for.
    pub fn running(&self) -> Option<&SdChoice> {
        self.run.as_ref()
    }

    /// Starts SD work for `wanted`'s model and recipe (the Run button).
    pub fn start(&mut self, wanted: &SdWanted) {
        self.unreadable.remove(&wanted.choice.folder);
        self.run = Some(wanted.choice.clone());
    }

    fn image_key(&self, image: ImageId, choice: &SdChoice) -> SdImageKey {
        SdImageKey {
            owner: self.owner.clone(),
            image,
            choice: choice.clone(),
            cache: self.cache_dir.clone(),
        }
    }

    fn dino_key(&self, image: ImageId, wanted: &SdWanted, layer: usize) -> DinoPlacedKey {
        DinoPlacedKey {
            owner: self.owner.clone(),
            image,
            preset: wanted.choice.preset,
            layer,
            generation: wanted.generation,
        }
    }

    /// Images wanted that have no SD output yet.
    pub fn missing(&self, wanted: &SdWanted) -> Vec<ImageId> {
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

    /// Everything `wanted` needs, once computed.
    pub fn ready(&self, wanted: &SdWanted) -> Option<SdReady> {
        let mut ready = SdReady {
            sd: Vec::with_capacity(wanted.images.len()),
            dino: Vec::new(),
        };
        for &image in &wanted.images {
            let key = self.image_key(image, &wanted.choice);
            ready.sd.push(self.features.get(&key)?.clone());
            if let Some(layer) = wanted.dino_layer {
                let key = self.dino_key(image, wanted, layer);
                ready.dino.push(self.dino.get(&key)?.clone());
            }
        }
        Some(ready)
    }

    /// Asks the worker for the next step: the model's configs (for the estimate), then after Run
    /// each image's SD output and its placed DINO tokens (SD+DINO). Returns whether a job was
    /// submitted.
    pub fn request(&mut self, cx: &mut ViewContext<'_>, wanted: &SdWanted) -> bool {
        let folder = &wanted.choice.folder;
        if !self.info.contains_key(folder) {
            if self.unreadable.contains(folder) {
                return false;
            }
            let label = format!("Reading the SD model {}", folder.display());
            let key = SdInfoKey {
                owner: self.owner.clone(),
                folder: folder.clone(),
            };
            let job = SdInfoJob {
                key: key.clone(),
                generation: wanted.generation,
            };
            cx.worker.submit(cx.tasks, key, label, job);
            return true;
        }
        if self.run.as_ref() != Some(&wanted.choice) {
            return false;
        }
        let shared = cx.shared();
        for &image in &wanted.images {
            let key = self.image_key(image, &wanted.choice);
            if self.features.contains_key(&key) {
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
        let Some(layer) = wanted.dino_layer else {
            return false;
        };
        for &image in &wanted.images {
            let key = self.dino_key(image, wanted, layer);
            if self.dino.contains_key(&key) {
                continue;
            }
            let Some(input) = shared.input(image) else {
                return false;
            };
            let label = format!("DINO tokens of {}", input.name);
            let job = DinoPlacedJob {
                key: key.clone(),
                input,
            };
            cx.worker.submit(cx.tasks, key, label, job);
            return true;
        }
        false
    }

    /// Takes a worker result of this view's SD jobs (`Err`: not one).
    pub fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<SdImageOutput>() {
            Ok(o) if o.key.owner == self.owner => {
                self.computed += u64::from(o.computed);
                self.cache_problem = o.cache_problem;
                self.features.insert(o.key, o.features);
                return Ok(());
            }
            Ok(o) => o as Output,
            Err(other) => other,
        };
        let output = match output.downcast::<DinoPlacedOutput>() {
            Ok(o) if o.key.owner == self.owner => {
                self.dino.insert(o.key, o.placed);
                return Ok(());
            }
            Ok(o) => o as Output,
            Err(other) => other,
        };
        match output.downcast::<SdInfoOutput>() {
            Ok(o) if o.key.owner == self.owner => {
                self.info.insert(o.key.folder, o.info);
                Ok(())
            }
            Ok(o) => Err(o as Output),
            Err(other) => Err(other),
        }
    }

    /// A cancelled or failed SD job of this view: nothing more runs until Run is pressed again.
    pub fn task_dropped(&mut self, key: &dyn std::any::Any) {
        if let Some(key) = key.downcast_ref::<SdImageKey>() {
            if key.owner == self.owner {
                self.run = None;
            }
        } else if let Some(key) = key.downcast_ref::<DinoPlacedKey>() {
            if key.owner == self.owner {
                self.run = None;
            }
        } else if let Some(key) = key.downcast_ref::<SdInfoKey>()
            && key.owner == self.owner
        {
            self.unreadable.insert(key.folder.clone());
        }
    }

    /// A new ViT: the placed tokens are stale (SD's own output is not).
    pub fn model_loaded(&mut self) {
        self.dino.clear();
    }

    /// Some SD job is under way (the worker runs one job at a time, whichever view asked).
    pub fn busy(tasks: &Tasks) -> bool {
        tasks.any::<SdInfoKey>() || tasks.any::<SdImageKey>() || tasks.any::<DinoPlacedKey>()
    }

    /// Takes the picker's listing, a downloaded model and a picked folder when ready.
    pub fn poll(&mut self, ctx: &egui::Context, sd: &mut SdSettings, cx: PickerContext<'_>) {
        self.picker.poll(ctx, sd, cx);
    }

    /// The model picker (with downloads), the recipe and the input size.
    pub fn picker_ui(&mut self, ui: &mut egui::Ui, sd: &mut SdSettings, cx: PickerContext<'_>) {
        self.picker.ui(ui, sd, cx);
    }

    /// The chosen model's version and recipe, the estimate of what is missing, Run, and a cache
    /// that cannot be written; `wanted` is `None` until a model is chosen.
    pub fn status_ui(&mut self, ui: &mut egui::Ui, wanted: Option<&SdWanted>) {
        let Some(wanted) = wanted else {
            ui.label(
                egui::RichText::new(
                    "Choose a Stable Diffusion model above: one in the Hugging Face cache, a \
                     diffusers folder, or a download",
                )
                .weak(),
            );
            return;
        };
        let folder = &wanted.choice.folder;
        let Some(info) = self.info.get(folder).cloned() else {
            if self.unreadable.contains(folder) {
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
        let missing = self.missing(wanted);
        if !missing.is_empty() {
            ui.label(info.estimate_text(&wanted.choice, missing.len()))
                .on_hover_text(
                    "Counted from the model's configs and this device's measured speed; images \
                     in the SD feature cache take no time",
                );
        }
        if self.run.as_ref() == Some(&wanted.choice) {
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
            self.start(wanted);
        }
        if let Some(problem) = &self.cache_problem {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("Not kept for next time: {problem}"),
            );
        }
    }
}

/// The DINO | SD | SD+DINO row; `fused_hover` says which DINO tokens SD+DINO fuses.
pub fn source_row(ui: &mut egui::Ui, source: &mut FeatureSource, fused_hover: &str) {
    ui.horizontal(|ui| {
        ui.radio_value(source, FeatureSource::Dino, "DINO")
            .on_hover_text("This model's features");
        ui.radio_value(source, FeatureSource::Sd, "SD")
            .on_hover_text("Stable Diffusion's features (DIFT or SD-DINO's taps)");
        ui.radio_value(source, FeatureSource::Fused, "SD+DINO")
            .on_hover_text(fused_hover);
    });
}
