//! The Stable Diffusion model a view computes features with: the choice (kept with the view's
//! settings), the picker (SD models in the Hugging Face cache, or a folder), and what the worker
//! reads of the model before any run (its configs, the device's speed) for the cost estimate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui;
use poll_promise::Promise;

use super::dialogs::{Dialog, Pick};
use super::notifications::{AppError, Notifications, file_label};
use super::state::{SdChoice, SdSettings, ViewTab, preset_name};
use super::tasks::{Output, TaskContext, spawn_promise, take_ready};
use super::worker::{ModelJob, WorkerState};
use crate::analysis::sd_features::settings::MAX_SIZE;
use crate::analysis::sd_features::{SdCost, SdFeatureSettings, SdPreset, estimate, matmul_gflops};
use crate::model::download::hub::hub_cache_dir;
use crate::model::sd::{SdFolder, UnetConfig, VaeConfig, find_in_hub_cache};

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
    let error = |detail: String| AppError::Compute {
        what: format!("opening the SD model {}", dir.display()),
        detail,
    };
    let folder = SdFolder::open(dir).map_err(|e| error(e.to_string()))?;
    let unet = UnetConfig::read(&folder.unet.config).map_err(|e| error(e.to_string()))?;
    let vae = VaeConfig::read(&folder.vae.config).map_err(|e| error(e.to_string()))?;
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

/// The SD model picker: the models of the Hugging Face cache (listed once, off the UI thread)
/// and "Choose folder...".
#[derive(Default)]
pub struct SdPicker {
    listing: Option<Promise<Listing>>,
    found: Option<Vec<CachedSd>>,
    dialog: Dialog<()>,
}

impl SdPicker {
    /// Lists the cache on first use; takes the listing and a picked folder when ready.
    pub fn poll(&mut self, ctx: &egui::Context, sd: &mut SdSettings, notes: &mut Notifications) {
        if self.found.is_none() && self.listing.is_none() {
            match spawn_promise("dinoscope-sd-list", "listing SD models", ctx, list_cached) {
                Ok(p) => self.listing = Some(p),
                Err(e) => {
                    self.found = Some(Vec::new());
                    notes.error(&e);
                }
            }
        }
        match take_ready(&mut self.listing) {
            Some(Ok(found)) => self.found = Some(found),
            Some(Err(e)) => {
                self.found = Some(Vec::new());
                notes.error(&e);
            }
            None => {}
        }
        match self.dialog.poll() {
            Some(((), Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    sd.folder = Some(path);
                }
            }
            Some(((), Err(e))) => notes.error(&e),
            None => {}
        }
    }

    /// The model combo box, the preset and the input size.
    pub fn ui(&mut self, ui: &mut egui::Ui, sd: &mut SdSettings, notes: &mut Notifications) {
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
                choose_folder = ui.button("Choose folder...").clicked();
            });
        if choose_folder {
            let pick = Pick::Folder {
                title: "A Stable Diffusion diffusers folder (unet/, vae/, text_encoder/)".into(),
            };
            if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                notes.error(&e);
            }
        }
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

    fn name_of(&self, folder: &Path) -> String {
        self.found
            .iter()
            .flatten()
            .find(|m| m.folder == folder)
            .map_or_else(|| file_label(folder), |m| m.id.clone())
    }
}

fn list_cached() -> Listing {
    let Some(cache) = hub_cache_dir() else {
        return Ok(Vec::new());
    };
    Ok(find_in_hub_cache(&cache)
        .models
        .into_iter()
        .filter(|m| m.current)
        .map(|m| CachedSd {
            id: m.id,
            folder: m.folder.root,
        })
        .collect())
}
