//! Correspondences between two images' descriptors: the click-a-point query (DIFT's demo and
//! dino-vit-features' `inspect_similarity.py`) and sparse best-buddy pairs (`correspondences.py`),
//! as in ShirAmir/dino-vit-features and Tsingularity/dift.
//!
//! Coordinates: points given to and returned by this module are original-image pixel-index
//! coordinates `(x, y)` (integer values are pixel centres, as in SPair annotations, DIFT clicks and
//! matplotlib), converted with [`PixelMap`]; best-buddy pairs also carry the reference's
//! model-image `(y, x) = idx * s + p // 2`.

use crate::analysis::coords::PixelMap;
use crate::analysis::features::{
    DescriptorSpec, FeatureError, FeatureMap, default_saliency_heads, extract, saliency,
};
use crate::analysis::kmeans::{KMeansConfig, kmeans};
use crate::analysis::progress::{Cancelled, Progress, report};
use crate::analysis::similarity::{
    NearestNeighbors, Score, ScoringRows, nearest_neighbors, scores_to_query,
};
use crate::model::{Facet, Grid, PreparedImage, Resize, Vit};

/// The patch whose centre is nearest to pixel-index point `(x, y)` of the original image.
pub fn patch_at_pixel(pixels: &PixelMap, (x, y): (f64, f64)) -> usize {
    pixels.patch_at(x + 0.5, y + 0.5)
}

/// Centre of patch `index` in original-image pixel-index coordinates `(x, y)`.
pub fn patch_center_pixel(pixels: &PixelMap, index: usize) -> (f64, f64) {
    let (x, y) = pixels.patch_center(index);
    (x - 0.5, y - 0.5)
}

/// One image's descriptors prepared for matching, with its pixel geometry.
#[derive(Clone, Debug)]
pub struct ImageDescriptors {
    pub rows: ScoringRows,
    pub pixels: PixelMap,
}

impl ImageDescriptors {
    pub fn new(map: &FeatureMap, pixels: PixelMap, score: Score) -> Self {
        assert_eq!(
            map.len(),
            pixels.grid.len(),
            "descriptors cover the pixel map's grid"
        );
        ImageDescriptors {
            rows: ScoringRows::from_map(map, score),
            pixels,
        }
    }

    pub fn grid(&self) -> Grid {
        self.pixels.grid
    }
}

/// Where one source point lands in one target.
#[derive(Clone, Debug, PartialEq)]
pub struct PointMatch {
    /// Score of every target patch against the query, `grid.rows x grid.cols` row-major.
    pub scores: Vec<f32>,
    pub grid: Grid,
    pub best_patch: usize,
    pub best_score: f32,
    /// Centre of the best patch, target original-image pixel-index coordinates `(x, y)`.
    pub best_pixel: (f64, f64),
}

/// A point query: the source patch under the point and its match in every target.
#[derive(Clone, Debug, PartialEq)]
pub struct PointQuery {
    pub source_patch: usize,
    pub matches: Vec<PointMatch>,
}

fn best_of(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
            if s > best.1 { (i, s) } else { best }
        })
}

/// Scores the source descriptor under `point` against every target (one mat-vec each) and returns
/// the patch-grid heatmaps and best patches (inspect_similarity's map, DIFT's argmax on the grid).
pub fn query_point(
    source: &ImageDescriptors,
    point: (f64, f64),
    targets: &[&ImageDescriptors],
) -> PointQuery {
    let source_patch = patch_at_pixel(&source.pixels, point);
    let query = source.rows.row(source_patch);
    let matches = targets
        .iter()
        .map(|target| {
            let scores = scores_to_query(&target.rows, query);
            let (best_patch, best_score) = best_of(&scores);
            PointMatch {
                best_pixel: patch_center_pixel(&target.pixels, best_patch),
                scores,
                grid: target.grid(),
                best_patch,
                best_score,
            }
        })
        .collect();
    PointQuery {
        source_patch,
        matches,
    }
}

/// A score map at the original image's pixel resolution and its argmax.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelHeatmap {
    pub width: usize,
    pub height: usize,
    /// `height x width` row-major.
    pub values: Vec<f32>,
    /// Pixel index `(x, y)` of the maximum (first in row-major order on ties).
    pub best: (usize, usize),
    pub best_score: f32,
}

/// Bilinear weights from pixel indices `0..n` of one original axis to patch-grid positions:
/// pixel centre `i + 0.5` maps to model coordinate `(i + 0.5) * scale + offset`, i.e. grid
/// position `(m - p/2) / s`, clamped to the border cells (align_corners=False behaviour at the
/// edges).
fn axis_weights(
    n: usize,
    (scale, offset): (f64, f64),
    patch: usize,
    stride: usize,
    cells: usize,
) -> Vec<(usize, usize, f32)> {
    (0..n)
        .map(|i| {
            let model = (i as f64 + 0.5) * scale + offset;
            let position =
                ((model - patch as f64 / 2.0) / stride as f64).clamp(0.0, (cells - 1) as f64);
            let low = position.floor() as usize;
            let high = (low + 1).min(cells - 1);
            (low, high, (position - low as f64) as f32)
        })
        .collect()
}

/// Upsamples a patch-grid score map to the original image bilinearly and takes the pixel argmax.
///
/// DIFT upsamples the *features* to full resolution before scoring; upsampling the score map is
/// the cheap approximation of §10 (same grid maxima, smooth display, no `H x W x C` memory).
pub fn pixel_heatmap(scores: &[f32], pixels: &PixelMap, original_size: (u32, u32)) -> PixelHeatmap {
    let grid = pixels.grid;
    assert_eq!(scores.len(), grid.len(), "one score per patch");
    let (width, height) = (original_size.0 as usize, original_size.1 as usize);
    let xs = axis_weights(
        width,
        (pixels.scale.0, pixels.offset.0),
        grid.patch,
        grid.stride,
        grid.cols,
    );
    let ys = axis_weights(
        height,
        (pixels.scale.1, pixels.offset.1),
        grid.patch,
        grid.stride,
        grid.rows,
    );
    let mut values = Vec::with_capacity(width * height);
    for &(y0, y1, wy) in &ys {
        let (top, bottom) = (&scores[y0 * grid.cols..], &scores[y1 * grid.cols..]);
        for &(x0, x1, wx) in &xs {
            let upper = top[x0] + (top[x1] - top[x0]) * wx;
            let lower = bottom[x0] + (bottom[x1] - bottom[x0]) * wx;
            values.push(upper + (lower - upper) * wy);
        }
    }
    let (best, best_score) = best_of(&values);
    PixelHeatmap {
        width,
        height,
        best: (best % width.max(1), best / width.max(1)),
        best_score,
        values,
    }
}

/// Nearest-neighbour match in `target` of each source point (pixel-index coordinates), returned as
/// target pixel-index coordinates of the matched patch centres.
pub fn match_points(
    source: &ImageDescriptors,
    target: &ImageDescriptors,
    points: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    let patches: Vec<usize> = points
        .iter()
        .map(|&p| patch_at_pixel(&source.pixels, p))
        .collect();
    let nn = nearest_neighbors(&source.rows.select(&patches), &target.rows);
    nn.forward
        .iter()
        .map(|&j| patch_center_pixel(&target.pixels, j))
        .collect()
}

/// Defaults of dino-vit-features' `correspondences.py`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BestBuddiesConfig {
    /// Pairs kept after the diverse selection (k-means clusters).
    pub num_pairs: usize,
    /// 0-based block whose facet gives the descriptors (checked against the model).
    pub layer: usize,
    pub facet: Facet,
    /// Log-binning descriptor.
    pub log_bin: bool,
    /// Saliency above this is foreground.
    pub threshold: f32,
    pub stride: usize,
    /// How the caller resizes both images before [`correspondences`] (short side 224).
    pub load_size: Resize,
}

impl Default for BestBuddiesConfig {
    fn default() -> Self {
        BestBuddiesConfig {
            num_pairs: 10,
            layer: 9,
            facet: Facet::Key,
            log_bin: true,
            threshold: 0.05,
            stride: 4,
            load_size: Resize::ShortSide(224),
        }
    }
}

impl BestBuddiesConfig {
    pub fn descriptor_spec(&self) -> DescriptorSpec {
        DescriptorSpec {
            layer: self.layer,
            facet: self.facet,
            stride: Some(self.stride),
            log_bin: self.log_bin,
        }
    }
}

/// Patches `i` of image A that are their partner's nearest neighbour back (`nn_2[nn_1[i]] == i`).
pub fn mutual_nearest(nn: &NearestNeighbors) -> Vec<usize> {
    (0..nn.forward.len())
        .filter(|&i| nn.backward[nn.forward[i]] == i)
        .collect()
}

/// The reference's saliency filter: keep buddy `i` if it is foreground and some foreground patch of
/// B has `i` as its nearest neighbour. That second test is the reference's (slightly permissive)
/// stand-in for "the partner is foreground": it also passes when only another B patch is.
pub fn salient_buddies(
    nn: &NearestNeighbors,
    buddies: &[usize],
    foreground_a: &[bool],
    foreground_b: &[bool],
) -> Vec<usize> {
    let mut reached_from_foreground = vec![false; nn.forward.len()];
    for (j, _) in foreground_b.iter().enumerate().filter(|(_, fg)| **fg) {
        reached_from_foreground[nn.backward[j]] = true;
    }
    buddies
        .iter()
        .copied()
        .filter(|&i| foreground_a[i] && reached_from_foreground[i])
        .collect()
}

/// Diverse subset of pairs: k-means (k = min(num_pairs, pairs), seed 0) on each pair's two
/// descriptors concatenated and L2-normalised as one vector; per cluster the pair with the highest
/// `rank` (mean saliency) represents it. Returns indices into `pairs`, in cluster order.
pub fn select_diverse(
    a: &FeatureMap,
    b: &FeatureMap,
    pairs: &[(usize, usize)],
    rank: &[f32],
    num_pairs: usize,
) -> Vec<usize> {
    let k = num_pairs.min(pairs.len());
    if k == 0 {
        return Vec::new();
    }
    let dim = a.dim + b.dim;
    let mut joined = Vec::with_capacity(pairs.len() * dim);
    for &(i, j) in pairs {
        joined.extend_from_slice(a.descriptor(i));
        joined.extend_from_slice(b.descriptor(j));
    }
    crate::analysis::features::l2_normalize_rows(&mut joined, dim);
    let clustering = kmeans(&joined, dim, &KMeansConfig::new(k));
    let mut best: Vec<Option<(usize, f32)>> = vec![None; k];
    for (p, (&label, &r)) in clustering.labels.iter().zip(rank).enumerate() {
        if best[label].is_none_or(|(_, top)| r > top) {
            best[label] = Some((p, r));
        }
    }
    best.into_iter().flatten().map(|(p, _)| p).collect()
}

/// One selected pair.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Correspondence {
    pub patch_a: usize,
    pub patch_b: usize,
    /// Score of the pair (cosine, or negative L2 for fused maps).
    pub score: f32,
    /// Mean saliency of the two patches (the selection rank).
    pub saliency: f32,
    /// Model-image `(y, x)` as the reference writes it: `idx * s + p // 2`.
    pub model_a: (usize, usize),
    pub model_b: (usize, usize),
    /// Original-image pixel-index `(x, y)` of the patch centres.
    pub pixel_a: (f64, f64),
    pub pixel_b: (f64, f64),
}

/// What best buddies found, with the counts after each stage.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BestBuddies {
    pub mutual: usize,
    pub salient: usize,
    pub pairs: Vec<Correspondence>,
}

/// One image's side of a best-buddies search.
#[derive(Clone, Copy, Debug)]
pub struct BuddySide<'a> {
    pub features: &'a FeatureMap,
    /// Min-max normalised saliency, one value per patch.
    pub saliency: &'a [f32],
    pub pixels: PixelMap,
}

fn model_point(grid: Grid, index: usize) -> (usize, usize) {
    let half = grid.patch / 2;
    (
        (index / grid.cols) * grid.stride + half,
        (index % grid.cols) * grid.stride + half,
    )
}

/// Mutual nearest neighbours, the saliency filter and the diverse selection of
/// `correspondences.py` on already extracted descriptors and saliency maps.
pub fn find_best_buddies(
    a: BuddySide<'_>,
    b: BuddySide<'_>,
    threshold: f32,
    num_pairs: usize,
    score: Score,
) -> BestBuddies {
    assert_eq!(
        a.features.len(),
        a.saliency.len(),
        "one saliency value per patch of A"
    );
    assert_eq!(
        b.features.len(),
        b.saliency.len(),
        "one saliency value per patch of B"
    );
    let nn = nearest_neighbors(
        &ScoringRows::from_map(a.features, score),
        &ScoringRows::from_map(b.features, score),
    );
    let mutual = mutual_nearest(&nn);
    let foreground = |s: &[f32]| s.iter().map(|&v| v > threshold).collect::<Vec<_>>();
    let salient = salient_buddies(
        &nn,
        &mutual,
        &foreground(a.saliency),
        &foreground(b.saliency),
    );
    let pairs: Vec<(usize, usize)> = salient.iter().map(|&i| (i, nn.forward[i])).collect();
    let rank: Vec<f32> = pairs
        .iter()
        .map(|&(i, j)| (a.saliency[i] + b.saliency[j]) / 2.0)
        .collect();
    let chosen = select_diverse(a.features, b.features, &pairs, &rank, num_pairs);
    BestBuddies {
        mutual: mutual.len(),
        salient: salient.len(),
        pairs: chosen
            .into_iter()
            .map(|p| {
                let (i, j) = pairs[p];
                Correspondence {
                    patch_a: i,
                    patch_b: j,
                    score: nn.forward_score[i],
                    saliency: rank[p],
                    model_a: model_point(a.features.grid, i),
                    model_b: model_point(b.features.grid, j),
                    pixel_a: patch_center_pixel(&a.pixels, i),
                    pixel_b: patch_center_pixel(&b.pixels, j),
                }
            })
            .collect(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CorrespondError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// Descriptors and saliency of one image with the same stride-4 extractor at full resolution.
pub struct ImageAnalysis {
    pub features: FeatureMap,
    pub saliency: Vec<f32>,
    pub pixels: PixelMap,
}

impl ImageAnalysis {
    pub fn side(&self) -> BuddySide<'_> {
        BuddySide {
            features: &self.features,
            saliency: &self.saliency,
            pixels: self.pixels,
        }
    }
}

/// Extracts `config`'s descriptors and the saliency map (same stride, not the low-res variant).
pub fn analyse_image(
    vit: &Vit,
    image: &PreparedImage,
    config: &BestBuddiesConfig,
) -> Result<ImageAnalysis, FeatureError> {
    let features = extract(vit, image, config.descriptor_spec())?;
    let (saliency, _) = saliency(
        vit,
        image,
        Some(config.stride),
        &default_saliency_heads(vit),
    )?;
    Ok(ImageAnalysis {
        pixels: PixelMap::new(features.grid, image),
        features,
        saliency,
    })
}

/// `correspondences.py` end to end on two prepared images (resize them with `config.load_size`).
pub fn correspondences(
    vit: &Vit,
    image_a: &PreparedImage,
    image_b: &PreparedImage,
    config: &BestBuddiesConfig,
    progress: &mut Progress<'_>,
) -> Result<BestBuddies, CorrespondError> {
    report(progress, 0.0, "descriptors and saliency of image A")?;
    let a = analyse_image(vit, image_a, config)?;
    report(progress, 0.4, "descriptors and saliency of image B")?;
    let b = analyse_image(vit, image_b, config)?;
    report(progress, 0.8, "best buddies and selection")?;
    let found = find_best_buddies(
        a.side(),
        b.side(),
        config.threshold,
        config.num_pairs,
        Score::Cosine,
    );
    report(progress, 1.0, "done")?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: usize, cols: usize) -> Grid {
        Grid {
            rows,
            cols,
            patch: 8,
            stride: 4,
        }
    }

    fn basis(dim: usize, parts: &[(usize, f32)]) -> Vec<f32> {
        let mut v = vec![0f32; dim];
        for &(k, w) in parts {
            v[k] = w;
        }
        v
    }

    /// A 1 x n map (8 channels) from per-patch `(channel, weight)` lists.
    fn map(patches: &[&[(usize, f32)]]) -> FeatureMap {
        FeatureMap {
            grid: grid(1, patches.len()),
            dim: 8,
            data: patches.iter().flat_map(|p| basis(8, p)).collect(),
            image_size: (4 * patches.len() + 4, 8),
        }
    }

    /// Planted mutual pairs A0-B3, A2-B5, A4-B1, A5-B0; A1 and A3 point at taken partners.
    fn planted() -> (FeatureMap, FeatureMap) {
        let a = map(&[
            &[(0, 1.0)],
            &[(0, 1.0), (7, 0.3)],
            &[(1, 1.0)],
            &[(3, 1.0)],
            &[(2, 1.0)],
            &[(4, 1.0)],
        ]);
        let b = map(&[
            &[(3, 1.0), (4, 2.0)],
            &[(2, 1.0)],
            &[(6, 1.0)],
            &[(0, 1.0)],
            &[(7, 1.0)],
            &[(1, 1.0)],
        ]);
        (a, b)
    }

    fn neighbours(a: &FeatureMap, b: &FeatureMap) -> NearestNeighbors {
        nearest_neighbors(
            &ScoringRows::from_map(a, Score::Cosine),
            &ScoringRows::from_map(b, Score::Cosine),
        )
    }

    #[test]
    fn best_buddies_are_exactly_the_planted_mutual_pairs() {
        let (a, b) = planted();
        let nn = neighbours(&a, &b);
        // A1 and A3 have nearest neighbours (B3, B0) whose own nearest neighbours are A0 and A5.
        assert_eq!((nn.forward[1], nn.forward[3]), (3, 0));
        let mutual = mutual_nearest(&nn);
        assert_eq!(mutual, vec![0, 2, 4, 5]);
        let partners: Vec<usize> = mutual.iter().map(|&i| nn.forward[i]).collect();
        assert_eq!(partners, vec![3, 5, 1, 0]);
    }

    #[test]
    fn saliency_filter_keeps_the_reference_quirk() {
        // Buddies A0-B0 and A1-B1; B2 (foreground) has A1 as its nearest neighbour.
        let nn = NearestNeighbors {
            forward: vec![0, 1, 2],
            forward_score: vec![1.0; 3],
            backward: vec![0, 1, 1],
            backward_score: vec![1.0; 3],
        };
        let buddies = [0, 1];
        let fg_b = [false, false, true];
        // A0's partner is background and no foreground B patch reaches A0: dropped. A1's partner is
        // background too, but foreground B2 reaches A1, so the reference keeps it.
        assert_eq!(salient_buddies(&nn, &buddies, &[true; 3], &fg_b), vec![1]);
        assert_eq!(
            salient_buddies(&nn, &buddies, &[true, false, true], &fg_b),
            Vec::<usize>::new()
        );
        assert_eq!(
            salient_buddies(&nn, &buddies, &[true; 3], &[true; 3]),
            vec![0, 1]
        );
    }

    #[test]
    fn selection_takes_the_most_salient_pair_of_each_cluster() {
        // Pairs (i, i): 0..3 near channel 0, 3..6 near channel 1. The highest ranks are pair 2
        // (an outlier of its cluster, not the one nearest the centroid) and pair 3.
        let a = map(&[
            &[(0, 1.0), (2, 0.1)],
            &[(0, 1.0)],
            &[(0, 1.0), (2, -0.3)],
            &[(1, 1.0), (3, 0.3)],
            &[(1, 1.0)],
            &[(1, 1.0), (3, -0.1)],
        ]);
        let pairs: Vec<(usize, usize)> = (0..6).map(|i| (i, i)).collect();
        let rank = [0.2, 0.5, 0.9, 0.7, 0.1, 0.3];
        let mut chosen = select_diverse(&a, &a, &pairs, &rank, 2);
        chosen.sort();
        assert_eq!(chosen, vec![2, 3]);
        assert_eq!(select_diverse(&a, &a, &pairs[..1], &rank, 10), vec![0]);
        assert!(select_diverse(&a, &a, &[], &[], 10).is_empty());
    }

    #[test]
    fn best_buddies_report_reference_and_original_coordinates() {
        let (a, b) = planted();
        fn side<'a>(m: &'a FeatureMap, s: &'a [f32]) -> BuddySide<'a> {
            BuddySide {
                features: m,
                saliency: s,
                pixels: PixelMap::placed(m.grid, (0.5, 0.5), (0.0, 0.0)),
            }
        }
        const SALIENT: [f32; 6] = [1.0; 6];
        let found = find_best_buddies(
            side(&a, &SALIENT),
            side(&b, &SALIENT),
            0.05,
            10,
            Score::Cosine,
        );
        assert_eq!((found.mutual, found.salient, found.pairs.len()), (4, 4, 4));
        let pair = found.pairs.iter().find(|p| p.patch_a == 2).unwrap();
        assert_eq!(pair.patch_b, 5);
        // Model image: (y, x) = (row * 4 + 4, col * 4 + 4); original: twice the model centre - 0.5.
        assert_eq!(pair.model_a, (4, 12));
        assert_eq!(pair.model_b, (4, 24));
        assert_eq!(pair.pixel_a, (23.5, 7.5));
        assert!((pair.score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn point_query_finds_the_planted_patch_in_original_pixels() {
        let g = grid(4, 5);
        let dim = 6;
        let noise = |i: usize| -> Vec<f32> {
            (0..dim)
                .map(|c| ((i * 7 + c * 3) % 5) as f32 - 2.0)
                .collect()
        };
        let mut source = FeatureMap {
            grid: g,
            dim,
            data: (0..20).flat_map(noise).collect(),
            image_size: (24, 20),
        };
        let mut target = FeatureMap {
            data: (0..20).flat_map(|i| noise(i + 20)).collect(),
            ..source.clone()
        };
        let planted = [9.0, -3.0, 4.0, 0.5, 7.0, -8.0];
        // Original images are twice the model size: pixel (x, y) -> model (x + 0.5) / 2.
        let pixels = PixelMap::placed(g, (0.5, 0.5), (0.0, 0.0));
        let click = (23.0, 15.0);
        let source_patch = patch_at_pixel(&pixels, click);
        source.data[source_patch * dim..(source_patch + 1) * dim].copy_from_slice(&planted);
        target.data[13 * dim..14 * dim].copy_from_slice(&planted);
        let s = ImageDescriptors::new(&source, pixels, Score::Cosine);
        let t = ImageDescriptors::new(&target, pixels, Score::Cosine);
        let query = query_point(&s, click, &[&t, &s]);
        assert_eq!(query.source_patch, 5 + 2);
        let found = &query.matches[0];
        assert_eq!(found.best_patch, 13);
        assert!((found.best_score - 1.0).abs() < 1e-6);
        // Patch 13 = row 2, col 3: model centre (16, 12), original (32, 24), pixel index - 0.5.
        assert_eq!(found.best_pixel, (31.5, 23.5));
        assert_eq!(query.matches[1].best_patch, source_patch);
        assert_eq!(match_points(&s, &t, &[click]), vec![(31.5, 23.5)]);
    }

    #[test]
    fn pixel_coordinates_round_trip_through_patches() {
        for (patch, stride) in [(8, 4), (14, 14), (16, 8)] {
            let g = Grid::for_image(70, 98, patch, stride).unwrap();
            for scale in [1.0, 0.37, 2.5] {
                let pixels = PixelMap::placed(g, (scale, scale * 0.9), (0.0, 0.0));
                for i in 0..g.len() {
                    assert_eq!(patch_at_pixel(&pixels, patch_center_pixel(&pixels, i)), i);
                }
            }
        }
    }

    #[test]
    fn pixel_heatmap_interpolates_and_peaks_at_the_best_patch() {
        let g = Grid {
            rows: 2,
            cols: 3,
            patch: 8,
            stride: 8,
        };
        let pixels = PixelMap::identity(g);
        let scores = [0.0, 0.2, 0.1, 0.3, 1.0, 0.4];
        let heat = pixel_heatmap(&scores, &pixels, (24, 16));
        assert_eq!((heat.width, heat.height), (24, 16));
        // Patch (1, 1) is centred at (12, 12) between pixels 11 and 12. Pixel 12 sits 1/16 of a
        // cell towards patch (1, 2) (0.4) and, in the bottom row, is clamped to row 1: 0.9625.
        assert_eq!(heat.best, (12, 12));
        assert!((heat.best_score - 0.9625).abs() < 1e-6);
        // Corners are clamped to the corner patches.
        assert_eq!(heat.values[0], 0.0);
        assert_eq!(heat.values[16 * 24 - 1], 0.4);
        // Pixel (7, 2): 0.4375 of the way from patch (0, 0) to (0, 1), top row clamped.
        assert!((heat.values[2 * 24 + 7] - 0.0875).abs() < 1e-6);
    }

    #[test]
    fn correspondences_check_the_layer_and_run_on_a_tiny_model() {
        use crate::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
        use crate::model::{LoadOptions, load_model};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/v1_p8_hf.safetensors");
        let options = LoadOptions {
            config: None,
            heads: Some(2),
            ..LoadOptions::default()
        };
        let model = load_model(&path, &options, &burn::tensor::Device::flex()).unwrap();
        let picture = |shift: u32| {
            image::RgbImage::from_fn(40, 32, |x, y| {
                image::Rgb([
                    ((x + shift) * 6) as u8,
                    (y * 7) as u8,
                    (((x + shift) * y) % 251) as u8,
                ])
            })
        };
        let a = prepare(&picture(0), Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap();
        let b = prepare(&picture(4), Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap();
        let mut go_on = |_: f32, _: &str| true;
        let err = correspondences(
            &model.vit,
            &a,
            &b,
            &BestBuddiesConfig::default(),
            &mut go_on,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CorrespondError::Feature(FeatureError::LayerOutOfRange { layer: 9, depth: 3 })
        ));
        let config = BestBuddiesConfig {
            layer: 2,
            num_pairs: 3,
            ..Default::default()
        };
        let found = correspondences(&model.vit, &a, &b, &config, &mut go_on).unwrap();
        assert!(found.mutual >= found.salient && found.salient >= found.pairs.len());
        assert!(found.pairs.len() <= 3);
        let mut stop = |done: f32, _: &str| done < 0.5;
        assert!(matches!(
            correspondences(&model.vit, &a, &b, &config, &mut stop),
            Err(CorrespondError::Cancelled(_))
        ));
    }
}
