//! PCA colouring of patch features (DINOv2's visualisation): three principal components -> RGB,
//! optionally only on the foreground split off by the first component, fitted on each image alone
//! or jointly on all of them so the same part gets the same colour across images.

use image::RgbImage;

use super::coords::PixelMap;
use super::features::FeatureMap;
use super::pca::Pca;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcaColoring {
    /// One PCA over every image's patches (consistent colours) instead of one per image.
    pub joint: bool,
    /// Threshold in [0, 1] on the min-max scaled first component; patches above it are foreground
    /// and the colour PCA is fitted on them only. `None` colours every patch.
    pub foreground_threshold: Option<f32>,
}

/// Where the first principal component splits the foreground off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ForegroundSplit {
    /// The min-max scaled first component above this value in [0, 1].
    Scaled(f32),
    /// A positive first-component score, the DINOv2 paper's rule ("background is removed by
    /// removing patches with a negative score of the first PCA component", Oquab et al. 2023,
    /// Fig. 9); the score is centred on the mean of the patches fitted.
    PositiveScore,
}

impl Default for PcaColoring {
    fn default() -> Self {
        PcaColoring {
            joint: true,
            foreground_threshold: None,
        }
    }
}

/// One image's colouring on its patch grid.
#[derive(Clone, Debug, PartialEq)]
pub struct PcaView {
    /// Raw projections `[patches, 3]` (zero for background patches).
    pub projections: Vec<f32>,
    /// Colour per patch; background black.
    pub colors: Vec<[u8; 3]>,
    /// Foreground per patch (all true without a threshold).
    pub foreground: Vec<bool>,
    /// Share of variance each of the three components explains.
    pub explained: [f32; 3],
}

/// Colours every map's patches by their first three principal components.
///
/// Each channel is min-max scaled over the foreground patches: across all images when `joint`
/// (as DINOv2's demo), per image otherwise. The first component's sign is arbitrary, so the
/// foreground is taken as the side the image borders are not on.
pub fn pca_colors(maps: &[FeatureMap], options: PcaColoring) -> Vec<PcaView> {
    let split = options.foreground_threshold.map(ForegroundSplit::Scaled);
    pca_colors_split(maps, options.joint, split)
}

/// [`pca_colors`] with the foreground split by any [`ForegroundSplit`] (`None`: every patch).
pub fn pca_colors_split(
    maps: &[FeatureMap],
    joint: bool,
    split: Option<ForegroundSplit>,
) -> Vec<PcaView> {
    let groups: Vec<Vec<usize>> = if joint {
        vec![(0..maps.len()).collect()]
    } else {
        (0..maps.len()).map(|i| vec![i]).collect()
    };
    let mut views: Vec<Option<PcaView>> = vec![None; maps.len()];
    for group in groups {
        let members: Vec<&FeatureMap> = group.iter().map(|&i| &maps[i]).collect();
        for (i, view) in group.into_iter().zip(color_group(&members, split)) {
            views[i] = Some(view);
        }
    }
    views.into_iter().flatten().collect()
}

fn color_group(maps: &[&FeatureMap], split: Option<ForegroundSplit>) -> Vec<PcaView> {
    let dim = maps.first().map_or(0, |m| m.dim);
    let all: Vec<f32> = maps.iter().flat_map(|m| m.data.iter().copied()).collect();
    let foreground: Vec<Vec<bool>> = match split {
        Some(split) => foreground_masks(maps, &all, dim, split),
        None => maps.iter().map(|m| vec![true; m.len()]).collect(),
    };
    let chosen: Vec<f32> = maps
        .iter()
        .zip(&foreground)
        .flat_map(|(m, fg)| {
            m.data
                .chunks_exact(dim)
                .zip(fg)
                .filter(|(_, f)| **f)
                .flat_map(|(row, _)| row.iter().copied())
        })
        .collect();
    let pca = Pca::fit(&chosen, dim, 3);
    let total_variance = total_variance(&chosen, dim);
    let mut explained = [0f32; 3];
    for (e, v) in explained.iter_mut().zip(&pca.explained_variance) {
        *e = if total_variance > 0.0 {
            v / total_variance
        } else {
            0.0
        };
    }
    let projections: Vec<Vec<f32>> = maps
        .iter()
        .zip(&foreground)
        .map(|(m, fg)| {
            let mut p = pad_to_three(pca.transform(&m.data), pca.n_components());
            for (row, &f) in p.chunks_exact_mut(3).zip(fg) {
                if !f {
                    row.fill(0.0);
                }
            }
            p
        })
        .collect();
    let ranges = channel_ranges(&projections, &foreground);
    projections
        .into_iter()
        .zip(foreground)
        .map(|(projections, foreground)| {
            let colors = projections
                .chunks_exact(3)
                .zip(&foreground)
                .map(|(p, &f)| {
                    if !f {
                        return [0, 0, 0];
                    }
                    std::array::from_fn(|c| {
                        let (lo, hi) = ranges[c];
                        let t = if hi > lo {
                            (p[c] - lo) / (hi - lo)
                        } else {
                            0.0
                        };
                        (t.clamp(0.0, 1.0) * 255.0).round() as u8
                    })
                })
                .collect();
            PcaView {
                projections,
                colors,
                foreground,
                explained,
            }
        })
        .collect()
}

/// Per-channel (min, max) over the foreground patches of all given projections.
fn channel_ranges(projections: &[Vec<f32>], foreground: &[Vec<bool>]) -> [(f32, f32); 3] {
    let mut ranges = [(f32::INFINITY, f32::NEG_INFINITY); 3];
    for (p, fg) in projections.iter().zip(foreground) {
        for (row, _) in p.chunks_exact(3).zip(fg).filter(|(_, f)| **f) {
            for (range, &v) in ranges.iter_mut().zip(row) {
                *range = (range.0.min(v), range.1.max(v));
            }
        }
    }
    ranges
}

/// Foreground by the first component's score, oriented so that image borders are mostly
/// background: its min-max scaled value above a threshold, or its sign.
fn foreground_masks(
    maps: &[&FeatureMap],
    all: &[f32],
    dim: usize,
    split: ForegroundSplit,
) -> Vec<Vec<bool>> {
    let first = Pca::fit(all, dim, 1);
    let scores: Vec<Vec<f32>> = maps.iter().map(|m| first.transform(&m.data)).collect();
    let (lo, hi) = scores
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let border_mean = {
        let border: Vec<f32> = maps
            .iter()
            .zip(&scores)
            .flat_map(|(m, s)| {
                let (rows, cols) = (m.grid.rows, m.grid.cols);
                (0..m.len())
                    .filter(move |&i| {
                        let (r, c) = (i / cols, i % cols);
                        r == 0 || c == 0 || r + 1 == rows || c + 1 == cols
                    })
                    .map(|i| s[i])
            })
            .collect();
        border.iter().sum::<f32>() / border.len().max(1) as f32
    };
    let flip = border_mean > (lo + hi) / 2.0;
    scores
        .into_iter()
        .map(|s| {
            s.into_iter()
                .map(|v| match split {
                    ForegroundSplit::Scaled(threshold) => {
                        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                        let t = if flip { 1.0 - t } else { t };
                        t > threshold
                    }
                    ForegroundSplit::PositiveScore => {
                        if flip {
                            v < 0.0
                        } else {
                            v > 0.0
                        }
                    }
                })
                .collect()
        })
        .collect()
}

fn total_variance(data: &[f32], dim: usize) -> f32 {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    if rows < 2 {
        return 0.0;
    }
    let mut sum = vec![0f64; dim];
    let mut square = vec![0f64; dim];
    for row in data.chunks_exact(dim) {
        for (d, &v) in row.iter().enumerate() {
            sum[d] += v as f64;
            square[d] += (v as f64) * (v as f64);
        }
    }
    let n = rows as f64;
    sum.iter()
        .zip(&square)
        .map(|(s, q)| (q - s * s / n) / (n - 1.0))
        .sum::<f64>() as f32
}

/// Widens `[rows, n]` projections (n < 3 for tiny inputs) to `[rows, 3]` with zeros.
pub(crate) fn pad_to_three(projections: Vec<f32>, n: usize) -> Vec<f32> {
    if n == 3 {
        return projections;
    }
    let rows = projections.len().checked_div(n).unwrap_or(0);
    let mut out = vec![0f32; rows * 3];
    for (dst, src) in out
        .chunks_exact_mut(3)
        .zip(projections.chunks_exact(n.max(1)))
    {
        dst[..n].copy_from_slice(src);
    }
    out
}

/// Paints each pixel of the model image with the colour of the patch whose centre is nearest.
pub fn render_patch_colors(
    colors: &[[u8; 3]],
    map: &PixelMap,
    width: usize,
    height: usize,
) -> RgbImage {
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let patch = map.patch_at_model(x as f64 + 0.5, y as f64 + 0.5);
        image::Rgb(colors.get(patch).copied().unwrap_or([0, 0, 0]))
    })
}

/// Patch colours painted over the original image's `width x height` pixels, each pixel taking its
/// nearest cell through `map` (for descriptors of a letterboxed or squashed input).
pub fn render_on_original(colors: &[[u8; 3]], map: &PixelMap, width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (mx, my) = map.to_model((x as f64 + 0.5, y as f64 + 0.5));
        let patch = map.patch_at_model(mx, my);
        image::Rgb(colors.get(patch).copied().unwrap_or([0, 0, 0]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grid;

    /// A 4x4 grid whose centre 2x2 patches point one way and the rest another, plus a weak ramp.
    fn object_map(offset: f32) -> FeatureMap {
        let grid = Grid {
            rows: 4,
            cols: 4,
            patch: 8,
            stride: 8,
        };
        let mut data = Vec::new();
        for i in 0..16 {
            let (r, c) = (i / 4, i % 4);
            let inside = (1..3).contains(&r) && (1..3).contains(&c);
            let base = if inside { 10.0 } else { 0.0 };
            data.extend([base + offset, 0.3 * c as f32, 0.1 * r as f32, -base]);
        }
        FeatureMap {
            grid,
            dim: 4,
            data,
            image_size: (32, 32),
        }
    }

    #[test]
    fn foreground_is_the_object_not_the_border() {
        let views = pca_colors(
            &[object_map(0.0)],
            PcaColoring {
                joint: true,
                foreground_threshold: Some(0.5),
            },
        );
        let fg = &views[0].foreground;
        let expected: Vec<bool> = (0..16)
            .map(|i| (1..3).contains(&(i / 4)) && (1..3).contains(&(i % 4)))
            .collect();
        assert_eq!(fg, &expected);
        assert_eq!(views[0].colors[0], [0, 0, 0], "background is black");
    }

    /// A 5x5 grid: the border at -1, the inner 3x3 at 1.95 but its centre at 0.4, so the first
    /// component's mean is 0 and the centre patch has a positive score but a scaled value of
    /// 1.4 / 2.95 = 0.47.
    fn ring_map() -> FeatureMap {
        let grid = Grid {
            rows: 5,
            cols: 5,
            patch: 8,
            stride: 8,
        };
        let mut data = Vec::new();
        for i in 0..25 {
            let (r, c) = (i / 5, i % 5);
            let border = r == 0 || c == 0 || r == 4 || c == 4;
            let v = match (border, i) {
                (true, _) => -1.0,
                (false, 12) => 0.4,
                _ => 1.95,
            };
            data.extend([v, 0.01 * c as f32, 0.02 * ((r * c) % 3) as f32]);
        }
        FeatureMap {
            grid,
            dim: 3,
            data,
            image_size: (40, 40),
        }
    }

    #[test]
    fn the_paper_rule_keeps_positive_first_component_scores() {
        let inner: Vec<bool> = (0..25)
            .map(|i| (1..4).contains(&(i / 5)) && (1..4).contains(&(i % 5)))
            .collect();
        let paper = pca_colors_split(&[ring_map()], true, Some(ForegroundSplit::PositiveScore));
        assert_eq!(paper[0].foreground, inner);
        let scaled = pca_colors_split(&[ring_map()], true, Some(ForegroundSplit::Scaled(0.5)));
        let mut without_centre = inner.clone();
        without_centre[12] = false;
        assert_eq!(scaled[0].foreground, without_centre);
        // The same split through the older entry point.
        let options = PcaColoring {
            joint: true,
            foreground_threshold: Some(0.5),
        };
        assert_eq!(pca_colors(&[ring_map()], options), scaled);
        // The sign of the component is arbitrary: a negated feature set splits the same way.
        let mut negated = ring_map();
        negated.data.iter_mut().for_each(|v| *v = -*v);
        let paper = pca_colors_split(&[negated], true, Some(ForegroundSplit::PositiveScore));
        assert_eq!(paper[0].foreground, inner);
    }

    #[test]
    fn joint_fit_gives_equal_features_equal_colours_across_images() {
        let maps = [object_map(0.0), object_map(0.0)];
        let joint = pca_colors(&maps, PcaColoring::default());
        assert_eq!(joint[0].colors, joint[1].colors);
        // A shifted copy keeps the same colours when fitted alone, but not jointly.
        let shifted = [object_map(0.0), object_map(5.0)];
        let separate = pca_colors(
            &shifted,
            PcaColoring {
                joint: false,
                foreground_threshold: None,
            },
        );
        assert_eq!(separate[0].colors, separate[1].colors);
        let joint = pca_colors(&shifted, PcaColoring::default());
        assert_ne!(joint[0].colors, joint[1].colors);
    }

    #[test]
    fn explained_variance_shares_are_ordered_and_bounded() {
        let views = pca_colors(&[object_map(0.0)], PcaColoring::default());
        let e = views[0].explained;
        assert!(e[0] >= e[1] && e[1] >= e[2] && e[0] <= 1.0 && e[2] >= 0.0);
        assert!(e.iter().sum::<f32>() <= 1.0 + 1e-5);
    }

    #[test]
    fn rendering_follows_the_patch_grid() {
        let map = PixelMap::identity(Grid {
            rows: 1,
            cols: 2,
            patch: 4,
            stride: 4,
        });
        let img = render_patch_colors(&[[255, 0, 0], [0, 0, 255]], &map, 8, 4);
        assert_eq!(img.get_pixel(3, 2).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(4, 2).0, [0, 0, 255]);
    }
}
