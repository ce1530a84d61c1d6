//! The worker's side of Stable Diffusion features for the views that use them (correspondences,
//! PCA): each image's SD output (VAE and UNet passes, cancellable within a pass, cached in memory
//! and on disk by the session, as `dinoscope sd-features` computes it) and each image's DINO tokens
//! placed on the same square (SD+DINO). Every key names the view that asked, so a result goes back
//! to that view alone.

use std::path::PathBuf;
use std::sync::Arc;

use super::notifications::AppError;
use super::state::{SdChoice, ViewTab};
use super::tasks::{ImageId, Output, TaskContext};
use super::worker::{ImageInput, ModelJob, WorkerState};
use crate::analysis::sd_features::{
    Placed, Placement, SD_DINO_DINO_SIZE, SdCaches, SdImageFeatures, SdPreset, SdSession,
    dino_placed,
};
use crate::model::sd::SdFolder;

/// One image's SD output under a model and recipe, asked for by `owner`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SdImageKey {
    pub owner: ViewTab,
    pub image: ImageId,
    pub choice: SdChoice,
    /// The session's feature cache folder (`None`: memory only).
    pub cache: Option<PathBuf>,
}

/// One image's DINO tokens of `layer` on the square SD's recipe places it on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DinoPlacedKey {
    pub owner: ViewTab,
    pub image: ImageId,
    pub preset: SdPreset,
    pub layer: usize,
    pub generation: u64,
}

pub struct SdImageOutput {
    pub key: SdImageKey,
    pub features: Arc<SdImageFeatures>,
    /// The networks ran (it was in neither cache).
    pub computed: bool,
    /// Why the features could not be written to the disk cache, if they could not.
    pub cache_problem: Option<String>,
}

pub struct DinoPlacedOutput {
    pub key: DinoPlacedKey,
    pub placed: Arc<Placed>,
}

/// The worker's SD session, shared by every view: its networks are read once, and images it has
/// seen come from its caches.
#[derive(Default)]
struct SdWorkerSession(Option<((SdChoice, Option<PathBuf>), SdSession)>);

pub struct SdImageJob {
    pub key: SdImageKey,
    pub input: ImageInput,
    pub generation: u64,
}

impl ModelJob for SdImageJob {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let SdImageJob { key, input, .. } = *self;
        let name = input.name.clone();
        task.progress(format!("SD features of {name}: opening the model"));
        let rgb = input.rgb()?;
        let device = state.device().clone();
        let wanted = (key.choice.clone(), key.cache.clone());
        let mut session = match state.stash::<SdWorkerSession>().0.take() {
            Some((k, s)) if k == wanted => s,
            _ => open_session(&key, &device)?,
        };
        let cached = session.is_cached(&rgb);
        let mut progress = |done: f32, what: &str| {
            task.report(format!("SD features of {name}: {what}"), Some(done));
            !task.is_cancelled()
        };
        let result = session.features(&rgb, &mut progress);
        let cache_problem = session.cache_problem().map(str::to_string);
        state.stash::<SdWorkerSession>().0 = Some((wanted, session));
        if task.is_cancelled() {
            return Ok(None);
        }
        let features =
            result.map_err(|e| AppError::compute(format!("SD features of {name}"), e))?;
        Ok(Some(Box::new(SdImageOutput {
            key,
            features: Arc::new(features),
            computed: !cached,
            cache_problem,
        })))
    }
}

/// A session for the key's model, recipe and cache folder (the networks are read on first use).
fn open_session(key: &SdImageKey, device: &burn::tensor::Device) -> Result<SdSession, AppError> {
    let folder = &key.choice.folder;
    let what = || format!("opening the SD model {}", folder.display());
    let opened = SdFolder::open(folder).map_err(|e| AppError::compute(what(), e))?;
    let caches = key
        .cache
        .as_deref()
        .map_or_else(SdCaches::in_memory, SdCaches::on_disk);
    SdSession::new(opened, key.choice.settings(), caches, device)
        .map_err(|e| AppError::compute(what(), e))
}

pub struct DinoPlacedJob {
    pub key: DinoPlacedKey,
    pub input: ImageInput,
}

impl ModelJob for DinoPlacedJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let name = &self.input.name;
        task.progress(format!("DINO tokens of {name} placed as SD sees it"));
        let rgb = self.input.rgb()?;
        state.check_layer(self.key.layer, "SD+DINO")?;
        let Some(vit) = state.vit() else {
            return Ok(None);
        };
        let placement = Placement::of(self.key.preset);
        let placed = dino_placed(vit, &rgb, placement, SD_DINO_DINO_SIZE, self.key.layer)
            .map_err(|e| AppError::compute(format!("DINO tokens of {name}"), e))?;
        Ok(Some(Box::new(DinoPlacedOutput {
            key: self.key,
            placed: Arc::new(placed),
        })))
    }
}
