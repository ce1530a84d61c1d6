//! The model thread: loading a model and every job that runs it (attention maps, features,
//! analyses) happen here, never on the UI thread. Views hand in their own jobs through
//! [`ModelJob`]; the worker knows no view. It keeps the model and what is cached per model
//! (prepared images, feature maps), so jobs share them in order; every job carries a cancel flag.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::cache::BoundedCache;
use super::notifications::{AppError, file_label};
use super::pixels::PixelStore;
use super::state::InputSize;
use super::tasks::{Event, EventSender, ImageId, Output, TaskContext, Tasks};
use crate::analysis::features::{DescriptorSpec, FeatureMap, extract};
use crate::model::config::Arch;
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use crate::model::vit::Vit;
use crate::model::{
    ComputeDevice, DeviceChoice, Facet, LoadOptions, PreparedImage, VitConfig, backend, load_model,
};
use crate::panics;

/// Where the current model came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// Random weights: nothing to learn from, shown as such.
    Untrained,
    /// The bundled default `weights/default.safetensors`.
    Default(PathBuf),
    /// A checkpoint the user opened.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub config: VitConfig,
    pub source: ModelSource,
    /// Tensors of the file that are not part of the backbone.
    pub ignored: usize,
    pub generation: u64,
    pub load_time: Duration,
}

impl ModelInfo {
    pub fn file_name(&self) -> String {
        match &self.source {
            ModelSource::Untrained => "(none: random weights)".into(),
            ModelSource::Default(p) | ModelSource::File(p) => file_label(p),
        }
    }

    pub fn is_untrained(&self) -> bool {
        self.source == ModelSource::Untrained
    }
}

/// One gallery image as a job gets it: its pixels are decoded on the job's thread if the
/// gallery's store no longer keeps them.
#[derive(Clone)]
pub struct ImageInput {
    pub id: ImageId,
    pub name: String,
    pub path: PathBuf,
    /// The size [`Self::rgb`] has.
    pub size: [u32; 2],
    pub pixels: PixelStore,
}

impl ImageInput {
    pub fn rgb(&self) -> Result<Arc<RgbImage>, AppError> {
        self.pixels.get(&self.path)
    }

    /// The image as a model with `patch`-pixel patches sees it at `input_size` (uncached: the
    /// loaded model's images go through [`WorkerState::prepared_image`]).
    pub fn prepare(
        &self,
        input_size: InputSize,
        patch: usize,
        max_patches: usize,
    ) -> Result<PreparedImage, AppError> {
        prepare(&*self.rgb()?, input_size.resize(), patch, max_patches).map_err(|source| {
            AppError::Prepare {
                path: self.name.clone(),
                source,
            }
        })
    }
}

/// Which model to load.
pub enum ModelRequest {
    /// `weights/default.safetensors` when it exists, else an untrained ViT-nano.
    Default(Option<PathBuf>),
    File(PathBuf),
}

/// The key of a model-loading task (no view computes while one is under way).
pub struct ModelLoad;

/// Work on the loaded model, handed in by a view.
pub trait ModelJob: Send + 'static {
    /// The model generation the job was asked under: a job for another model is dropped.
    fn generation(&self) -> u64;

    /// Runs on the worker thread; the result goes to the view as an [`Output`]; `Ok(None)` when
    /// cancelled.
    fn run(
        self: Box<Self>,
        model: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError>;
}

enum Work {
    Load(ModelRequest),
    Job(Box<dyn ModelJob>),
}

/// The UI side of the worker.
pub struct Worker {
    jobs: Sender<(TaskContext, Work)>,
    events: EventSender,
}

impl Worker {
    pub fn spawn(events: EventSender) -> Worker {
        let (jobs, job_rx) = channel();
        let thread_events = events.clone();
        let spawned = std::thread::Builder::new()
            .name("dinoscope-worker".into())
            .spawn(move || worker_loop(job_rx, thread_events));
        if let Err(e) = spawned {
            events.send(Event::Note(format!("cannot start the compute thread: {e}")));
        }
        Worker { jobs, events }
    }

    /// Runs `job` on the model thread as a task labelled `label` with `key` (see [`Tasks::start`]).
    pub fn submit(
        &self,
        tasks: &mut Tasks,
        key: impl Any,
        label: impl Into<String>,
        job: impl ModelJob,
    ) {
        let task = tasks.start(key, label, None);
        self.send(task, Work::Job(Box::new(job)));
    }

    /// Loads a model on the model thread.
    pub fn load(&self, tasks: &mut Tasks, request: ModelRequest) {
        let label = match &request {
            ModelRequest::Default(_) => "Loading the default model".to_string(),
            ModelRequest::File(path) => format!("Loading {}", file_label(path)),
        };
        let task = tasks.start(ModelLoad, label, None);
        self.send(task, Work::Load(request));
    }

    fn send(&self, task: TaskContext, work: Work) {
        let id = task.task;
        if self.jobs.send((task, work)).is_err() {
            self.events.send(Event::Failed {
                task: id,
                error: AppError::Compute {
                    what: "the compute thread".into(),
                    detail: "it has stopped".into(),
                },
            });
            self.events.send(Event::Finished { task: id });
        }
    }
}

/// One image's descriptors under one model, cached by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureKey {
    pub image: ImageId,
    pub layer: usize,
    pub facet: Facet,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    /// Log-binning descriptor (17 bins).
    pub log_bin: bool,
    pub input_size: InputSize,
}

type Features = (Arc<PreparedImage>, Arc<FeatureMap>);

/// Feature maps of the current model kept by the worker (least recently used dropped first).
const FEATURE_CACHE_BYTES: usize = 768 << 20;

/// Prepared images of the current model kept by the worker.
const PREPARED_CACHE_CAPACITY: usize = 256;

/// Patch budget of [`prepare`] for a stride: overlapping patches multiply the tokens by
/// `(patch / stride)^2`, so the image is kept to the same token count as without overlap.
pub fn patch_budget(patch: usize, stride: usize) -> usize {
    let (p, s) = (patch.max(1), stride.clamp(1, patch.max(1)));
    (DEFAULT_MAX_PATCHES * s * s / (p * p)).max(1)
}

/// The loaded model and what is cached with it, on the worker thread.
pub struct WorkerState {
    device: ComputeDevice,
    model: Option<Vit>,
    generation: u64,
    /// Prepared images, per image, input size and patch budget.
    prepared: BoundedCache<(ImageId, InputSize, usize), Arc<PreparedImage>>,
    features: BoundedCache<FeatureKey, Features>,
    /// A second checkpoint views compare with or fuse with (one at a time, kept between jobs).
    second: Option<(PathBuf, Vit)>,
    /// What jobs keep between runs beyond the models (e.g. a second model's maps), one value
    /// per type.
    stash: HashMap<std::any::TypeId, Box<dyn Any + Send>>,
}

fn worker_loop(jobs: Receiver<(TaskContext, Work)>, events: EventSender) {
    // `Auto` falls back to the CPU itself, naming the reason (a driver's panic included).
    let device = backend::select(DeviceChoice::Auto).unwrap_or_else(|_| backend::cpu());
    events.send(Event::Backend(device.description.clone()));
    let mut state = WorkerState {
        device,
        model: None,
        generation: 0,
        prepared: BoundedCache::with_capacity(PREPARED_CACHE_CAPACITY),
        features: BoundedCache::with_budget(FEATURE_CACHE_BYTES, |(_, map)| map.data.len() * 4),
        second: None,
        stash: HashMap::new(),
    };
    while let Ok((task, work)) = jobs.recv() {
        if !task.is_cancelled() {
            let outcome = catch_unwind(AssertUnwindSafe(|| state.run(work, &task)));
            if !task.is_cancelled() {
                match outcome {
                    Ok(Ok(Some(output))) => events.send(Event::Output(output)),
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => events.send(Event::Failed {
                        task: task.task,
                        error,
                    }),
                    Err(payload) => events.send(Event::Failed {
                        task: task.task,
                        error: AppError::Compute {
                            what: "the computation".into(),
                            detail: panics::message(payload.as_ref()),
                        },
                    }),
                }
            }
        }
        events.send(Event::Finished { task: task.task });
    }
}

impl WorkerState {
    fn run(&mut self, work: Work, task: &TaskContext) -> Result<Option<Output>, AppError> {
        match work {
            Work::Load(request) => {
                let info = self.load(request, task)?;
                Ok(info.map(|info| Box::new(info) as Output))
            }
            Work::Job(job) if self.is_stale(job.generation()) => Ok(None),
            Work::Job(job) => job.run(self, task),
        }
    }

    fn load(
        &mut self,
        request: ModelRequest,
        task: &TaskContext,
    ) -> Result<Option<ModelInfo>, AppError> {
        let start = Instant::now();
        match request {
            ModelRequest::Default(path) => {
                if let Some(path) = path.filter(|p| p.is_file()) {
                    task.progress(format!("Loading {}", path.display()));
                    match self.read(&path) {
                        Ok((vit, ignored)) => {
                            let source = ModelSource::Default(path);
                            return Ok(Some(self.install(vit, source, ignored, start)));
                        }
                        Err(e) => task.events.send(Event::Note(format!(
                            "{e}; using an untrained ViT-nano instead"
                        ))),
                    }
                }
                task.progress("Creating an untrained ViT-nano".into());
                let vit = Vit::init_seeded(Arch::VitNano.config(), 0, &self.device.device);
                Ok(Some(self.install(vit, ModelSource::Untrained, 0, start)))
            }
            ModelRequest::File(path) => {
                task.progress(format!("Loading {}", file_label(&path)));
                let (vit, ignored) = self.read(&path)?;
                if task.is_cancelled() {
                    return Ok(None);
                }
                Ok(Some(self.install(
                    vit,
                    ModelSource::File(path),
                    ignored,
                    start,
                )))
            }
        }
    }

    /// A job asked for under another model (or before any) than the one loaded: dropped.
    fn is_stale(&self, generation: u64) -> bool {
        self.model.is_none() || generation != self.generation
    }

    /// One image as the model sees it under an input size and patch budget (cached).
    pub fn prepared_image(
        &mut self,
        input: &ImageInput,
        input_size: InputSize,
        max_patches: usize,
    ) -> Result<Arc<PreparedImage>, AppError> {
        let key = (input.id, input_size, max_patches);
        if let Some(p) = self.prepared.get(&key) {
            return Ok(p.clone());
        }
        let patch = self.model.as_ref().map_or(16, |m| m.config().patch_size);
        let p = Arc::new(input.prepare(input_size, patch, max_patches)?);
        self.prepared.insert(key, p.clone());
        Ok(p)
    }

    /// Descriptors of one image (cached per image, block, facet, stride and input size), with
    /// the image they were computed on.
    pub fn features(
        &mut self,
        key: FeatureKey,
        input: &ImageInput,
    ) -> Result<(Arc<PreparedImage>, Arc<FeatureMap>), AppError> {
        if let Some(found) = self.features.get_recent(&key) {
            return Ok(found.clone());
        }
        let name = &input.name;
        let patch = self.model.as_ref().map_or(16, |m| m.config().patch_size);
        let budget = patch_budget(patch, key.stride);
        let prepared = self.prepared_image(input, key.input_size, budget)?;
        let Some(vit) = &self.model else {
            return Err(AppError::Compute {
                what: format!("features of {name}"),
                detail: "no model is loaded".into(),
            });
        };
        let spec = DescriptorSpec {
            layer: key.layer,
            facet: key.facet,
            stride: Some(key.stride),
            log_bin: key.log_bin,
        };
        let map = extract(vit, &prepared, spec).map_err(|source| AppError::Features {
            what: name.to_string(),
            source,
        })?;
        if map.is_empty() || map.data.len() != map.len() * map.dim {
            return Err(AppError::Compute {
                what: format!("features of {name}"),
                detail: "the model returned no features".into(),
            });
        }
        let value = (prepared, Arc::new(map));
        self.features.insert(key, value.clone());
        Ok(value)
    }

    /// An error when the model has no block `layer` (`what`: the analysis asking).
    pub fn check_layer(&self, layer: usize, what: &str) -> Result<(), AppError> {
        match self.config() {
            Some(c) if layer >= c.depth => Err(AppError::Compute {
                what: what.into(),
                detail: format!(
                    "block {layer} does not exist: the model has {} blocks",
                    c.depth
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The generation of the loaded model.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn device(&self) -> &burn::tensor::Device {
        &self.device.device
    }

    pub fn vit(&self) -> Option<&Vit> {
        self.model.as_ref()
    }

    pub fn config(&self) -> Option<&VitConfig> {
        self.model.as_ref().map(|m| m.config())
    }

    /// The checkpoint at `path` as a second model, loaded on first use and kept until another
    /// file is asked for (the previous one is freed first, so at most two models are held).
    pub fn second_model(&mut self, path: &Path) -> Result<&Vit, AppError> {
        let second = match self.second.take() {
            Some(second) if second.0 == path => second,
            _ => {
                let loaded = load_model(path, &LoadOptions::default(), &self.device.device)?;
                (path.to_path_buf(), loaded.vit)
            }
        };
        Ok(&self.second.insert(second).1)
    }

    /// The value of type `T` a job keeps between runs (created empty on first use).
    pub fn stash<T: Default + Send + 'static>(&mut self) -> &mut T {
        let slot = self
            .stash
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        // Keyed by the type id, so the slot holds a `T`.
        slot.downcast_mut::<T>()
            .expect("the stash slot of a type holds that type")
    }

    fn read(&self, path: &Path) -> Result<(Vit, usize), AppError> {
        let loaded = load_model(path, &LoadOptions::default(), &self.device.device)?;
        Ok((loaded.vit, loaded.ignored))
    }

    fn install(
        &mut self,
        vit: Vit,
        source: ModelSource,
        ignored: usize,
        start: Instant,
    ) -> ModelInfo {
        self.generation += 1;
        self.prepared.clear();
        self.features.clear();
        let info = ModelInfo {
            config: vit.config().clone(),
            source,
            ignored,
            generation: self.generation,
            load_time: start.elapsed(),
        };
        self.model = Some(vit);
        info
    }
}
