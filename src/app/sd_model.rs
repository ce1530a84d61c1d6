//! The Stable Diffusion model a view computes features with: the choice (kept with the view's
//! settings), the picker (SD models in the Hugging Face cache, downloads of the catalogue's into
//! it, or a folder), and what the worker reads of the model before any run (its configs, the
//! device's speed) for the cost estimate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;
use poll_promise::Promise;

use super::dialogs::{Dialog, Pick};
use super::notifications::{AppError, Notifications, file_label};
use super::sd_download::{SdDownloadTask, SdHub, download_size, downloading};
use super::state::{SdChoice, SdSettings, Settings, ViewTab, preset_name};
use super::tasks::{Output, TaskContext, Tasks, spawn_promise, take_ready};
use super::view::{AppRequest, ViewContext};
use super::worker::{ModelJob, WorkerState};
use crate::analysis::sd_features::settings::MAX_SIZE;
use crate::analysis::sd_features::{SdCost, SdFeatureSettings, SdPreset, estimate, matmul_gflops};
use crate::model::sd::{
    SD_CATALOG, SdCatalogEntry, SdFolder, UnetConfig, VaeConfig, find_in_hub_cache,
};

/// What the worker read of an SD folder: enough to estimate a run before it starts.
#[derive(Clone, Debug)]
pub struct SdModelInfo {
    pub folder: PathBuf,
    pub version: String,
    pub unet: UnetConfig,
    pub vae: VaeConfig,
    /// The worker device's measured matrix-product speed.
    pub gflops: f64,
}

impl SdModelInfo {
    /// One image's cost under `choice`.
    pub fn cost(&self, choice: &SdChoice) -> SdCost {
        estimate(&self.unet, &self.vae, &choice.settings())
    }

    /// The estimate shown before a run of `images` images.
    pub fn estimate_text(&self, choice: &SdChoice, images: usize) -> String {
        let cost = self.cost(choice);
        let seconds = cost.seconds(self.gflops) * images as f64;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "Estimate: {} on this device, {} ({}, {} VAE and {} each)",
            duration_text(seconds),
            bytes_text(cost.peak_bytes()),
            plural(images, "image", "images"),
            cost.vae_passes,
            plural(cost.unet_passes, "UNet pass", "UNet passes"),
        )
    }
}

fn duration_text(seconds: f64) -> String {
    if seconds < 1.0 {
        "under 1 s".into()
    } else if seconds < 120.0 {
        format!("about {seconds:.0} s")
    } else {
        format!("about {:.0} min", seconds / 60.0)
    }
}

fn bytes_text(bytes: f64) -> String {
    if bytes < 1e8 {
        format!("{:.0} MB", bytes / 1e6)
    } else {
        format!("{:.1} GB", bytes / 1e9)
    }
}

/// The key of the task reading an SD folder for the view `owner`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SdInfoKey {
    pub owner: ViewTab,
    pub folder: PathBuf,
}

/// The result of [`SdInfoJob`], sent back by the worker.
pub struct SdInfoOutput {
    pub key: SdInfoKey,
    pub info: Arc<SdModelInfo>,
}

/// Opens an SD folder and reads its configs; measures the device once.
pub struct SdInfoJob {
    pub key: SdInfoKey,
    pub generation: u64,
}

/// The device's speed, measured on the worker the first time an estimate needs it.
#[derive(Default)]
struct DeviceSpeed(Option<f64>);

impl ModelJob for SdInfoJob {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let folder = &self.key.folder;
        task.progress(format!("Reading the SD model {}", file_label(folder)));
        let info = read_info(folder)?;
        let gflops = match state.stash::<DeviceSpeed>().0 {
            Some(g) => g,
            None => {
                task.progress("Measuring this device's speed".into());
                let g = matmul_gflops(state.device());
                state.stash::<DeviceSpeed>().0 = Some(g);
                g
            }
        };
        Ok(Some(Box::new(SdInfoOutput {
            key: self.key,
            info: Arc::new(SdModelInfo { gflops, ..info }),
        })))
    }
}

fn read_info(dir: &Path) -> Result<SdModelInfo, AppError> {
    let error = |e: &dyn std::fmt::Display| {
        AppError::compute(format!("opening the SD model {}", dir.display()), e)
    };
    let folder = SdFolder::open(dir).map_err(|e| error(&e))?;
    let unet = UnetConfig::read(&folder.unet.config).map_err(|e| error(&e))?;
    let vae = VaeConfig::read(&folder.vae.config).map_err(|e| error(&e))?;
    Ok(SdModelInfo {
        folder: dir.to_path_buf(),
        version: folder.version.description().to_string(),
        unet,
        vae,
        gflops: 0.0,
    })
}

/// An SD model found in the Hugging Face cache.
#[derive(Clone, Debug)]
pub struct CachedSd {
    pub id: String,
    pub folder: PathBuf,
}

type Listing = Result<Vec<CachedSd>, AppError>;

/// What the SD model picker uses of the app besides the view's SD settings.
pub struct PickerContext<'a> {
    pub hub: &'a mut SdHub,
    pub tasks: &'a Tasks,
    pub notifications: &'a mut Notifications,
    pub requests: &'a mut Vec<AppRequest>,
}

impl<'a> PickerContext<'a> {
    /// The settings, and what an SD model picker uses besides them (a view passes its own
    /// [`SdSettings`] with it).
    pub fn split(cx: &'a mut ViewContext<'_>) -> (&'a mut Settings, PickerContext<'a>) {
        let picker = PickerContext {
            hub: cx.sd_hub,
            tasks: cx.tasks,
            notifications: cx.notifications,
            requests: cx.requests,
        };
        (cx.settings, picker)
    }
}

/// The SD model picker of the view `owner`: the models of the Hugging Face cache (listed off the
/// UI thread, again whenever the cache changes), a download entry for each catalogue model not
/// there, and "Choose folder...".
pub struct SdPicker {
    owner: ViewTab,
    listing: Option<Promise<Listing>>,
    /// The cache generation ([`SdHub::generation`]) last listed.
    listed: Option<u64>,
    found: Option<Vec<CachedSd>>,
    dialog: Dialog<()>,
}

impl SdPicker {
    pub fn new(owner: ViewTab) -> Self {
        SdPicker {
            owner,
            listing: None,
            listed: None,
            found: None,
            dialog: Dialog::default(),
        }
    }

    /// Lists the cache on first use and after it changed; takes the listing, a downloaded model
    /// (it becomes the view's) and a picked folder when ready.
    pub fn poll(&mut self, ctx: &egui::Context, sd: &mut SdSettings, cx: PickerContext<'_>) {
        let generation = cx.hub.generation();
        if self.listed != Some(generation) {
            self.listed = Some(generation);
            let cache = cx.hub.cache().map(Path::to_path_buf);
            let list = move || list_cached(cache.as_deref());
            match spawn_promise("dinoscope-sd-list", "listing SD models", ctx, list) {
                Ok(p) => self.listing = Some(p),
                Err(e) => {
                    self.found = Some(Vec::new());
                    cx.notifications.error(&e);
                }
            }
        }
        match take_ready(&mut self.listing) {
            Some(Ok(found)) => self.found = Some(found),
            Some(Err(e)) => {
                self.found = Some(Vec::new());
                cx.notifications.error(&e);
            }
            None => {}
        }
        if let Some(snapshot) = cx.hub.take_chosen(&self.owner) {
            sd.folder = Some(snapshot);
        }
        match self.dialog.poll() {
            Some(((), Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    sd.folder = Some(path);
                }
            }
            Some(((), Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }

    /// The model combo box (with the downloads), the downloads under way, the preset and the
    /// input size.
    pub fn ui(&mut self, ui: &mut egui::Ui, sd: &mut SdSettings, cx: PickerContext<'_>) {
        let current = sd
            .folder
            .as_ref()
            .map_or("(choose a model)".to_string(), |f| self.name_of(f));
        let mut choose_folder = false;
        egui::ComboBox::from_label("SD model")
            .selected_text(current)
            .show_ui(ui, |ui| {
                match &self.found {
                    None => {
                        ui.label("Looking in the Hugging Face cache...");
                    }
                    Some(found) if found.is_empty() => {
                        ui.label("No SD model in the Hugging Face cache");
                    }
                    Some(found) => {
                        for model in found {
                            let chosen = sd.folder.as_ref() == Some(&model.folder);
                            if ui.selectable_label(chosen, &model.id).clicked() {
                                sd.folder = Some(model.folder.clone());
                            }
                        }
                    }
                }
                self.download_entries(ui, cx.hub, cx.tasks, cx.requests);
                choose_folder = ui.button("Choose folder...").clicked();
            });
        if choose_folder {
            let pick = Pick::Folder {
                title: "A Stable Diffusion diffusers folder (unet/, vae/, text_encoder/)".into(),
            };
            if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                cx.notifications.error(&e);
            }
        }
        downloads_under_way(ui, cx.tasks, cx.requests);
        ui.horizontal(|ui| {
            ui.label("Recipe:");
            for preset in [SdPreset::SdDino, SdPreset::Dift] {
                if ui.radio(sd.preset == preset, preset_name(preset)).clicked() {
                    sd.preset = preset;
                    sd.size = None;
                }
            }
        });
        let default = SdFeatureSettings::preset(sd.preset).size;
        let mut size = sd.size.unwrap_or(default);
        ui.add(
            egui::Slider::new(&mut size, 64..=MAX_SIZE)
                .step_by(64.0)
                .text("SD input (px)"),
        )
        .on_hover_text(format!(
            "Side of the square Stable Diffusion sees ({} default: {default})",
            preset_name(sd.preset)
        ));
        sd.size = (size != default).then_some(size);
    }

    /// "Download <title> (about N GB)" for each catalogue model the cache does not hold (once it
    /// has been listed).
    fn download_entries(
        &self,
        ui: &mut egui::Ui,
        hub: &SdHub,
        tasks: &Tasks,
        requests: &mut Vec<AppRequest>,
    ) {
        let Some(found) = &self.found else {
            return;
        };
        let missing: Vec<&'static SdCatalogEntry> = SD_CATALOG
            .iter()
            .filter(|e| !found.iter().any(|m| m.id.eq_ignore_ascii_case(e.repo_id)))
            .collect();
        if missing.is_empty() {
            return;
        }
        ui.separator();
        for entry in missing {
            let (text, enabled) = if downloading(tasks, entry.id).is_some() {
                (format!("Downloading {}...", entry.title), false)
            } else if hub.stopping(entry.id, tasks) {
                // No event comes when the thread ends: look again shortly.
                ui.ctx().request_repaint_after(Duration::from_millis(100));
                (
                    format!("Stopping the download of {}...", entry.title),
                    false,
                )
            } else {
                let size = download_size(entry);
                (format!("Download {} ({size})", entry.title), true)
            };
            let hover = match hub.cache() {
                Some(cache) => format!(
                    "{} ({}) into {}; resumes where an earlier attempt stopped",
                    entry.repo_id,
                    entry.note,
                    cache.display()
                ),
                None => "No Hugging Face cache folder: set HF_HUB_CACHE, HF_HOME or HOME".into(),
            };
            if ui
                .add_enabled(enabled && hub.cache().is_some(), egui::Button::new(text))
                .on_hover_text(&hover)
                .on_disabled_hover_text(&hover)
                .clicked()
            {
                requests.push(AppRequest::DownloadSd {
                    id: entry.id,
                    owner: self.owner.clone(),
                });
            }
        }
    }

    fn name_of(&self, folder: &Path) -> String {
        self.found
            .iter()
            .flatten()
            .find(|m| m.folder == folder)
            .map_or_else(|| file_label(folder), |m| m.id.clone())
    }
}

/// Each SD download under way: what it is doing, its progress and Cancel.
fn downloads_under_way(ui: &mut egui::Ui, tasks: &Tasks, requests: &mut Vec<AppRequest>) {
    for (task, SdDownloadTask(entry)) in tasks.running::<SdDownloadTask>() {
        let Some(task) = tasks.get(task) else {
            continue;
        };
        ui.label(egui::RichText::new(&task.label).weak());
        ui.horizontal(|ui| {
            match task.fraction {
                Some(f) => ui.add(
                    egui::ProgressBar::new(f)
                        .desired_width(140.0)
                        .show_percentage(),
                ),
                None => ui.spinner(),
            };
            if ui
                .button("Cancel download")
                .on_hover_text("Stop it; what has arrived is kept, and the next try resumes")
                .clicked()
            {
                requests.push(AppRequest::CancelSdDownload(entry.id));
            }
        });
    }
}

fn list_cached(cache: Option<&Path>) -> Listing {
    let Some(cache) = cache else {
        return Ok(Vec::new());
    };
    Ok(find_in_hub_cache(cache)
        .models
        .into_iter()
        .filter(|m| m.current)
        .map(|m| CachedSd {
            id: m.id,
            folder: m.folder.root,
        })
        .collect())
}
