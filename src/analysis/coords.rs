//! Exact pixel <-> patch mapping for any patch size, stride and resize.
//!
//! Coordinates are continuous: pixel `(x, y)` of an image covers `[x, x+1) x [y, y+1)`. Patch
//! `(row, col)` covers model pixels `[col*s, col*s+p)` horizontally, so its centre is
//! `col*s + p/2` (dino-vit-features §1.6: `idx*s + p//2`; subtract 0.5 for pixel-index centres).
//! The model image is the original resized to `resized_size`, then cropped at the top-left, so
//! original `x` maps to `x * resized_w / original_w`; a letterboxed model image (Stable Diffusion
//! features, Junyi42/sd-dino) also shifts it by the padding, `x * scale + offset`.

use crate::model::{Grid, PreparedImage};

/// How one image's original pixels relate to its patch grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelMap {
    pub grid: Grid,
    /// Original-to-model scale per axis `(sx, sy)`.
    pub scale: (f64, f64),
    /// Model-image position of the original's top-left corner `(ox, oy)`: the letterbox padding.
    pub offset: (f64, f64),
}

impl PixelMap {
    pub fn new(grid: Grid, image: &PreparedImage) -> Self {
        let (ow, oh) = image.original_size;
        let (rw, rh) = image.resized_size;
        PixelMap {
            grid,
            scale: (rw as f64 / ow.max(1) as f64, rh as f64 / oh.max(1) as f64),
            offset: (0.0, 0.0),
        }
    }

    /// A map for features of an image scaled by `scale` and pasted at `offset` on the model image.
    pub fn placed(grid: Grid, scale: (f64, f64), offset: (f64, f64)) -> Self {
        PixelMap {
            grid,
            scale,
            offset,
        }
    }

    /// A map for features computed on an image used at its original size.
    pub fn identity(grid: Grid) -> Self {
        PixelMap {
            grid,
            scale: (1.0, 1.0),
            offset: (0.0, 0.0),
        }
    }

    /// Continuous original-image point `(x, y)` in model-image coordinates.
    pub fn to_model(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            x * self.scale.0 + self.offset.0,
            y * self.scale.1 + self.offset.1,
        )
    }

    /// Continuous model-image point `(x, y)` in original-image coordinates.
    pub fn to_original(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            (x - self.offset.0) / self.scale.0,
            (y - self.offset.1) / self.scale.1,
        )
    }

    /// Pixel-index point (pixel `x` centred at `x + 0.5`) of the original in model pixel indices.
    pub fn to_model_index(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let (mx, my) = self.to_model((x + 0.5, y + 0.5));
        (mx - 0.5, my - 0.5)
    }

    /// Centre of patch `index` in the model image, `(x, y)`.
    pub fn patch_center_model(&self, index: usize) -> (f64, f64) {
        let (row, col) = (index / self.grid.cols, index % self.grid.cols);
        let half = self.grid.patch as f64 / 2.0;
        let s = self.grid.stride as f64;
        (col as f64 * s + half, row as f64 * s + half)
    }

    /// Centre of patch `index` in original-image pixels, `(x, y)`.
    pub fn patch_center(&self, index: usize) -> (f64, f64) {
        self.to_original(self.patch_center_model(index))
    }

    /// The patch whose centre is nearest to model-image point `(x, y)`, clamped to the grid.
    pub fn patch_at_model(&self, x: f64, y: f64) -> usize {
        let half = self.grid.patch as f64 / 2.0;
        let s = self.grid.stride as f64;
        let nearest =
            |v: f64, n: usize| ((v - half) / s).round().clamp(0.0, (n - 1) as f64) as usize;
        nearest(y, self.grid.rows) * self.grid.cols + nearest(x, self.grid.cols)
    }

    /// The patch whose centre is nearest to original-image point `(x, y)`.
    pub fn patch_at(&self, x: f64, y: f64) -> usize {
        let (mx, my) = self.to_model((x, y));
        self.patch_at_model(mx, my)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(height: usize, width: usize, patch: usize, stride: usize, scale: f64) -> PixelMap {
        let grid = Grid::for_image(height, width, patch, stride).unwrap();
        PixelMap::placed(grid, (scale, scale), (0.0, 0.0))
    }

    #[test]
    fn patch_centres_round_trip_for_common_strides_and_odd_sizes() {
        for (patch, stride) in [(8, 4), (8, 8), (14, 14), (14, 7), (16, 16), (16, 4)] {
            for (h, w) in [(224, 224), (131, 97), (57, 203)] {
                for scale in [1.0, 0.37, 2.5] {
                    let m = map(h, w, patch, stride, scale);
                    for i in 0..m.grid.len() {
                        let (x, y) = m.patch_center(i);
                        assert_eq!(m.patch_at(x, y), i, "p{patch} s{stride} {h}x{w} x{scale}");
                    }
                }
            }
        }
    }

    #[test]
    fn centres_follow_the_reference_formula() {
        // dino-vit-features: pixel = idx * s + p // 2 for s = 4, p = 8.
        let m = map(224, 224, 8, 4, 1.0);
        assert_eq!(m.grid.cols, 55);
        assert_eq!(m.patch_center(0), (4.0, 4.0));
        assert_eq!(m.patch_center(55 + 2), (12.0, 8.0));
    }

    #[test]
    fn letterboxed_centres_round_trip_and_shift_by_the_padding() {
        // A 4:3 image letterboxed on a 960 canvas: 960 x 720 at (0, 120), stride-16 cells.
        let grid = Grid::for_image(960, 960, 16, 16).unwrap();
        let m = PixelMap::placed(grid, (1.5, 1.5), (0.0, 120.0));
        for i in 0..grid.len() {
            let (x, y) = m.patch_center(i);
            assert_eq!(m.patch_at(x, y), i);
        }
        // Original (0, 0) lies at canvas (0, 120): the centre of cell (7, 0) is at (8, 120).
        assert_eq!(m.patch_at(0.0, 0.0), 7 * 60);
        assert_eq!(m.to_original(m.to_model((3.0, 4.0))), (3.0, 4.0));
        assert_eq!(m.to_model_index((0.0, 0.0)), (0.25, 120.25));
    }

    #[test]
    fn points_outside_clamp_to_the_border_patch() {
        let m = map(32, 32, 8, 8, 1.0);
        assert_eq!(m.patch_at(-5.0, -5.0), 0);
        assert_eq!(m.patch_at(1e6, 1e6), m.grid.len() - 1);
        // A point inside patch (1, 2) of a non-overlapping grid maps to it.
        assert_eq!(m.patch_at(17.0, 9.0), 4 + 2);
    }
}
