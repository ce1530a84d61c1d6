//! PCA colours held across frames: the three components and the per-channel colour range are fitted
//! on one frame and then applied unchanged, so a part keeps its colour while the scene moves (a
//! PCA refitted per frame flips signs and rescales from frame to frame).

use crate::analysis::features::FeatureMap;
use crate::analysis::pca::Pca;
use crate::analysis::pca_rgb::pad_to_three;

#[derive(Clone, Debug, PartialEq)]
pub struct HeldPca {
    pca: Pca,
    /// `(min, max)` of each projection over the fitting frame's patches: what maps to 0 and 255.
    ranges: [(f32, f32); 3],
    /// The frame the basis was fitted on.
    pub fitted_on: u64,
    /// Descriptor length the basis applies to.
    pub dim: usize,
}

impl HeldPca {
    /// Fits three components on every patch of `map` (frame `frame`).
    pub fn fit(map: &FeatureMap, frame: u64) -> HeldPca {
        let pca = Pca::fit(&map.data, map.dim, 3);
        let projections = pad_to_three(pca.transform(&map.data), pca.n_components());
        let mut ranges = [(f32::INFINITY, f32::NEG_INFINITY); 3];
        for row in projections.chunks_exact(3) {
            for (range, &v) in ranges.iter_mut().zip(row) {
                *range = (range.0.min(v), range.1.max(v));
            }
        }
        HeldPca {
            pca,
            ranges,
            fitted_on: frame,
            dim: map.dim,
        }
    }

    /// Colour per patch of `map` under the held basis (values outside the fitted range clamp).
    pub fn colors(&self, map: &FeatureMap) -> Vec<[u8; 3]> {
        let projections = pad_to_three(self.pca.transform(&map.data), self.pca.n_components());
        projections
            .chunks_exact(3)
            .map(|p| {
                std::array::from_fn(|c| {
                    let (lo, hi) = self.ranges[c];
                    let t = if hi > lo {
                        (p[c] - lo) / (hi - lo)
                    } else {
                        0.0
                    };
                    (t.clamp(0.0, 1.0) * 255.0).round() as u8
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::pca_rgb::{PcaColoring, pca_colors};
    use crate::model::Grid;
    use crate::rng::Rng;

    fn map(seed: u64, offset: f32) -> FeatureMap {
        let mut rng = Rng::new(seed);
        let grid = Grid {
            rows: 5,
            cols: 6,
            patch: 8,
            stride: 8,
        };
        FeatureMap {
            grid,
            dim: 7,
            data: (0..30 * 7)
                .map(|i| rng.uniform() as f32 * (1 + i % 7) as f32 + offset)
                .collect(),
            image_size: (48, 40),
        }
    }

    #[test]
    fn the_fitting_frame_gets_the_pca_views_colours() {
        let frame = map(3, 0.0);
        let held = HeldPca::fit(&frame, 0);
        let reference = pca_colors(std::slice::from_ref(&frame), PcaColoring::default());
        assert_eq!(held.colors(&frame), reference[0].colors);
    }

    #[test]
    fn later_frames_keep_the_basis() {
        let first = map(3, 0.0);
        let held = HeldPca::fit(&first, 0);
        // A later frame showing the first three rows of the first one: under the held basis its
        // patches keep their colours; a basis refitted on it alone would recolour them.
        let part = FeatureMap {
            grid: Grid {
                rows: 3,
                ..first.grid
            },
            data: first.data[..18 * 7].to_vec(),
            ..first.clone()
        };
        let before = held.colors(&first);
        assert_eq!(held.colors(&part), before[..18]);
        let refit = HeldPca::fit(&part, 1);
        assert_ne!(refit.colors(&part), before[..18]);
        assert_eq!((held.fitted_on, refit.fitted_on), (0, 1));
    }
}
