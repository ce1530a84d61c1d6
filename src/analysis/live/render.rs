//! Drawing a live frame: per-patch colours over the frame, the outline of a patch mask, and point
//! trails. Patches are drawn where their centres are nearest (as the PCA view), so overlapping
//! grids (stride below the patch size) draw correctly too.

use image::{Rgb, RgbImage};

use crate::analysis::coords::PixelMap;
use crate::analysis::pca_rgb::render_patch_colors;
use crate::model::Grid;

/// Colours of the tracks, in click order (repeating).
pub const TRACK_COLORS: [[u8; 3]; 6] = [
    [255, 64, 64],
    [64, 200, 255],
    [255, 220, 0],
    [80, 255, 120],
    [255, 100, 255],
    [255, 150, 40],
];

/// `colors` (one per patch of `grid`) over `frame` with opacity `opacity`.
pub fn blend_patches(frame: &RgbImage, colors: &[[u8; 3]], grid: Grid, opacity: f32) -> RgbImage {
    let (w, h) = frame.dimensions();
    let layer = render_patch_colors(colors, &PixelMap::identity(grid), w as usize, h as usize);
    let a = opacity.clamp(0.0, 1.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (under, over) = (frame.get_pixel(x, y).0, layer.get_pixel(x, y).0);
        Rgb(std::array::from_fn(|c| {
            (under[c] as f32 * (1.0 - a) + over[c] as f32 * a).round() as u8
        }))
    })
}

/// The patches in `mask` tinted with `color` and outlined with it (pixels inside whose
/// 4-neighbour is outside or off the frame).
pub fn outline_patches(frame: &RgbImage, mask: &[bool], grid: Grid, color: [u8; 3]) -> RgbImage {
    let (w, h) = frame.dimensions();
    let map = PixelMap::identity(grid);
    let inside: Vec<bool> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let patch = map.patch_at_model(x as f64 + 0.5, y as f64 + 0.5);
            mask.get(patch).copied().unwrap_or(false)
        })
        .collect();
    let at = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && inside[(y * w as i64 + x) as usize]
    };
    RgbImage::from_fn(w, h, |x, y| {
        let (xi, yi) = (x as i64, y as i64);
        let p = frame.get_pixel(x, y).0;
        if !at(xi, yi) {
            return Rgb(p);
        }
        let edge = [(-1, 0), (1, 0), (0, -1), (0, 1)]
            .iter()
            .any(|(dx, dy)| !at(xi + dx, yi + dy));
        if edge {
            Rgb(color)
        } else {
            Rgb(std::array::from_fn(|c| {
                (p[c] as f32 * 0.65 + color[c] as f32 * 0.35).round() as u8
            }))
        }
    })
}

fn put(image: &mut RgbImage, x: i64, y: i64, color: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < image.width() && (y as u32) < image.height() {
        image.put_pixel(x as u32, y as u32, Rgb(color));
    }
}

fn dot(image: &mut RgbImage, (cx, cy): (f64, f64), radius: f64, color: [u8; 3]) {
    let r = radius.ceil() as i64;
    let (x0, y0) = (cx.round() as i64, cy.round() as i64);
    for y in y0 - r..=y0 + r {
        for x in x0 - r..=x0 + r {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            if dx * dx + dy * dy <= radius * radius {
                put(image, x, y, color);
            }
        }
    }
}

/// A trail (pixel coordinates of `image`, oldest first): a 2-pixel line through the points and a
/// ringed dot at the last one.
pub fn draw_trail(image: &mut RgbImage, points: &[(f64, f64)], color: [u8; 3]) {
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            dot(image, (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t), 1.0, color);
        }
    }
    if let Some(&last) = points.last() {
        dot(image, last, 4.5, [0, 0, 0]);
        dot(image, last, 3.0, color);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            rows: 2,
            cols: 2,
            patch: 4,
            stride: 4,
        }
    }

    #[test]
    fn patches_blend_by_opacity() {
        let frame = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
        let colors = [[200, 0, 0], [0, 200, 0], [0, 0, 200], [0, 0, 0]];
        let half = blend_patches(&frame, &colors, grid(), 0.5);
        assert_eq!(half.get_pixel(1, 1).0, [150, 50, 50]);
        assert_eq!(half.get_pixel(6, 6).0, [50, 50, 50]);
        assert_eq!(
            blend_patches(&frame, &colors, grid(), 1.0)
                .get_pixel(5, 1)
                .0,
            [0, 200, 0]
        );
    }

    #[test]
    fn the_outline_runs_along_the_mask_border() {
        let frame = RgbImage::new(8, 8);
        let red = [255, 0, 0];
        let out = outline_patches(&frame, &[true, false, false, false], grid(), red);
        // Patch (0, 0) covers x, y in 0..4: its border pixels are red, its inside tinted.
        assert_eq!(out.get_pixel(0, 2).0, red);
        assert_eq!(out.get_pixel(3, 1).0, red);
        assert_eq!(out.get_pixel(1, 1).0, [89, 0, 0]);
        assert_eq!(out.get_pixel(5, 5).0, [0, 0, 0]);
    }

    #[test]
    fn trails_end_in_a_dot() {
        let mut image = RgbImage::from_pixel(32, 32, Rgb([255, 255, 255]));
        draw_trail(
            &mut image,
            &[(2.0, 2.0), (20.0, 2.0), (20.0, 20.0)],
            [0, 255, 0],
        );
        assert_eq!(image.get_pixel(10, 2).0, [0, 255, 0]);
        assert_eq!(image.get_pixel(20, 20).0, [0, 255, 0]);
        assert_eq!(image.get_pixel(24, 20).0, [0, 0, 0], "the ring");
        assert_eq!(image.get_pixel(10, 10).0, [255, 255, 255]);
    }
}
