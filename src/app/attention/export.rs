//! Exports of the attention view: the head-mean overlay as the screen shows it (PNG) and the
//! attention values (`.npy`).

use std::path::Path;

use image::RgbImage;

use super::figure;
use super::job::AttentionResult;
use crate::analysis::attention::mass_mask;
use crate::analysis::colormap::{overlay_mask, render_map};
use crate::app::export::save_png;
use crate::app::notifications::AppError;
use crate::app::state::Settings;
use crate::arrays::write_npy;

/// `image * (1 - opacity) + colours * opacity` (what the screen shows).
fn blend(image: &RgbImage, colours: &RgbImage, opacity: f32) -> RgbImage {
    let a = opacity.clamp(0.0, 1.0);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let p = image.get_pixel(x, y).0;
        let q = colours.get_pixel_checked(x, y).map_or(p, |c| c.0);
        image::Rgb([0, 1, 2].map(|i| (p[i] as f32 * (1.0 - a) + q[i] as f32 * a).round() as u8))
    })
}

/// The head-mean view as the screen shows it (masks, when shown, tinted and outlined in red).
pub fn head_mean_image(result: &AttentionResult, settings: &Settings) -> RgbImage {
    let maps = &result.maps;
    let grid = maps.grid;
    let mean = maps.head_mean();
    let colours = render_map(&mean, grid.rows, grid.cols, grid.stride, settings.colormap);
    let blended = blend(&result.prepared.rgb, &colours, settings.opacity);
    if settings.show_masks {
        let mask = mass_mask(&mean, settings.threshold);
        overlay_mask(&blended, &mask, grid.rows, grid.cols, [255, 0, 0])
    } else {
        blended
    }
}

pub fn export_png(
    path: &Path,
    result: &AttentionResult,
    settings: &Settings,
) -> Result<(), AppError> {
    save_png(path, &head_mean_image(result, settings))
}

/// The DINO paper figure of `result` with the chosen heads' masks at `keep` of their mass.
pub fn export_figure(
    path: &Path,
    result: &AttentionResult,
    heads: &[usize],
    keep: f32,
) -> Result<(), AppError> {
    save_png(path, &figure::compose(result, heads, keep))
}

/// `[heads, rows, cols]` float32.
pub fn export_npy(path: &Path, result: &AttentionResult) -> Result<(), AppError> {
    let maps = &result.maps;
    write_npy(
        path,
        &[maps.heads, maps.grid.rows, maps.grid.cols],
        &maps.values,
    )?;
    Ok(())
}
