//! `dinoscope coseg` / `partseg` end to end on the fixture checkpoint.

mod common;

use std::path::{Path, PathBuf};

use common::{dinoscope, fixture, stderr};
use dinoscope::arrays::read_npy;
use std::process::Output;

/// Three 48x48 pictures of a bright square on a dark background in `dir/images`.
fn write_scenes(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (name, left, top) in [("b", 12, 10), ("a", 20, 16), ("c", 6, 22)] {
        let img = image::RgbImage::from_fn(48, 48, |x, y| {
            let inside = (left..left + 20).contains(&x) && (top..top + 20).contains(&y);
            image::Rgb(if inside { [240, 220, 60] } else { [30, 40, 50] })
        });
        img.save(images.join(format!("{name}.png"))).unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    images
}

/// `command --weights ... <inputs> --out <out> <extra>` with the fixture model on the CPU.
fn run(command: &str, inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let weights = fixture("v1_p8_hf.safetensors");
    let mut args = vec![
        command,
        "--weights",
        weights.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--resize",
        "none",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(extra);
    dinoscope(&args)
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn coseg_writes_labels_masks_cutouts_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_scenes(dir.path());
    let out = dir.path().join("out");
    let result = run("coseg", &[&images], &out, &["--seed", "3"]);
    assert!(result.status.success(), "{}", stderr(&result));
    for stem in ["a", "b", "c"] {
        let (shape, labels) = read_npy(&out.join(format!("{stem}_labels.npy"))).unwrap();
        assert_eq!(shape, vec![11, 11]);
        assert!(labels.iter().all(|l| l.fract() == 0.0 && *l >= 0.0));
        for kind in ["mask", "cutout"] {
            let png = image::open(out.join(format!("{stem}_{kind}.png"))).unwrap();
            assert_eq!((png.width(), png.height()), (48, 48), "{stem}_{kind}");
        }
    }
    let summary = summary(&out);
    let k = summary["k"].as_u64().unwrap() as usize;
    assert!(k >= 1);
    assert_eq!(summary["elbow_curve"].as_array().unwrap().len(), k);
    assert_eq!(summary["votes"].as_array().unwrap().len(), k);
    let files: Vec<&str> = summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["stem"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        vec!["a", "b", "c"],
        "directory entries sorted by name"
    );
    assert!(summary["timings"]["write outputs"].is_number());
    assert_eq!(
        summary["config"]["layer"], 2,
        "the last block of the fixture"
    );
    assert_eq!(summary["config"]["thresh"], 0.065);
    // GrabCut is on by default; an image where it fails says why (and keeps its patch mask).
    assert_eq!(summary["config"]["grabcut"]["iterations"], 5);
    assert!(summary["timings"]["grabcut"].is_number());
    for image in summary["images"].as_array().unwrap() {
        assert!(image["grabcut_failed"].is_null() || image["grabcut_failed"].is_string());
    }

    let plain = dir.path().join("plain");
    let result = run(
        "coseg",
        &[&images],
        &plain,
        &["--seed", "3", "--no-grabcut"],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let plain_summary = self::summary(&plain);
    assert!(plain_summary["config"]["grabcut"].is_null());
    assert!(plain_summary["timings"]["grabcut"].is_null());
}

#[test]
fn partseg_writes_part_labels_with_nan_background() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_scenes(dir.path());
    let out = dir.path().join("parts");
    let first = images.join("a.png");
    let second = images.join("b.png");
    let result = run(
        "partseg",
        &[&first, &second],
        &out,
        &[
            "--num-parts",
            "2",
            "--crop-augmentations",
            "1",
            "--three-stages",
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = summary(&out);
    let parts = summary["num_parts"].as_u64().unwrap() as f32;
    assert!(parts <= 2.0);
    assert!(summary["common_parts"].is_array());
    assert_eq!(summary["images"].as_array().unwrap().len(), 2);
    for stem in ["a", "b"] {
        let (shape, labels) = read_npy(&out.join(format!("{stem}_labels.npy"))).unwrap();
        assert_eq!(shape, vec![11, 11]);
        assert!(
            labels
                .iter()
                .all(|l| l.is_nan() || (*l >= 0.0 && *l < parts))
        );
        let png = image::open(out.join(format!("{stem}_parts.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (48, 48));
        assert!(out.join(format!("{stem}_mask.png")).is_file());
    }
    assert_eq!(summary["config"]["crf"]["iterations"], 10);
    assert_eq!(summary["config"]["crf"]["gaussian_compat"], 50.0);
    assert!(summary["timings"]["crf"].is_number());
}

#[test]
fn a_bad_image_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_scenes(dir.path());
    let out = dir.path().join("out");
    let missing = dir.path().join("missing-picture.png");
    let result = run("coseg", &[&images, &missing], &out, &[]);
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("missing-picture.png"),
        "{}",
        stderr(&result)
    );

    let corrupt = dir.path().join("corrupt-picture.png");
    std::fs::write(&corrupt, "not a png").unwrap();
    let result = run("partseg", &[&corrupt], &out, &[]);
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("corrupt-picture.png"),
        "{}",
        stderr(&result)
    );
    assert!(!out.join("summary.json").exists());
}

/// `eval-coseg` JSON on stdout.
fn eval(pred: &Path, gt: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval-coseg",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ];
    args.extend(extra);
    let output = dinoscope(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn eval_coseg_scores_masks_and_matched_parts() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_scenes(dir.path());
    let out = dir.path().join("parts");
    let result = run("partseg", &[&images], &out, &["--num-parts", "2"]);
    assert!(result.status.success(), "{}", stderr(&result));

    // The true squares, at twice the size (predictions are resized to the ground truth).
    let truth = dir.path().join("truth");
    std::fs::create_dir_all(&truth).unwrap();
    for (name, left, top) in [("b", 12, 10), ("a", 20, 16), ("c", 6, 22)] {
        let mask = image::GrayImage::from_fn(96, 96, |x, y| {
            let inside = (left..left + 20).contains(&(x / 2)) && (top..top + 20).contains(&(y / 2));
            image::Luma([if inside { 255 } else { 0 }])
        });
        mask.save(truth.join(format!("{name}.png"))).unwrap();
    }
    let report = eval(&out, &truth, &[]);
    assert_eq!(report["images"].as_array().unwrap().len(), 3);
    let mean = report["mean_jaccard"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mean));

    // Scored against themselves, with part names permuted, masks and parts are perfect.
    let own = dir.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    for stem in ["a", "b", "c"] {
        let labels = image::open(out.join(format!("{stem}_part_labels.png")))
            .unwrap()
            .to_luma8();
        let swapped = image::GrayImage::from_fn(labels.width(), labels.height(), |x, y| {
            let l = labels.get_pixel(x, y).0[0];
            image::Luma([match l {
                1 => 2,
                2 => 1,
                other => other,
            }])
        });
        swapped.save(own.join(format!("{stem}.png"))).unwrap();
    }
    let report = eval(&out, &own, &["--parts"]);
    assert_eq!(report["mean_jaccard"], 1.0, "{report}");
    assert_eq!(report["mean_precision"], 1.0, "{report}");
    assert_eq!(report["part_mean_iou"], 1.0, "{report}");
}
