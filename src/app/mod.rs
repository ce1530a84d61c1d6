//! The desktop app (eframe / egui): a gallery of images, views of what a DINO model sees in
//! tabs, the model's details and a checkpoint download manager.
//!
//! Layers, each importing only those below it: [`tasks`] (task ids, cancellation, events,
//! promises) and the shared pieces ([`cache`], [`dialogs`], [`widgets`], [`state`]); the
//! [`worker`], the model thread, which runs the jobs views hand it; the views (one folder each:
//! [`attention`], [`pca`], [`coseg`], [`correspond`], [`train`]) behind the [`view::View`] trait,
//! registered in [`views`]; and this module, the app: layout, frame loop and what no view owns.
//!
//! The UI thread never computes: the model runs on the worker, images are decoded on loader
//! threads, downloads, exports and file dialogs run on their own threads; results come back as
//! events or promises.

pub mod attention;
pub mod cache;
pub mod compare;
pub mod correspond;
pub mod coseg;
pub mod dialogs;
pub mod downloads;
pub mod explorer;
pub mod export;
pub mod first_run;
mod frame_timer;
pub mod gallery;
pub mod help;
mod input;
mod inspect;
pub mod live;
mod menu;
pub mod model_panel;
pub mod norms;
pub mod notifications;
pub mod paper_figure;
pub mod pca;
pub mod pixels;
pub mod sd_download;
pub mod sd_images;
pub mod sd_jobs;
pub mod sd_model;
mod startup;
pub mod state;
mod status_bar;
pub mod tasks;
pub mod textures;
pub mod train;
pub mod view;
pub mod views;
pub mod widgets;
pub mod worker;

pub use startup::{AppOptions, DEFAULT_WEIGHTS};

use eframe::egui;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::download::OfficialCheckpoint;
use dialogs::{Dialog, Pick};
use downloads::{DownloadAction, DownloadRequest, DownloadTask, Downloaded, Downloads};
use export::Exports;
use first_run::FirstRunAction;
use frame_timer::FrameTimer;
use gallery::{DecodedImage, Gallery, GalleryAction, Source};
use input::Input;
use menu::{MenuAction, MenuContent};
use notifications::{AppError, Notifications};
use sd_download::{SdDownloadTask, SdDownloaded, SdHub};
use state::{Settings, ViewTab};
use tasks::{Event, Output, TaskId, Tasks};
use view::{AppRequest, Shared, View, ViewContext};
use views::Views;
use worker::{ModelInfo, ModelLoad, ModelRequest, ModelSource, Worker};

/// How much larger everything is drawn in presentation mode (for a projector at the back of a room).
const PRESENTATION_ZOOM: f32 = 1.5;

/// The most time a frame spends taking what the threads sent; the rest waits for the next frame.
const POLL_BUDGET: Duration = Duration::from_millis(6);

/// What a file dialog of the app (not of a view) is for.
enum Purpose {
    Images,
    Checkpoint,
    /// The export `id` of a view.
    Export(ViewTab, &'static str),
}

pub struct App {
    ctx: egui::Context,
    settings: Settings,
    tasks: Tasks,
    worker: Worker,
    gallery: Gallery,
    notifications: Notifications,
    model: Option<ModelInfo>,
    backend: Option<String>,
    views: Views,
    downloads: Downloads,
    /// Where SD models are listed from and downloaded into, and their downloads.
    sd_hub: SdHub,
    exports: Exports,
    dialog: Dialog<Purpose>,
    default_weights: Option<PathBuf>,
    help_open: bool,
    about_open: bool,
    files_hovered: bool,
    frame: FrameTimer,
    /// Where the settings are saved, and what was last written there (unchanged settings are
    /// not rewritten every autosave).
    settings_file: Option<PathBuf>,
    settings_written: Option<String>,
    /// What the views asked of the app this frame.
    requests: Vec<AppRequest>,
    /// An image a view opened: selected, with this tab shown, once it has loaded.
    opening: Option<(PathBuf, ViewTab)>,
    /// Download tasks whose checkpoint becomes the side-by-side view's second model when it
    /// arrives, instead of being loaded.
    second_downloads: HashSet<TaskId>,
    /// Presentation mode (F11): full screen, larger, only the tabs and the view shown; the zoom
    /// to go back to.
    presentation: Option<f32>,
    first_run: first_run::FirstRun,
}

/// Starts the desktop app (blocks until the window closes).
pub fn run() -> eframe::Result {
    startup::window(|cc| {
        let options = AppOptions {
            settings_file: state::settings_file(),
            ..AppOptions::default()
        };
        let mut app = App::new(&cc.egui_ctx, cc.storage, options);
        if let Some(render_state) = &cc.wgpu_render_state {
            app.use_gpu_overlay(render_state);
        }
        Box::new(app)
    })
}

impl App {
    pub fn new(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        options: AppOptions,
    ) -> App {
        let settings = Settings::load(options.settings_file.as_deref(), storage);
        let tasks = Tasks::new(ctx.clone());
        let checkpoint_dir = options
            .checkpoint_dir
            .clone()
            .or_else(crate::model::download::checkpoint_dir);
        let mut app = App {
            ctx: ctx.clone(),
            worker: Worker::spawn(tasks.sender()),
            tasks,
            gallery: Gallery::default(),
            notifications: Notifications::default(),
            model: None,
            backend: None,
            views: views::all(),
            downloads: Downloads::new(checkpoint_dir),
            sd_hub: SdHub::from_env(),
            exports: Exports::default(),
            dialog: Dialog::default(),
            default_weights: options.default_weights.clone(),
            help_open: false,
            about_open: false,
            files_hovered: false,
            frame: FrameTimer::default(),
            settings_file: options.settings_file.clone(),
            settings_written: None,
            requests: Vec::new(),
            opening: None,
            second_downloads: HashSet::new(),
            presentation: None,
            first_run: first_run::FirstRun::default(),
            settings,
        };
        match startup::first_checkpoint(&options, &app.settings) {
            Some(path) => app.open_checkpoint(path),
            None => app.load_default_model(),
        }
        let sources = startup::first_images(&options, &app.settings);
        if !sources.is_empty() {
            app.add_sources(sources);
        }
        app
    }

    /// The window draws with wgpu: the views install their GPU renderers.
    pub fn use_gpu_overlay(&mut self, render_state: &eframe::egui_wgpu::RenderState) {
        for view in self.views.iter_mut() {
            view.use_wgpu(render_state);
        }
    }

    /// What views read of the app (tests ask views for their keys with it).
    pub fn shared(&self) -> Shared<'_> {
        Shared {
            model: self.model.as_ref(),
            gallery: &self.gallery,
            settings: &self.settings,
        }
    }

    fn shared_and_views(&mut self) -> (Shared<'_>, &mut Views) {
        let shared = Shared {
            model: self.model.as_ref(),
            gallery: &self.gallery,
            settings: &self.settings,
        };
        (shared, &mut self.views)
    }

    /// The views and what they may use this call.
    fn views_and_context(&mut self) -> (&mut Views, ViewContext<'_>) {
        let cx = ViewContext {
            settings: &mut self.settings,
            model: self.model.as_ref(),
            gallery: &self.gallery,
            tasks: &mut self.tasks,
            worker: &self.worker,
            notifications: &mut self.notifications,
            requests: &mut self.requests,
            checkpoint_dir: self.downloads.dir.as_deref(),
            sd_hub: &mut self.sd_hub,
        };
        (&mut self.views, cx)
    }

    /// Runs `f` on the view of type `T` (built-in views are always there).
    fn with_view<T: View>(&mut self, f: impl FnOnce(&mut T, &mut ViewContext<'_>)) {
        let (views, mut cx) = self.views_and_context();
        if let Some(view) = views.get_mut::<T>() {
            f(view, &mut cx);
        }
    }

    // ----- actions -----

    pub fn add_paths(&mut self, paths: Vec<PathBuf>) {
        self.add_sources(paths.into_iter().map(Source::Path).collect());
    }

    fn add_sources(&mut self, sources: Vec<Source>) {
        let task = self
            .tasks
            .start(gallery::LoadImages, "Loading images", Some(0.0));
        gallery::spawn_loader(sources, self.gallery.pixels.clone(), task);
    }

    pub fn open_checkpoint(&mut self, path: PathBuf) {
        self.worker.load(&mut self.tasks, ModelRequest::File(path));
    }

    pub fn load_default_model(&mut self) {
        let request = ModelRequest::Default(self.default_weights.clone());
        self.worker.load(&mut self.tasks, request);
    }

    /// Downloads a checkpoint on its own thread, then shows it as the side-by-side view's second
    /// model (the loaded model stays).
    pub fn download_second_model(&mut self, request: DownloadRequest) {
        let id = request.id.clone();
        self.download_checkpoint(request);
        if let Some(active) = self.downloads.active.get(&id) {
            self.second_downloads.insert(active.task);
        }
    }

    /// Downloads a checkpoint on its own thread, then loads it.
    pub fn download_checkpoint(&mut self, request: DownloadRequest) {
        if self.downloads.active.contains_key(&request.id) {
            return;
        }
        let label = format!("Downloading {}", request.title);
        let task = self
            .tasks
            .start(DownloadTask(request.id.clone()), label, Some(0.0));
        self.downloads.started(&request.id, task.task);
        downloads::spawn_download(request, task);
    }

    /// Downloads an official checkpoint into the checkpoint folder, then loads it.
    fn download_official(&mut self, checkpoint: &OfficialCheckpoint) {
        match &self.downloads.dir {
            Some(dir) => {
                let request = DownloadRequest::official(checkpoint, dir, None);
                self.download_checkpoint(request);
            }
            None => self.notifications.info(format!(
                "No folder to download {} into: set {}",
                checkpoint.title,
                crate::model::download::CACHE_ENV
            )),
        }
    }

    /// Opens the download manager window.
    pub fn open_downloads(&mut self) {
        self.downloads.open = true;
    }

    /// Stops one task; a cancelled view is not recomputed until asked.
    fn cancel_task(&mut self, task: TaskId) {
        if let Some(key) = self.tasks.cancel(task) {
            self.task_dropped(task, key.as_ref());
        }
    }

    /// A task failed or was cancelled: whoever started it hears of it.
    fn task_dropped(&mut self, task: TaskId, key: &dyn std::any::Any) {
        if key.is::<DownloadTask>() {
            self.downloads.ended(task, None);
        }
        if let Some(SdDownloadTask(entry)) = key.downcast_ref() {
            self.sd_hub.dropped(entry.id);
        }
        for view in self.views.iter_mut() {
            view.task_dropped(key);
        }
    }

    /// Cancels everything under way; cancelled views are not recomputed until asked.
    pub fn cancel(&mut self) {
        for task in self.tasks.ids() {
            self.cancel_task(task);
        }
        self.notifications.info("Cancelled");
    }

    // ----- what came back -----

    /// Handles everything the worker, loaders, exports and dialogs sent.
    pub fn poll(&mut self, ctx: &egui::Context) {
        let started = Instant::now();
        while let Some(event) = self.tasks.try_recv() {
            match event {
                Event::Backend(description) => self.backend = Some(description),
                Event::Progress {
                    task,
                    label,
                    fraction,
                } => {
                    self.downloads.progress(task, &label, fraction);
                    self.tasks.progress(task, label, fraction);
                }
                Event::Finished { task } => {
                    self.tasks.finished(task);
                    self.downloads.ended(task, None);
                }
                Event::Failed { task, error } => self.task_failed(task, &error),
                Event::Note(text) => self.notifications.info(text),
                Event::Error(error) => self.notifications.error(&error),
                Event::Output(output) => self.take_output(output),
            }
            // A backlog (thousands of loaded images after a stall) is taken over several frames.
            if started.elapsed() > POLL_BUDGET {
                ctx.request_repaint();
                break;
            }
        }
        for result in self.exports.finished(&mut self.tasks) {
            match result {
                Ok(files) => self.notifications.info(export::saved_message(&files)),
                Err(e) => self.notifications.error(&e),
            }
        }
        self.take_picked();
        let (views, mut cx) = self.views_and_context();
        for view in views.iter_mut() {
            view.poll(ctx, &mut cx);
        }
    }

    /// A task reported an error (it may go on, e.g. the loader with the next image): whoever
    /// started it hears of it, and the message is shown.
    fn task_failed(&mut self, task: TaskId, error: &AppError) {
        if let Some(key) = self.tasks.key(task) {
            if key.is::<DownloadTask>() {
                self.downloads.ended(task, Some(Err(error.to_string())));
            }
            if let Some(SdDownloadTask(entry)) = key.downcast_ref() {
                self.sd_hub.dropped(entry.id);
            }
            for view in self.views.iter_mut() {
                view.task_dropped(key);
            }
            // A checkpoint that fails to load on start-up: fall back to the default.
            if key.is::<ModelLoad>() && self.model.is_none() {
                self.tasks.finished(task);
                self.load_default_model();
            }
        }
        self.notifications.error(error);
    }

    /// A result goes to whoever owns its type: the app, the gallery, the downloads or a view.
    fn take_output(&mut self, output: Output) {
        let output = match output.downcast::<ModelInfo>() {
            Ok(info) => return self.model_loaded(*info),
            Err(other) => other,
        };
        let output = match output.downcast::<DecodedImage>() {
            Ok(image) => {
                // Skip duplicates of files already in the gallery.
                let path = &image.path;
                if image.bundled || !self.gallery.contains_path(path) {
                    let opened = self.opening.as_ref().is_some_and(|(p, _)| p == path);
                    let id = self.gallery.add(&self.ctx, *image);
                    if opened && let Some((_, tab)) = self.opening.take() {
                        self.gallery.select(id);
                        self.settings.tab = tab;
                    }
                }
                return;
            }
            Err(other) => other,
        };
        let output = match output.downcast::<Downloaded>() {
            Ok(done) => return self.downloaded(*done),
            Err(other) => other,
        };
        let mut output = match output.downcast::<SdDownloaded>() {
            Ok(done) => {
                self.sd_hub.finished(done.entry, &done.snapshot);
                self.notifications.info(format!(
                    "Downloaded {} ({}) into {}",
                    done.entry.title,
                    done.entry.repo_id,
                    done.snapshot.display()
                ));
                return;
            }
            Err(other) => other,
        };
        for view in self.views.iter_mut() {
            match view.take_output(output) {
                Ok(()) => return,
                Err(other) => output = other,
            }
        }
    }

    fn model_loaded(&mut self, info: ModelInfo) {
        self.settings.checkpoint = match &info.source {
            ModelSource::File(p) => Some(p.clone()),
            _ => None,
        };
        for view in self.views.iter_mut() {
            view.model_loaded(&info, &mut self.settings);
        }
        self.model = Some(info);
    }

    fn downloaded(&mut self, done: Downloaded) {
        let Downloaded {
            task,
            title,
            verified,
            result,
        } = done;
        let second = self.second_downloads.remove(&task);
        self.downloads
            .ended(task, Some(Ok((result.sha256.clone(), verified))));
        self.notifications.info(format!(
            "Downloaded {title} to {} (SHA-256 {}{})",
            result.path.display(),
            result.sha256,
            if verified { ", verified" } else { "" }
        ));
        if second {
            self.settings.compare.second = Some(result.path);
        } else {
            self.open_checkpoint(result.path);
        }
    }

    // ----- dialogs and exports -----

    /// Opens a native file dialog on its own thread; its answer is taken by [`Self::poll`].
    fn open_dialog(&mut self, pick: Pick, purpose: Purpose) {
        if let Err(e) = self.dialog.open(&self.ctx, pick, purpose) {
            self.notifications.error(&e);
        }
    }

    fn take_picked(&mut self) {
        let Some((purpose, picked)) = self.dialog.poll() else {
            return;
        };
        let paths = match picked {
            Ok(paths) => paths,
            Err(e) => return self.notifications.error(&e),
        };
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match purpose {
            Purpose::Images => self.add_paths(paths),
            Purpose::Checkpoint => self.open_checkpoint(first),
            Purpose::Export(tab, id) => self.export_to(&tab, id, first),
        }
    }

    /// Writes the export `id` of the view `tab` to `path`, off the UI thread.
    fn export_to(&mut self, tab: &ViewTab, id: &str, path: PathBuf) {
        let (shared, views) = self.shared_and_views();
        let job = views
            .iter()
            .find(|v| v.id() == *tab)
            .and_then(|v| v.export(id, path, shared));
        if let Some(job) = job
            && let Err(e) = self.exports.start(&self.ctx, &mut self.tasks, job)
        {
            self.notifications.error(&e);
        }
    }

    /// Each view's id, title and exports, in tab order.
    fn view_exports(&self) -> Vec<(ViewTab, &'static str, Vec<view::ExportItem>)> {
        let shared = self.shared();
        self.views
            .iter()
            .map(|v| (v.id(), v.title(), v.exports(shared)))
            .collect()
    }

    // ----- input -----

    fn apply_input(&mut self, input: Input) {
        if input.open_images {
            self.open_dialog(images_pick(), Purpose::Images);
        }
        if input.export {
            self.export_shown();
        }
        self.settings.debug_overlay ^= input.toggle_debug;
        if input.toggle_presentation {
            self.toggle_presentation();
        }
        if let Some(tab) = input.tab.and_then(|i| self.views.id_at(i)) {
            self.settings.tab = tab;
        }
        if input.select != 0 {
            self.gallery.step_selection(input.select);
        }
        self.help_open ^= input.toggle_help;
        let shown = self.settings.tab.clone();
        let (views, mut cx) = self.views_and_context();
        if let Some(view) = views.by_id(&shown) {
            if input.block != 0 {
                view.step_block(input.block, &mut cx);
            }
            if input.cls {
                view.escape();
            }
        }
        if input.remove {
            self.gallery.remove_selected();
        }
        self.files_hovered = input.files_hovered;
        if !input.added.is_empty() {
            self.add_sources(input.added);
        }
    }

    /// Enters or leaves presentation mode: full screen and zoomed, the menu, status bar, panels and
    /// gallery hidden (the keys still work).
    fn toggle_presentation(&mut self) {
        let zoom = match self.presentation.take() {
            Some(before) => before,
            None => {
                let before = self.ctx.zoom_factor();
                self.presentation = Some(before);
                before * PRESENTATION_ZOOM
            }
        };
        self.ctx.set_zoom_factor(zoom);
        let fullscreen = self.presentation.is_some();
        self.ctx
            .send_viewport_cmd(egui::ViewportCommand::Fullscreen(fullscreen));
    }

    /// Ctrl+E: the first export of the view shown, when it has something to export.
    fn export_shown(&mut self) {
        let shown = self.settings.tab.clone();
        let item = self
            .view_exports()
            .into_iter()
            .find(|(id, _, _)| *id == shown)
            .and_then(|(_, _, items)| items.into_iter().next())
            .filter(|item| item.available);
        if let Some(item) = item {
            self.open_dialog(item.pick, Purpose::Export(shown, item.id));
        }
    }

    fn apply_menu(&mut self, action: MenuAction) {
        match action {
            MenuAction::OpenImages => self.open_dialog(images_pick(), Purpose::Images),
            MenuAction::OpenFolder => {
                let pick = Pick::Folder {
                    title: "Open a folder of images".into(),
                };
                self.open_dialog(pick, Purpose::Images);
            }
            MenuAction::Export(tab, item) => {
                self.open_dialog(item.pick, Purpose::Export(tab, item.id));
            }
            MenuAction::OpenCheckpoint => {
                let pick = Pick::File {
                    title: "Open a checkpoint".into(),
                    filter: ("Checkpoints", &["pth", "pt", "safetensors"]),
                };
                self.open_dialog(pick, Purpose::Checkpoint);
            }
            MenuAction::Downloads => self.downloads.open = true,
            MenuAction::DefaultModel => self.load_default_model(),
            MenuAction::Help => self.help_open = true,
            MenuAction::About => self.about_open = true,
        }
    }

    fn apply_download(&mut self, action: DownloadAction) {
        match action {
            DownloadAction::Start(request) => self.download_checkpoint(request),
            DownloadAction::Load(path) => self.open_checkpoint(path),
            DownloadAction::Cancel(id) => {
                if let Some(task) = self.downloads.active.get(&id).map(|a| a.task) {
                    self.cancel_task(task);
                }
            }
        }
    }

    // ----- the frame -----

    /// The whole interface; `eframe::App::ui` calls it, and so do the tests.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        self.apply_input(Input::read(&ctx));
        self.panels(ui);
        // Start the next computation only after this frame's input changed the settings; only
        // the tab shown asks for work.
        let shown = self.settings.tab.clone();
        let (views, mut cx) = self.views_and_context();
        if let Some(view) = views.by_id(&shown) {
            view.request(&mut cx);
        }
        self.windows(&ctx);
        self.apply_requests();
        if !self.tasks.is_empty() {
            // Poll the channel even if no event arrives to wake us (e.g. a slow decoder).
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        self.frame.record(started);
    }

    /// Menu and status bar on top, the gallery strip at the bottom, the controls on the left,
    /// the model on the right and the view shown in the middle.
    fn panels(&mut self, ui: &mut egui::Ui) {
        if self.presentation.is_some() {
            egui::CentralPanel::default().show(ui, |ui| {
                self.tab_bar(ui);
                self.view_shown(ui, |v, ui, cx| v.central(ui, cx));
            });
            return;
        }
        egui::Panel::top("menu").show(ui, |ui| {
            let shown = self.settings.tab.clone();
            let content = MenuContent {
                views: self.view_exports(),
                shown: &shown,
            };
            if let Some(action) = menu::menu_bar(ui, &mut self.settings, content) {
                self.apply_menu(action);
            }
        });
        egui::Panel::top("status").show(ui, |ui| {
            if status_bar::status_bar(ui, self.model.as_ref(), &self.tasks) {
                self.cancel();
            }
        });
        if let Some(checkpoint) = self.first_run.offer(self.model.as_ref(), &self.downloads) {
            let mut action = None;
            egui::Panel::top("first-run").show(ui, |ui| {
                let untrained = self.model.as_ref().is_some_and(|m| m.is_untrained());
                action = first_run::bar(ui, checkpoint, &self.downloads, untrained);
            });
            match action {
                Some(FirstRunAction::Download) => self.download_official(checkpoint),
                Some(dismiss) => self.first_run.apply(dismiss),
                None => {}
            }
        }
        egui::Panel::bottom("gallery")
            .resizable(false)
            .exact_size(128.0)
            .show(ui, |ui| {
                ui.add_space(4.0);
                let action = self.gallery.ui(ui);
                self.apply_gallery(action);
                ui.add_space(4.0);
            });
        egui::Panel::left("controls")
            .default_size(250.0)
            .size_range(200.0..=400.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .show(ui, |ui| self.view_shown(ui, |v, ui, cx| v.controls(ui, cx)));
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
            self.view_shown(ui, |v, ui, cx| v.central(ui, cx));
        });
    }

    /// Calls `draw` (controls or central area) of the view shown.
    fn view_shown(
        &mut self,
        ui: &mut egui::Ui,
        draw: fn(&mut dyn View, &mut egui::Ui, &mut ViewContext<'_>),
    ) {
        let shown = self.settings.tab.clone();
        let (views, mut cx) = self.views_and_context();
        if let Some(view) = views.by_id(&shown) {
            draw(view.as_mut(), ui, &mut cx);
        }
    }

    fn apply_requests(&mut self) {
        for request in std::mem::take(&mut self.requests) {
            match request {
                AppRequest::Export { tab, id } => {
                    let item = self
                        .view_exports()
                        .into_iter()
                        .filter(|(t, _, _)| *t == tab)
                        .flat_map(|(_, _, items)| items)
                        .find(|item| item.id == id && item.available);
                    if let Some(item) = item {
                        self.open_dialog(item.pick, Purpose::Export(tab, item.id));
                    }
                }
                AppRequest::DownloadSecond(id) => {
                    let entry = crate::model::download::official(id);
                    if let (Some(entry), Some(dir)) = (entry, self.downloads.dir.clone()) {
                        self.download_second_model(DownloadRequest::official(entry, &dir, None));
                    }
                }
                AppRequest::DownloadSd { id, owner } => {
                    if let Some(entry) = crate::model::sd::sd_catalog_entry(id)
                        && let Err(e) = self.sd_hub.start(entry, owner, &mut self.tasks)
                    {
                        self.notifications.error(&e);
                    }
                }
                AppRequest::CancelSdDownload(id) => {
                    if let Some(task) = sd_download::downloading(&self.tasks, id) {
                        self.cancel_task(task);
                    }
                }
                AppRequest::OpenImage { path, tab } => {
                    let present = self.gallery.entries.iter().find(|e| e.path == path);
                    if let Some(id) = present.map(|e| e.id) {
                        self.gallery.select(id);
                        self.settings.tab = tab;
                    } else {
                        self.opening = Some((path.clone(), tab));
                        self.add_paths(vec![path]);
                    }
                }
            }
        }
    }

    fn apply_gallery(&mut self, action: Option<GalleryAction>) {
        match action {
            Some(GalleryAction::Select(id)) => self.gallery.select(id),
            Some(GalleryAction::MoveLeft) => self.gallery.move_selected(-1),
            Some(GalleryAction::MoveRight) => self.gallery.move_selected(1),
            Some(GalleryAction::Remove) => {
                self.gallery.remove_selected();
            }
            Some(GalleryAction::Add) => self.open_dialog(images_pick(), Purpose::Images),
            None => {}
        }
    }

    /// The row of view tabs above the central view (wrapped onto more rows in a narrow window).
    fn tab_bar(&mut self, ui: &mut egui::Ui) {
        let tabs: Vec<(ViewTab, &'static str)> =
            self.views.iter().map(|v| (v.id(), v.title())).collect();
        ui.horizontal_wrapped(|ui| {
            for (i, (tab, title)) in tabs.into_iter().enumerate() {
                let response = ui.selectable_value(&mut self.settings.tab, tab, title);
                if i < 10 {
                    response.on_hover_text(format!("Key {}", (i + 1) % 10));
                }
            }
        });
        ui.separator();
    }

    /// The windows over the panels: downloads, help, about, messages and overlays.
    fn windows(&mut self, ctx: &egui::Context) {
        if let Some(action) = self.downloads.window(ctx) {
            self.apply_download(action);
        }
        help::help_window(ctx, &mut self.help_open);
        help::about_window(ctx, &mut self.about_open);
        self.notifications.show(ctx);
        if self.files_hovered {
            input::drop_overlay(ctx);
        }
        if self.settings.debug_overlay {
            let cached = self.views.iter().map(|v| v.cached()).sum();
            self.frame.overlay(ctx, cached, self.tasks.len());
        }
    }
}

/// The dialog that opens images.
fn images_pick() -> Pick {
    Pick::Files {
        title: "Open images".into(),
        filter: ("Images", &crate::image_files::IMAGE_EXTENSIONS),
    }
}

impl App {
    /// Saves the settings (with the images open now) to the settings file, if they changed.
    pub fn save_settings(&mut self) {
        self.settings.image_paths = self.gallery.file_paths();
        let Some(file) = self.settings_file.clone() else {
            return;
        };
        let current = serde_json::to_string(&self.settings).ok();
        if current.is_some() && current == self.settings_written {
            return;
        }
        match self.settings.save(&file) {
            Ok(()) => self.settings_written = current,
            Err(e) => self.notifications.error(&AppError::Export {
                path: file,
                detail: format!("settings not saved: {e}"),
            }),
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, _storage: &mut dyn eframe::Storage) {
        self.save_settings();
    }
}
