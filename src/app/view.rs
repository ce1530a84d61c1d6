//! What every view of the central area implements, and what the app lends it each frame. A view
//! is one folder under `app/` (its state, controls, drawing, jobs and exports); the app knows
//! views only through [`View`], so a new view is that folder plus one line in `views::all`.

use std::any::Any;
use std::path::{Path, PathBuf};

use eframe::egui;

use super::dialogs::Pick;
use super::gallery::{Gallery, ImageEntry};
use super::notifications::{AppError, Notifications};
use super::sd_download::SdHub;
use super::state::{Settings, ViewTab};
use super::tasks::{Output, Tasks};
use super::worker::{ImageInput, ModelInfo, Worker};

/// What views read of the app.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub model: Option<&'a ModelInfo>,
    pub gallery: &'a Gallery,
    pub settings: &'a Settings,
}

impl Shared<'_> {
    /// Blocks of the model (1 before any is loaded).
    pub fn depth(&self) -> usize {
        self.model.map_or(1, |m| m.config.depth).max(1)
    }

    pub fn patch_size(&self) -> usize {
        self.model.map_or(16, |m| m.config.patch_size).max(1)
    }

    /// A block setting (`None`: `from_last` blocks before the last) within the model's blocks.
    pub fn block(&self, chosen: Option<usize>, from_last: usize) -> usize {
        let depth = self.depth();
        chosen
            .unwrap_or(depth.saturating_sub(1 + from_last))
            .min(depth - 1)
    }

    /// A gallery image as a job gets it.
    pub fn input(&self, id: super::tasks::ImageId) -> Option<ImageInput> {
        let e = self.gallery.entries.iter().find(|e| e.id == id)?;
        Some(self.input_of(e))
    }

    pub fn input_of(&self, e: &ImageEntry) -> ImageInput {
        ImageInput {
            id: e.id,
            name: e.name.clone(),
            path: e.path.clone(),
            size: e.size,
            pixels: self.gallery.pixels.clone(),
        }
    }
}

/// What a view asks of the app; the app does it after the view's call.
#[derive(Clone, Debug, PartialEq)]
pub enum AppRequest {
    /// Adds the image file to the gallery (unless it is there), selects it and shows the tab.
    OpenImage { path: PathBuf, tab: ViewTab },
    /// Opens the dialog of the view's export `id` (as its File menu item does), if available.
    Export { tab: ViewTab, id: &'static str },
    /// Downloads the official checkpoint `id` and makes it the side-by-side view's second model.
    DownloadSecond(&'static str),
    /// Downloads the SD catalogue model `id` into the Hugging Face cache; it then becomes the SD
    /// model of the view `owner`.
    DownloadSd { id: &'static str, owner: ViewTab },
    /// Stops the download of the SD catalogue model `id` (its parts are kept for a retry).
    CancelSdDownload(&'static str),
}

/// What the app lends a view for one call.
pub struct ViewContext<'a> {
    pub settings: &'a mut Settings,
    pub model: Option<&'a ModelInfo>,
    pub gallery: &'a Gallery,
    pub tasks: &'a mut Tasks,
    pub worker: &'a Worker,
    pub notifications: &'a mut Notifications,
    pub requests: &'a mut Vec<AppRequest>,
    /// Where official checkpoints are downloaded to (`None`: no folder could be found).
    pub checkpoint_dir: Option<&'a Path>,
    /// Where SD models are listed from and downloaded into.
    pub sd_hub: &'a mut SdHub,
}

impl ViewContext<'_> {
    pub fn shared(&self) -> Shared<'_> {
        Shared {
            model: self.model,
            gallery: self.gallery,
            settings: self.settings,
        }
    }

    /// Nothing to show yet and nothing under way: the view says how to add images.
    pub fn is_empty(&self) -> bool {
        self.gallery.entries.is_empty() && self.tasks.is_empty()
    }
}

/// One export a view offers in the File menu.
#[derive(Clone)]
pub struct ExportItem {
    /// Passed back to [`View::export`].
    pub id: &'static str,
    pub label: &'static str,
    pub hover: &'static str,
    /// There is something to export now.
    pub available: bool,
    /// The dialog that picks where to write.
    pub pick: Pick,
}

/// The files an export wrote, or the error naming the file.
pub type Written = Result<Vec<PathBuf>, AppError>;

/// Writing an export, on its own thread.
pub type ExportJob = Box<dyn FnOnce() -> Written + Send>;

/// A view of the central area, shown under its own tab.
pub trait View: Any {
    /// Stable id, stored in the settings as the tab shown.
    fn id(&self) -> ViewTab;

    /// The tab's label.
    fn title(&self) -> &'static str;

    /// The left panel while the view is shown.
    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>);

    /// The central area.
    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>);

    /// Asks for the work the settings now need (the tab shown only, after the frame's input).
    fn request(&mut self, _cx: &mut ViewContext<'_>) {}

    /// Every frame, shown or not: takes what the view's own threads sent (dialogs, training).
    fn poll(&mut self, _ctx: &egui::Context, _cx: &mut ViewContext<'_>) {}

    /// Takes a result of one of the view's tasks; hands back a result meant for someone else.
    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        Err(output)
    }

    /// A task failed or was cancelled (`key`: what it was, in the type of whoever started it):
    /// the view does not retry it until asked.
    fn task_dropped(&mut self, _key: &dyn Any) {}

    /// A new model is loaded: forget what was computed with the old one.
    fn model_loaded(&mut self, _info: &ModelInfo, _settings: &mut Settings) {}

    /// Escape or C while the view is shown: back to its default query.
    fn escape(&mut self) {}

    /// Up / Down: the view's block moves by `step`.
    fn step_block(&mut self, _step: isize, _cx: &mut ViewContext<'_>) {}

    /// The exports the File menu offers for this view (the first is "Export the view shown").
    fn exports(&self, _cx: Shared<'_>) -> Vec<ExportItem> {
        Vec::new()
    }

    /// The export `id` into `path` (picked in its dialog), to run on an export thread.
    fn export(&self, _id: &str, _path: PathBuf, _cx: Shared<'_>) -> Option<ExportJob> {
        None
    }

    /// The window draws with wgpu: the view may install its GPU renderers (paint callbacks).
    fn use_wgpu(&mut self, _render_state: &eframe::egui_wgpu::RenderState) {}

    /// Results kept in memory (debug overlay).
    fn cached(&self) -> usize {
        0
    }
}
