//! The correspondence jobs run by the worker: one image's matching descriptors (prepared once so
//! that a point query on the UI thread is a single mat-vec per target), and best-buddy pairs
//! between two images.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::{BestBuddies, BuddySide, ImageDescriptors, find_best_buddies};
use crate::analysis::features::{FeatureMap, default_saliency_heads, resize_nearest, saliency};
use crate::analysis::sd_features::{Placement, saliency_input};
use crate::analysis::similarity::Score;
use crate::app::notifications::AppError;
use crate::app::state::{InputSize, SdChoice};
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{FeatureKey, ImageInput, ModelJob, WorkerState};
use crate::model::{Facet, PreparedImage};

/// Everything an image's matching descriptors depend on besides the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CorrSpec {
    pub layer: usize,
    pub facet: Facet,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    pub log_bin: bool,
    pub input_size: InputSize,
    /// Which loaded model.
    pub generation: u64,
}

impl CorrSpec {
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BuddiesKey {
    pub source: ImageId,
    pub target: ImageId,
    pub spec: CorrSpec,
    pub num_pairs: usize,
    /// Saliency threshold in thousandths.
    pub threshold_milli: u16,
    pub of: BuddiesOf,
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

/// Which descriptors best buddies are found with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BuddiesOf {
    /// The model's, under the key's spec.
    Model,
    /// Stable Diffusion's or SD+DINO's: those of this set.
    Sd(SdSetKey),
}

impl BuddiesKey {
    pub fn threshold(&self) -> f32 {
        self.threshold_milli as f32 / 1000.0
    }
}

/// One image's descriptors, sent back by the worker.
pub struct DescriptorsOutput {
    pub spec: CorrSpec,
    pub image: Arc<CorrImage>,
}

/// The key of a descriptors task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DescriptorsKey {
    pub image: ImageId,
    pub spec: CorrSpec,
}

/// Descriptors of one image (features from the worker's cache).
pub struct DescriptorsJob {
    pub spec: CorrSpec,
    pub input: ImageInput,
}

impl ModelJob for DescriptorsJob {
    fn generation(&self) -> u64 {
        self.spec.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let DescriptorsJob { spec, input } = *self;
        task.progress(format!("Descriptors of {}", input.name));
        let start = Instant::now();
        state.check_layer(spec.layer, "correspondence")?;
        let (prepared, features) = state.features(spec.feature_key(input.id), &input)?;
        let pixels = PixelMap::new(features.grid, &prepared);
        let descriptors = ImageDescriptors::new(&features, pixels, Score::Cosine);
        let image = CorrImage {
            id: input.id,
            name: input.name,
            prepared,
            features,
            descriptors,
            elapsed: start.elapsed(),
        };
        Ok(Some(Box::new(DescriptorsOutput {
            spec,
            image: Arc::new(image),
        })))
    }
}

/// Best-buddy pairs, sent back by the worker.
pub struct BuddiesOutput {
    pub key: BuddiesKey,
    pub result: Arc<BestBuddies>,
}

pub struct BuddiesJob {
    pub key: BuddiesKey,
    pub source: ImageInput,
    pub target: ImageInput,
    /// The source's and target's descriptors under [`BuddiesOf::Sd`].
    pub described: Option<[Arc<CorrImage>; 2]>,
}

impl ModelJob for BuddiesJob {
    fn generation(&self) -> u64 {
        self.key.spec.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let BuddiesJob {
            key,
            source,
            target,
            described,
        } = *self;
        let inputs = [&source, &target];
        let result = match (&key.of, &described) {
            (BuddiesOf::Sd(set), Some(described)) => {
                let placement = Placement::of(set.choice.preset);
                placed_best_buddies(state, &key, inputs, described, placement, task)?
            }
            _ => best_buddies(state, &key, inputs, task)?,
        };
        Ok(result.map(|result| {
            Box::new(BuddiesOutput {
                key,
                result: Arc::new(result),
            }) as Output
        }))
    }
}

/// Best-buddy pairs between two images: their descriptors and saliency, mutual nearest
/// neighbours, the saliency filter and the diverse selection (the library's `find_best_buddies`).
/// `Ok(None)` when cancelled.
fn best_buddies(
    state: &mut WorkerState,
    key: &BuddiesKey,
    images: [&ImageInput; 2],
    task: &TaskContext,
) -> Result<Option<BestBuddies>, AppError> {
    state.check_layer(key.spec.layer, "correspondence")?;
    let mut sides = Vec::new();
    for (i, input) in images.into_iter().enumerate() {
        if task.is_cancelled() {
            return Ok(None);
        }
        task.report(
            format!("Descriptors and saliency of {}", input.name),
            Some(i as f32 / 3.0),
        );
        let (prepared, features) = state.features(key.spec.feature_key(input.id), input)?;
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
    if task.is_cancelled() {
        return Ok(None);
    }
    task.report("Best buddies".into(), Some(2.0 / 3.0));
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

/// Best-buddy pairs between two images' SD or SD+DINO descriptors (as `dinoscope correspond
/// --features sd|fused` finds them): the ViT's saliency of each image placed the same way at
/// [`SD_SALIENCY_SIDE`](crate::analysis::sd_features::SD_SALIENCY_SIDE), resized to the
/// descriptors' grid. `Ok(None)` when cancelled.
fn placed_best_buddies(
    state: &mut WorkerState,
    key: &BuddiesKey,
    inputs: [&ImageInput; 2],
    described: &[Arc<CorrImage>; 2],
    placement: Placement,
    task: &TaskContext,
) -> Result<Option<BestBuddies>, AppError> {
    let Some(vit) = state.vit() else {
        return Ok(None);
    };
    let heads = default_saliency_heads(vit);
    let mut saliencies = Vec::with_capacity(2);
    for (i, (input, image)) in inputs.into_iter().zip(described).enumerate() {
        if task.is_cancelled() {
            return Ok(None);
        }
        task.report(format!("Saliency of {}", input.name), Some(i as f32 / 3.0));
        let rgb = input.rgb()?;
        let prepared =
            saliency_input(&rgb, placement, vit.config().patch_size).map_err(|source| {
                AppError::Prepare {
                    path: input.name.clone(),
                    source,
                }
            })?;
        let (values, grid) =
            saliency(vit, &prepared, None, &heads).map_err(|source| AppError::Features {
                what: input.name.clone(),
                source,
            })?;
        let cells = image.features.grid;
        saliencies.push(resize_nearest(
            &values,
            (grid.rows, grid.cols),
            (cells.rows, cells.cols),
        ));
    }
    task.report("Best buddies".into(), Some(2.0 / 3.0));
    let side = |i: usize| BuddySide {
        features: &described[i].features,
        saliency: &saliencies[i],
        pixels: described[i].descriptors.pixels,
    };
    Ok(Some(find_best_buddies(
        side(0),
        side(1),
        key.threshold(),
        key.num_pairs,
        Score::Cosine,
    )))
}
