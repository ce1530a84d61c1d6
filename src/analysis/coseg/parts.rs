//! Part co-segmentation (§3): the foreground of stage 1 clustered into parts shared by the images.

use image::imageops;
use rayon::prelude::*;

use super::extract::{
    ImageFeatures, descriptor_dim, extract_features, resize_nearest, torch_source,
};
use super::{
    CosegConfig, CosegError, Cosegmentation, ElbowInput, MAX_CLUSTERS, Plan, Span, StageTime,
    Stopwatch, cluster_foreground, elbow_search, fit_k, flags, foreground_result, rows_of,
    selected_rows,
};
use crate::analysis::kmeans::{Elbow, assign};
use crate::analysis::progress::{Cancelled, Progress, report};
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use crate::model::{Grid, PreparedImage, Resize, Vit};
use crate::rng::Rng;

/// Side of a crop augmentation relative to the image (the reference's 95%).
const CROP_SHARE: f64 = 0.95;

/// Random stream of the crop augmentations, kept apart from the k-means seeds.
const AUGMENTATION_STREAM: u64 = 0xC0_5E6;

/// Settings of part co-segmentation; `Default` gives the reference's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PartConfig {
    /// Stage 1 (foreground) settings. Outlier removal is not used, as in the reference.
    pub coseg: CosegConfig,
    pub num_parts: usize,
    /// Per image, this many random 95% crops of the image and as many of its mirror image join the
    /// clustering. They never vote and are dropped from the output.
    pub num_crop_augmentations: usize,
    /// Stage 2 picks its k by an elbow (coefficient `elbow_second_stage`), and a third stage
    /// re-clusters the parts found in every image into `num_parts`.
    pub three_stages: bool,
    pub elbow_second_stage: f64,
    /// How crops are resized before extraction: the reference reloads them with its `load_size`,
    /// like the inputs (short side 224 by default).
    pub augmentation_resize: Resize,
}

impl Default for PartConfig {
    fn default() -> Self {
        PartConfig {
            coseg: CosegConfig::default(),
            num_parts: 4,
            num_crop_augmentations: 0,
            three_stages: false,
            elbow_second_stage: 0.94,
            augmentation_resize: Resize::ShortSide(224),
        }
    }
}

/// Part co-segmentation of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageParts {
    pub grid: Grid,
    /// Part of each patch, `None` for background.
    pub parts: Vec<Option<usize>>,
    /// `parts` upsampled (nearest) to the model image, row-major; the CRF's labels once
    /// [`refine_parts`](super::refine_parts) ran.
    pub pixel_parts: Vec<Option<usize>>,
    /// The reference's CRF unary costs per patch, row-major, `cost_channels` a patch: squared
    /// distances to each part centroid, then (when there are background centroids) the least
    /// distance to one of them, all minus the patch's largest.
    pub costs: Vec<f32>,
    pub cost_channels: usize,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PartCosegmentation {
    /// Stage 1 (foreground / background) of the input images.
    pub foreground: Cosegmentation,
    /// Part clusters of the final labelling; fewer than requested when there are fewer
    /// foreground samples, 0 when nothing is foreground.
    pub num_parts: usize,
    /// Mean squared distance of the foreground descriptors to their part centroid per k tried in
    /// stage 2 (one entry unless three stages).
    pub part_elbow_curve: Vec<f64>,
    /// Stage-2 parts present in every image (three stages only).
    pub common_parts: Option<Vec<usize>>,
    pub images: Vec<ImageParts>,
    pub timings: Vec<StageTime>,
}

/// Part co-segmentation of `images` (§3). Reports progress per image and per k; a `false`
/// answer cancels.
pub fn part_cosegment(
    vit: &Vit,
    images: &[PreparedImage],
    config: &PartConfig,
    progress: &mut Progress<'_>,
) -> Result<PartCosegmentation, CosegError> {
    validate_parts(config)?;
    let stage1_config = CosegConfig {
        remove_outliers: false,
        ..config.coseg.clone()
    };
    let plan = Plan::new(vit, &stage1_config, false)?;
    plan.check_sizes(images)?;
    let originals = images.len();
    let mut clock = Stopwatch::start();
    let augmented = augment_all(images, config, &plan)?;
    let inputs: Vec<&PreparedImage> = images.iter().chain(&augmented).collect();
    let features = extract_features(vit, &inputs, &plan, progress, Span(0.0, 0.6))?;
    clock.lap("descriptors and saliency");

    let voters: Vec<bool> = (0..inputs.len()).map(|i| i < originals).collect();
    let stage1 = cluster_foreground(
        &features,
        &vec![true; inputs.len()],
        &voters,
        &stage1_config,
        progress,
        Span(0.6, 0.8),
    )?;
    clock.lap("stage 1: foreground");

    let salient = flags(&stage1.votes.salient, stage1.elbow.clustering.k);
    let stage2 = fit_parts(&features, &stage1.labels, &salient, config, progress)?;
    let dim = descriptor_dim(&features);
    let mut labelling = PartLabelling {
        dim,
        parts: stage2.clustering.centroids,
        background: rows_of(&stage1.elbow.clustering.centroids, dim, |c| !salient[c]),
    };
    clock.lap("stage 2: parts");
    let mut common_parts = None;
    if config.three_stages {
        report(progress, 0.9, "stage 3: common parts")?;
        let (common_labelling, common) =
            common_parts_stage(&features, originals, labelling, config);
        labelling = common_labelling;
        common_parts = Some(common);
        clock.lap("stage 3: common parts");
    }

    report(progress, 0.97, "part labels")?;
    let image_parts = images
        .par_iter()
        .zip(&features[..originals])
        .map(|(image, f)| {
            let (costs, channels) = labelling.costs(&f.descriptors);
            image_parts(
                image,
                f.grid,
                labelling.label(&f.descriptors),
                costs,
                channels,
            )
        })
        .collect();
    let foreground = foreground_result(
        images,
        &features[..originals],
        stage1.for_first(originals),
        &vec![true; originals],
        None,
    );
    clock.lap("part labels and masks");
    progress(1.0, "done");
    Ok(PartCosegmentation {
        foreground,
        num_parts: labelling.count(),
        part_elbow_curve: stage2.mean_distances,
        common_parts,
        images: image_parts,
        timings: clock.laps,
    })
}

/// The part of each `dim`-long row of `descriptors`: its nearest row of `parts`, or background
/// (`None`) when a row of `background` is strictly nearer (squared L2). This is the argmin of
/// the unary costs the reference gives its CRF; a tie goes to the part, its lower channel.
pub fn label_parts(
    descriptors: &[f32],
    dim: usize,
    parts: &[f32],
    background: &[f32],
) -> Vec<Option<usize>> {
    let rows = descriptors.len().checked_div(dim).unwrap_or(0);
    if parts.is_empty() || dim == 0 {
        return vec![None; rows];
    }
    let (labels, part_distances) = assign(descriptors, dim, parts);
    if background.is_empty() {
        return labels.into_iter().map(Some).collect();
    }
    let (_, background_distances) = assign(descriptors, dim, background);
    labels
        .into_iter()
        .zip(part_distances.iter().zip(&background_distances))
        .map(|(label, (part, back))| (part <= back).then_some(label))
        .collect()
}

/// The costs the reference gives its CRF (§3.5): per `dim`-long row of `descriptors`, the squared
/// L2 distance to each row of `parts`, then the least distance to a row of `background` (no such
/// channel when `background` is empty), minus the row's largest cost so all are <= 0. Returns
/// the costs and the channels per row (0 without parts).
pub fn unary_costs(
    descriptors: &[f32],
    dim: usize,
    parts: &[f32],
    background: &[f32],
) -> (Vec<f32>, usize) {
    if parts.is_empty() || dim == 0 {
        return (Vec::new(), 0);
    }
    let squared =
        |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum() };
    let channels = parts.len() / dim + usize::from(!background.is_empty());
    let mut costs = Vec::with_capacity(descriptors.len() / dim * channels);
    for row in descriptors.chunks_exact(dim) {
        let start = costs.len();
        costs.extend(parts.chunks_exact(dim).map(|p| squared(row, p)));
        if !background.is_empty() {
            let nearest = background
                .chunks_exact(dim)
                .map(|b| squared(row, b))
                .fold(f32::INFINITY, f32::min);
            costs.push(nearest);
        }
        let max = costs[start..]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        costs[start..].iter_mut().for_each(|c| *c -= max);
    }
    (costs, channels)
}

fn validate_parts(config: &PartConfig) -> Result<(), CosegError> {
    if config.num_parts == 0 {
        Err(CosegError::InvalidSetting(
            "the number of parts must be at least 1".into(),
        ))
    } else if !(config.elbow_second_stage > 0.0 && config.elbow_second_stage.is_finite()) {
        Err(CosegError::InvalidSetting(
            "the second-stage elbow coefficient must be a positive number".into(),
        ))
    } else {
        Ok(())
    }
}

/// Parts (of `k`) that label at least one patch of every image.
fn parts_in_every_image(labels: &[Vec<Option<usize>>], k: usize) -> Vec<usize> {
    (0..k)
        .filter(|&part| labels.iter().all(|image| image.contains(&Some(part))))
        .collect()
}

/// Part centroids and the centroids that stand for background, as the reference's CRF costs.
struct PartLabelling {
    dim: usize,
    parts: Vec<f32>,
    background: Vec<f32>,
}

impl PartLabelling {
    fn count(&self) -> usize {
        self.parts.len().checked_div(self.dim).unwrap_or(0)
    }

    fn label(&self, descriptors: &[f32]) -> Vec<Option<usize>> {
        label_parts(descriptors, self.dim, &self.parts, &self.background)
    }

    /// The unary costs of each descriptor and how many channels a descriptor has.
    fn costs(&self, descriptors: &[f32]) -> (Vec<f32>, usize) {
        unary_costs(descriptors, self.dim, &self.parts, &self.background)
    }
}

/// Stage 2 (§3.4): k-means of the foreground descriptors into `num_parts`, or with k picked by
/// an elbow in three-stage mode.
fn fit_parts(
    features: &[ImageFeatures],
    labels: &[Vec<usize>],
    salient: &[bool],
    config: &PartConfig,
    progress: &mut Progress<'_>,
) -> Result<Elbow, Cancelled> {
    let (seed, interval) = (config.coseg.seed, config.coseg.sample_interval);
    let foreground: Vec<Vec<bool>> = labels
        .iter()
        .map(|labels| labels.iter().map(|&l| salient[l]).collect())
        .collect();
    if !config.three_stages {
        report(progress, 0.8, "stage 2: parts")?;
        return Ok(fit_k(
            features,
            &foreground,
            interval,
            config.num_parts,
            seed,
        ));
    }
    let (train, all) = selected_rows(features, &foreground, interval);
    let input = ElbowInput {
        train: &train,
        all: &all,
        dim: descriptor_dim(features),
        max_k: MAX_CLUSTERS,
        coefficient: config.elbow_second_stage,
        seed,
    };
    elbow_search(&input, progress, Span(0.8, 0.9))
}

/// Stage 3 (§3.6): keeps the stage-2 parts present in every original image (the first
/// `originals`), re-clusters their descriptors into `num_parts`, and counts the other stage-2
/// parts as background. Returns the new labelling and the common stage-2 parts.
fn common_parts_stage(
    features: &[ImageFeatures],
    originals: usize,
    stage2: PartLabelling,
    config: &PartConfig,
) -> (PartLabelling, Vec<usize>) {
    let labels: Vec<Vec<Option<usize>>> = features
        .iter()
        .map(|f| stage2.label(&f.descriptors))
        .collect();
    let common = parts_in_every_image(&labels[..originals], stage2.count());
    let in_common: Vec<Vec<bool>> = labels
        .iter()
        .map(|image| {
            image
                .iter()
                .map(|l| l.is_some_and(|p| common.contains(&p)))
                .collect()
        })
        .collect();
    let stage3 = fit_k(
        features,
        &in_common,
        config.coseg.sample_interval,
        config.num_parts,
        config.coseg.seed,
    );
    let dim = stage2.dim;
    let mut background = stage2.background;
    background.extend(rows_of(&stage2.parts, dim, |p| !common.contains(&p)));
    let labelling = PartLabelling {
        dim,
        parts: stage3.clustering.centroids,
        background,
    };
    (labelling, common)
}

fn image_parts(
    image: &PreparedImage,
    grid: Grid,
    parts: Vec<Option<usize>>,
    costs: Vec<f32>,
    cost_channels: usize,
) -> ImageParts {
    let (width, height) = (image.rgb.width(), image.rgb.height());
    ImageParts {
        grid,
        pixel_parts: resize_nearest(
            &parts,
            (grid.rows, grid.cols),
            (height as usize, width as usize),
            torch_source,
        ),
        parts,
        costs,
        cost_channels,
        width,
        height,
    }
}

/// The crop augmentations of every image, in the reference's order.
fn augment_all(
    images: &[PreparedImage],
    config: &PartConfig,
    plan: &Plan,
) -> Result<Vec<PreparedImage>, CosegError> {
    let mut out = Vec::new();
    for (index, image) in images.iter().enumerate() {
        out.extend(crop_augmentations(image, index, config, plan)?);
    }
    Ok(out)
}

/// The reference's augmentations of image `index` (§3.1): for each round, a random crop of 95% of
/// each side of the image, then one of its mirror image (independent offsets), each resized
/// like the inputs.
fn crop_augmentations(
    image: &PreparedImage,
    index: usize,
    config: &PartConfig,
    plan: &Plan,
) -> Result<Vec<PreparedImage>, CosegError> {
    let (width, height) = (image.rgb.width(), image.rgb.height());
    let (crop_w, crop_h) = (
        (width as f64 * CROP_SHARE) as u32,
        (height as f64 * CROP_SHARE) as u32,
    );
    let mirrored = imageops::flip_horizontal(&image.rgb);
    let too_small = |width: usize, height: usize| CosegError::CropTooSmall {
        index,
        width,
        height,
        min_side: plan.min_side(),
    };
    let mut crops = Vec::with_capacity(2 * config.num_crop_augmentations);
    for round in 0..config.num_crop_augmentations {
        for (flip, source) in [&image.rgb, &mirrored].into_iter().enumerate() {
            let mut rng = Rng::derive(
                config.coseg.seed,
                &[AUGMENTATION_STREAM, index as u64, round as u64, flip as u64],
            );
            let top = rng.below((height - crop_h + 1) as usize) as u32;
            let left = rng.below((width - crop_w + 1) as usize) as u32;
            let crop = imageops::crop_imm(source, left, top, crop_w, crop_h).to_image();
            let prepared = prepare(
                &crop,
                config.augmentation_resize,
                plan.patch,
                DEFAULT_MAX_PATCHES,
            )
            .map_err(|_| too_small(crop_w as usize, crop_h as usize))?;
            if !plan.fits(&prepared) {
                return Err(too_small(prepared.width(), prepared.height()));
            }
            crops.push(prepared);
        }
    }
    Ok(crops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Facet;

    #[test]
    fn parts_go_to_the_nearest_centroid_unless_background_is_strictly_nearer() {
        let parts = [0.0, 0.0, 10.0, 0.0];
        let background = [0.0, 10.0, 100.0, 100.0];
        let descriptors = [
            1.0, 0.0, // part 0
            9.0, 1.0, // part 1
            0.0, 9.0, // background
            5.0, 5.0, // 50 from both parts and the background: the first channel wins
        ];
        let labels = label_parts(&descriptors, 2, &parts, &background);
        assert_eq!(labels, vec![Some(0), Some(1), None, Some(0)]);
        assert_eq!(
            label_parts(&descriptors, 2, &parts, &[]),
            vec![Some(0), Some(1), Some(0), Some(0)]
        );
        assert_eq!(
            label_parts(&descriptors, 2, &[], &background),
            vec![None; 4]
        );
    }

    #[test]
    fn unary_costs_are_distances_with_a_background_channel_minus_the_largest() {
        let parts = [0.0, 0.0, 10.0, 0.0];
        let background = [0.0, 10.0, 100.0, 100.0];
        let (costs, channels) = unary_costs(&[1.0, 0.0], 2, &parts, &background);
        assert_eq!(channels, 3);
        // Distances 1, 81 and min(101, 19801) = 101; minus 101.
        assert_eq!(costs, vec![-100.0, -20.0, 0.0]);
        let (costs, channels) = unary_costs(&[1.0, 0.0], 2, &parts, &[]);
        assert_eq!((costs, channels), (vec![-80.0, 0.0], 2));
        assert_eq!(unary_costs(&[1.0, 0.0], 2, &[], &background).1, 0);
        // The lowest cost is the label `label_parts` picks.
        let descriptors = [1.0, 0.0, 9.0, 1.0, 0.0, 9.0];
        let (costs, _) = unary_costs(&descriptors, 2, &parts, &background);
        let lowest: Vec<usize> = costs
            .chunks_exact(3)
            .map(|c| (0..3).fold(0, |b, l| if c[l] < c[b] { l } else { b }))
            .collect();
        assert_eq!(lowest, vec![0, 1, 2]);
    }

    #[test]
    fn common_parts_appear_in_every_image() {
        let labels = vec![
            vec![Some(0), Some(1), None],
            vec![Some(1), Some(2), Some(0)],
        ];
        assert_eq!(parts_in_every_image(&labels, 4), vec![0, 1]);
    }

    fn prepared(width: u32, height: u32) -> PreparedImage {
        let rgb = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 0]));
        prepare(&rgb, Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap()
    }

    fn plan_for_patch_8() -> Plan {
        Plan {
            layer: 0,
            facet: Facet::Key,
            stride: 4,
            log_bin: false,
            patch: 8,
            heads: vec![0],
            low_res: true,
            with_cls: false,
        }
    }

    #[test]
    fn crop_augmentations_are_95_percent_crops_seeded_and_mirrored() {
        let image = prepared(80, 40);
        let config = PartConfig {
            num_crop_augmentations: 2,
            augmentation_resize: Resize::None,
            ..PartConfig::default()
        };
        let crops = crop_augmentations(&image, 0, &config, &plan_for_patch_8()).unwrap();
        assert_eq!(crops.len(), 4);
        // 95% of 80x40 is 76x38, cropped to the 8-pixel grid.
        assert!(crops.iter().all(|c| (c.width(), c.height()) == (72, 32)));
        let again = crop_augmentations(&image, 0, &config, &plan_for_patch_8()).unwrap();
        assert!(crops.iter().zip(&again).all(|(a, b)| a.rgb == b.rgb));
        // The red channel encodes x: the plain crop increases along x, the mirrored one decreases.
        let (plain, mirrored) = (&crops[0].rgb, &crops[1].rgb);
        assert!(plain.get_pixel(1, 0).0[0] > plain.get_pixel(0, 0).0[0]);
        assert!(mirrored.get_pixel(1, 0).0[0] < mirrored.get_pixel(0, 0).0[0]);
        // Another seed moves the crops.
        let other = PartConfig {
            coseg: CosegConfig {
                seed: 9,
                ..CosegConfig::default()
            },
            ..config.clone()
        };
        let moved = crop_augmentations(&image, 0, &other, &plan_for_patch_8()).unwrap();
        assert!(crops.iter().zip(&moved).any(|(a, b)| a.rgb != b.rgb));
    }
}
