//! The correspondence jobs run by the worker: one image's matching descriptors (prepared once so
//! that a point query on the UI thread is a single mat-vec per target), and best-buddy pairs
//! between two images.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::notifications::AppError;
use super::pca_job::PcaInput;
use super::state::InputSize;
use super::worker::{CancelToken, FeatureKey, ImageId, WorkerState, facet_index, facet_of};
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::{BestBuddies, BuddySide, ImageDescriptors, find_best_buddies};
use crate::analysis::features::{FeatureMap, default_saliency_heads, saliency};
use crate::analysis::similarity::Score;
use crate::model::{Facet, PreparedImage};

/// Everything an image's matching descriptors depend on besides the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CorrSpec {
    pub layer: usize,
    /// [`Facet`] as its index.
    pub facet: u8,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    pub log_bin: bool,
    pub input_size: InputSize,
    /// Which loaded model.
    pub generation: u64,
}

impl CorrSpec {
    pub fn facet(&self) -> Facet {
        facet_of(self.facet)
    }

    pub fn with_facet(mut self, facet: Facet) -> Self {
        self.facet = facet_index(facet);
        self
    }

    pub fn feature_key(&self, image: ImageId) -> FeatureKey {
        FeatureKey {
            image,
            layer: self.layer,
            facet: self.facet,
            stride: self.stride,
            log_bin: self.log_bin,
            input_size: self.input_size,
        }
    }
}

/// One image ready for point queries.
#[derive(Debug)]
pub struct CorrImage {
    pub id: ImageId,
    pub name: String,
    /// The pixels the model saw.
    pub prepared: Arc<PreparedImage>,
    pub features: Arc<FeatureMap>,
    /// Unit rows (cosine) with the pixel geometry: what `query_point` takes.
    pub descriptors: ImageDescriptors,
    pub elapsed: Duration,
}

/// Best buddies between a source and a target under a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BuddiesKey {
    pub source: ImageId,
    pub target: ImageId,
    pub spec: CorrSpec,
    pub num_pairs: usize,
    /// Saliency threshold in thousandths.
    pub threshold_milli: u16,
}

impl BuddiesKey {
    pub fn threshold(&self) -> f32 {
        self.threshold_milli as f32 / 1000.0
    }
}

/// Descriptors of one image (features from the worker's cache).
pub(super) fn descriptors(
    state: &mut WorkerState,
    spec: CorrSpec,
    input: &PcaInput,
) -> Result<CorrImage, AppError> {
    let start = Instant::now();
    check_layer(state, spec.layer)?;
    let (prepared, features) =
        state.features(spec.feature_key(input.id), &input.rgb, &input.name)?;
    let pixels = PixelMap::new(features.grid, &prepared);
    let descriptors = ImageDescriptors::new(&features, pixels, Score::Cosine);
    Ok(CorrImage {
        id: input.id,
        name: input.name.clone(),
        prepared,
        features,
        descriptors,
        elapsed: start.elapsed(),
    })
}

fn check_layer(state: &WorkerState, layer: usize) -> Result<(), AppError> {
    match state.config() {
        Some(c) if layer >= c.depth => Err(AppError::Compute {
            what: "correspondence".into(),
            detail: format!(
                "block {layer} does not exist: the model has {} blocks",
                c.depth
            ),
        }),
        _ => Ok(()),
    }
}

/// Best-buddy pairs between two images: their descriptors and saliency, mutual nearest
/// neighbours, the saliency filter and the diverse selection (the library's `find_best_buddies`).
/// `Ok(None)` when cancelled.
pub(super) fn best_buddies(
    state: &mut WorkerState,
    key: BuddiesKey,
    source: &PcaInput,
    target: &PcaInput,
    token: &CancelToken,
    progress: &dyn Fn(String, Option<f32>),
) -> Result<Option<BestBuddies>, AppError> {
    check_layer(state, key.spec.layer)?;
    let mut sides = Vec::new();
    for (i, input) in [source, target].into_iter().enumerate() {
        if token.is_cancelled() {
            return Ok(None);
        }
        progress(
            format!("Descriptors and saliency of {}", input.name),
            Some(i as f32 / 3.0),
        );
        let (prepared, features) =
            state.features(key.spec.feature_key(input.id), &input.rgb, &input.name)?;
        let Some(vit) = state.vit() else {
            return Ok(None);
        };
        let (salient, grid) = saliency(
            vit,
            &prepared,
            Some(key.spec.stride),
            &default_saliency_heads(vit),
        )
        .map_err(|source| AppError::Features {
            what: input.name.clone(),
            source,
        })?;
        if grid != features.grid {
            return Err(AppError::Compute {
                what: format!("saliency of {}", input.name),
                detail: "its grid differs from the descriptors'".into(),
            });
        }
        let pixels = PixelMap::new(features.grid, &prepared);
        sides.push((features, salient, pixels));
    }
    if token.is_cancelled() {
        return Ok(None);
    }
    progress("Best buddies".into(), Some(2.0 / 3.0));
    fn side((features, saliency, pixels): &(Arc<FeatureMap>, Vec<f32>, PixelMap)) -> BuddySide<'_> {
        BuddySide {
            features,
            saliency,
            pixels: *pixels,
        }
    }
    Ok(Some(find_best_buddies(
        side(&sides[0]),
        side(&sides[1]),
        key.threshold(),
        key.num_pairs,
        Score::Cosine,
    )))
}
