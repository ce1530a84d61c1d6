//! Stable Diffusion features for the correspondence view, on the worker (the library's
//! `sd_features`, as `dinoscope correspond --features sd|fused` runs them): each image's SD output
//! (VAE and UNet passes, cancellable within a pass, cached in memory and on disk by the session),
//! each image's DINO tokens placed on the same square, and the shown set's descriptors: the SD
//! maps co-PCA'd over the source and its targets (kept by the worker), fused with the DINO tokens
//! under the weight. Moving the weight only re-fuses the cached maps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::job::CorrImage;
use crate::analysis::correspond::ImageDescriptors;
use crate::analysis::sd_features::{
    Placed, Placement, SD_DINO_DINO_SIZE, SD_DINO_PCA_DIMS, SdCaches, SdImageFeatures, SdPreset,
    SdSession, dino_placed, fuse_placed, sd_descriptors,
};
use crate::analysis::similarity::Score;
use crate::app::cache::BoundedCache;
use crate::app::notifications::AppError;
use crate::app::state::SdChoice;
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::preprocess::prepare;
use crate::model::{Resize, sd::SdFolder};

/// One image's SD output under a model and recipe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SdImageKey {
    pub image: ImageId,
    pub choice: SdChoice,
    /// The session's feature cache folder (`None`: memory only).
    pub cache: Option<PathBuf>,
}

/// One image's DINO tokens on the square SD's recipe places it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DinoPlacedKey {
    pub image: ImageId,
    pub preset: SdPreset,
    pub generation: u64,
}

/// The descriptors of a source and its targets (in this order) under SD or SD+DINO.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SdSetKey {
    pub images: Vec<ImageId>,
    pub choice: SdChoice,
    pub fused: bool,
    /// SD's weight in thousandths (DINO gets the rest); 0 without fusion.
    pub weight_milli: u16,
    pub generation: u64,
}

impl SdSetKey {
    /// (SD, DINO) weights after per-source normalisation.
    pub fn weights(&self) -> [f32; 2] {
        let w = f32::from(self.weight_milli.min(1000)) / 1000.0;
        [w, 1.0 - w]
    }
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

pub struct SdSetOutput {
    pub key: SdSetKey,
    pub images: Vec<Arc<CorrImage>>,
}

/// The co-PCA'd SD maps of image sets (source first) under a model and recipe.
type CoPcaSets = BoundedCache<(Vec<ImageId>, SdChoice), Arc<Vec<Placed>>>;

/// What the SD jobs keep on the worker: one session (its networks read once) and the co-PCA'd
/// maps of the last sets.
#[derive(Default)]
struct SdWorkerCache {
    session: Option<((SdChoice, Option<PathBuf>), SdSession)>,
    sets: Option<CoPcaSets>,
}

/// Co-PCA'd sets kept (each weight step re-fuses one of them).
const SETS_KEPT: usize = 8;

fn compute_error(what: String, e: impl std::fmt::Display) -> AppError {
    AppError::Compute {
        what,
        detail: e.to_string(),
    }
}

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
        let mut session = match state.stash::<SdWorkerCache>().session.take() {
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
        state.stash::<SdWorkerCache>().session = Some((wanted, session));
        if task.is_cancelled() {
            return Ok(None);
        }
        let features = result.map_err(|e| compute_error(format!("SD features of {name}"), e))?;
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
    let opened = SdFolder::open(folder).map_err(|e| compute_error(what(), e))?;
    let caches = key
        .cache
        .as_deref()
        .map_or_else(SdCaches::in_memory, SdCaches::on_disk);
    SdSession::new(opened, key.choice.settings(), caches, device)
        .map_err(|e| compute_error(what(), e))
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
        let Some(vit) = state.vit() else {
            return Ok(None);
        };
        let layer = vit.config().depth - 1;
        let placement = Placement::of(self.key.preset);
        let placed = dino_placed(vit, &rgb, placement, SD_DINO_DINO_SIZE, layer)
            .map_err(|e| compute_error(format!("DINO tokens of {name}"), e))?;
        Ok(Some(Box::new(DinoPlacedOutput {
            key: self.key,
            placed: Arc::new(placed),
        })))
    }
}

pub struct SdSetJob {
    pub key: SdSetKey,
    /// Per image of the key: its SD output, its DINO tokens (when fused) and its pixels.
    pub sd: Vec<Arc<SdImageFeatures>>,
    pub dino: Vec<Arc<Placed>>,
    pub inputs: Vec<ImageInput>,
}

impl ModelJob for SdSetJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let start = Instant::now();
        let key = self.key;
        let cache = state.stash::<SdWorkerCache>();
        let sets = cache
            .sets
            .get_or_insert_with(|| BoundedCache::with_capacity(SETS_KEPT));
        let set_key = (key.images.clone(), key.choice.clone());
        let maps = match sets.get(&set_key) {
            Some(found) => found.clone(),
            None => {
                task.report("Co-PCA of the SD features".into(), Some(0.0));
                let features: Vec<SdImageFeatures> =
                    self.sd.iter().map(|f| (**f).clone()).collect();
                let maps = Arc::new(
                    sd_descriptors(&features, SD_DINO_PCA_DIMS)
                        .map_err(|e| compute_error("co-PCA of the SD features".into(), e))?,
                );
                sets.insert(set_key, maps.clone());
                maps
            }
        };
        if task.is_cancelled() {
            return Ok(None);
        }
        task.report("Fusing SD and DINO".into(), Some(0.5));
        let placement = Placement::of(key.choice.preset);
        let mut images = Vec::with_capacity(maps.len());
        for (i, (sd, input)) in maps.iter().zip(&self.inputs).enumerate() {
            let placed = match self.dino.get(i).filter(|_| key.fused) {
                Some(dino) => fuse_placed(sd, dino, key.weights()).map_err(|e| {
                    compute_error(format!("fusing SD and DINO of {}", input.name), e)
                })?,
                None => sd.clone(),
            };
            images.push(Arc::new(corr_image(input, placed, placement, start)?));
        }
        Ok(Some(Box::new(SdSetOutput { key, images })))
    }
}

/// An image's descriptors as the view matches and draws them: the square the descriptors were
/// computed on as the picture, unit rows (every fused row has the same norm, so cosine ranks as
/// sd-dino's L2 distance does).
fn corr_image(
    input: &ImageInput,
    placed: Placed,
    placement: Placement,
    start: Instant,
) -> Result<CorrImage, AppError> {
    let rgb = input.rgb()?;
    let side = placed.map.image_size.0 as u32;
    let (canvas, _, _) = placement.canvas(&rgb, side);
    let prepared =
        prepare(&canvas, Resize::None, 1, usize::MAX).map_err(|source| AppError::Prepare {
            path: input.name.clone(),
            source,
        })?;
    let Placed { map, pixels } = placed;
    Ok(CorrImage {
        id: input.id,
        name: input.name.clone(),
        prepared: Arc::new(prepared),
        descriptors: ImageDescriptors::new(&map, pixels, Score::Cosine),
        features: Arc::new(map),
        elapsed: start.elapsed(),
    })
}
