//! The PCA job run by the worker: features of each image (cached per image), then the library's
//! PCA colouring, rendered at the model image's resolution so the UI only uploads textures.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::notifications::AppError;
use super::state::InputSize;
use super::worker::{CancelToken, FeatureKey, ImageId, WorkerState, facet_index};
use crate::analysis::coords::PixelMap;
use crate::analysis::pca_rgb::{PcaColoring, PcaView, pca_colors, render_patch_colors};
use crate::model::{Facet, Grid, PreparedImage};

/// Everything a PCA result depends on; results are cached under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcaKey {
    /// The images, in gallery order.
    pub images: Vec<ImageId>,
    pub layer: usize,
    pub facet: Facet,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    pub joint: bool,
    /// Foreground threshold in thousandths (`None`: every patch coloured).
    pub foreground_milli: Option<u16>,
    pub input_size: InputSize,
    /// Which loaded model.
    pub generation: u64,
}

impl Hash for PcaKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.images.hash(state);
        self.layer.hash(state);
        facet_index(self.facet).hash(state);
        self.stride.hash(state);
        self.joint.hash(state);
        self.foreground_milli.hash(state);
        self.input_size.hash(state);
        self.generation.hash(state);
    }
}

impl PcaKey {
    pub fn foreground_threshold(&self) -> Option<f32> {
        self.foreground_milli.map(|m| m as f32 / 1000.0)
    }

    pub fn feature_key(&self, image: ImageId) -> FeatureKey {
        FeatureKey {
            image,
            layer: self.layer,
            facet: facet_index(self.facet),
            stride: self.stride,
            log_bin: false,
            input_size: self.input_size,
        }
    }
}

/// One image to colour.
#[derive(Clone)]
pub struct PcaInput {
    pub id: ImageId,
    pub name: String,
    pub rgb: Arc<RgbImage>,
}

/// One image's colouring.
#[derive(Debug)]
pub struct PcaImage {
    pub id: ImageId,
    pub name: String,
    /// The pixels the model saw.
    pub prepared: Arc<PreparedImage>,
    pub grid: Grid,
    pub pixels: PixelMap,
    /// Projections, colours, foreground and explained variance, as the library returns them.
    pub view: PcaView,
    /// The colours painted over the model image (`render_patch_colors`).
    pub colored: RgbImage,
}

#[derive(Debug)]
pub struct PcaResult {
    pub images: Vec<PcaImage>,
    pub elapsed: Duration,
}

/// Computes the colouring; `Ok(None)` when cancelled.
pub(super) fn run(
    state: &mut WorkerState,
    key: &PcaKey,
    inputs: Vec<PcaInput>,
    token: &CancelToken,
    progress: &dyn Fn(String, Option<f32>),
) -> Result<Option<PcaResult>, AppError> {
    let start = Instant::now();
    if let Some(config) = state.config()
        && key.layer >= config.depth
    {
        return Err(AppError::Compute {
            what: "PCA".into(),
            detail: format!(
                "block {} does not exist: the model has {} blocks",
                key.layer, config.depth
            ),
        });
    }
    let n = inputs.len();
    let mut computed = Vec::with_capacity(n);
    for (i, input) in inputs.iter().enumerate() {
        if token.is_cancelled() || state.generation() != key.generation {
            return Ok(None);
        }
        progress(
            format!("Features of {} ({}/{n})", input.name, i + 1),
            Some(i as f32 / (n as f32 + 1.0)),
        );
        let (prepared, map) = state.features(key.feature_key(input.id), &input.rgb, &input.name)?;
        computed.push((prepared, map));
    }
    if token.is_cancelled() {
        return Ok(None);
    }
    let patches: usize = computed.iter().map(|(_, m)| m.len()).sum();
    progress(
        format!("PCA of {patches} patches"),
        Some(n as f32 / (n as f32 + 1.0)),
    );
    let maps: Vec<_> = computed.iter().map(|(_, m)| m.as_ref().clone()).collect();
    let views = pca_colors(
        &maps,
        PcaColoring {
            joint: key.joint,
            foreground_threshold: key.foreground_threshold(),
        },
    );
    if views.len() != inputs.len() {
        return Err(AppError::Compute {
            what: "PCA".into(),
            detail: format!("{} colourings for {} images", views.len(), inputs.len()),
        });
    }
    let images = inputs
        .into_iter()
        .zip(computed)
        .zip(views)
        .map(|((input, (prepared, map)), view)| {
            let pixels = PixelMap::new(map.grid, &prepared);
            let colored =
                render_patch_colors(&view.colors, &pixels, prepared.width(), prepared.height());
            PcaImage {
                id: input.id,
                name: input.name,
                grid: map.grid,
                pixels,
                view,
                colored,
                prepared,
            }
        })
        .collect();
    Ok(Some(PcaResult {
        images,
        elapsed: start.elapsed(),
    }))
}
