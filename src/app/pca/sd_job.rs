//! The PCA view's colouring of Stable Diffusion features, on the worker, as `dinoscope pca
//! --features sd|fused` computes it (Junyi42/sd-dino's PCA figure): the images' SD output co-PCA'd
//! over all of them, fused with the block's DINO tokens (each source L2-normalised, equal
//! weights) for SD+DINO, then the colour PCA painted on each original image.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use image::imageops::FilterType;

use super::job::{PcaFeatures, PcaImage, PcaKey, PcaOutput, PcaResult};
use crate::analysis::coords::PixelMap;
use crate::analysis::pca_rgb::{pca_colors_split, render_on_original};
use crate::analysis::sd_features::{
    Placed, SD_DINO_PCA_DIMS, SdImageFeatures, fuse_set, sd_descriptors,
};
use crate::app::notifications::AppError;
use crate::app::tasks::{Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};

/// Longest side of a picture shown: larger originals are scaled down (their colouring with them).
pub const PICTURE_MAX: u32 = 1024;

/// SD and DINO weights of the fusion: equal, as `dinoscope pca --features fused`.
const FUSION_WEIGHTS: [f32; 2] = [1.0, 1.0];

pub struct PcaSdJob {
    pub key: PcaKey,
    /// Per image of the key: its SD output, its DINO tokens (SD+DINO) and its pixels.
    pub sd: Vec<Arc<SdImageFeatures>>,
    pub dino: Vec<Arc<Placed>>,
    pub inputs: Vec<ImageInput>,
}

impl ModelJob for PcaSdJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        _state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let start = Instant::now();
        let PcaSdJob {
            key,
            sd,
            dino,
            inputs,
        } = *self;
        let fused = matches!(key.features, PcaFeatures::Sd { fused: true, .. });
        task.report("Co-PCA of the SD features".into(), Some(0.0));
        let mut placed = sd_descriptors(&sd, SD_DINO_PCA_DIMS)
            .map_err(|e| AppError::compute("co-PCA of the SD features", e))?;
        if fused {
            placed = fuse_set(&placed, &dino, FUSION_WEIGHTS)
                .map_err(|e| AppError::compute("fusing SD and DINO", e))?;
        }
        if task.is_cancelled() {
            return Ok(None);
        }
        let cells: usize = placed.iter().map(|p| p.map.len()).sum();
        task.report(format!("PCA of {cells} cells"), Some(0.5));
        let maps: Vec<_> = placed.iter().map(|p| p.map.clone()).collect();
        let views = pca_colors_split(&maps, key.joint, key.foreground_split());
        if views.len() != inputs.len() {
            return Err(AppError::compute(
                "PCA",
                format!("{} colourings for {} images", views.len(), inputs.len()),
            ));
        }
        let mut images = Vec::with_capacity(inputs.len());
        for ((input, placed), view) in inputs.into_iter().zip(placed).zip(views) {
            let rgb = input.rgb()?;
            let (picture, pixels) = shown(&rgb, &placed);
            let colored =
                render_on_original(&view.colors, &pixels, picture.width(), picture.height());
            images.push(PcaImage {
                id: input.id,
                name: input.name,
                picture: Arc::new(picture),
                note: None,
                grid: placed.map.grid,
                pixels,
                view,
                colored,
            });
        }
        let result = PcaResult {
            images,
            elapsed: start.elapsed(),
        };
        Ok(Some(Box::new(PcaOutput {
            key,
            result: Arc::new(result),
        })))
    }
}

/// The original as shown (at most [`PICTURE_MAX`] on its long side) and the map from its pixels
/// to the descriptors' grid.
fn shown(rgb: &RgbImage, placed: &Placed) -> (RgbImage, PixelMap) {
    let (w, h) = rgb.dimensions();
    let long = w.max(h).max(1);
    if long <= PICTURE_MAX {
        return (rgb.clone(), placed.pixels);
    }
    let pw = ((w as u64 * PICTURE_MAX as u64) / long as u64).max(1) as u32;
    let ph = ((h as u64 * PICTURE_MAX as u64) / long as u64).max(1) as u32;
    let picture = image::imageops::resize(rgb, pw, ph, FilterType::Triangle);
    let map = placed.pixels;
    let scale = (
        map.scale.0 * w as f64 / pw as f64,
        map.scale.1 * h as f64 / ph as f64,
    );
    (picture, PixelMap::placed(map.grid, scale, map.offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grid;

    #[test]
    fn a_scaled_down_picture_maps_to_the_same_cells_as_its_original() {
        let grid = Grid {
            rows: 60,
            cols: 60,
            patch: 16,
            stride: 16,
        };
        let rgb = RgbImage::new(3000, 2000);
        // A 3000 x 2000 original letterboxed on a 960 square: scale 0.32, offset 160 in y.
        let placed = Placed {
            map: crate::analysis::features::FeatureMap {
                grid,
                dim: 1,
                data: vec![0.0; 3600],
                image_size: (960, 960),
            },
            pixels: PixelMap::placed(grid, (0.32, 0.32), (0.0, 160.0)),
        };
        let (picture, map) = shown(&rgb, &placed);
        assert_eq!(picture.dimensions(), (1024, 682));
        for (x, y) in [
            (0.0, 0.0),
            (1500.0, 1000.0),
            (2999.0, 1999.0),
            (123.0, 1777.0),
        ] {
            let (px, py) = (x * 1024.0 / 3000.0, y * 682.0 / 2000.0);
            let (a, b) = (placed.pixels.to_model((x, y)), map.to_model((px, py)));
            assert!(
                (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                "{a:?} {b:?}"
            );
        }
    }
}
