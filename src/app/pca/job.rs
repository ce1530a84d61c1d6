//! The PCA job run by the worker: DINO features of each image (cached per image), then the
//! library's PCA colouring, rendered at the model image's resolution so the UI only uploads
//! textures. Stable Diffusion features are coloured by [`super::sd_job`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::analysis::coords::PixelMap;
use crate::analysis::pca_rgb::{ForegroundSplit, PcaView, pca_colors_split, render_patch_colors};
use crate::app::notifications::AppError;
use crate::app::state::{InputSize, SdChoice};
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{FeatureKey, ImageInput, ModelJob, WorkerState};
use crate::model::{Facet, Grid};

/// Everything a PCA result depends on; results are cached under it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PcaKey {
    /// The images, in gallery order.
    pub images: Vec<ImageId>,
    /// The block of the DINO features (fused with SD's under SD+DINO).
    pub layer: usize,
    pub features: PcaFeatures,
    pub joint: bool,
    /// How the foreground is split off (`None`: every patch coloured).
    pub foreground: Option<Foreground>,
    /// Which loaded model.
    pub generation: u64,
}

/// Which features are coloured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PcaFeatures {
    /// The ViT's own.
    Dino {
        facet: Facet,
        /// Stride in pixels (resolved against the model's patch size).
        stride: usize,
        input_size: InputSize,
    },
    /// Stable Diffusion's, co-PCA'd over the images, fused with the block's output tokens when
    /// `fused` (Junyi42/sd-dino's PCA figure).
    Sd { choice: SdChoice, fused: bool },
}

/// The foreground rule of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Foreground {
    /// Scaled first component above this many thousandths.
    Milli(u16),
    /// A positive first-component score (the DINOv2 paper).
    PositiveScore,
}

impl PcaKey {
    pub fn foreground_split(&self) -> Option<ForegroundSplit> {
        self.foreground.map(|f| match f {
            Foreground::Milli(m) => ForegroundSplit::Scaled(m as f32 / 1000.0),
            Foreground::PositiveScore => ForegroundSplit::PositiveScore,
        })
    }

    /// The DINO features of one image (`None` for SD features).
    pub fn feature_key(&self, image: ImageId) -> Option<FeatureKey> {
        match self.features {
            PcaFeatures::Dino {
                facet,
                stride,
                input_size,
            } => Some(FeatureKey {
                image,
                layer: self.layer,
                facet,
                stride,
                log_bin: false,
                input_size,
            }),
            PcaFeatures::Sd { .. } => None,
        }
    }
}

/// One image's colouring.
#[derive(Debug)]
pub struct PcaImage {
    pub id: ImageId,
    pub name: String,
    /// The image shown: the pixels the model saw (DINO), or the original (SD).
    pub picture: Arc<RgbImage>,
    /// How the image was scaled to fit the model, if it had to be.
    pub note: Option<String>,
    pub grid: Grid,
    /// From the picture's pixels to the patch grid.
    pub pixels: PixelMap,
    /// Projections, colours, foreground and explained variance, as the library returns them.
    pub view: PcaView,
    /// The colours painted over the picture.
    pub colored: RgbImage,
}

#[derive(Debug)]
pub struct PcaResult {
    pub images: Vec<PcaImage>,
    pub elapsed: Duration,
}

/// What the worker sends back.
pub struct PcaOutput {
    pub key: PcaKey,
    pub result: Arc<PcaResult>,
}

pub struct PcaJob {
    pub key: PcaKey,
    pub inputs: Vec<ImageInput>,
}

impl ModelJob for PcaJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let PcaJob { key, inputs } = *self;
        let result = run(state, &key, inputs, task)?;
        Ok(result.map(|result| {
            Box::new(PcaOutput {
                key,
                result: Arc::new(result),
            }) as Output
        }))
    }
}

/// Computes the colouring; `Ok(None)` when cancelled.
fn run(
    state: &mut WorkerState,
    key: &PcaKey,
    inputs: Vec<ImageInput>,
    task: &TaskContext,
) -> Result<Option<PcaResult>, AppError> {
    let start = Instant::now();
    state.check_layer(key.layer, "PCA")?;
    let n = inputs.len();
    let mut computed = Vec::with_capacity(n);
    for (i, input) in inputs.iter().enumerate() {
        if task.is_cancelled() || state.generation() != key.generation {
            return Ok(None);
        }
        task.report(
            format!("Features of {} ({}/{n})", input.name, i + 1),
            Some(i as f32 / (n as f32 + 1.0)),
        );
        let Some(feature_key) = key.feature_key(input.id) else {
            return Err(AppError::Compute {
                what: "PCA".into(),
                detail: "SD features are coloured by their own job".into(),
            });
        };
        let (prepared, map) = state.features(feature_key, input)?;
        computed.push((prepared, map));
    }
    if task.is_cancelled() {
        return Ok(None);
    }
    let patches: usize = computed.iter().map(|(_, m)| m.len()).sum();
    task.report(
        format!("PCA of {patches} patches"),
        Some(n as f32 / (n as f32 + 1.0)),
    );
    let maps: Vec<_> = computed.iter().map(|(_, m)| m.as_ref().clone()).collect();
    let views = pca_colors_split(&maps, key.joint, key.foreground_split());
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
            let pixels = PixelMap::identity(map.grid);
            let colored =
                render_patch_colors(&view.colors, &pixels, prepared.width(), prepared.height());
            PcaImage {
                id: input.id,
                name: input.name,
                picture: Arc::new(prepared.rgb.clone()),
                note: prepared.note.clone(),
                grid: map.grid,
                pixels,
                view,
                colored,
            }
        })
        .collect();
    Ok(Some(PcaResult {
        images,
        elapsed: start.elapsed(),
    }))
}
