//! The background compute thread: model loading, attention maps and feature analyses run here,
//! never on the UI thread. Jobs go in through a channel, events come back through another; every
//! job carries a cancel flag the UI can raise at any time.

use eframe::egui;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::correspond_job::{self, BuddiesKey, CorrImage, CorrSpec};
use super::coseg_job::{self, CosegKey, CosegResult};
use super::fusion_job::{self, FuseKey, SecondCache};
use super::gallery::DecodedImage;
use super::notifications::AppError;
use super::pca_job::{self, PcaInput, PcaKey, PcaResult};
use super::point_query::QueryAnswer;
use super::state::InputSize;
use crate::analysis::attention::{AttentionMaps, Query, attention_maps};
use crate::analysis::correspond::BestBuddies;
use crate::analysis::features::{DescriptorSpec, FeatureMap, extract};
use crate::model::config::Arch;
use crate::model::download::Downloaded;
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use crate::model::vit::Vit;
use crate::model::{
    ComputeDevice, DeviceChoice, Facet, LoadOptions, PreparedImage, VitConfig, backend, load_model,
};

pub type TaskId = u64;

/// A flag the UI raises to cancel one task; the worker checks it between steps and drops the
/// results of cancelled tasks.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Identifies one image of the gallery for the lifetime of the app.
pub type ImageId = u64;

/// Which token's attention row, in a hashable form (`None` = CLS).
pub type QueryKey = Option<(usize, usize)>;

pub fn query_key(query: Query) -> QueryKey {
    match query {
        Query::Cls => None,
        Query::Patch { row, col } => Some((row, col)),
    }
}

pub fn query_of(key: QueryKey) -> Query {
    match key {
        None => Query::Cls,
        Some((row, col)) => Query::Patch { row, col },
    }
}

/// Everything an attention result depends on; results are cached under it, so moving the
/// threshold, opacity or colormap never recomputes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnKey {
    pub image: ImageId,
    pub layer: usize,
    pub query: QueryKey,
    pub input_size: InputSize,
    /// Which loaded model (counts up on each load).
    pub generation: u64,
}

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
            ModelSource::Default(p) | ModelSource::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }

    pub fn is_untrained(&self) -> bool {
        self.source == ModelSource::Untrained
    }
}

/// One computed attention view: the exact pixels the model saw and the maps.
#[derive(Debug)]
pub struct AttentionResult {
    pub prepared: Arc<PreparedImage>,
    pub maps: AttentionMaps,
    pub elapsed: Duration,
}

pub enum Job {
    /// `weights/default.safetensors` when it exists, else an untrained ViT-nano.
    LoadDefault {
        default_path: Option<PathBuf>,
    },
    LoadCheckpoint(PathBuf),
    Attention {
        key: AttnKey,
        rgb: Arc<RgbImage>,
        name: String,
    },
    /// PCA colouring of the features of one or more images.
    Pca {
        key: PcaKey,
        inputs: Vec<PcaInput>,
    },
    /// One image's matching descriptors.
    Descriptors {
        spec: CorrSpec,
        input: PcaInput,
    },
    /// Best-buddy pairs between two images.
    BestBuddies {
        key: BuddiesKey,
        source: PcaInput,
        target: PcaInput,
    },
    /// Co-segmentation or part co-segmentation of a set of images.
    Coseg {
        key: CosegKey,
        inputs: Vec<PcaInput>,
    },
    /// A source and a target's descriptors fused with a second source.
    Fuse {
        key: FuseKey,
        images: [Arc<CorrImage>; 2],
        inputs: [PcaInput; 2],
    },
}

/// Files picked in a native dialog (which runs on its own thread).
#[derive(Debug)]
pub enum Picked {
    Images(Vec<PathBuf>),
    Checkpoint(PathBuf),
    /// A second source to fuse the correspondence descriptors with.
    Fusion(fusion_job::SecondChoice),
    ExportPng(PathBuf),
    ExportNpy(PathBuf),
    /// A folder for the PCA colourings of the shown images.
    ExportPca(PathBuf),
    /// A folder for the co-segmentation view's images, labels and legend.
    ExportCoseg(PathBuf),
    /// A folder for the correspondence view's image, report and heatmaps.
    ExportCorrespondence(PathBuf),
}

pub enum Event {
    /// The compute device the worker chose.
    Backend(String),
    Progress {
        task: TaskId,
        label: String,
        fraction: Option<f32>,
    },
    Finished {
        task: TaskId,
    },
    Failed {
        task: TaskId,
        error: AppError,
    },
    ModelLoaded(ModelInfo),
    /// A note for the user (e.g. the default weights could not be read, so random ones are used).
    Note(String),
    Attention {
        key: AttnKey,
        result: Arc<AttentionResult>,
    },
    Pca {
        key: PcaKey,
        result: Arc<PcaResult>,
    },
    Descriptors {
        spec: CorrSpec,
        image: Arc<CorrImage>,
    },
    Buddies {
        key: BuddiesKey,
        result: Arc<BestBuddies>,
    },
    Coseg {
        key: CosegKey,
        result: Arc<CosegResult>,
    },
    Fused {
        key: FuseKey,
        images: [Arc<CorrImage>; 2],
    },
    /// An answer of the correspondence point-query thread.
    PointAnswer(QueryAnswer),
    /// A checkpoint download finished (and was verified when a hash was given).
    Downloaded {
        task: TaskId,
        title: String,
        verified: bool,
        result: Downloaded,
    },
    ImageDecoded(DecodedImage),
    Picked(Picked),
    /// An export finished: the files written, or the error naming the file.
    Exported {
        task: TaskId,
        result: Result<Vec<PathBuf>, AppError>,
    },
}

struct Message {
    task: TaskId,
    token: CancelToken,
    job: Job,
}

/// The UI side of the worker.
pub struct Worker {
    jobs: Sender<Message>,
    events: Receiver<Event>,
    event_tx: Sender<Event>,
    ctx: egui::Context,
    next_task: TaskId,
}

/// Sends an event and wakes the UI.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    ctx: egui::Context,
}

impl EventSender {
    pub fn send(&self, event: Event) {
        // The receiver only goes away when the app closes; nothing to do then.
        let _ = self.tx.send(event);
        self.ctx.request_repaint();
    }

    /// The thread of a task could not start: the task failed (`what`: e.g. "starting the export").
    pub fn not_started(&self, task: TaskId, what: &str, error: &std::io::Error) {
        self.send(Event::Failed {
            task,
            error: AppError::Compute {
                what: what.into(),
                detail: error.to_string(),
            },
        });
        self.send(Event::Finished { task });
    }
}

impl Worker {
    pub fn spawn(ctx: egui::Context) -> Worker {
        let (jobs, job_rx) = channel::<Message>();
        let (event_tx, events) = channel::<Event>();
        let sender = EventSender {
            tx: event_tx.clone(),
            ctx: ctx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("dinoscope-worker".into())
            .spawn(move || worker_loop(job_rx, sender));
        if let Err(e) = spawned {
            let _ = event_tx.send(Event::Note(format!("cannot start the compute thread: {e}")));
        }
        Worker {
            jobs,
            events,
            event_tx,
            ctx,
            next_task: 0,
        }
    }

    /// A new task id and cancel token (for work done outside the worker thread, e.g. decoding).
    pub fn new_task(&mut self) -> (TaskId, CancelToken) {
        self.next_task += 1;
        (self.next_task, CancelToken::default())
    }

    pub fn submit(&mut self, job: Job) -> (TaskId, CancelToken) {
        let (task, token) = self.new_task();
        let message = Message {
            task,
            token: token.clone(),
            job,
        };
        if self.jobs.send(message).is_err() {
            let _ = self.event_tx.send(Event::Failed {
                task,
                error: AppError::Compute {
                    what: "the compute thread".into(),
                    detail: "it has stopped".into(),
                },
            });
        }
        (task, token)
    }

    pub fn sender(&self) -> EventSender {
        EventSender {
            tx: self.event_tx.clone(),
            ctx: self.ctx.clone(),
        }
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

/// One image's descriptors under one model, cached by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureKey {
    pub image: ImageId,
    pub layer: usize,
    /// [`Facet`] as its index (the enum is not `Hash`).
    pub facet: u8,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    /// Log-binning descriptor (17 bins).
    pub log_bin: bool,
    pub input_size: InputSize,
}

impl FeatureKey {
    pub fn facet(&self) -> Facet {
        facet_of(self.facet)
    }
}

pub fn facet_index(facet: Facet) -> u8 {
    facet as u8
}

pub fn facet_of(index: u8) -> Facet {
    match index {
        0 => Facet::Token,
        1 => Facet::Query,
        3 => Facet::Value,
        _ => Facet::Key,
    }
}

/// Feature maps of the current model kept by the worker (least recently used dropped first).
const FEATURE_CACHE_BYTES: usize = 768 << 20;

#[derive(Default)]
struct FeatureCache {
    maps: HashMap<FeatureKey, (Arc<PreparedImage>, Arc<FeatureMap>)>,
    order: VecDeque<FeatureKey>,
    bytes: usize,
}

impl FeatureCache {
    fn get(&mut self, key: &FeatureKey) -> Option<(Arc<PreparedImage>, Arc<FeatureMap>)> {
        let found = self.maps.get(key).cloned()?;
        self.order.retain(|k| k != key);
        self.order.push_back(*key);
        Some(found)
    }

    fn insert(&mut self, key: FeatureKey, value: (Arc<PreparedImage>, Arc<FeatureMap>)) {
        self.bytes += value.1.data.len() * 4;
        if let Some(old) = self.maps.insert(key, value) {
            self.bytes -= old.1.data.len() * 4;
            self.order.retain(|k| *k != key);
        }
        self.order.push_back(key);
        // Keep at least the newest map, however large.
        while self.bytes > FEATURE_CACHE_BYTES && self.order.len() > 1 {
            if let Some(old) = self.order.pop_front()
                && let Some((_, map)) = self.maps.remove(&old)
            {
                self.bytes -= map.data.len() * 4;
            }
        }
    }

    fn clear(&mut self) {
        *self = FeatureCache::default();
    }
}

/// Patch budget of [`prepare`] for a stride: overlapping patches multiply the tokens by
/// `(patch / stride)^2`, so the image is kept to the same token count as without overlap.
pub fn patch_budget(patch: usize, stride: usize) -> usize {
    let (p, s) = (patch.max(1), stride.clamp(1, patch.max(1)));
    (DEFAULT_MAX_PATCHES * s * s / (p * p)).max(1)
}

pub(super) struct WorkerState {
    device: ComputeDevice,
    model: Option<Vit>,
    generation: u64,
    /// Prepared images of the current model, per image, input size and patch budget.
    prepared: HashMap<(ImageId, InputSize, usize), Arc<PreparedImage>>,
    features: FeatureCache,
    pub(super) second: SecondCache,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "internal error".into())
}

fn worker_loop(jobs: Receiver<Message>, events: EventSender) {
    let device = catch_unwind(|| backend::select(DeviceChoice::Auto))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(backend::cpu);
    events.send(Event::Backend(device.description.clone()));
    let mut state = WorkerState {
        device,
        model: None,
        generation: 0,
        prepared: HashMap::new(),
        features: FeatureCache::default(),
        second: SecondCache::default(),
    };
    while let Ok(Message { task, token, job }) = jobs.recv() {
        if token.is_cancelled() {
            events.send(Event::Finished { task });
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            state.handle(task, job, &token, &events)
        }));
        if !token.is_cancelled() {
            match outcome {
                Ok(Ok(Some(event))) => events.send(event),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => events.send(Event::Failed { task, error }),
                Err(payload) => events.send(Event::Failed {
                    task,
                    error: AppError::Compute {
                        what: "the computation".into(),
                        detail: panic_text(payload.as_ref()),
                    },
                }),
            }
        }
        events.send(Event::Finished { task });
    }
}

impl WorkerState {
    fn handle(
        &mut self,
        task: TaskId,
        job: Job,
        token: &CancelToken,
        events: &EventSender,
    ) -> Result<Option<Event>, AppError> {
        let report = |label: String, fraction: Option<f32>| {
            events.send(Event::Progress {
                task,
                label,
                fraction,
            })
        };
        let progress = |label: String| report(label, None);
        match job {
            Job::LoadDefault { default_path } => {
                let start = Instant::now();
                if let Some(path) = default_path.filter(|p| p.is_file()) {
                    progress(format!("Loading {}", path.display()));
                    match self.load(&path) {
                        Ok((vit, ignored)) => {
                            return Ok(Some(self.install(
                                vit,
                                ModelSource::Default(path),
                                ignored,
                                start,
                            )));
                        }
                        Err(e) => events.send(Event::Note(format!(
                            "{e}; using an untrained ViT-nano instead"
                        ))),
                    }
                }
                progress("Creating an untrained ViT-nano".into());
                let vit = Vit::init_seeded(Arch::VitNano.config(), 0, &self.device.device);
                Ok(Some(self.install(vit, ModelSource::Untrained, 0, start)))
            }
            Job::LoadCheckpoint(path) => {
                let start = Instant::now();
                progress(format!("Loading {}", file_label(&path)));
                let (vit, ignored) = self.load(&path)?;
                if token.is_cancelled() {
                    return Ok(None);
                }
                Ok(Some(self.install(
                    vit,
                    ModelSource::File(path),
                    ignored,
                    start,
                )))
            }
            Job::Attention { key, rgb, name } => {
                if self.is_stale(key.generation) {
                    return Ok(None);
                }
                let start = Instant::now();
                let prepared = self.prepared(
                    key.image,
                    &rgb,
                    &name,
                    key.input_size,
                    DEFAULT_MAX_PATCHES,
                    &progress,
                )?;
                if token.is_cancelled() {
                    return Ok(None);
                }
                let Some(vit) = &self.model else {
                    return Ok(None);
                };
                let config = vit.config();
                let patch = config.patch_size;
                let layer = key.layer.min(config.depth.saturating_sub(1));
                progress(format!(
                    "Attention of {name}, block {layer}, {} ({}x{} px)",
                    match key.query {
                        None => "CLS".to_string(),
                        Some((r, c)) => format!("patch ({r}, {c})"),
                    },
                    prepared.width(),
                    prepared.height()
                ));
                let maps = attention_maps(
                    vit,
                    prepared.to_tensor(&self.device.device),
                    layer,
                    query_of(key.query),
                    patch,
                )
                .map_err(|e| AppError::Compute {
                    what: format!("attention of {name}"),
                    detail: e.to_string(),
                })?;
                if maps.values.len() != maps.heads * maps.grid.len() || maps.grid.is_empty() {
                    return Err(AppError::Compute {
                        what: format!("attention of {name}"),
                        detail: "the model returned no attention values".into(),
                    });
                }
                Ok(Some(Event::Attention {
                    key,
                    result: Arc::new(AttentionResult {
                        prepared,
                        maps,
                        elapsed: start.elapsed(),
                    }),
                }))
            }
            Job::Pca { key, inputs } => {
                if self.is_stale(key.generation) {
                    return Ok(None);
                }
                Ok(
                    pca_job::run(self, &key, inputs, token, &report)?.map(|result| Event::Pca {
                        key,
                        result: Arc::new(result),
                    }),
                )
            }
            Job::Descriptors { spec, input } => {
                if self.is_stale(spec.generation) {
                    return Ok(None);
                }
                progress(format!("Descriptors of {}", input.name));
                let image = correspond_job::descriptors(self, spec, &input)?;
                Ok(Some(Event::Descriptors {
                    spec,
                    image: Arc::new(image),
                }))
            }
            Job::BestBuddies {
                key,
                source,
                target,
            } => {
                if self.is_stale(key.spec.generation) {
                    return Ok(None);
                }
                Ok(
                    correspond_job::best_buddies(self, key, &source, &target, token, &report)?.map(
                        |result| Event::Buddies {
                            key,
                            result: Arc::new(result),
                        },
                    ),
                )
            }
            Job::Coseg { key, inputs } => {
                if self.is_stale(key.generation) {
                    return Ok(None);
                }
                Ok(
                    coseg_job::run(self, &key, inputs, token, &report)?.map(|result| {
                        Event::Coseg {
                            key,
                            result: Arc::new(result),
                        }
                    }),
                )
            }
            Job::Fuse {
                key,
                images,
                inputs,
            } => {
                if self.is_stale(key.spec.generation) {
                    return Ok(None);
                }
                progress(format!("Fusing with the {}", key.second.label()));
                let [a, b] = fusion_job::fuse(
                    self,
                    &key,
                    [&images[0], &images[1]],
                    [&inputs[0], &inputs[1]],
                )?;
                Ok(Some(Event::Fused {
                    key,
                    images: [Arc::new(a), Arc::new(b)],
                }))
            }
        }
    }

    /// A job asked for under another model (or before any) than the one loaded: dropped.
    fn is_stale(&self, generation: u64) -> bool {
        self.model.is_none() || generation != self.generation
    }

    /// The image as the model sees it under an input size and patch budget (cached).
    fn prepared(
        &mut self,
        image: ImageId,
        rgb: &RgbImage,
        name: &str,
        input_size: InputSize,
        max_patches: usize,
        progress: &dyn Fn(String),
    ) -> Result<Arc<PreparedImage>, AppError> {
        if let Some(p) = self.prepared.get(&(image, input_size, max_patches)) {
            return Ok(p.clone());
        }
        let patch = self.model.as_ref().map_or(16, |m| m.config().patch_size);
        progress(format!("Preparing {name}"));
        let p = prepare(rgb, input_size.resize(), patch, max_patches)
            .map(Arc::new)
            .map_err(|source| AppError::Prepare {
                path: name.to_string(),
                source,
            })?;
        self.prepared
            .insert((image, input_size, max_patches), p.clone());
        Ok(p)
    }

    /// Descriptors of one image (cached per image, block, facet, stride and input size), with
    /// the image they were computed on.
    pub(super) fn features(
        &mut self,
        key: FeatureKey,
        rgb: &RgbImage,
        name: &str,
    ) -> Result<(Arc<PreparedImage>, Arc<FeatureMap>), AppError> {
        if let Some(found) = self.features.get(&key) {
            return Ok(found);
        }
        let patch = self.model.as_ref().map_or(16, |m| m.config().patch_size);
        let budget = patch_budget(patch, key.stride);
        let prepared = self.prepared(key.image, rgb, name, key.input_size, budget, &|_| {})?;
        let Some(vit) = &self.model else {
            return Err(AppError::Compute {
                what: format!("features of {name}"),
                detail: "no model is loaded".into(),
            });
        };
        let spec = DescriptorSpec {
            layer: key.layer,
            facet: key.facet(),
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

    /// The generation of the loaded model.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// One image as the model sees it under an input size and patch budget (cached).
    pub(super) fn prepared_image(
        &mut self,
        input: &PcaInput,
        input_size: InputSize,
        max_patches: usize,
    ) -> Result<Arc<PreparedImage>, AppError> {
        self.prepared(
            input.id,
            &input.rgb,
            &input.name,
            input_size,
            max_patches,
            &|_| {},
        )
    }

    pub(super) fn device(&self) -> &burn::tensor::Device {
        &self.device.device
    }

    pub(super) fn vit(&self) -> Option<&Vit> {
        self.model.as_ref()
    }

    pub(super) fn config(&self) -> Option<&VitConfig> {
        self.model.as_ref().map(|m| m.config())
    }

    fn load(&self, path: &Path) -> Result<(Vit, usize), AppError> {
        let loaded = load_model(path, &LoadOptions::default(), &self.device.device)?;
        Ok((loaded.vit, loaded.ignored))
    }

    fn install(&mut self, vit: Vit, source: ModelSource, ignored: usize, start: Instant) -> Event {
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
        Event::ModelLoaded(info)
    }
}

pub fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
