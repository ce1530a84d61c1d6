//! Frame-by-frame analysis of a video or camera: one pass of the model per frame up to the chosen
//! block, then CLS attention of one head or of the head mean, the outline of the patches holding
//! a share of the attention mass (DINO's masks), or PCA colours under a basis fitted once and held
//! ([`held_pca`]); clicked points are followed by descriptor matching to the frame they were
//! clicked on ([`track`]). The same code serves the live view and the `video` command.

pub mod held_pca;
pub mod render;
pub mod track;

use std::time::{Duration, Instant};

use burn::tensor::activation::softmax;
use image::RgbImage;

use crate::analysis::attention::{AttentionMaps, mass_mask};
use crate::analysis::colormap::{Colormap, normalize_min_max};
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::ImageDescriptors;
use crate::analysis::features::{FeatureError, FeatureMap, check_spec};
use crate::analysis::similarity::Score;
use crate::model::host::{HostReadError, f32_values};
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, ImageLoadError, prepare};
use crate::model::{Facet, Grid, LayerOutputs, Resize, Vit};
use crate::video::Frame;
use held_pca::HeldPca;
use render::{TRACK_COLORS, blend_patches, draw_trail, outline_patches};
use track::Track;

/// Tracks followed at once (each keeps one frame's descriptors); a new click drops the oldest.
pub const MAX_TRACKS: usize = 6;

/// The outline's colour (DINO's masks are drawn in red too).
const OUTLINE_COLOR: [u8; 3] = [255, 40, 40];

/// What is drawn over each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveView {
    /// CLS attention of one head.
    Head(usize),
    /// CLS attention averaged over heads (the official `video_generation.py`'s picture).
    HeadMean,
    /// The patches holding `threshold` of the head-mean attention mass, outlined.
    Outline,
    /// Three principal components of the key descriptors as RGB.
    Pca,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveOptions {
    pub view: LiveView,
    /// Block analysed; `None`: the last.
    pub layer: Option<usize>,
    /// Frame size the model sees: the detail-for-speed choice.
    pub resize: Resize,
    /// Patch-embedding stride; `None`: the patch size.
    pub stride: Option<usize>,
    /// Share of attention mass the outline keeps.
    pub threshold: f32,
    pub colormap: Colormap,
    /// Opacity of the colours over the frame.
    pub opacity: f32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            view: LiveView::HeadMean,
            layer: None,
            resize: Resize::ShortSide(224),
            stride: None,
            threshold: 0.6,
            colormap: Colormap::Inferno,
            opacity: 0.6,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error("frame {index}: {source}")]
    Prepare { index: u64, source: ImageLoadError },
    #[error(transparent)]
    HostRead(#[from] HostReadError),
}

/// Where a track is on the frame just analysed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackPoint {
    /// Original-frame pixel-index coordinates.
    pub at: (f64, f64),
    /// Cosine of the match with the clicked point.
    pub score: f32,
}

/// One analysed frame.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub index: u64,
    /// What is shown: the frame as the model saw it (resized, cropped to the patch grid) with the
    /// view and the trails drawn on it.
    pub image: RgbImage,
    /// Original frame pixels to shown pixels, per axis.
    pub scale: (f64, f64),
    pub grid: Grid,
    pub heads: usize,
    /// The model's pass and reading its outputs back.
    pub model_time: Duration,
    /// Everything, from the decoded frame to the drawn picture.
    pub total_time: Duration,
    /// The frame the PCA colours were fitted on (PCA view).
    pub pca_fitted_on: Option<u64>,
    pub tracks: Vec<TrackPoint>,
}

impl LiveFrame {
    /// A point of the shown picture in original frame pixels (both pixel-index coordinates).
    pub fn to_original(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            (x + 0.5) / self.scale.0 - 0.5,
            (y + 0.5) / self.scale.1 - 0.5,
        )
    }
}

/// CLS attention over the patches of every head of the block whose outputs these are, from its
/// `qkv` projection (no second pass of the model): `softmax(q_cls k^T / sqrt(d))`.
pub fn cls_attention(outputs: &LayerOutputs) -> Result<AttentionMaps, HostReadError> {
    let q = outputs.per_head(Facet::Query);
    let [_, heads, tokens, head_dim] = q.dims();
    let k = outputs.per_head(Facet::Key);
    let scale = (head_dim as f64).powf(-0.5);
    let probs = softmax(
        q.narrow(2, 0, 1)
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(scale),
        3,
    );
    let prefix = outputs.prefix_tokens;
    let values = f32_values(
        probs
            .reshape([heads, tokens])
            .narrow(1, prefix, tokens - prefix),
    )?;
    Ok(AttentionMaps {
        heads,
        grid: outputs.grid,
        values,
    })
}

/// What a live analysis keeps between frames: the held PCA basis and the tracks.
#[derive(Clone, Debug, Default)]
pub struct LiveAnalyzer {
    pca: Option<HeldPca>,
    refit: bool,
    tracks: Vec<Track>,
    /// Clicked points (original pixels) whose tracks start on the next frame.
    pending: Vec<(f64, f64)>,
    /// The block the basis and tracks belong to.
    layer: Option<usize>,
}

impl LiveAnalyzer {
    /// The next frame refits the PCA colours.
    pub fn refit_pca(&mut self) {
        self.refit = true;
    }

    /// Follows `point` (original frame pixels) from the next frame analysed on.
    pub fn track(&mut self, point: (f64, f64)) {
        self.pending.push(point);
    }

    pub fn clear_tracks(&mut self) {
        self.tracks.clear();
        self.pending.clear();
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Analyses one frame and draws it.
    pub fn analyse(
        &mut self,
        vit: &Vit,
        frame: &Frame,
        options: &LiveOptions,
    ) -> Result<LiveFrame, LiveError> {
        let start = Instant::now();
        let config = vit.config();
        let layer = options.layer.unwrap_or(config.depth.saturating_sub(1));
        let stride = check_spec(vit, layer, options.stride)?;
        let patch = config.patch_size;
        // Overlapping patches multiply the tokens: the same token budget as without overlap.
        let budget = (DEFAULT_MAX_PATCHES * stride * stride / (patch * patch)).max(1);
        let prepared = prepare(&frame.image, options.resize, patch, budget).map_err(|source| {
            LiveError::Prepare {
                index: frame.index,
                source,
            }
        })?;
        if self.layer != Some(layer) {
            // Another block's descriptors live in another space.
            self.pca = None;
            self.tracks.clear();
            self.layer = Some(layer);
        }
        let outputs = vit.layer_outputs(prepared.to_tensor(&vit.device()), layer, stride);
        let grid = outputs.grid;
        let attention = match options.view {
            LiveView::Pca => None,
            _ => Some(cls_attention(&outputs)?),
        };
        let wants_features =
            options.view == LiveView::Pca || !self.tracks.is_empty() || !self.pending.is_empty();
        let features = if wants_features {
            let descriptors = outputs.descriptors(Facet::Key);
            let dim = descriptors.dims()[2];
            Some(FeatureMap {
                grid,
                dim,
                data: f32_values(descriptors)?,
                image_size: (prepared.width(), prepared.height()),
            })
        } else {
            None
        };
        let model_time = start.elapsed();

        let shown = &prepared.rgb;
        let heat = |values: &[f32]| {
            let colors: Vec<[u8; 3]> = normalize_min_max(values)
                .into_iter()
                .map(|t| options.colormap.color(t))
                .collect();
            blend_patches(shown, &colors, grid, options.opacity)
        };
        let mut image = match (&attention, &features) {
            (Some(maps), _) => match options.view {
                LiveView::Head(h) => heat(maps.head(h.min(maps.heads - 1))),
                LiveView::Outline => {
                    let mask = mass_mask(&maps.head_mean(), options.threshold);
                    outline_patches(shown, &mask, grid, OUTLINE_COLOR)
                }
                _ => heat(&maps.head_mean()),
            },
            (None, Some(map)) => {
                let stale = self.pca.as_ref().is_none_or(|p| p.dim != map.dim);
                if self.refit || stale {
                    self.pca = Some(HeldPca::fit(map, frame.index));
                    self.refit = false;
                }
                let colors = self.pca.as_ref().map(|p| p.colors(map)).unwrap_or_default();
                blend_patches(shown, &colors, grid, options.opacity)
            }
            (None, None) => shown.clone(),
        };

        let pixels = PixelMap::new(grid, &prepared);
        if let Some(map) = &features {
            let current = ImageDescriptors::new(map, pixels, Score::Cosine);
            for track in &mut self.tracks {
                track.follow(&current);
            }
            for point in self.pending.drain(..) {
                self.tracks.push(Track::start(current.clone(), point));
            }
            let excess = self.tracks.len().saturating_sub(MAX_TRACKS);
            self.tracks.drain(..excess);
        }
        let scale = pixels.scale;
        for (i, track) in self.tracks.iter().enumerate() {
            let points: Vec<(f64, f64)> = track
                .trail()
                .map(|point| pixels.to_model_index(point))
                .collect();
            draw_trail(&mut image, &points, TRACK_COLORS[i % TRACK_COLORS.len()]);
        }
        Ok(LiveFrame {
            index: frame.index,
            image,
            scale,
            grid,
            heads: config.heads,
            model_time,
            total_time: start.elapsed(),
            pca_fitted_on: self
                .pca
                .as_ref()
                .filter(|_| options.view == LiveView::Pca)
                .map(|p| p.fitted_on),
            tracks: self
                .tracks
                .iter()
                .map(|t| TrackPoint {
                    at: t.current(),
                    score: t.score,
                })
                .collect(),
        })
    }
}
