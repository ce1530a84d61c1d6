//! The correspondence view's Stable Diffusion descriptors, on the worker (the library's
//! `sd_features`, as `dinoscope correspond --features sd|fused` runs them): from each image's SD
//! output and placed DINO tokens ([`crate::app::sd_jobs`]), the shown set's descriptors: the SD
//! maps co-PCA'd over the source and its targets (kept by the worker), fused with the DINO tokens
//! under the weight. Moving the weight only re-fuses the cached maps.

use std::sync::Arc;
use std::time::Instant;

use super::job::{CorrImage, SdSetKey};
use crate::analysis::correspond::ImageDescriptors;
use crate::analysis::sd_features::{
    Placed, Placement, SD_DINO_PCA_DIMS, SdImageFeatures, fuse_set, sd_descriptors,
};
use crate::analysis::similarity::Score;
use crate::app::cache::BoundedCache;
use crate::app::notifications::AppError;
use crate::app::state::SdChoice;
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::Resize;
use crate::model::preprocess::prepare;

pub struct SdSetOutput {
    pub key: SdSetKey,
    pub images: Vec<Arc<CorrImage>>,
}

/// The co-PCA'd SD maps of image sets (source first) under a model and recipe.
type CoPcaSets = BoundedCache<(Vec<ImageId>, SdChoice), Arc<Vec<Placed>>>;

/// The co-PCA'd maps of the last sets, kept by the worker.
#[derive(Default)]
struct SdSetCache(Option<CoPcaSets>);

/// Co-PCA'd sets kept (each weight step re-fuses one of them).
const SETS_KEPT: usize = 8;

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
        let sets = state
            .stash::<SdSetCache>()
            .0
            .get_or_insert_with(|| BoundedCache::with_capacity(SETS_KEPT));
        let set_key = (key.images.clone(), key.choice.clone());
        let maps = match sets.get(&set_key) {
            Some(found) => found.clone(),
            None => {
                task.report("Co-PCA of the SD features".into(), Some(0.0));
                let maps = Arc::new(
                    sd_descriptors(&self.sd, SD_DINO_PCA_DIMS)
                        .map_err(|e| AppError::compute("co-PCA of the SD features", e))?,
                );
                sets.insert(set_key, maps.clone());
                maps
            }
        };
        if task.is_cancelled() {
            return Ok(None);
        }
        task.report("Fusing SD and DINO".into(), Some(0.5));
        let placed = if key.fused {
            fuse_set(&maps, &self.dino, key.weights())
                .map_err(|e| AppError::compute("fusing SD and DINO", e))?
        } else {
            maps.to_vec()
        };
        let placement = Placement::of(key.choice.preset);
        let images = placed
            .into_iter()
            .zip(&self.inputs)
            .map(|(placed, input)| corr_image(input, placed, placement, start).map(Arc::new))
            .collect::<Result<_, _>>()?;
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
