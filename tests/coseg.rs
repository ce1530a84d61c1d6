//! Co-segmentation and part co-segmentation end to end on the tiny fixture model.

mod common;

use burn::tensor::Device;
use common::fixture;
use dinoscope::analysis::coseg::{
    CosegConfig, CosegError, Cosegmentation, PartConfig, cosegment, part_cosegment,
};
use dinoscope::analysis::features::{FeatureError, saliency};
use dinoscope::analysis::progress::Cancelled;
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use dinoscope::model::{LoadOptions, LoadedModel, PreparedImage, Resize, load_model};

/// 3 blocks, dim 32, 2 heads, patch 8.
fn model() -> LoadedModel {
    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    load_model(&fixture("v1_p8_hf.safetensors"), &options, &Device::flex()).unwrap()
}

/// A bright square of side `side` at `(left, top)` on a plain dark background.
fn square_scene(width: u32, height: u32, left: u32, top: u32, side: u32) -> PreparedImage {
    let rgb = image::RgbImage::from_fn(width, height, |x, y| {
        let inside = (left..left + side).contains(&x) && (top..top + side).contains(&y);
        image::Rgb(if inside { [240, 220, 60] } else { [30, 40, 50] })
    });
    prepare(&rgb, Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap()
}

/// Two same-sized scenes (one batch) and one of another size.
fn scenes() -> Vec<PreparedImage> {
    vec![
        square_scene(48, 48, 12, 10, 20),
        square_scene(48, 48, 20, 16, 22),
        square_scene(64, 40, 30, 8, 20),
    ]
}

fn keep_going(_: f32, _: &str) -> bool {
    true
}

fn run(images: &[PreparedImage], config: &CosegConfig) -> Result<Cosegmentation, CosegError> {
    cosegment(&model().vit, images, config, &mut keep_going)
}

#[test]
fn cosegmentation_covers_every_patch_and_pixel() {
    let images = scenes();
    let result = run(&images, &CosegConfig::default()).unwrap();
    assert_eq!(result.images.len(), 3);
    // Every 100th of 121 + 121 + 135 descriptors: 6 training rows cap k at 6.
    assert!((1..=6).contains(&result.k), "k = {}", result.k);
    assert_eq!(
        result.elbow_curve.len(),
        result.k,
        "the k that stopped is kept"
    );
    assert_eq!(result.votes.counts.len(), result.k);
    assert_eq!(result.votes.needed, 3);
    let grids: Vec<(usize, usize)> = result
        .images
        .iter()
        .map(|i| (i.grid.rows, i.grid.cols))
        .collect();
    assert_eq!(grids, vec![(11, 11), (11, 11), (9, 15)]);
    for (image, coseg) in images.iter().zip(&result.images) {
        let n = coseg.grid.len();
        assert_eq!(coseg.labels.len(), n);
        assert!(coseg.labels.iter().all(|&l| l < result.k));
        assert_eq!(coseg.saliency.len(), n);
        assert!(coseg.saliency.iter().all(|s| (0.0..=1.0).contains(s)));
        let expected_mask: Vec<bool> = coseg
            .labels
            .iter()
            .map(|l| result.votes.salient.contains(l))
            .collect();
        assert_eq!(coseg.grid_mask, expected_mask);
        assert_eq!(coseg.mask.dimensions(), image.rgb.dimensions());
        assert!(!coseg.outlier);
    }
    assert!(result.timings.iter().all(|t| t.seconds >= 0.0));
    // The clusters see the square: in the first scene (square over x 12..32, y 10..30), the
    // patch centred at (24, 24) and the one centred at (44, 44) fall in different clusters.
    let first = &result.images[0];
    assert_ne!(first.labels[5 * 11 + 5], first.labels[10 * 11 + 10]);
}

#[test]
fn the_same_seed_gives_the_same_result() {
    let images = scenes();
    let config = CosegConfig {
        seed: 7,
        ..CosegConfig::default()
    };
    let (a, b) = (
        run(&images, &config).unwrap(),
        run(&images, &config).unwrap(),
    );
    assert_eq!(a.images, b.images);
    assert_eq!(
        (a.k, &a.elbow_curve, &a.votes),
        (b.k, &b.elbow_curve, &b.votes)
    );
}

#[test]
fn batched_full_resolution_saliency_matches_one_image_at_a_time() {
    let vit = model().vit;
    let images = scenes();
    let config = CosegConfig {
        low_res_saliency: false,
        ..CosegConfig::default()
    };
    let result = cosegment(&vit, &images, &config, &mut keep_going).unwrap();
    for (image, coseg) in images.iter().zip(&result.images) {
        let (alone, grid) = saliency(&vit, image, Some(4), &[0, 1]).unwrap();
        assert_eq!(grid, coseg.grid);
        let err = alone
            .iter()
            .zip(&coseg.saliency)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "batched saliency differs by {err}");
    }
}

#[test]
fn progress_comes_per_image_batch_and_per_k_and_a_stop_cancels() {
    let images = scenes();
    let vit = model().vit;
    let mut seen: Vec<(f32, String)> = Vec::new();
    let result = cosegment(&vit, &images, &CosegConfig::default(), &mut |done, what| {
        seen.push((done, what.to_string()));
        true
    })
    .unwrap();
    let image_steps = seen.iter().filter(|(_, w)| w.contains("image")).count();
    let k_steps = seen
        .iter()
        .filter(|(_, w)| w.starts_with("k-means"))
        .count();
    assert_eq!(
        image_steps, 2,
        "one batch of two 48x48 images, one 64x40: {seen:?}"
    );
    assert_eq!(k_steps, result.k);
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

    for stop_at in ["descriptors", "k-means: k = 1", "masks"] {
        let outcome = cosegment(&vit, &images, &CosegConfig::default(), &mut |_, what| {
            !what.starts_with(stop_at)
        });
        assert!(
            matches!(outcome, Err(CosegError::Cancelled(Cancelled))),
            "stop at {stop_at}: {outcome:?}"
        );
    }
}

#[test]
fn one_image_and_identical_images_work() {
    let one = vec![square_scene(48, 48, 12, 10, 20)];
    let result = run(&one, &CosegConfig::default()).unwrap();
    assert_eq!(result.votes.needed, 1);
    let same = vec![one[0].clone(), one[0].clone()];
    let result = run(&same, &CosegConfig::default()).unwrap();
    assert_eq!(result.images[0].labels, result.images[1].labels);
    let parts =
        part_cosegment(&model().vit, &one, &PartConfig::default(), &mut keep_going).unwrap();
    assert_eq!(parts.images.len(), 1);
}

#[test]
fn bad_inputs_give_typed_errors() {
    assert!(matches!(
        run(&[], &CosegConfig::default()),
        Err(CosegError::NoImages)
    ));
    let images = scenes();
    let deep = CosegConfig {
        layer: Some(3),
        ..CosegConfig::default()
    };
    assert!(matches!(
        run(&images, &deep),
        Err(CosegError::Feature(FeatureError::LayerOutOfRange {
            layer: 3,
            depth: 3
        }))
    ));
    let odd_stride = CosegConfig {
        stride: 3,
        ..CosegConfig::default()
    };
    assert!(matches!(
        run(&images, &odd_stride),
        Err(CosegError::Feature(FeatureError::BadStride { .. }))
    ));
    // 12x12 is cropped to one 8x8 patch: too small to halve for the low-resolution saliency.
    let tiny = vec![images[0].clone(), square_scene(12, 12, 2, 2, 4)];
    let error = run(&tiny, &CosegConfig::default()).unwrap_err();
    assert!(
        matches!(error, CosegError::ImageTooSmall { index: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("image 1 is 8x8"), "{error}");
    let full_res = CosegConfig {
        low_res_saliency: false,
        ..CosegConfig::default()
    };
    assert!(run(&tiny, &full_res).is_ok());
}

#[test]
fn outlier_removal_keeps_a_consistent_set() {
    let images = scenes();
    let config = CosegConfig {
        remove_outliers: true,
        ..CosegConfig::default()
    };
    let result = run(&images, &config).unwrap();
    for image in &result.images {
        let similarity = image.cls_similarity.unwrap();
        assert_eq!(image.outlier, similarity < 0.7);
        if image.outlier {
            assert!(image.grid_mask.iter().all(|m| !m));
        }
    }
    let strict = CosegConfig {
        outliers_threshold: 2.0,
        ..config
    };
    assert!(matches!(
        run(&images, &strict),
        Err(CosegError::AllOutliers { .. })
    ));
}

#[test]
fn part_cosegmentation_labels_every_pixel_and_drops_augmentations() {
    let images = scenes();
    let vit = model().vit;
    for three_stages in [false, true] {
        let config = PartConfig {
            num_parts: 2,
            num_crop_augmentations: 1,
            three_stages,
            augmentation_resize: Resize::None,
            ..PartConfig::default()
        };
        let result = part_cosegment(&vit, &images, &config, &mut keep_going).unwrap();
        assert_eq!(result.images.len(), 3, "augmentations are dropped");
        assert_eq!(result.foreground.images.len(), 3);
        assert!(result.num_parts <= 2);
        assert_eq!(result.common_parts.is_some(), three_stages);
        if !three_stages && result.num_parts > 0 {
            assert_eq!(result.part_elbow_curve.len(), 1);
        }
        // Augmentations do not vote: three original voters need 3 votes.
        assert_eq!(result.foreground.votes.needed, 3);
        for (image, parts) in images.iter().zip(&result.images) {
            assert_eq!(parts.parts.len(), parts.grid.len());
            assert_eq!((parts.width, parts.height), image.rgb.dimensions());
            assert_eq!(
                parts.pixel_parts.len(),
                (parts.width * parts.height) as usize
            );
            assert!(parts.parts.iter().flatten().all(|&p| p < result.num_parts));
            // Nearest upsampling: the top-left pixel has the top-left patch's label.
            assert_eq!(parts.pixel_parts[0], parts.parts[0]);
        }
        let again = part_cosegment(&vit, &images, &config, &mut keep_going).unwrap();
        assert_eq!(again.images, result.images, "deterministic for a seed");
    }
    let cancelled = part_cosegment(&vit, &images, &PartConfig::default(), &mut |_, what| {
        !what.starts_with("stage 2")
    });
    assert!(matches!(cancelled, Err(CosegError::Cancelled(_))));
}
