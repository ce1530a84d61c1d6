//! The reference's pixel-level post-processing of both analyses (ShirAmir/dino-vit-features):
//! GrabCut on each co-segmentation mask (`cosegmentation.py`, step 8 of §2) and a dense CRF on
//! each image's part costs (`part_cosegmentation.py`, step 5 of §3).

use image::{GrayImage, Luma};
use rayon::prelude::*;

use super::extract::{resize_nearest, torch_source};
use super::{Cosegmentation, PartCosegmentation};
use crate::analysis::refine::{CrfConfig, GrabCutConfig, RefineError, dense_crf, refine_mask};
use crate::model::PreparedImage;

/// Replaces each image's `mask` by its GrabCut refinement. An image where GrabCut fails keeps
/// its mask, as in the reference; its entry in the returned list says why (`None`: refined).
pub fn refine_masks(
    result: &mut Cosegmentation,
    images: &[PreparedImage],
    config: &GrabCutConfig,
) -> Vec<Option<RefineError>> {
    result
        .images
        .par_iter_mut()
        .zip(images)
        .map(|(coseg, image)| {
            let (width, height) = (image.rgb.width(), image.rgb.height());
            let mask: Vec<bool> = coseg.mask.pixels().map(|p| p.0[0] > 0).collect();
            let refined = refine_mask(
                image.rgb.as_raw(),
                width as usize,
                height as usize,
                &mask,
                config,
            );
            if refined.failure.is_none() {
                coseg.mask = GrayImage::from_fn(width, height, |x, y| {
                    Luma([if refined.mask[(y * width + x) as usize] {
                        255
                    } else {
                        0
                    }])
                });
            }
            refined.failure
        })
        .collect()
}

/// Replaces each image's `pixel_parts` by the CRF's labels: the patch costs upsampled to the
/// image (nearest, torch's rule), mean field, argmax; the background channel becomes `None`.
/// Images without costs (nothing was foreground) keep their labels.
pub fn refine_parts(
    result: &mut PartCosegmentation,
    images: &[PreparedImage],
    config: &CrfConfig,
) -> Result<(), RefineError> {
    let num_parts = result.num_parts;
    result
        .images
        .par_iter_mut()
        .zip(images)
        .try_for_each(|(parts, image)| {
            let channels = parts.cost_channels;
            if channels == 0 || parts.costs.len() != parts.grid.rows * parts.grid.cols * channels {
                return Ok(());
            }
            let (width, height) = (parts.width as usize, parts.height as usize);
            let unary = upsample_costs(&parts.costs, channels, parts.grid, height, width);
            let out = dense_crf(image.rgb.as_raw(), width, height, &unary, channels, config)?;
            parts.pixel_parts = out
                .argmax()
                .into_iter()
                .map(|label| (label < num_parts).then_some(label))
                .collect();
            Ok(())
        })
}

fn upsample_costs(
    costs: &[f32],
    channels: usize,
    grid: crate::model::Grid,
    height: usize,
    width: usize,
) -> Vec<f32> {
    let cells: Vec<&[f32]> = costs.chunks_exact(channels).collect();
    resize_nearest(
        &cells,
        (grid.rows, grid.cols),
        (height, width),
        torch_source,
    )
    .into_iter()
    .flatten()
    .copied()
    .collect()
}
