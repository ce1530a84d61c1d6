//! How the app starts: its options, the window, the GPU shared with burn, and what it opens
//! first (the last session's checkpoint and images, the samples).

use eframe::egui;
use std::path::PathBuf;

use super::gallery::{self, Source};
use super::state::Settings;

/// Where the trained default model is looked for.
pub const DEFAULT_WEIGHTS: &str = "weights/default.safetensors";

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
    /// The settings file read at start and written on save; `None` keeps settings in memory only
    /// (tests). The app uses [`settings_file`](super::state::settings_file).
    pub settings_file: Option<PathBuf>,
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
            settings_file: None,
        }
    }
}

/// The checkpoint to open first: the last session's, when it still exists.
pub fn first_checkpoint(options: &AppOptions, settings: &Settings) -> Option<PathBuf> {
    settings
        .checkpoint
        .clone()
        .filter(|p| options.restore_session && p.is_file())
}

/// The images to add first: the samples, then the last session's files that still exist.
pub fn first_images(options: &AppOptions, settings: &Settings) -> Vec<Source> {
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
            settings
                .image_paths
                .iter()
                .filter(|p| p.is_file())
                .cloned()
                .map(Source::Path),
        );
    }
    sources
}

/// Opens the window (blocks until it closes); `build` makes the app once the window exists.
pub fn window(
    build: impl FnOnce(&eframe::CreationContext<'_>) -> Box<dyn eframe::App> + 'static,
) -> eframe::Result {
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
    eframe::run_native("dinoscope", options, Box::new(move |cc| Ok(build(cc))))
}
