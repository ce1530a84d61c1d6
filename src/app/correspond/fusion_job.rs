//! Feature fusion for the correspondence view (sd-dino, `analysis::fusion`): the second source's
//! map of each image (a second checkpoint's last-block tokens, or an external map file) is computed
//! once and cached by the worker; a fusion job then only re-weights, normalises and concatenates
//! rows, so moving the weight slider runs no forward pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::job::{CorrImage, CorrSpec};
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::ImageDescriptors;
use crate::analysis::features::{DescriptorSpec, FeatureMap, extract};
use crate::analysis::fusion::{ExternalMap, FusionConfig, SecondSource, fuse_pair, load_external};
use crate::analysis::similarity::Score;
use crate::app::notifications::{AppError, file_label};
use crate::app::state::InputSize;
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::Facet;
use crate::model::preprocess::DEFAULT_MAX_PATCHES;
use crate::model::vit::Vit;

/// Where the second source of a fusion comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecondChoice {
    /// A second checkpoint: its last block's output tokens at stride = patch (sd-dino's choice).
    Checkpoint(PathBuf),
    /// A folder of external maps, `<image stem>.npy` or `<image stem>.safetensors` per image
    /// (`[C, h, w]` or `[1, C, h, w]`).
    Folder(PathBuf),
}

impl SecondChoice {
    pub fn label(&self) -> String {
        let (kind, path) = match self {
            SecondChoice::Checkpoint(p) => ("checkpoint", p),
            SecondChoice::Folder(p) => ("feature maps in", p),
        };
        format!("{kind} {}", file_label(path))
    }
}

/// A fused pair under a spec, a second source and a weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuseKey {
    pub source: ImageId,
    pub target: ImageId,
    pub spec: CorrSpec,
    pub second: SecondChoice,
    /// Weight of the second source in thousandths; the primary gets the rest.
    pub weight_milli: u16,
}

impl FuseKey {
    /// (primary, second) weights after per-source normalisation.
    pub fn weights(&self) -> [f32; 2] {
        let w = f32::from(self.weight_milli.min(1000)) / 1000.0;
        [1.0 - w, w]
    }
}

/// The second source's map of one image.
pub enum SecondMap {
    Model(FeatureMap),
    External(ExternalMap),
}

impl SecondMap {
    fn source(&self) -> SecondSource<'_> {
        match self {
            SecondMap::Model(m) => SecondSource::Model(m),
            SecondMap::External(e) => SecondSource::External(e),
        }
    }
}

/// The second-source maps, kept by the worker between fusion jobs (those of one second
/// checkpoint at a time: the worker keeps one second model).
#[derive(Default)]
struct SecondCache {
    checkpoint: Option<PathBuf>,
    maps: HashMap<(ImageId, SecondChoice, InputSize), Arc<SecondMap>>,
}

/// A fused pair, sent back by the worker.
pub struct FusedOutput {
    pub key: FuseKey,
    pub images: [Arc<CorrImage>; 2],
}

/// A source and a target's descriptors fused with a second source.
pub struct FuseJob {
    pub key: FuseKey,
    pub images: [Arc<CorrImage>; 2],
    pub inputs: [ImageInput; 2],
}

impl ModelJob for FuseJob {
    fn generation(&self) -> u64 {
        self.key.spec.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        task.progress(format!("Fusing with the {}", self.key.second.label()));
        let [a, b] = fuse(state, &self.key, &self.images, &self.inputs)?;
        Ok(Some(Box::new(FusedOutput {
            key: self.key,
            images: [Arc::new(a), Arc::new(b)],
        })))
    }
}

/// The fused descriptors of a source and a target (second-source maps from the cache).
fn fuse(
    state: &mut WorkerState,
    key: &FuseKey,
    images: &[Arc<CorrImage>; 2],
    inputs: &[ImageInput; 2],
) -> Result<[CorrImage; 2], AppError> {
    let start = Instant::now();
    let mut cache = std::mem::take(state.stash::<SecondCache>());
    let maps = inputs
        .each_ref()
        .map(|input| second_map(state, &mut cache, &key.second, key.spec.input_size, input));
    *state.stash::<SecondCache>() = cache;
    let [a, b] = maps;
    let (a, b) = (a?, b?);
    let config = FusionConfig {
        weights: key.weights(),
        co_pca: None,
    };
    let fused = fuse_pair(
        [&images[0].features, &images[1].features],
        [a.source(), b.source()],
        &config,
    )
    .map_err(|e| AppError::Compute {
        what: "feature fusion".into(),
        detail: e.to_string(),
    })?;
    let [fa, fb] = fused;
    let describe = |image: &CorrImage, features: FeatureMap| {
        let pixels = PixelMap::new(features.grid, &image.prepared);
        CorrImage {
            id: image.id,
            name: image.name.clone(),
            prepared: image.prepared.clone(),
            descriptors: ImageDescriptors::new(&features, pixels, Score::Cosine),
            features: Arc::new(features),
            elapsed: start.elapsed(),
        }
    };
    Ok([describe(&images[0], fa), describe(&images[1], fb)])
}

fn second_map(
    state: &mut WorkerState,
    cache: &mut SecondCache,
    choice: &SecondChoice,
    input_size: InputSize,
    input: &ImageInput,
) -> Result<Arc<SecondMap>, AppError> {
    let key = (input.id, choice.clone(), input_size);
    if let Some(found) = cache.maps.get(&key) {
        return Ok(found.clone());
    }
    let map = match choice {
        SecondChoice::Checkpoint(path) => {
            SecondMap::Model(second_model_map(state, cache, path, input_size, input)?)
        }
        SecondChoice::Folder(dir) => SecondMap::External(external_map(dir, &input.name)?),
    };
    let map = Arc::new(map);
    cache.maps.insert(key, map.clone());
    Ok(map)
}

fn second_model_map(
    state: &mut WorkerState,
    cache: &mut SecondCache,
    path: &Path,
    input_size: InputSize,
    input: &ImageInput,
) -> Result<FeatureMap, AppError> {
    if cache.checkpoint.as_deref() != Some(path) {
        cache.maps.clear();
        cache.checkpoint = Some(path.to_path_buf());
    }
    model_map(state.second_model(path)?, input_size, input)
}

fn model_map(vit: &Vit, input_size: InputSize, input: &ImageInput) -> Result<FeatureMap, AppError> {
    let prepared = input.prepare(input_size, vit.config().patch_size, DEFAULT_MAX_PATCHES)?;
    let spec = DescriptorSpec {
        layer: vit.config().depth - 1,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    extract(vit, &prepared, spec).map_err(|source| AppError::Features {
        what: format!("{} (second model)", input.name),
        source,
    })
}

/// `<dir>/<stem>.npy`, else `<dir>/<stem>.safetensors`.
fn external_map(dir: &Path, image_name: &str) -> Result<ExternalMap, AppError> {
    let stem = Path::new(image_name).file_stem().map_or_else(
        || image_name.to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let candidates = ["npy", "safetensors"].map(|ext| dir.join(format!("{stem}.{ext}")));
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(AppError::Compute {
            what: format!("feature fusion of {image_name}"),
            detail: format!(
                "no {} or {} in {}",
                candidates[0].display(),
                candidates[1].display(),
                dir.display()
            ),
        });
    };
    load_external(path, None).map_err(|e| AppError::Compute {
        what: "reading an external feature map".into(),
        detail: e.to_string(),
    })
}
