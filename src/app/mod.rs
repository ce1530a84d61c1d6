//! The desktop app (eframe / egui): a gallery of images, views of what a DINO model sees in
//! tabs (attention of every head, PCA of the patch features, co-segmentation, correspondences),
//! the model's details and a checkpoint download manager.
//!
//! The UI thread never computes: model loading and analyses run on [`worker`], images are decoded
//! on loader threads, downloads and native file dialogs run on their own threads; results come
//! back as events.

pub mod attention_panel;
mod attention_tab;
pub mod corr_export;
mod correspond_fusion;
pub mod correspond_job;
pub mod correspond_panel;
mod correspond_tab;
pub mod coseg_export;
pub mod coseg_job;
pub mod coseg_panel;
mod coseg_tab;
pub mod downloads;
pub mod export;
pub mod fusion_job;
pub mod gallery;
pub mod help;
pub mod model_panel;
pub mod notifications;
pub mod patch_overlay;
pub mod pca_job;
pub mod pca_panel;
mod pca_tab;
pub mod point_query;
pub mod state;
pub mod textures;
pub mod train_job;
pub mod train_panel;
mod train_tab;
pub mod worker;

use eframe::egui;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Key, Modifiers};

use crate::analysis::attention::Query;
use attention_panel::AttentionView;
use correspond_job::{BuddiesKey, CorrSpec};
use correspond_tab::CorrState;
use coseg_job::CosegKey;
use coseg_tab::CosegState;
use downloads::{DownloadAction, DownloadRequest, Downloads};
use gallery::{Gallery, GalleryAction, Source};
use notifications::{AppError, Notifications};
use pca_job::PcaKey;
use pca_tab::PcaState;
use state::{InputSize, Settings, ViewTab};
use train_tab::TrainState;
use worker::{
    AttentionResult, AttnKey, CancelToken, Event, ImageId, Job, ModelInfo, Picked, TaskId, Worker,
};

/// Where the trained default model is looked for.
pub const DEFAULT_WEIGHTS: &str = "weights/default.safetensors";

/// Attention results kept in memory (per image, block and query).
const CACHE_CAPACITY: usize = 96;

/// How the app starts.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Trained default model; `None` starts on an untrained ViT-nano.
    pub default_weights: Option<PathBuf>,
    /// Add the bundled sample images.
    pub samples: bool,
    /// Reopen the images and checkpoint of the last session (from the stored settings).
    pub restore_session: bool,
    /// Where downloaded checkpoints are stored; `None` uses
    /// [`checkpoint_dir`](crate::model::download::checkpoint_dir) (`$DINOSCOPE_CACHE`, ...).
    pub checkpoint_dir: Option<PathBuf>,
}

impl Default for AppOptions {
    fn default() -> Self {
        let local = PathBuf::from(DEFAULT_WEIGHTS);
        let in_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WEIGHTS);
        AppOptions {
            default_weights: Some(if local.is_file() { local } else { in_repo }),
            samples: true,
            restore_session: true,
            checkpoint_dir: None,
        }
    }
}

/// A task in progress (worker job, image loading).
struct Task {
    label: String,
    fraction: Option<f32>,
    token: CancelToken,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TaskKind {
    Model,
    Attention(AttnKey),
    Pca(PcaKey),
    Descriptors(ImageId, CorrSpec),
    Buddies(BuddiesKey),
    Coseg(CosegKey),
    Fuse(fusion_job::FuseKey),
    Images,
    /// A checkpoint download (catalogue id).
    Download(String),
    /// Files being written.
    Export,
}

pub struct App {
    settings: Settings,
    worker: Worker,
    gallery: Gallery,
    notifications: Notifications,
    model: Option<ModelInfo>,
    backend: Option<String>,
    query: Query,
    cache: HashMap<AttnKey, Arc<AttentionResult>>,
    cache_order: VecDeque<AttnKey>,
    /// What is on screen (may be a slightly older result while the next one computes).
    shown: Option<(AttnKey, Arc<AttentionResult>)>,
    tasks: BTreeMap<TaskId, (TaskKind, Task)>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    skipped: HashSet<AttnKey>,
    view: AttentionView,
    pca: PcaState,
    corr: CorrState,
    coseg: CosegState,
    training: TrainState,
    downloads: Downloads,
    default_weights: Option<PathBuf>,
    help_open: bool,
    about_open: bool,
    dialog_open: bool,
    files_hovered: bool,
    frame: FrameTimer,
}

/// Frame timing for the debug overlay.
#[derive(Default)]
struct FrameTimer {
    /// UI build time of the last frame, unsmoothed.
    last_ui_ms: f32,
    ui_ms: f32,
    frame_ms: f32,
    last: Option<Instant>,
}

impl FrameTimer {
    fn record(&mut self, started: Instant) {
        let ui_ms = started.elapsed().as_secs_f32() * 1e3;
        self.last_ui_ms = ui_ms;
        self.ui_ms = if self.ui_ms == 0.0 {
            ui_ms
        } else {
            0.9 * self.ui_ms + 0.1 * ui_ms
        };
        if let Some(last) = self.last {
            let dt = started.duration_since(last).as_secs_f32() * 1e3;
            self.frame_ms = if self.frame_ms == 0.0 {
                dt
            } else {
                0.9 * self.frame_ms + 0.1 * dt
            };
        }
        self.last = Some(started);
    }
}

/// Starts the desktop app (blocks until the window closes).
pub fn run() -> eframe::Result {
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("dinoscope")
            .with_app_id("dinoscope")
            .with_inner_size([1280.0, 860.0])
            .with_min_inner_size([640.0, 480.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    // Share a hardware GPU with burn: one device, no copies between two contexts.
    if let Some(setup) = crate::model::backend::shared_gpu_setup() {
        use eframe::egui_wgpu::{WgpuSetup, WgpuSetupExisting};
        options.wgpu_options.wgpu_setup = WgpuSetup::Existing(WgpuSetupExisting {
            instance: setup.instance.clone(),
            adapter: setup.adapter.clone(),
            device: setup.device.clone(),
            queue: setup.queue.clone(),
        });
    }
    eframe::run_native(
        "dinoscope",
        options,
        Box::new(|cc| {
            let mut app = App::new(&cc.egui_ctx, cc.storage, AppOptions::default());
            if let Some(render_state) = &cc.wgpu_render_state {
                patch_overlay::install(render_state);
                app.view.gpu = true;
            }
            Ok(Box::new(app))
        }),
    )
}

impl App {
    pub fn new(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        options: AppOptions,
    ) -> App {
        let settings = Settings::load(storage);
        let mut app = App {
            worker: Worker::spawn(ctx.clone()),
            gallery: Gallery::default(),
            notifications: Notifications::default(),
            model: None,
            backend: None,
            query: Query::Cls,
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
            shown: None,
            tasks: BTreeMap::new(),
            skipped: HashSet::new(),
            view: AttentionView::default(),
            pca: PcaState::default(),
            corr: CorrState::default(),
            coseg: CosegState::default(),
            training: TrainState::default(),
            downloads: Downloads::new(
                options
                    .checkpoint_dir
                    .clone()
                    .or_else(crate::model::download::checkpoint_dir),
            ),
            default_weights: options.default_weights.clone(),
            help_open: false,
            about_open: false,
            dialog_open: false,
            files_hovered: false,
            frame: FrameTimer::default(),
            settings,
        };
        match app
            .settings
            .checkpoint
            .clone()
            .filter(|p| options.restore_session && p.is_file())
        {
            Some(path) => app.open_checkpoint(path),
            None => app.load_default_model(),
        }
        let mut sources: Vec<Source> = Vec::new();
        if options.samples {
            sources.extend(
                gallery::SAMPLES
                    .iter()
                    .map(|&(name, bytes)| Source::Sample(name, bytes)),
            );
        }
        if options.restore_session {
            sources.extend(
                app.settings
                    .image_paths
                    .iter()
                    .filter(|p| p.is_file())
                    .cloned()
                    .map(Source::Path),
            );
        }
        if !sources.is_empty() {
            app.add_sources(sources);
        }
        app
    }

    // ----- queries for tests and tools -----

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    pub fn gallery(&self) -> &Gallery {
        &self.gallery
    }

    pub fn notifications(&self) -> &Notifications {
        &self.notifications
    }

    pub fn model(&self) -> Option<&ModelInfo> {
        self.model.as_ref()
    }

    pub fn query(&self) -> Query {
        self.query
    }

    pub fn view(&self) -> &AttentionView {
        &self.view
    }

    /// Smoothed UI build time and frame interval of the last frames, in milliseconds (the debug
    /// overlay's numbers).
    pub fn frame_times(&self) -> (f32, f32) {
        (self.frame.ui_ms, self.frame.frame_ms)
    }

    /// UI build time of the last frame alone, in milliseconds.
    pub fn last_ui_ms(&self) -> f32 {
        self.frame.last_ui_ms
    }

    pub fn downloads(&self) -> &Downloads {
        &self.downloads
    }

    /// The view shown in the central area.
    pub fn tab(&self) -> ViewTab {
        self.settings.tab
    }

    pub fn set_tab(&mut self, tab: ViewTab) {
        self.settings.tab = tab;
    }

    /// No model load, attention or image decoding under way.
    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The block shown: the chosen one, or the last block of the model.
    pub fn layer(&self) -> usize {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings.layer.unwrap_or(depth - 1).min(depth - 1)
    }

    pub fn set_layer(&mut self, layer: usize) {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings.layer = Some(layer.min(depth - 1));
    }

    pub fn set_query(&mut self, query: Query) {
        self.query = query;
    }

    // ----- actions -----

    pub fn add_paths(&mut self, paths: Vec<PathBuf>) {
        self.add_sources(paths.into_iter().map(Source::Path).collect());
    }

    fn add_sources(&mut self, sources: Vec<Source>) {
        let (task, token) = self.worker.new_task();
        self.tasks.insert(
            task,
            (
                TaskKind::Images,
                Task {
                    label: "Loading images".into(),
                    fraction: Some(0.0),
                    token: token.clone(),
                },
            ),
        );
        gallery::spawn_loader(sources, task, token, self.worker.sender());
    }

    fn submit(&mut self, kind: TaskKind, label: String, job: Job) {
        let (task, token) = self.worker.submit(job);
        self.tasks.insert(
            task,
            (
                kind,
                Task {
                    label,
                    fraction: None,
                    token,
                },
            ),
        );
    }

    pub fn open_checkpoint(&mut self, path: PathBuf) {
        let label = format!("Loading {}", worker::file_label(&path));
        self.submit(TaskKind::Model, label, Job::LoadCheckpoint(path));
    }

    pub fn load_default_model(&mut self) {
        let default_path = self.default_weights.clone();
        self.submit(
            TaskKind::Model,
            "Loading the default model".into(),
            Job::LoadDefault { default_path },
        );
    }

    /// Downloads a checkpoint on its own thread, then loads it.
    pub fn download_checkpoint(&mut self, request: DownloadRequest) {
        if self.downloads.active.contains_key(&request.id) {
            return;
        }
        let (task, token) = self.worker.new_task();
        self.tasks.insert(
            task,
            (
                TaskKind::Download(request.id.clone()),
                Task {
                    label: format!("Downloading {}", request.title),
                    fraction: Some(0.0),
                    token: token.clone(),
                },
            ),
        );
        self.downloads.started(&request.id, task);
        downloads::spawn_download(request, task, token, self.worker.sender());
    }

    /// Opens the download manager window.
    pub fn open_downloads(&mut self) {
        self.downloads.open = true;
    }

    /// Stops one task; a cancelled view is not recomputed until asked.
    fn cancel_task(&mut self, task: TaskId) {
        if let Some((kind, t)) = self.tasks.remove(&task) {
            t.token.cancel();
            match kind {
                TaskKind::Attention(key) => {
                    self.skipped.insert(key);
                }
                TaskKind::Pca(key) => {
                    self.pca.skipped.insert(key);
                }
                TaskKind::Descriptors(image, spec) => {
                    self.corr.skipped.insert((image, spec));
                }
                TaskKind::Buddies(key) => {
                    self.corr.buddies_skipped.insert(key);
                }
                TaskKind::Fuse(key) => {
                    self.corr.fuse_skipped.insert(key);
                }
                TaskKind::Download(_) => self.downloads.ended(task, None),
                TaskKind::Model | TaskKind::Images | TaskKind::Coseg(_) | TaskKind::Export => {}
            }
        }
    }

    /// Cancels everything under way; cancelled views are not recomputed until asked.
    pub fn cancel(&mut self) {
        let tasks: Vec<TaskId> = self.tasks.keys().copied().collect();
        for task in tasks {
            self.cancel_task(task);
        }
        self.notifications.info("Cancelled");
    }

    /// Handles everything the worker, loaders and dialogs sent.
    pub fn poll(&mut self, ctx: &egui::Context) {
        while let Some(event) = self.worker.try_recv() {
            match event {
                Event::Backend(description) => self.backend = Some(description),
                Event::Progress {
                    task,
                    label,
                    fraction,
                } => {
                    self.downloads.progress(task, &label, fraction);
                    if let Some((_, t)) = self.tasks.get_mut(&task) {
                        t.label = label;
                        if fraction.is_some() {
                            t.fraction = fraction;
                        }
                    }
                }
                Event::Finished { task } => {
                    self.tasks.remove(&task);
                    self.downloads.ended(task, None);
                }
                Event::Failed { task, error } => {
                    let kind = self.tasks.get(&task).map(|(k, _)| k.clone());
                    match &kind {
                        Some(TaskKind::Attention(key)) => {
                            self.skipped.insert(*key);
                        }
                        Some(TaskKind::Pca(key)) => {
                            self.pca.skipped.insert(key.clone());
                        }
                        Some(TaskKind::Descriptors(image, spec)) => {
                            self.corr.skipped.insert((*image, *spec));
                        }
                        Some(TaskKind::Buddies(key)) => {
                            self.corr.buddies_skipped.insert(*key);
                        }
                        Some(TaskKind::Fuse(key)) => {
                            self.corr.fuse_skipped.insert(key.clone());
                        }
                        Some(TaskKind::Download(_)) => {
                            self.downloads.ended(task, Some(Err(error.to_string())));
                        }
                        _ => {}
                    }
                    // A checkpoint that fails to load on start-up: fall back to the default.
                    if kind == Some(TaskKind::Model) && self.model.is_none() {
                        self.tasks.remove(&task);
                        self.load_default_model();
                    }
                    self.notifications.error(&error);
                }
                Event::Note(text) => self.notifications.info(text),
                Event::ModelLoaded(info) => {
                    self.settings.checkpoint = match &info.source {
                        worker::ModelSource::File(p) => Some(p.clone()),
                        _ => None,
                    };
                    if let Some(layer) = self.settings.layer
                        && layer >= info.config.depth
                    {
                        self.settings.layer = None;
                    }
                    self.query = Query::Cls;
                    self.cache.clear();
                    self.cache_order.clear();
                    self.skipped.clear();
                    self.shown = None;
                    self.pca.clear();
                    self.corr.clear();
                    self.coseg.clear();
                    if let Some(layer) = self.settings.pca.layer
                        && layer >= info.config.depth
                    {
                        self.settings.pca.layer = None;
                    }
                    if let Some(layer) = self.settings.correspondence.layer
                        && layer >= info.config.depth
                    {
                        self.settings.correspondence.layer = None;
                    }
                    self.model = Some(info);
                }
                Event::Pca { key, result } => self.pca.insert(key, result),
                Event::Descriptors { spec, image } => self.corr.insert(spec, image),
                Event::Buddies { key, result } => self.corr.insert_buddies(key, result),
                Event::Coseg { key, result } => self.coseg.insert(key, result),
                Event::Fused { key, images } => self.corr.insert_fused(key, images),
                Event::PointAnswer(answer) => self.corr.answered(answer),
                Event::Downloaded {
                    task,
                    title,
                    verified,
                    result,
                } => {
                    self.downloads
                        .ended(task, Some(Ok((result.sha256.clone(), verified))));
                    self.notifications.info(format!(
                        "Downloaded {title} to {} (SHA-256 {}{})",
                        result.path.display(),
                        result.sha256,
                        if verified { ", verified" } else { "" }
                    ));
                    self.open_checkpoint(result.path);
                }
                Event::Attention { key, result } => {
                    self.cache.insert(key, result);
                    self.cache_order.push_back(key);
                    while self.cache_order.len() > CACHE_CAPACITY {
                        if let Some(old) = self.cache_order.pop_front() {
                            self.cache.remove(&old);
                        }
                    }
                }
                Event::ImageDecoded(image) => {
                    // Skip duplicates of files already in the gallery.
                    let duplicate =
                        !image.bundled && self.gallery.entries.iter().any(|e| e.path == image.path);
                    if !duplicate {
                        self.gallery.add(ctx, image);
                    }
                }
                Event::Picked(picked) => {
                    self.dialog_open = false;
                    self.on_picked(picked);
                }
                Event::Exported { result, .. } => match result {
                    Ok(files) => self.notifications.info(match files.as_slice() {
                        [one] => format!("Saved {}", one.display()),
                        _ => format!(
                            "Saved {} files to {}",
                            files.len(),
                            files
                                .first()
                                .and_then(|f| f.parent())
                                .map_or(String::new(), |d| d.display().to_string())
                        ),
                    }),
                    Err(e) => self.notifications.error(&e),
                },
            }
        }
    }

    fn on_picked(&mut self, picked: Picked) {
        match picked {
            Picked::Images(paths) => {
                if !paths.is_empty() {
                    self.add_paths(paths);
                }
            }
            Picked::Checkpoint(path) => self.open_checkpoint(path),
            Picked::Fusion(second) => self.set_corr_fusion(Some(second)),
            Picked::ExportPng(path) => {
                if let Some(result) = self.current_result().cloned() {
                    let settings = self.settings.clone();
                    self.start_export(move || {
                        export::export_png(&path, &result, &settings).map(|()| vec![path])
                    });
                }
            }
            Picked::ExportNpy(path) => {
                if let Some(result) = self.current_result().cloned() {
                    self.start_export(move || {
                        export::export_npy(&path, &result).map(|()| vec![path])
                    });
                }
            }
            Picked::ExportPca(dir) => {
                if let Some(result) = self.current_pca_result().cloned() {
                    self.start_export(move || export::export_pca(&dir, &result));
                }
            }
            Picked::ExportCoseg(dir) => self.export_coseg_to(dir),
            Picked::ExportCorrespondence(dir) => self.export_correspondence_to(dir),
        }
    }

    /// Writes the co-segmentation view shown (images, labels, legend) into `dir`, off the UI
    /// thread.
    pub fn export_coseg_to(&mut self, dir: PathBuf) {
        if let Some(result) = self.current_coseg_result().cloned() {
            let show = self.settings.coseg.show;
            self.start_export(move || coseg_export::export_coseg(&dir, &result, show));
        }
    }

    /// Writes the correspondence view shown (image, report, heatmaps) into `dir`, off the UI
    /// thread.
    pub fn export_correspondence_to(&mut self, dir: PathBuf) {
        if let Some(shown) = self.corr_export() {
            self.start_export(move || corr_export::export_correspondence(&dir, &shown));
        }
    }

    fn start_export(
        &mut self,
        export: impl FnOnce() -> Result<Vec<PathBuf>, AppError> + Send + 'static,
    ) {
        let (task, token) = self.worker.new_task();
        self.tasks.insert(
            task,
            (
                TaskKind::Export,
                Task {
                    label: "Exporting".into(),
                    fraction: None,
                    token,
                },
            ),
        );
        export::spawn_export(task, self.worker.sender(), export);
    }

    /// Opens a native file dialog on its own thread; the answer comes back as an event.
    fn open_dialog(&mut self, kind: DialogKind) {
        if self.dialog_open {
            return;
        }
        let suggested = self.export_name();
        let sender = self.worker.sender();
        let spawned = std::thread::Builder::new()
            .name("dinoscope-dialog".into())
            .spawn(move || {
                let picked = match kind {
                    DialogKind::Images => rfd::FileDialog::new()
                        .set_title("Open images")
                        .add_filter("Images", &gallery::IMAGE_EXTENSIONS)
                        .pick_files()
                        .map(Picked::Images),
                    DialogKind::Folder => rfd::FileDialog::new()
                        .set_title("Open a folder of images")
                        .pick_folder()
                        .map(|f| Picked::Images(vec![f])),
                    DialogKind::Checkpoint => rfd::FileDialog::new()
                        .set_title("Open a checkpoint")
                        .add_filter("Checkpoints", &["pth", "pt", "safetensors"])
                        .pick_file()
                        .map(Picked::Checkpoint),
                    DialogKind::FusionCheckpoint => rfd::FileDialog::new()
                        .set_title("Fuse with a second checkpoint")
                        .add_filter("Checkpoints", &["pth", "pt", "safetensors"])
                        .pick_file()
                        .map(|p| Picked::Fusion(fusion_job::SecondChoice::Checkpoint(p))),
                    DialogKind::FusionFolder => rfd::FileDialog::new()
                        .set_title("Fuse with the feature maps in a folder (<image stem>.npy)")
                        .pick_folder()
                        .map(|p| Picked::Fusion(fusion_job::SecondChoice::Folder(p))),
                    DialogKind::ExportPng => rfd::FileDialog::new()
                        .set_title("Export the head-mean view")
                        .set_file_name(format!("{suggested}.png"))
                        .add_filter("PNG", &["png"])
                        .save_file()
                        .map(Picked::ExportPng),
                    DialogKind::ExportNpy => rfd::FileDialog::new()
                        .set_title("Export the attention values")
                        .set_file_name(format!("{suggested}.npy"))
                        .add_filter("NumPy", &["npy"])
                        .save_file()
                        .map(Picked::ExportNpy),
                    DialogKind::ExportPca => rfd::FileDialog::new()
                        .set_title("Export the PCA colourings (PNG + .npy per image) to a folder")
                        .pick_folder()
                        .map(Picked::ExportPca),
                    DialogKind::ExportCoseg => rfd::FileDialog::new()
                        .set_title(
                            "Export the co-segmentation (PNG + .npy per image, legend) to a folder",
                        )
                        .pick_folder()
                        .map(Picked::ExportCoseg),
                    DialogKind::ExportCorrespondence => rfd::FileDialog::new()
                        .set_title(
                            "Export the correspondence view (PNG, JSON, heatmaps) to a folder",
                        )
                        .pick_folder()
                        .map(Picked::ExportCorrespondence),
                };
                // A closed dialog still reports back, so the app knows no dialog is open.
                sender.send(Event::Picked(picked.unwrap_or(Picked::Images(Vec::new()))));
            });
        match spawned {
            Ok(_) => self.dialog_open = true,
            Err(e) => self.notifications.error(&AppError::Compute {
                what: "opening a file dialog".into(),
                detail: e.to_string(),
            }),
        }
    }

    /// The export of the tab shown, when it has something to export.
    fn view_export(&self) -> Option<DialogKind> {
        match self.settings.tab {
            ViewTab::Attention => self.current_result().map(|_| DialogKind::ExportPng),
            ViewTab::Pca => self.current_pca_result().map(|_| DialogKind::ExportPca),
            ViewTab::Coseg => self.current_coseg_result().map(|_| DialogKind::ExportCoseg),
            ViewTab::Correspondence => self.corr_export().map(|_| DialogKind::ExportCorrespondence),
            ViewTab::Training => None,
        }
    }

    fn export_name(&self) -> String {
        let stem = self
            .gallery
            .selected_entry()
            .and_then(|e| e.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "image".into());
        let query = match self.query {
            Query::Cls => "cls".to_string(),
            Query::Patch { row, col } => format!("patch{row}-{col}"),
        };
        format!("{stem}-block{}-{query}", self.layer())
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::O)) {
            self.open_dialog(DialogKind::Images);
        }
        if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::E))
            && let Some(kind) = self.view_export()
        {
            self.open_dialog(kind);
        }
        if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::F12)) {
            self.settings.debug_overlay = !self.settings.debug_overlay;
        }
        // Plain keys only when no widget (e.g. a focused slider) takes them.
        if ctx.memory(|m| m.focused().is_some()) {
            return;
        }
        let pressed = |key: Key| ctx.input_mut(|i| i.consume_key(Modifiers::NONE, key));
        for (tab, key) in
            ViewTab::ALL
                .into_iter()
                .zip([Key::Num1, Key::Num2, Key::Num3, Key::Num4, Key::Num5])
        {
            if pressed(key) {
                self.settings.tab = tab;
            }
        }
        if pressed(Key::ArrowLeft) {
            self.gallery.step_selection(-1);
        }
        if pressed(Key::ArrowRight) {
            self.gallery.step_selection(1);
        }
        // Up / Down move the block of the tab shown.
        let step = if pressed(Key::ArrowUp) {
            1
        } else if pressed(Key::ArrowDown) {
            -1
        } else {
            0
        };
        if step != 0 {
            match self.settings.tab {
                ViewTab::Pca => {
                    let layer = self.pca_layer().saturating_add_signed(step);
                    self.set_pca_layer(layer);
                }
                ViewTab::Correspondence => {
                    let layer = self.corr_layer().saturating_add_signed(step);
                    self.set_corr_layer(layer);
                }
                _ => self.set_layer(self.layer().saturating_add_signed(step)),
            }
        }
        if pressed(Key::H) || pressed(Key::F1) {
            self.help_open = !self.help_open;
        }
        if pressed(Key::Escape) || pressed(Key::C) {
            self.query = Query::Cls;
        }
        if pressed(Key::Delete) {
            self.gallery.remove_selected();
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let (hovered, dropped) = ctx.input(|i| {
            (
                !i.raw.hovered_files.is_empty(),
                i.raw
                    .dropped_files
                    .iter()
                    .map(|f| f.path().to_path_buf())
                    .collect::<Vec<_>>(),
            )
        });
        self.files_hovered = hovered;
        if !dropped.is_empty() {
            self.add_paths(dropped);
        }
    }

    /// Ctrl+V with an image on the clipboard: stored and loaded like a dropped file, off the UI
    /// thread.
    fn handle_pasted_images(&mut self, ctx: &egui::Context) {
        let pasted: Vec<Source> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::PasteImage(image) => Some(Source::Pasted(image.clone())),
                    _ => None,
                })
                .collect()
        });
        if !pasted.is_empty() {
            self.add_sources(pasted);
        }
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open images...  (Ctrl+O)").clicked() {
                    self.open_dialog(DialogKind::Images);
                }
                if ui.button("Open folder...").clicked() {
                    self.open_dialog(DialogKind::Folder);
                }
                ui.separator();
                let shown = self.view_export();
                if ui
                    .add_enabled(
                        shown.is_some(),
                        egui::Button::new("Export the view shown...  (Ctrl+E)"),
                    )
                    .clicked()
                    && let Some(kind) = shown
                {
                    self.open_dialog(kind);
                }
                let items = [
                    (
                        self.current_coseg_result().is_some(),
                        "Export co-segmentation (PNG + .npy + JSON)...",
                        "Per image <name>_coseg.png, <name>_labels.npy, <name>_foreground.npy; \
                         coseg_legend.json",
                        DialogKind::ExportCoseg,
                    ),
                    (
                        self.corr_export().is_some(),
                        "Export correspondence (PNG + JSON + .npy)...",
                        "correspondence.png, correspondence.json and <target>_similarity.npy",
                        DialogKind::ExportCorrespondence,
                    ),
                    (
                        self.current_pca_result().is_some(),
                        "Export PCA colourings (PNG + .npy)...",
                        "The PCA tab's images: <name>_pca.png and <name>_pca.npy each",
                        DialogKind::ExportPca,
                    ),
                    (
                        self.current_result().is_some(),
                        "Export head-mean view (PNG)...",
                        "The attention tab's head mean over the image",
                        DialogKind::ExportPng,
                    ),
                    (
                        self.current_result().is_some(),
                        "Export attention values (.npy)...",
                        "[heads, rows, cols] float32",
                        DialogKind::ExportNpy,
                    ),
                ];
                for (enabled, label, hover, kind) in items {
                    if ui
                        .add_enabled(enabled, egui::Button::new(label))
                        .on_hover_text(hover)
                        .clicked()
                    {
                        self.open_dialog(kind);
                    }
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Model", |ui| {
                if ui
                    .button("Open checkpoint (.pth, .safetensors)...")
                    .clicked()
                {
                    self.open_dialog(DialogKind::Checkpoint);
                }
                if ui.button("Download official checkpoints...").clicked() {
                    self.downloads.open = true;
                }
                if ui.button("Back to the default model").clicked() {
                    self.load_default_model();
                }
                ui.checkbox(&mut self.settings.show_model_panel, "Show model info");
            });
            ui.menu_button("View", |ui| {
                for tab in ViewTab::ALL {
                    ui.radio_value(
                        &mut self.settings.tab,
                        tab,
                        format!("{}  ({})", tab.label(), tab.shortcut()),
                    );
                }
                ui.separator();
                ui.checkbox(&mut self.settings.show_masks, "Mass-mask outlines");
                ui.checkbox(&mut self.settings.debug_overlay, "Debug overlay (F12)");
            });
            ui.menu_button("Help", |ui| {
                if ui.button("Help (H)").clicked() {
                    self.help_open = true;
                }
                if ui.button("About").clicked() {
                    self.about_open = true;
                }
            });
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = model_panel::short_label(self.model.as_ref());
            if self.model.as_ref().is_some_and(|m| m.is_untrained()) {
                ui.label(
                    egui::RichText::new(label)
                        .strong()
                        .color(egui::Color32::from_rgb(255, 140, 60)),
                );
            } else {
                ui.label(label);
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if !self.tasks.is_empty() {
                    if ui
                        .button("Cancel")
                        .on_hover_text("Stop the work under way")
                        .clicked()
                    {
                        self.cancel();
                        return;
                    }
                    if let Some((_, (_, task))) = self.tasks.iter().next() {
                        if let Some(f) = task.fraction {
                            ui.add(egui::ProgressBar::new(f).desired_width(120.0));
                        }
                        let more = if self.tasks.len() > 1 {
                            format!(" (+{} more)", self.tasks.len() - 1)
                        } else {
                            String::new()
                        };
                        ui.label(format!("{}{more}", task.label));
                    }
                    ui.spinner();
                }
            });
        });
    }

    /// The whole interface; `eframe::App::ui` calls it, and so do the tests.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        self.poll_training(&ctx);
        self.handle_keys(&ctx);
        self.handle_dropped_files(&ctx);
        self.handle_pasted_images(&ctx);

        egui::Panel::top("menu").show(ui, |ui| {
            self.menu_bar(ui);
        });
        egui::Panel::top("status").show(ui, |ui| {
            self.status_bar(ui);
        });
        egui::Panel::bottom("gallery")
            .resizable(false)
            .exact_size(128.0)
            .show(ui, |ui| {
                ui.add_space(4.0);
                match self.gallery.ui(ui) {
                    Some(GalleryAction::Select(id)) => self.gallery.selected = Some(id),
                    Some(GalleryAction::MoveLeft) => self.gallery.move_selected(-1),
                    Some(GalleryAction::MoveRight) => self.gallery.move_selected(1),
                    Some(GalleryAction::Remove) => {
                        self.gallery.remove_selected();
                    }
                    Some(GalleryAction::Add) => self.open_dialog(DialogKind::Images),
                    None => {}
                }
                ui.add_space(4.0);
            });
        egui::Panel::left("controls")
            .default_size(250.0)
            .size_range(200.0..=400.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.controls(ui));
            });
        if self.settings.show_model_panel {
            egui::Panel::right("model")
                .default_size(280.0)
                .size_range(200.0..=480.0)
                .show(ui, |ui| {
                    model_panel::ui(ui, self.model.as_ref(), self.backend.as_deref());
                });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.tab_bar(ui);
            match self.settings.tab {
                ViewTab::Attention => self.attention_central(ui),
                ViewTab::Pca => self.pca_central(ui),
                ViewTab::Coseg => self.coseg_central(ui),
                ViewTab::Correspondence => self.corr_central(ui),
                ViewTab::Training => self.train_central(ui),
            }
        });

        // Start the next computation only after this frame's input changed the settings; only
        // the tab shown asks for work.
        match self.settings.tab {
            ViewTab::Attention => self.request_attention(),
            ViewTab::Pca => self.request_pca(),
            ViewTab::Correspondence => self.request_correspondence(),
            ViewTab::Coseg | ViewTab::Training => {}
        }

        match self.downloads.window(&ctx) {
            Some(DownloadAction::Start(request)) => self.download_checkpoint(request),
            Some(DownloadAction::Load(path)) => self.open_checkpoint(path),
            Some(DownloadAction::Cancel(id)) => {
                if let Some(task) = self.downloads.active.get(&id).map(|a| a.task) {
                    self.cancel_task(task);
                }
            }
            None => {}
        }
        help::help_window(&ctx, &mut self.help_open);
        help::about_window(&ctx, &mut self.about_open);
        self.notifications.show(&ctx);
        if self.files_hovered {
            drop_overlay(&ctx);
        }
        if self.settings.debug_overlay {
            self.debug_overlay(&ctx);
        }
        if !self.tasks.is_empty() {
            // Poll the channel even if no event arrives to wake us (e.g. a slow decoder).
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        self.frame.record(started);
    }

    /// The row of view tabs above the central view.
    fn tab_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for tab in ViewTab::ALL {
                ui.selectable_value(&mut self.settings.tab, tab, tab.label())
                    .on_hover_text(format!("Key {}", tab.shortcut()));
            }
        });
        ui.separator();
    }

    /// The left panel: the controls of the tab shown.
    fn controls(&mut self, ui: &mut egui::Ui) {
        match self.settings.tab {
            ViewTab::Attention => self.attention_controls(ui),
            ViewTab::Pca => self.pca_controls(ui),
            ViewTab::Correspondence => self.corr_controls(ui),
            ViewTab::Coseg => self.coseg_controls(ui),
            ViewTab::Training => self.train_controls(ui),
        }
    }

    fn debug_overlay(&self, ctx: &egui::Context) {
        egui::Area::new(egui::Id::unique("debug-overlay"))
            .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-8.0, 60.0))
            .order(egui::Order::Foreground)
            .interactable(false)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.monospace(format!("ui build  {:6.2} ms", self.frame.ui_ms));
                    ui.monospace(format!("frame     {:6.2} ms", self.frame.frame_ms));
                    ui.monospace(format!(
                        "cached    {:6} views",
                        self.cache.len()
                            + self.pca.cached()
                            + self.corr.cached()
                            + self.coseg.cached()
                    ));
                    ui.monospace(format!("tasks     {:6}", self.tasks.len()));
                });
            });
    }
}

/// Content centred in the remaining space at its natural size (a message, a spinner or a
/// button of an empty view).
fn centered<R>(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
    ui.vertical_centered(|ui| {
        ui.add_space((ui.available_height() / 2.0 - 16.0).max(0.0));
        add(ui)
    })
    .inner
}

/// How the image is resized before the model sees it (shared by the tabs).
fn input_size_combo(ui: &mut egui::Ui, input_size: &mut InputSize) {
    egui::ComboBox::from_label("Input size")
        .selected_text(input_size.label())
        .show_ui(ui, |ui| {
            for s in InputSize::CHOICES {
                ui.selectable_value(input_size, s, s.label());
            }
        })
        .response
        .on_hover_text("How the image is resized before the model sees it");
}

fn drop_overlay(ctx: &egui::Context) {
    let rect = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop-overlay"),
    ));
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop images or folders to add them",
        egui::FontId::proportional(24.0),
        egui::Color32::WHITE,
    );
}

#[derive(Clone, Copy, Debug)]
enum DialogKind {
    Images,
    Folder,
    Checkpoint,
    FusionCheckpoint,
    FusionFolder,
    ExportPng,
    ExportNpy,
    ExportPca,
    ExportCoseg,
    ExportCorrespondence,
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.image_paths = self.gallery.file_paths();
        self.settings.save(storage);
    }
}
