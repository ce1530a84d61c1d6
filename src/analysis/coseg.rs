//! Co-segmentation and part co-segmentation of an image set, after dino-vit-features'
//! `cosegmentation.py` and `part_cosegmentation.py` (Amir et al., ECCVW 2022).
//!
//! Both start alike: descriptors of every image (default: key facet of the last block, stride 4),
//! a saliency map per image, an elbow k-means over all L2-normalised descriptors, and a vote in
//! which each image backs the clusters that are salient in it. The clusters with enough votes are
//! the foreground. Part co-segmentation then clusters the foreground descriptors into parts.
//!
//! The reference's pixel-level post-processing is a separate step here ([`refine_masks`],
//! [`refine_parts`]; the CLI runs it by default):
//! - **GrabCut** after co-segmentation. Without it the mask is the patch mask resized to the
//!   image, which is the reference's own fallback when GrabCut fails.
//! - **DenseCRF** after part co-segmentation. Without it each patch takes the lowest of the unary
//!   costs the reference feeds the CRF (what the CRF starts from), and the image-resolution map
//!   is the patch labels upsampled (nearest). Stage 3 reads the patch labels directly, not the
//!   CRF output resampled to the grid as the reference does.

mod extract;
mod parts;
mod refined;

use std::time::Instant;

use image::{GrayImage, Luma};
use rayon::prelude::*;

use crate::analysis::features::{FeatureError, check_spec, default_saliency_heads};
use crate::analysis::kmeans::{Clustering, Elbow, KMeansConfig, assign, kmeans};
use crate::analysis::progress::{Cancelled, Progress, report};
use crate::model::{Facet, Grid, PreparedImage, Vit};
use extract::{ImageFeatures, descriptor_dim, extract_features};
pub use parts::{
    ImageParts, PartConfig, PartCosegmentation, label_parts, part_cosegment, unary_costs,
};
pub use refined::{refine_masks, refine_parts};

/// Largest k the elbow search tries (the reference's `range(1, 15)`).
pub const MAX_CLUSTERS: usize = 14;

#[derive(Debug, thiserror::Error)]
pub enum CosegError {
    #[error("no images to co-segment")]
    NoImages,
    #[error(
        "image {index} is {width}x{height}; it needs at least {min_side} pixels per side{}",
        low_res_hint(*.low_res)
    )]
    ImageTooSmall {
        index: usize,
        width: usize,
        height: usize,
        min_side: usize,
        low_res: bool,
    },
    #[error(
        "a 95% crop of image {index} is {width}x{height} once resized; it needs at least {min_side} pixels per side (resize the images larger)"
    )]
    CropTooSmall {
        index: usize,
        width: usize,
        height: usize,
        min_side: usize,
    },
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    HostRead(#[from] crate::model::host::HostReadError),
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    #[error(
        "every image is an outlier (cosine similarity to the mean CLS descriptor below {threshold}); lower the outlier threshold"
    )]
    AllOutliers { threshold: f32 },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

fn low_res_hint(low_res: bool) -> &'static str {
    if low_res {
        " for its half-size saliency map (low-resolution saliency off needs half that)"
    } else {
        ""
    }
}

/// Settings of co-segmentation and of stage 1 of part co-segmentation; `Default` gives the
/// reference's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct CosegConfig {
    /// Descriptor block, 0-based; `None` is the last block (the reference's 11 for ViT-S/B).
    pub layer: Option<usize>,
    pub facet: Facet,
    /// Patch-embedding stride of the descriptor pass; must divide the patch size.
    pub stride: usize,
    /// Log-binned descriptors (§1.4).
    pub log_bin: bool,
    /// Stop at the first k whose mean distance exceeds this times the previous k's.
    pub elbow: f64,
    /// An image votes for a cluster when the mean saliency of its patches there is above this.
    pub saliency_threshold: f32,
    /// Share of the voting images (percent, rounded up) a cluster needs to be foreground.
    pub votes_percentage: u32,
    /// Every n-th descriptor of each image trains the k-means.
    pub sample_interval: usize,
    /// Leaves out images whose CLS descriptor is far from the mean (co-segmentation only).
    pub remove_outliers: bool,
    /// Cosine similarity to the mean CLS descriptor below which an image is an outlier.
    pub outliers_threshold: f32,
    /// Saliency from a non-overlapping pass (stride = patch size, the reference's stride 8 for
    /// ViT-S/8) on the image at half size, nearest-resized to the descriptor grid; otherwise from
    /// a pass at the descriptor stride.
    pub low_res_saliency: bool,
    /// Heads averaged for saliency; `None` uses [`default_saliency_heads`].
    pub saliency_heads: Option<Vec<usize>>,
    /// Seed of the k-means seeding (and of the crop augmentations).
    pub seed: u64,
}

impl Default for CosegConfig {
    fn default() -> Self {
        CosegConfig {
            layer: None,
            facet: Facet::Key,
            stride: 4,
            log_bin: false,
            elbow: 0.975,
            saliency_threshold: 0.065,
            votes_percentage: 75,
            sample_interval: 100,
            remove_outliers: false,
            outliers_threshold: 0.7,
            low_res_saliency: true,
            saliency_heads: None,
            seed: 0,
        }
    }
}

/// Wall time of one stage of an analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct StageTime {
    pub stage: &'static str,
    pub seconds: f64,
}

/// The foreground vote (§2.6).
#[derive(Clone, Debug, PartialEq)]
pub struct Votes {
    /// Per image, the mean saliency of each cluster's patches (`None` where it has none).
    pub label_saliency: Vec<Vec<Option<f32>>>,
    /// Images that voted for each cluster.
    pub counts: Vec<usize>,
    /// Votes a cluster needs: `ceil(voters * percentage / 100)`.
    pub needed: usize,
    /// Clusters with at least `needed` votes, ascending.
    pub salient: Vec<usize>,
}

/// Co-segmentation of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageCoseg {
    /// Descriptor grid (on the model image).
    pub grid: Grid,
    /// Cluster of each patch, row-major.
    pub labels: Vec<usize>,
    /// Saliency on the descriptor grid, in [0, 1].
    pub saliency: Vec<f32>,
    /// Foreground patches: those whose cluster is salient.
    pub grid_mask: Vec<bool>,
    /// `grid_mask` at the model image's resolution: 255 foreground, 0 background.
    pub mask: GrayImage,
    /// Cosine similarity of the CLS descriptor to the set's mean (with outlier removal only).
    pub cls_similarity: Option<f32>,
    /// Left out of clustering and voting; its mask is empty and its labels are its patches'
    /// nearest clusters.
    pub outlier: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cosegmentation {
    pub images: Vec<ImageCoseg>,
    /// Clusters chosen by the elbow.
    pub k: usize,
    /// Mean squared distance of the clustered descriptors to their centroid, for k = 1..=`k`.
    pub elbow_curve: Vec<f64>,
    pub votes: Votes,
    pub timings: Vec<StageTime>,
}

/// Co-segments `images` (§2). Reports progress per image and per k; a `false` answer cancels.
pub fn cosegment(
    vit: &Vit,
    images: &[PreparedImage],
    config: &CosegConfig,
    progress: &mut Progress<'_>,
) -> Result<Cosegmentation, CosegError> {
    let plan = Plan::new(vit, config, config.remove_outliers)?;
    plan.check_sizes(images)?;
    let inputs: Vec<&PreparedImage> = images.iter().collect();
    let mut clock = Stopwatch::start();
    let features = extract_features(vit, &inputs, &plan, progress, Span(0.0, 0.7))?;
    clock.lap("descriptors and saliency");
    let similarities = config.remove_outliers.then(|| cls_similarities(&features));
    let inliers: Vec<bool> = match &similarities {
        Some(s) => s.iter().map(|&s| s >= config.outliers_threshold).collect(),
        None => vec![true; images.len()],
    };
    if !inliers.contains(&true) {
        return Err(CosegError::AllOutliers {
            threshold: config.outliers_threshold,
        });
    }
    let stage1 = cluster_foreground(
        &features,
        &inliers,
        &inliers,
        config,
        progress,
        Span(0.7, 0.95),
    )?;
    clock.lap("clustering and vote");
    report(progress, 0.95, "masks")?;
    let mut result = foreground_result(images, &features, stage1, &inliers, similarities);
    clock.lap("masks");
    result.timings = clock.laps;
    progress(1.0, "done");
    Ok(result)
}

/// Counts the foreground votes (§2.6). Image `i` takes part when `voters[i]`; it votes for each
/// cluster whose patches have a mean saliency strictly above `threshold`. A cluster is salient
/// with at least `ceil(voters * percentage / 100)` votes.
pub fn vote(
    labels: &[Vec<usize>],
    saliency: &[Vec<f32>],
    voters: &[bool],
    k: usize,
    threshold: f32,
    percentage: u32,
) -> Votes {
    let label_saliency: Vec<Vec<Option<f32>>> = labels
        .iter()
        .zip(saliency)
        .map(|(labels, saliency)| mean_per_label(labels, saliency, k))
        .collect();
    let mut counts = vec![0usize; k];
    for (means, _) in label_saliency.iter().zip(voters).filter(|(_, v)| **v) {
        for (count, mean) in counts.iter_mut().zip(means) {
            if mean.is_some_and(|m| m > threshold) {
                *count += 1;
            }
        }
    }
    let voting = voters.iter().filter(|&&v| v).count();
    let needed = (voting * percentage as usize).div_ceil(100);
    let salient = (0..k).filter(|&l| counts[l] >= needed).collect();
    Votes {
        label_saliency,
        counts,
        needed,
        salient,
    }
}

/// A patch mask resized to `width x height` as the reference effectively does: it hands PIL a
/// bool array (an image of mode "1"), and PIL resizes mode "1" with nearest whatever filter is
/// asked for (Lanczos in the code), using pixel centres.
pub fn mask_to_image(mask: &[bool], grid: Grid, width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        let row = extract::pil_source(y as usize, grid.rows, height as usize);
        let col = extract::pil_source(x as usize, grid.cols, width as usize);
        Luma([if mask[row * grid.cols + col] { 255 } else { 0 }])
    })
}

/// The settings resolved against a model.
struct Plan {
    layer: usize,
    facet: Facet,
    stride: usize,
    log_bin: bool,
    patch: usize,
    heads: Vec<usize>,
    low_res: bool,
    with_cls: bool,
}

impl Plan {
    fn new(vit: &Vit, config: &CosegConfig, with_cls: bool) -> Result<Plan, CosegError> {
        validate(config)?;
        let model = vit.config();
        let layer = config.layer.unwrap_or(model.depth - 1);
        let stride = check_spec(vit, layer, Some(config.stride))?;
        let heads = config
            .saliency_heads
            .clone()
            .unwrap_or_else(|| default_saliency_heads(vit));
        if let Some(&head) = heads.iter().find(|&&h| h >= model.heads) {
            return Err(FeatureError::HeadOutOfRange {
                head,
                heads: model.heads,
            }
            .into());
        }
        Ok(Plan {
            layer,
            facet: config.facet,
            stride,
            log_bin: config.log_bin,
            patch: model.patch_size,
            heads,
            low_res: config.low_res_saliency,
            with_cls,
        })
    }

    fn min_side(&self) -> usize {
        if self.low_res {
            2 * self.patch
        } else {
            self.patch
        }
    }

    /// Whether the image holds one patch (one at half size with low-res saliency).
    fn fits(&self, image: &PreparedImage) -> bool {
        image.width().min(image.height()) >= self.min_side()
    }

    fn check_sizes(&self, images: &[PreparedImage]) -> Result<(), CosegError> {
        if images.is_empty() {
            return Err(CosegError::NoImages);
        }
        match images.iter().position(|image| !self.fits(image)) {
            Some(index) => Err(CosegError::ImageTooSmall {
                index,
                width: images[index].width(),
                height: images[index].height(),
                min_side: self.min_side(),
                low_res: self.low_res,
            }),
            None => Ok(()),
        }
    }
}

fn validate(config: &CosegConfig) -> Result<(), CosegError> {
    let problem = if !(config.elbow > 0.0 && config.elbow.is_finite()) {
        Some("the elbow coefficient must be a positive number")
    } else if config.sample_interval == 0 {
        Some("the sample interval must be at least 1")
    } else if config.votes_percentage > 100 {
        Some("the votes percentage must be between 0 and 100")
    } else if !config.saliency_threshold.is_finite() || !config.outliers_threshold.is_finite() {
        Some("thresholds must be finite numbers")
    } else if config.saliency_heads.as_ref().is_some_and(Vec::is_empty) {
        Some("at least one saliency head is needed")
    } else if config.remove_outliers && config.log_bin {
        Some("outlier removal needs the CLS descriptor, which log-binned descriptors lack")
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(CosegError::InvalidSetting(p.into())))
}

/// A share of the progress bar.
#[derive(Clone, Copy)]
struct Span(f32, f32);

impl Span {
    fn at(self, t: f32) -> f32 {
        self.0 + (self.1 - self.0) * t
    }
}

struct Stopwatch {
    last: Instant,
    laps: Vec<StageTime>,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.laps.push(StageTime {
            stage,
            seconds: (now - self.last).as_secs_f64(),
        });
        self.last = now;
    }
}

/// Cosine similarity of each image's CLS descriptor to the mean one (0 when undefined).
fn cls_similarities(features: &[ImageFeatures]) -> Vec<f32> {
    let cls: Vec<&[f32]> = features.iter().filter_map(|f| f.cls.as_deref()).collect();
    let dim = cls.first().map_or(0, |c| c.len());
    let mut mean = vec![0f64; dim];
    for c in &cls {
        mean.iter_mut().zip(*c).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= cls.len().max(1) as f64);
    let mean_norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt();
    cls.iter()
        .map(|c| {
            let dot: f64 = c.iter().zip(&mean).map(|(&v, m)| v as f64 * m).sum();
            let norm = c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            let similarity = dot / (norm * mean_norm);
            if similarity.is_finite() {
                similarity as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// Stage 1: the elbow clustering of the member images and the vote.
struct Stage1 {
    elbow: Elbow,
    /// Cluster of each patch of every image (non-members: their nearest centroid).
    labels: Vec<Vec<usize>>,
    votes: Votes,
}

impl Stage1 {
    /// The same result restricted to the first `n` images.
    fn for_first(mut self, n: usize) -> Stage1 {
        self.labels.truncate(n);
        self.votes.label_saliency.truncate(n);
        self
    }
}

fn cluster_foreground(
    features: &[ImageFeatures],
    members: &[bool],
    voters: &[bool],
    config: &CosegConfig,
    progress: &mut Progress<'_>,
    span: Span,
) -> Result<Stage1, Cancelled> {
    let dim = descriptor_dim(features);
    let selection: Vec<Vec<bool>> = features
        .iter()
        .zip(members)
        .map(|(f, &member)| vec![member; f.grid.len()])
        .collect();
    let (train, all) = selected_rows(features, &selection, config.sample_interval);
    let elbow = elbow_search(
        &ElbowInput {
            train: &train,
            all: &all,
            dim,
            max_k: MAX_CLUSTERS,
            coefficient: config.elbow,
            seed: config.seed,
        },
        progress,
        span,
    )?;
    let mut clustered = elbow.labels.iter().copied();
    let labels: Vec<Vec<usize>> = features
        .iter()
        .zip(members)
        .map(|(f, &member)| {
            if member {
                clustered.by_ref().take(f.grid.len()).collect()
            } else {
                assign(&f.descriptors, dim, &elbow.clustering.centroids).0
            }
        })
        .collect();
    let saliency: Vec<Vec<f32>> = features.iter().map(|f| f.saliency.clone()).collect();
    let votes = vote(
        &labels,
        &saliency,
        voters,
        elbow.clustering.k,
        config.saliency_threshold,
        config.votes_percentage,
    );
    Ok(Stage1 {
        elbow,
        labels,
        votes,
    })
}

/// The selected descriptors of every image: every `interval`-th of each image's selection (the
/// k-means training rows) and all of them.
fn selected_rows(
    features: &[ImageFeatures],
    selection: &[Vec<bool>],
    interval: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut train = Vec::new();
    let mut all = Vec::new();
    for (f, selected) in features.iter().zip(selection) {
        let rows = f
            .descriptors
            .chunks_exact(f.dim)
            .zip(selected)
            .filter(|(_, s)| **s)
            .map(|(row, _)| row);
        for (i, row) in rows.enumerate() {
            if i % interval == 0 {
                train.extend_from_slice(row);
            }
            all.extend_from_slice(row);
        }
    }
    (train, all)
}

struct ElbowInput<'a> {
    train: &'a [f32],
    all: &'a [f32],
    dim: usize,
    max_k: usize,
    coefficient: f64,
    seed: u64,
}

/// [`crate::analysis::kmeans::elbow`] with progress per k and cancellation between k's. No rows
/// give an empty clustering.
fn elbow_search(
    input: &ElbowInput<'_>,
    progress: &mut Progress<'_>,
    span: Span,
) -> Result<Elbow, Cancelled> {
    let dim = input.dim;
    let max_k = input.max_k.min(input.train.len() / dim.max(1));
    if max_k == 0 {
        return Ok(empty_elbow(dim));
    }
    let mut mean_distances = Vec::new();
    let mut k = 1;
    loop {
        report(
            progress,
            span.at((k - 1) as f32 / max_k as f32),
            &format!("k-means: k = {k}"),
        )?;
        let fitted = fit(input.train, input.all, dim, k, input.seed);
        let mean = fitted.mean_distances[0];
        let stop = mean_distances
            .last()
            .is_some_and(|&previous: &f64| mean > input.coefficient * previous);
        mean_distances.push(mean);
        if stop || k >= max_k {
            return Ok(Elbow {
                mean_distances,
                ..fitted
            });
        }
        k += 1;
    }
}

/// k-means with `k` clusters on `train`, every row of `all` assigned; one mean distance.
fn fit(train: &[f32], all: &[f32], dim: usize, k: usize, seed: u64) -> Elbow {
    let clustering = kmeans(
        train,
        dim,
        &KMeansConfig {
            seed,
            ..KMeansConfig::new(k)
        },
    );
    let (labels, distances) = assign(all, dim, &clustering.centroids);
    let mean = distances.iter().map(|&d| d as f64).sum::<f64>() / distances.len().max(1) as f64;
    Elbow {
        clustering,
        labels,
        distances,
        mean_distances: vec![mean],
    }
}

/// k-means with `k` clusters (fewer if there are fewer training rows) on the selected descriptors.
fn fit_k(
    features: &[ImageFeatures],
    selection: &[Vec<bool>],
    interval: usize,
    k: usize,
    seed: u64,
) -> Elbow {
    let dim = descriptor_dim(features);
    let (train, all) = selected_rows(features, selection, interval);
    if train.is_empty() {
        return empty_elbow(dim);
    }
    fit(&train, &all, dim, k, seed)
}

fn empty_elbow(dim: usize) -> Elbow {
    Elbow {
        clustering: Clustering {
            k: 0,
            dim,
            centroids: Vec::new(),
            labels: Vec::new(),
            inertia: 0.0,
        },
        labels: Vec::new(),
        distances: Vec::new(),
        mean_distances: Vec::new(),
    }
}

/// Mean saliency of each label's patches (`None` for labels without patches).
fn mean_per_label(labels: &[usize], saliency: &[f32], k: usize) -> Vec<Option<f32>> {
    let mut sums = vec![0f64; k];
    let mut counts = vec![0usize; k];
    for (&label, &s) in labels.iter().zip(saliency) {
        sums[label] += s as f64;
        counts[label] += 1;
    }
    sums.iter()
        .zip(&counts)
        .map(|(&sum, &count)| (count > 0).then(|| (sum / count as f64) as f32))
        .collect()
}

/// `flags[i]` is whether `i` is listed, for `i < n`.
fn flags(listed: &[usize], n: usize) -> Vec<bool> {
    let mut flags = vec![false; n];
    listed.iter().for_each(|&i| flags[i] = true);
    flags
}

/// The rows `i` of a `[n, dim]` matrix with `keep(i)`, concatenated.
fn rows_of(matrix: &[f32], dim: usize, keep: impl Fn(usize) -> bool) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    matrix
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .flat_map(|(_, row)| row.iter().copied())
        .collect()
}

fn foreground_result(
    images: &[PreparedImage],
    features: &[ImageFeatures],
    stage1: Stage1,
    inliers: &[bool],
    similarities: Option<Vec<f32>>,
) -> Cosegmentation {
    let k = stage1.elbow.clustering.k;
    let salient = flags(&stage1.votes.salient, k);
    let results = images
        .par_iter()
        .zip(features)
        .zip(stage1.labels)
        .enumerate()
        .map(|(i, ((image, f), labels))| {
            let grid_mask: Vec<bool> = labels.iter().map(|&l| inliers[i] && salient[l]).collect();
            ImageCoseg {
                grid: f.grid,
                mask: mask_to_image(&grid_mask, f.grid, image.rgb.width(), image.rgb.height()),
                grid_mask,
                labels,
                saliency: f.saliency.clone(),
                cls_similarity: similarities.as_ref().map(|s| s[i]),
                outlier: !inliers[i],
            }
        })
        .collect();
    Cosegmentation {
        images: results,
        k,
        elbow_curve: stage1.elbow.mean_distances,
        votes: stage1.votes,
        timings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::features::l2_normalize_rows;
    use crate::rng::Rng;

    #[test]
    fn a_cluster_needs_the_rounded_up_share_of_votes() {
        // Three voters at 75%: ceil(2.25) = 3 votes needed. Label 0 is salient in all three
        // images, label 1 in two of them.
        let labels = vec![vec![0, 1], vec![0, 1], vec![0, 1]];
        let saliency = vec![vec![0.9, 0.8], vec![0.9, 0.8], vec![0.9, 0.0]];
        let votes = vote(&labels, &saliency, &[true; 3], 2, 0.065, 75);
        assert_eq!(votes.needed, 3);
        assert_eq!(votes.counts, vec![3, 2]);
        assert_eq!(votes.salient, vec![0]);
        // With four voters 75% is exactly 3.
        let votes = vote(
            &[labels, vec![vec![0, 1]]].concat(),
            &[saliency, vec![vec![0.0, 0.9]]].concat(),
            &[true; 4],
            2,
            0.065,
            75,
        );
        assert_eq!(votes.needed, 3);
        assert_eq!(votes.salient, vec![0, 1]);
    }

    #[test]
    fn the_mean_saliency_must_exceed_the_threshold_strictly() {
        let threshold = 0.065f32;
        let above = f32::from_bits(threshold.to_bits() + 1);
        let labels = vec![vec![0, 0, 1, 1]];
        let saliency = vec![vec![threshold, threshold, above, above]];
        let votes = vote(&labels, &saliency, &[true], 2, threshold, 75);
        assert_eq!(votes.label_saliency[0], vec![Some(threshold), Some(above)]);
        assert_eq!(votes.counts, vec![0, 1]);
        assert_eq!(votes.salient, vec![1]);
    }

    #[test]
    fn non_voters_and_absent_labels_cast_no_vote() {
        // Image 1 (an augmentation) would back label 1; label 2 appears nowhere.
        let labels = vec![vec![0, 0], vec![1, 1]];
        let saliency = vec![vec![1.0, 1.0], vec![1.0, 1.0]];
        let votes = vote(&labels, &saliency, &[true, false], 3, 0.065, 75);
        assert_eq!(votes.needed, 1);
        assert_eq!(votes.counts, vec![1, 0, 0]);
        assert_eq!(votes.salient, vec![0]);
        assert_eq!(votes.label_saliency[0], vec![Some(1.0), None, None]);
    }

    #[test]
    fn mask_resize_keeps_a_centred_block() {
        let grid = Grid {
            rows: 4,
            cols: 4,
            patch: 8,
            stride: 8,
        };
        let mask: Vec<bool> = (0..16)
            .map(|i| (1..3).contains(&(i / 4)) && (1..3).contains(&(i % 4)))
            .collect();
        let image = mask_to_image(&mask, grid, 32, 32);
        assert_eq!(image.dimensions(), (32, 32));
        assert_eq!(image.get_pixel(16, 16).0, [255]);
        assert_eq!(image.get_pixel(2, 2).0, [0]);
        assert_eq!(image.get_pixel(29, 16).0, [0]);
        // Nearest with pixel centres: the block covers exactly pixels 8..24.
        assert_eq!(image.get_pixel(7, 16).0, [0]);
        assert_eq!(image.get_pixel(8, 16).0, [255]);
        assert_eq!(image.get_pixel(23, 16).0, [255]);
        assert_eq!(image.get_pixel(24, 16).0, [0]);
    }

    fn features_of(rows: &[[f32; 2]], saliency: Vec<f32>) -> ImageFeatures {
        let mut descriptors: Vec<f32> = rows.iter().flatten().copied().collect();
        l2_normalize_rows(&mut descriptors, 2);
        ImageFeatures {
            grid: Grid {
                rows: 1,
                cols: rows.len(),
                patch: 8,
                stride: 8,
            },
            dim: 2,
            descriptors,
            saliency,
            cls: None,
        }
    }

    #[test]
    fn identical_descriptors_in_one_image_do_not_panic() {
        let features = vec![features_of(&[[1.0, 2.0]; 6], vec![0.5; 6])];
        let config = CosegConfig {
            sample_interval: 1,
            ..CosegConfig::default()
        };
        let stage1 = cluster_foreground(
            &features,
            &[true],
            &[true],
            &config,
            &mut |_, _| true,
            Span(0.0, 1.0),
        )
        .unwrap();
        assert_eq!(stage1.labels[0].len(), 6);
        assert!(stage1.elbow.clustering.k >= 1);
        assert_eq!(stage1.votes.needed, 1);
        assert!(!stage1.votes.salient.is_empty());
    }

    #[test]
    fn elbow_search_matches_the_kmeans_elbow() {
        let mut rng = Rng::new(3);
        let all: Vec<f32> = (0..600)
            .map(|i| (i % 7) as f32 + rng.uniform() as f32)
            .collect();
        let train: Vec<f32> = all.chunks_exact(3).step_by(4).flatten().copied().collect();
        let input = ElbowInput {
            train: &train,
            all: &all,
            dim: 3,
            max_k: MAX_CLUSTERS,
            coefficient: 0.975,
            seed: 5,
        };
        let ours = elbow_search(&input, &mut |_, _| true, Span(0.0, 1.0)).unwrap();
        let config = KMeansConfig {
            seed: 5,
            ..KMeansConfig::new(1)
        };
        let reference =
            crate::analysis::kmeans::elbow(&train, &all, 3, MAX_CLUSTERS, 0.975, &config);
        assert_eq!(ours.mean_distances, reference.mean_distances);
        assert_eq!(ours.labels, reference.labels);
    }

    #[test]
    fn elbow_search_can_be_cancelled_between_k() {
        let all = vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0];
        let input = ElbowInput {
            train: &all,
            all: &all,
            dim: 1,
            max_k: MAX_CLUSTERS,
            coefficient: 0.975,
            seed: 0,
        };
        let mut calls = 0;
        let result = elbow_search(
            &input,
            &mut |_, what| {
                calls += 1;
                !what.ends_with("k = 2")
            },
            Span(0.0, 1.0),
        );
        assert!(result.is_err());
        assert_eq!(calls, 2);
    }
}
