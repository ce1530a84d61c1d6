//! End-to-end runs of `dinoscope correspond` and `dinoscope eval-pck` on the tiny fixture models.

mod common;

use std::path::{Path, PathBuf};

use common::{dinoscope, fixture, stderr};
use dinoscope::arrays::{read_npy, write_npy};
use std::process::Output;

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// A textured `width x height` picture; `shift` moves the pattern left by that many pixels.
fn write_picture(dir: &Path, name: &str, width: u32, height: u32, shift: u32) -> PathBuf {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let u = x + shift;
        image::Rgb([
            (u * 37 % 256) as u8,
            (y * 53 % 256) as u8,
            ((u * y * 11 + u * u) % 251) as u8,
        ])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    path
}

/// The tiny DINO ViT (patch 8, 3 blocks, 2 heads) on the CPU, at the images' own size.
fn model_args(weights: &Path) -> Vec<String> {
    [
        "--weights",
        &text(weights),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--resize",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

fn run(args: Vec<String>) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    dinoscope(&refs)
}

fn correspond(dir: &Path, extra: &[&str]) -> (Output, PathBuf) {
    let a = write_picture(dir, "a.png", 40, 32, 0);
    let b = write_picture(dir, "b.png", 40, 32, 4);
    let out = dir.join("out");
    let mut args = vec!["correspond".to_string()];
    args.extend(model_args(&fixture("v1_p8_hf.safetensors")));
    args.extend(
        [
            "--image-a",
            &text(&a),
            "--image-b",
            &text(&b),
            "--out",
            &text(&out),
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    (run(args), out)
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn best_buddies_write_pairs_as_text_json_and_a_figure() {
    let dir = tempfile::tempdir().unwrap();
    let (run, out) = correspond(dir.path(), &["--layer", "2", "--num-pairs", "3"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json_file(&out.join("correspondences.json"));
    let pairs = report["best_buddies"]["pairs"].as_array().unwrap();
    assert!(pairs.len() <= 3);
    assert_eq!(report["grid_a"], serde_json::json!([7, 9]));
    for (file, key) in [
        ("correspondence_A.txt", "model_a"),
        ("correspondence_B.txt", "model_b"),
    ] {
        let lines: Vec<String> = std::fs::read_to_string(out.join(file))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), pairs.len());
        for (line, pair) in lines.iter().zip(pairs) {
            let (y, x) = line.split_once(", ").unwrap();
            let (y, x): (u64, u64) = (y.parse().unwrap(), x.parse().unwrap());
            assert_eq!(serde_json::json!([y, x]), pair[key]);
            // idx * 4 + 8 / 2 for stride 4, patch 8.
            assert_eq!((y % 4, x % 4), (0, 0));
        }
    }
    let figure = image::open(out.join("correspondences.png")).unwrap();
    assert_eq!((figure.width(), figure.height()), (80, 32));
}

#[test]
fn a_point_query_on_the_same_image_finds_the_clicked_patch() {
    let dir = tempfile::tempdir().unwrap();
    let picture = write_picture(dir.path(), "a.png", 40, 32, 0);
    let out = dir.path().join("out");
    let mut args = vec!["correspond".to_string()];
    args.extend(model_args(&fixture("v1_p8_hf.safetensors")));
    args.extend(
        [
            "--image-a",
            &text(&picture),
            "--image-b",
            &text(&picture),
            "--layer",
            "2",
            "--point",
            "21,13",
            "--out",
            &text(&out),
        ]
        .map(String::from),
    );
    let run = run(args);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json_file(&out.join("point.json"));
    // Pixel (21, 13) -> centre (21.5, 13.5) -> nearest patch centre (20, 12) = row 2, col 4.
    assert_eq!(report["source"]["patch"], 2 * 9 + 4);
    assert_eq!(report["target"]["best_patch"], 2 * 9 + 4);
    assert_eq!(
        report["target"]["best_patch_center"],
        serde_json::json!([19.5, 11.5])
    );
    assert_eq!(report["score"], "cos");
    let (shape, scores) = read_npy(&out.join("similarity.npy")).unwrap();
    assert_eq!(shape, vec![7, 9]);
    assert!((scores[2 * 9 + 4] - 1.0).abs() < 1e-5);
    let figure = image::open(out.join("point.png")).unwrap();
    assert_eq!((figure.width(), figure.height()), (80, 32));
}

#[test]
fn the_reference_layer_is_checked_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = correspond(dir.path(), &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("layer 9 does not exist: the model has 3 blocks"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn fusing_with_external_maps_or_a_second_model_matches_with_l2() {
    let dir = tempfile::tempdir().unwrap();
    // [C, h, w] maps with the images' aspect (grid 7 x 9 vs 4 x 5).
    let data: Vec<f32> = (0..3 * 4 * 5).map(|i| ((i * 7) % 11) as f32).collect();
    let (ea, eb) = (dir.path().join("a_sd.npy"), dir.path().join("b_sd.npy"));
    write_npy(&ea, &[3, 4, 5], &data).unwrap();
    write_npy(&eb, &[1, 3, 4, 5], &data).unwrap();
    let (run, out) = correspond(
        dir.path(),
        &[
            "--layer",
            "2",
            "--point",
            "10,10",
            "--fuse-features-a",
            &text(&ea),
            "--fuse-features-b",
            &text(&eb),
            "--source-weights",
            "1,0.5",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(json_file(&out.join("point.json"))["score"], "l2");

    let second = fixture("v2_p14_hf.safetensors");
    let (run, out) = correspond(
        dir.path(),
        &[
            "--layer",
            "2",
            "--no-bin",
            "--fuse-weights",
            &text(&second),
            "--fuse-heads",
            "2",
            "--num-pairs",
            "2",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json_file(&out.join("correspondences.json"));
    assert_eq!(report["score"], "l2");
    assert_eq!(report["grid_a"], serde_json::json!([7, 9]));
}

#[test]
fn a_bad_external_map_fails_with_exit_code_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat_features.npy");
    write_npy(&flat, &[12], &[0.5; 12]).unwrap();
    let (run, _) = correspond(
        dir.path(),
        &[
            "--layer",
            "2",
            "--fuse-features-a",
            &text(&flat),
            "--fuse-features-b",
            &text(&flat),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    let message = stderr(&run);
    assert!(
        message.contains("flat_features.npy") && message.contains("[C, h, w]"),
        "{message}"
    );
}

#[test]
fn eval_pck_on_the_tiny_spair_fixture_reports_every_alpha() {
    let mut args = vec!["eval-pck".to_string()];
    args.extend(model_args(&fixture("v1_p8_hf.safetensors")));
    args.extend(["--spair", &text(&fixture("spair_tiny")), "--layer", "2"].map(String::from));
    let run = run(args);
    assert!(run.status.success(), "{}", stderr(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["alphas"], serde_json::json!([0.1, 0.05, 0.01]));
    assert_eq!(summary["overall"]["pairs"], 3);
    assert_eq!(summary["overall"]["points"], 8);
    for key in ["per_point", "per_image"] {
        let values = summary["overall"][key].as_array().unwrap();
        assert_eq!(values.len(), 3);
        assert!(
            values
                .iter()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap()))
        );
    }
    assert!(summary["per_category"]["dog"].is_object());
}

#[test]
fn eval_pck_on_a_stereo_pair_scores_sampled_points() {
    let dir = tempfile::tempdir().unwrap();
    // Right = left shifted by 8 pixels: left (x, y) is right (x - 8, y).
    let left = write_picture(dir.path(), "left.png", 64, 48, 8);
    let right = write_picture(dir.path(), "right.png", 64, 48, 0);
    let disparity = dir.path().join("disp.npy");
    write_npy(&disparity, &[48, 64], &[8.0; 48 * 64]).unwrap();
    let mut args = vec!["eval-pck".to_string()];
    args.extend(model_args(&fixture("v1_p8_hf.safetensors")));
    args.extend(
        [
            "--stereo",
            &text(&left),
            &text(&right),
            &text(&disparity),
            "--layer",
            "2",
            "--step",
            "8",
        ]
        .map(String::from),
    );
    let run = run(args.clone());
    assert!(run.status.success(), "{}", stderr(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // Columns 4, 12, ..., 60 minus column 4 (4 - 8 < 0), rows 4, ..., 44.
    assert_eq!(report["report"]["points"], 7 * 6);
    assert_eq!(report["report"]["pck_alpha"].as_array().unwrap().len(), 3);
    assert_eq!(report["report"]["normalizer"], 64.0);

    let small = dir.path().join("small.npy");
    write_npy(&small, &[4, 4], &[1.0; 16]).unwrap();
    let position = args.iter().position(|a| a == &text(&disparity)).unwrap();
    args[position] = text(&small);
    let run = self::run(args);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("small.npy: the disparity map is 4x4"),
        "{}",
        stderr(&run)
    );
}
