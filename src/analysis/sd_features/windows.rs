//! SD-DINO's sliding-window inference (ODISE `FeatureExtractorBackbone.slide_forward`, as used by
//! Junyi42/sd-dino): square crops of the shorter side, at most `max_crop` pixels, stepped by their
//! own size with the last one shifted back to end at the border, each crop's features written at
//! `offset / stride` and overlaps averaged. A 960 px square gives 512 px crops at 0 and 448.

use crate::analysis::features::FeatureMap;
use crate::model::Grid;

/// The crops of a `width x height` image: their side and their top-left corners `(x, y)`, rows of
/// crops outermost as the reference loops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    pub crop: usize,
    pub origins: Vec<(usize, usize)>,
}

impl Windows {
    pub fn new(width: usize, height: usize, max_crop: usize) -> Windows {
        let crop = max_crop.min(width).min(height);
        let ys = starts(height, crop);
        let xs = starts(width, crop);
        let origins = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
            .collect();
        Windows { crop, origins }
    }
}

/// Crop starts along one axis: `ceil((len - crop) / crop) + 1` crops every `crop` pixels, the last
/// moved back to end at `len`.
fn starts(len: usize, crop: usize) -> Vec<usize> {
    if crop == 0 {
        return Vec::new();
    }
    let count = (len - crop).div_ceil(crop) + 1;
    (0..count)
        .map(|i| ((i + 1) * crop).min(len) - crop)
        .collect()
}

/// Sums per-crop maps of one tap into the whole image's map and averages where crops overlap.
#[derive(Clone, Debug)]
pub struct OverlapMean {
    grid: Grid,
    dim: usize,
    image_size: (usize, usize),
    sum: Vec<f32>,
    count: Vec<u32>,
}

impl OverlapMean {
    /// An empty map for a `width x height` image whose tap has one cell every `stride` pixels.
    pub fn new((width, height): (usize, usize), stride: usize, dim: usize) -> OverlapMean {
        let grid = Grid {
            rows: height / stride,
            cols: width / stride,
            patch: stride,
            stride,
        };
        OverlapMean {
            grid,
            dim,
            image_size: (width, height),
            sum: vec![0.0; grid.len() * dim],
            count: vec![0; grid.len()],
        }
    }

    /// Adds one crop's `[rows * cols, dim]` map whose top-left pixel is `(x, y)`.
    pub fn add(&mut self, (x, y): (usize, usize), rows: usize, cols: usize, cells: &[f32]) {
        let stride = self.grid.stride;
        let (row0, col0) = (y / stride, x / stride);
        let dim = self.dim;
        for r in 0..rows.min(self.grid.rows.saturating_sub(row0)) {
            for c in 0..cols.min(self.grid.cols.saturating_sub(col0)) {
                let target = (row0 + r) * self.grid.cols + col0 + c;
                let source = &cells[(r * cols + c) * dim..(r * cols + c + 1) * dim];
                self.sum[target * dim..(target + 1) * dim]
                    .iter_mut()
                    .zip(source)
                    .for_each(|(s, v)| *s += v);
                self.count[target] += 1;
            }
        }
    }

    /// The averaged map; `None` if a cell was not covered by any crop.
    pub fn finish(mut self) -> Option<FeatureMap> {
        for (cell, &n) in self.count.iter().enumerate() {
            if n == 0 {
                return None;
            }
            let n = n as f32;
            self.sum[cell * self.dim..(cell + 1) * self.dim]
                .iter_mut()
                .for_each(|v| *v /= n);
        }
        Some(FeatureMap {
            grid: self.grid,
            dim: self.dim,
            data: self.sum,
            image_size: self.image_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_960_square_gives_sd_dinos_four_overlapping_512_crops() {
        let windows = Windows::new(960, 960, 512);
        assert_eq!(windows.crop, 512);
        assert_eq!(windows.origins, [(0, 0), (448, 0), (0, 448), (448, 448)]);
    }

    #[test]
    fn crops_follow_the_shorter_side_and_tile_exactly_when_they_can() {
        assert_eq!(Windows::new(512, 512, 512).origins, [(0, 0)]);
        assert_eq!(
            Windows::new(1024, 384, 512),
            Windows {
                crop: 384,
                origins: vec![(0, 0), (384, 0), (640, 0)]
            }
        );
    }

    #[test]
    fn overlaps_are_averaged_and_every_cell_is_covered() {
        // Two 2x2-cell crops of a 3-cell-wide strip overlap on the middle column.
        let mut mean = OverlapMean::new((48, 32), 16, 1);
        mean.add((0, 0), 2, 2, &[1.0, 2.0, 3.0, 4.0]);
        mean.add((16, 0), 2, 2, &[10.0, 20.0, 30.0, 40.0]);
        let map = mean.finish().unwrap();
        assert_eq!((map.grid.rows, map.grid.cols), (2, 3));
        assert_eq!(map.data, [1.0, 6.0, 20.0, 3.0, 17.0, 40.0]);
    }

    #[test]
    fn an_uncovered_cell_is_reported() {
        let mut mean = OverlapMean::new((48, 16), 16, 1);
        mean.add((0, 0), 1, 2, &[1.0, 2.0]);
        assert!(mean.finish().is_none());
    }
}
