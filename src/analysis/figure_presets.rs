//! One-click reproductions of two paper figures, as pure image functions:
//!
//! - DINO (Caron et al. 2021, Fig. 3): chosen heads of the last block's \[CLS\] attention, each
//!   head's mask kept at 60 % of its attention mass and blended over the image in its own colour
//!   with its contour, as facebookresearch/dino's `visualize_attention.py --threshold 0.6` and its
//!   `display_instances` draw them;
//! - DINOv2 (Oquab et al. 2023, Fig. 1 and 9): a row of images over a row of their PCA colourings,
//!   the background removed by the sign of the first component and a second PCA fitted jointly on
//!   the foreground patches of all images.

use image::{Rgb, RgbImage};

use super::attention::{AttentionMaps, mass_mask};
use super::features::FeatureMap;
use super::pca_rgb::{ForegroundSplit, PcaView, pca_colors_split};
use crate::model::preprocess::normalize;

/// Share of each head's attention mass the DINO figure keeps (`--threshold 0.6`).
pub const DINO_MASS: f32 = 0.6;
/// Opacity of each mask's colour (`display_instances`' `alpha`).
pub const MASK_ALPHA: f32 = 0.5;
/// White space between the panels of a composed figure, in pixels.
pub const GAP: u32 = 8;
/// The DINOv2 figure's foreground rule.
pub const DINOV2_SPLIT: ForegroundSplit = ForegroundSplit::PositiveScore;

/// A boolean mask on a patch grid, spread over an image by nearest upsampling.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchMask {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols`, row-major.
    pub kept: Vec<bool>,
}

impl PatchMask {
    /// Whether pixel `(x, y)` of a `width x height` image lies on a kept patch (for an image of
    /// exactly `cols * p x rows * p` pixels: the patch `(y / p, x / p)`, as the script's
    /// nearest interpolation by the patch size).
    pub fn at(&self, x: u32, y: u32, width: u32, height: u32) -> bool {
        let row = (y as usize * self.rows / height.max(1) as usize).min(self.rows - 1);
        let col = (x as usize * self.cols / width.max(1) as usize).min(self.cols - 1);
        self.kept[row * self.cols + col]
    }
}

/// `colorsys.hsv_to_rgb(i / n, 1, 1)` for `i` in `0..n`: `random_colors(n)` of the DINO script in
/// head order (the script shuffles them at random; a figure that changes on every run helps no one).
pub fn head_colors(n: usize) -> Vec<[f64; 3]> {
    (0..n)
        .map(|i| {
            let h6 = i as f64 / n as f64 * 6.0;
            let sector = h6 as usize;
            let f = h6 - sector as f64;
            let (q, t) = (1.0 - f, f);
            match sector % 6 {
                0 => [1.0, t, 0.0],
                1 => [q, 1.0, 0.0],
                2 => [0.0, 1.0, t],
                3 => [0.0, q, 1.0],
                4 => [t, 0.0, 1.0],
                _ => [1.0, 0.0, q],
            }
        })
        .collect()
}

/// A colour in [0, 1] as 8-bit RGB.
pub fn to_rgb8(color: [f64; 3]) -> [u8; 3] {
    color.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// The script's `img.png`: the model input normalised with the ImageNet statistics, then min-max
/// rescaled over all channels together (`make_grid(normalize=True, scale_each=True)`) and written
/// by `save_image` (`x * 255 + 0.5`, truncated). Float32 throughout, as torch computes it.
pub fn script_display_image(rgb: &RgbImage) -> RgbImage {
    let normalized = normalize(rgb);
    let (lo, hi) = normalized
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    // torchvision divides by `max(high - low, 1e-5)`, computed on Python floats.
    let range = (hi as f64 - lo as f64).max(1e-5) as f32;
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut out = RgbImage::new(rgb.width(), rgb.height());
    for (i, pixel) in out.pixels_mut().enumerate() {
        for c in 0..3 {
            let t = (normalized[c * plane + i] - lo) / range;
            pixel.0[c] = (t * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `display_instances`' `apply_mask`: `p * (1 - alpha * m) + alpha * m * color * 255` on kept
/// pixels, with numpy's types (the colour term in float32, the sum in float64) and the float
/// result truncated into the integer image.
pub fn apply_mask(image: &mut RgbImage, mask: &PatchMask, color: [f64; 3], alpha: f32) {
    let (width, height) = image.dimensions();
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        if !mask.at(x, y, width, height) {
            continue;
        }
        for (p, &c) in pixel.0.iter_mut().zip(&color) {
            let keep = (1.0 - alpha) as f64;
            let add = alpha * c as f32 * 255.0;
            *p = (*p as f64 * keep + add as f64).clamp(0.0, 255.0) as u8;
        }
    }
}

/// The mask's outline: kept pixels with a 4-neighbour that is not kept or off the image (the
/// script pads the mask by one pixel so that masks touching the border are closed there too).
/// `skimage.find_contours` at level 0.5 runs along the pixel edges, which matplotlib strokes
/// 1 pt wide; the outline here is the one-pixel band just inside those edges.
pub fn contour(mask: &PatchMask, width: u32, height: u32) -> Vec<(u32, u32)> {
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < width as i64
            && y < height as i64
            && mask.at(x as u32, y as u32, width, height)
    };
    let mut out = Vec::new();
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            if inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
            {
                out.push((x as u32, y as u32));
            }
        }
    }
    out
}

/// Every mask blended over `display` in turn in its colour, then every contour drawn on top
/// (matplotlib draws the polygon patches over the image), opaque.
pub fn dino_overlay(display: &RgbImage, masks: &[PatchMask], colors: &[[f64; 3]]) -> RgbImage {
    let mut out = display.clone();
    for (mask, &color) in masks.iter().zip(colors) {
        apply_mask(&mut out, mask, color, MASK_ALPHA);
    }
    let (width, height) = out.dimensions();
    for (mask, &color) in masks.iter().zip(colors) {
        for (x, y) in contour(mask, width, height) {
            out.put_pixel(x, y, Rgb(to_rgb8(color)));
        }
    }
    out
}

/// The mass masks of the chosen heads (heads the maps do not have are skipped).
pub fn head_masks(maps: &AttentionMaps, heads: &[usize], keep: f32) -> Vec<PatchMask> {
    heads
        .iter()
        .filter(|&&h| h < maps.heads)
        .map(|&h| PatchMask {
            rows: maps.grid.rows,
            cols: maps.grid.cols,
            kept: mass_mask(maps.head(h), keep),
        })
        .collect()
}

/// The DINO figure: the script's display image beside the overlay of the chosen heads, each
/// masked at `keep` of its mass. `rgb` is the image the model saw.
pub fn dino_attention_figure(
    rgb: &RgbImage,
    maps: &AttentionMaps,
    heads: &[usize],
    keep: f32,
) -> RgbImage {
    let display = script_display_image(rgb);
    let masks = head_masks(maps, heads, keep);
    let overlay = dino_overlay(&display, &masks, &head_colors(masks.len()));
    compose_grid(&[vec![&display, &overlay]], GAP)
}

/// The DINOv2 colouring of an image set: one PCA over every image's patches, the background split
/// off by [`DINOV2_SPLIT`].
pub fn dinov2_views(maps: &[FeatureMap]) -> Vec<PcaView> {
    pca_colors_split(maps, true, Some(DINOV2_SPLIT))
}

/// The DINOv2 figure: the images in a row over their colourings (same order, same sizes).
pub fn dinov2_pca_figure(images: &[&RgbImage], colorings: &[&RgbImage]) -> RgbImage {
    compose_grid(&[images.to_vec(), colorings.to_vec()], GAP)
}

/// Panels on a white grid: each column as wide as its widest panel, each row as tall as its
/// tallest, `gap` pixels between them; each panel at the top left of its cell.
pub fn compose_grid(rows: &[Vec<&RgbImage>], gap: u32) -> RgbImage {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<u32> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|i| i.width())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let heights: Vec<u32> = rows
        .iter()
        .map(|r| r.iter().map(|i| i.height()).max().unwrap_or(0))
        .collect();
    let span =
        |sizes: &[u32]| sizes.iter().sum::<u32>() + gap * sizes.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(span(&widths), span(&heights), Rgb([255, 255, 255]));
    let mut top = 0;
    for (row, height) in rows.iter().zip(&heights) {
        let mut left = 0;
        for (panel, width) in row.iter().zip(&widths) {
            image::imageops::replace(&mut out, *panel, left as i64, top as i64);
            left += width + gap;
        }
        top += height + gap;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grid;

    fn mask(rows: usize, cols: usize, kept: &[usize]) -> PatchMask {
        let mut m = vec![false; rows * cols];
        kept.iter().for_each(|&i| m[i] = true);
        PatchMask {
            rows,
            cols,
            kept: m,
        }
    }

    #[test]
    fn head_colours_are_colorsys_hues_in_order() {
        // colorsys.hsv_to_rgb(i / 6, 1, 1) for i in range(6), as Python prints them.
        let want = [
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 1.0],
        ];
        for (got, want) in head_colors(6).iter().zip(want) {
            for c in 0..3 {
                assert!((got[c] - want[c]).abs() < 1e-12, "{got:?} vs {want:?}");
            }
        }
        assert_eq!(head_colors(4)[1], [0.5, 1.0, 0.0]);
        assert_eq!(to_rgb8([0.5, 1.0, 0.0]), [128, 255, 0]);
    }

    #[test]
    fn the_blend_at_alpha_one_half_is_exact() {
        // p * 0.5 + 0.5 * c * 255, truncated: 101 -> 50.5 + 127.5 = 178 under full red, 50 without.
        let mut image = RgbImage::from_pixel(2, 1, Rgb([101, 101, 7]));
        apply_mask(&mut image, &mask(1, 2, &[0]), [1.0, 0.0, 0.5], 0.5);
        assert_eq!(image.get_pixel(0, 0).0, [178, 50, 67]);
        assert_eq!(
            image.get_pixel(1, 0).0,
            [101, 101, 7],
            "unmasked pixels keep"
        );
        // Two masks in turn: the second blends over the first.
        apply_mask(&mut image, &mask(1, 2, &[0]), [0.0, 1.0, 0.0], 0.5);
        assert_eq!(image.get_pixel(0, 0).0, [89, 152, 33]);
    }

    #[test]
    fn contours_outline_the_mask_inside_its_edges() {
        // A 3x3 patch grid of 4-px patches, the centre patch and the top-left one kept.
        let m = mask(3, 3, &[0, 4]);
        let pixels = contour(&m, 12, 12);
        // The centre patch (pixels 4..8): its one-pixel ring, 12 pixels; the corner patch: its
        // ring too (the image border counts as outside).
        assert_eq!(pixels.len(), 12 + 12);
        assert!(pixels.contains(&(4, 4)) && pixels.contains(&(7, 5)));
        assert!(!pixels.contains(&(5, 5)), "the inside is not outline");
        assert!(pixels.contains(&(0, 0)) && pixels.contains(&(0, 3)));
        let display = RgbImage::from_pixel(12, 12, Rgb([0, 0, 0]));
        let out = dino_overlay(&display, &[m], &[[0.0, 1.0, 0.0]]);
        assert_eq!(out.get_pixel(4, 6).0, [0, 255, 0], "outline opaque");
        assert_eq!(out.get_pixel(5, 5).0, [0, 127, 0], "inside blended");
        assert_eq!(out.get_pixel(10, 10).0, [0, 0, 0], "outside untouched");
    }

    #[test]
    fn mass_masks_keep_at_least_the_share_and_no_more_than_needed() {
        let mut rng = crate::rng::Rng::new(5);
        for case in 0..200 {
            let n = 2 + case % 60;
            let values: Vec<f32> = (0..n)
                .map(|_| rng.uniform().powi(3) as f32 + 1e-4)
                .collect();
            let total: f64 = values.iter().map(|&v| v as f64).sum();
            let kept = mass_mask(&values, DINO_MASS);
            let share =
                |set: &mut dyn Iterator<Item = f32>| set.map(|v| v as f64).sum::<f64>() / total;
            let mass = share(
                &mut values
                    .iter()
                    .zip(&kept)
                    .filter(|(_, k)| **k)
                    .map(|(v, _)| *v),
            );
            assert!(mass >= DINO_MASS as f64 - 1e-6, "case {case}: kept {mass}");
            let smallest_kept = values
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(v, _)| *v)
                .fold(f32::INFINITY, f32::min);
            let largest_dropped = values
                .iter()
                .zip(&kept)
                .filter(|(_, k)| !**k)
                .map(|(v, _)| *v)
                .fold(f32::NEG_INFINITY, f32::max);
            assert!(
                smallest_kept >= largest_dropped,
                "case {case}: the largest are kept"
            );
            assert!(
                mass - smallest_kept as f64 / total < DINO_MASS as f64 + 1e-6,
                "case {case}: minimal"
            );
        }
    }

    #[test]
    fn grids_place_panels_with_white_gaps() {
        let a = RgbImage::from_pixel(3, 2, Rgb([1, 1, 1]));
        let b = RgbImage::from_pixel(5, 4, Rgb([2, 2, 2]));
        let c = RgbImage::from_pixel(2, 1, Rgb([3, 3, 3]));
        let out = compose_grid(&[vec![&a, &b], vec![&c]], 1);
        assert_eq!(out.dimensions(), (3 + 1 + 5, 4 + 1 + 1));
        assert_eq!(out.get_pixel(0, 0).0, [1, 1, 1]);
        assert_eq!(out.get_pixel(4, 3).0, [2, 2, 2]);
        assert_eq!(out.get_pixel(3, 0).0, [255, 255, 255], "the gap");
        assert_eq!(
            out.get_pixel(0, 2).0,
            [255, 255, 255],
            "below a shorter panel"
        );
        assert_eq!(out.get_pixel(1, 5).0, [3, 3, 3]);
    }

    #[test]
    fn the_dino_figure_is_the_display_image_beside_the_overlay() {
        let maps = AttentionMaps {
            heads: 2,
            grid: Grid {
                rows: 2,
                cols: 2,
                patch: 4,
                stride: 4,
            },
            values: vec![0.7, 0.1, 0.1, 0.1, 0.05, 0.05, 0.1, 0.8],
        };
        let rgb = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 90]));
        let figure = dino_attention_figure(&rgb, &maps, &[0, 1, 7], DINO_MASS);
        assert_eq!(figure.dimensions(), (8 + GAP + 8, 8));
        let display = script_display_image(&rgb);
        assert_eq!(figure.get_pixel(3, 3), display.get_pixel(3, 3));
        // Head 0 keeps patch 0 (red), head 1 patch 3 (cyan); pixel (1, 1) is inside patch 0.
        let inside = figure.get_pixel(8 + GAP + 1, 1).0;
        let p = display.get_pixel(1, 1).0;
        assert_eq!(
            inside,
            [(p[0] as f64 * 0.5 + 127.5) as u8, p[1] / 2, p[2] / 2]
        );
        assert_eq!(
            figure.get_pixel(8 + GAP + 7, 7).0,
            [0, 255, 255],
            "head 1's outline"
        );
        assert_eq!(
            figure.get_pixel(8 + GAP + 5, 1),
            display.get_pixel(5, 1),
            "patch 1 is in no mask"
        );
    }
}
