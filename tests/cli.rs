//! End-to-end runs of the `dinoscope` binary on the fixture checkpoints.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{dinoscope, dinoscope_with_env, fixture, stderr};
use dinoscope::arrays::read_npy;
use dinoscope::model::preprocess::normalize;
use dinoscope::model::{LoadOptions, load_model};

/// A 40 x 32 (w x h) test picture, sides multiples of the fixture's patch size 8.
fn write_picture(dir: &Path) -> (std::path::PathBuf, image::RgbImage) {
    write_sized_picture(dir, "picture.png", 40, 32)
}

/// A `width x height` test picture of gradients and a product pattern, saved as `dir/name`.
fn write_sized_picture(
    dir: &Path,
    name: &str,
    width: u32,
    height: u32,
) -> (std::path::PathBuf, image::RgbImage) {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 7) as u8, ((x * y) % 251) as u8])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    (path, img)
}

#[test]
fn embed_with_resize_none_uses_the_pixels_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, img) = write_picture(dir.path());
    let out = dir.path().join("cls.npy");
    let weights = fixture("v1_p8.pth");
    let run = dinoscope_with_env(
        &[
            "embed",
            "--weights",
            weights.to_str().unwrap(),
            "--image",
            picture.to_str().unwrap(),
            "--heads",
            "2",
            "--device",
            "cpu",
            "--resize",
            "none",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("RAYON_NUM_THREADS", "1")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("device: CPU (burn Flex, 1 thread)"),
        "the device choice and its thread count are printed: {}",
        stderr(&run)
    );
    let (shape, cls) = read_npy(&out).unwrap();
    assert_eq!(shape, vec![32]);

    let device = Device::flex();
    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    let model = load_model(&weights, &options, &device).unwrap();
    let input = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(normalize(&img), [1, 3, 32, 40]),
        &device,
    );
    let expected = model
        .vit
        .forward(input)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let err = cls
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-6, "CLI and library differ by {err}");
}

#[test]
fn attention_writes_maps_pngs_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_picture(dir.path());
    let out = dir.path().join("attn");
    let run = dinoscope(&[
        "attention",
        "--weights",
        fixture("v1_p8.pth").to_str().unwrap(),
        "--image",
        picture.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--threshold",
        "0.6",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (shape, values) = read_npy(&out.join("attention.npy")).unwrap();
    assert_eq!(shape, vec![2, 4, 5]);
    for head in values.chunks(20) {
        let mass: f32 = head.iter().sum();
        assert!(
            mass > 0.0 && mass < 1.0,
            "patch share of a softmax row: {mass}"
        );
    }
    for name in [
        "attn-head0.png",
        "attn-head1.png",
        "attn-mean.png",
        "mask_th0.6_head0.png",
        "img.png",
    ] {
        let png = image::open(out.join(name)).unwrap();
        assert_eq!((png.width(), png.height()), (40, 32), "{name}");
    }
}

#[test]
fn features_with_overlapping_patches() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_picture(dir.path());
    let out = dir.path().join("f.npy");
    let run = dinoscope(&[
        "features",
        "--weights",
        fixture("v1_p8_hf.safetensors").to_str().unwrap(),
        "--image",
        picture.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--layer",
        "2",
        "--facet",
        "key",
        "--stride",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (shape, _) = read_npy(&out).unwrap();
    // Grid 1 + (32 - 8) / 4 = 7 rows by 1 + (40 - 8) / 4 = 9 columns.
    assert_eq!(shape, vec![63, 32]);
}

#[test]
fn features_do_not_depend_on_the_thread_count() {
    // 1,209 tokens at stride 4: several attention query blocks, LayerNorm and bias-fill tasks, and
    // linear layers large enough for gemm's own parallel split.
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_sized_picture(dir.path(), "wide.png", 160, 128);
    let features = |threads: &str| {
        let out = dir.path().join(format!("f{threads}.npy"));
        let run = dinoscope_with_env(
            &[
                "features",
                "--weights",
                fixture("v1_p8_hf.safetensors").to_str().unwrap(),
                "--image",
                picture.to_str().unwrap(),
                "--heads",
                "2",
                "--device",
                "cpu",
                "--resize",
                "none",
                "--layer",
                "2",
                "--stride",
                "4",
                "--out",
                out.to_str().unwrap(),
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(run.status.success(), "{}", stderr(&run));
        read_npy(&out).unwrap()
    };
    let (shape, one) = features("1");
    assert_eq!(shape, vec![39 * 31, 32]);
    for threads in ["2", "3"] {
        assert!(
            features(threads).1 == one,
            "{threads} threads give other features than one"
        );
    }
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_picture(dir.path());
    let out = dir.path().join("x.npy");
    let run = dinoscope(&[
        "embed",
        "--weights",
        fixture("truncated.pth").to_str().unwrap(),
        "--image",
        picture.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("truncated.pth: the file is truncated or corrupt"),
        "{}",
        stderr(&run)
    );

    let run = dinoscope(&[
        "attention",
        "--weights",
        fixture("v1_p8.pth").to_str().unwrap(),
        "--image",
        picture.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--layer",
        "7",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("--layer 7 is out of range: the model has 3 blocks"),
        "{}",
        stderr(&run)
    );

    let run = dinoscope(&[
        "embed",
        "--weights",
        "w.pth",
        "--image",
        "i.png",
        "--arch",
        "vit-huge",
        "--out",
        "o",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("unknown architecture `vit-huge`"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn attention_from_a_query_patch_and_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_picture(dir.path());
    let run_with = |query: &str, out: &Path| {
        dinoscope(&[
            "attention",
            "--weights",
            fixture("v1_p8.pth").to_str().unwrap(),
            "--image",
            picture.to_str().unwrap(),
            "--heads",
            "2",
            "--device",
            "cpu",
            "--query",
            query,
            "--rollout",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (query, out) in [("0,0", &a), ("3,4", &b)] {
        let run = run_with(query, out);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let (shape, first) = read_npy(&a.join("attention.npy")).unwrap();
    let (_, second) = read_npy(&b.join("attention.npy")).unwrap();
    assert_eq!(shape, vec![2, 4, 5]);
    assert_ne!(first, second, "different query patches attend differently");
    let (shape, rollout) = read_npy(&a.join("rollout.npy")).unwrap();
    assert_eq!(shape, vec![4, 5]);
    assert!(rollout.iter().all(|v| v.is_finite() && *v >= 0.0));
    let bad = run_with("3;4", &a);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected ROW,COL"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn pca_colours_a_folder_jointly() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    write_picture(&images);
    image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, 90, (y * 6) as u8])
    })
    .save(images.join("second.png"))
    .unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let out = dir.path().join("pca");
    let run = dinoscope(&[
        "pca",
        "--weights",
        fixture("v1_p8_hf.safetensors").to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--resize",
        "none",
        "--stride",
        "4",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (shape, values) = read_npy(&out.join("picture_pca.npy")).unwrap();
    assert_eq!(shape, vec![7, 9, 3]);
    assert!(values.iter().any(|v| *v != 0.0));
    let png = image::open(out.join("second_pca.png")).unwrap();
    assert_eq!((png.width(), png.height()), (48, 40));

    let bad = dinoscope(&[
        "pca",
        "--weights",
        fixture("v1_p8_hf.safetensors").to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        dir.path().join("missing.png").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("missing.png"), "{}", stderr(&bad));
}

#[test]
fn eval_synthetic_scores_a_seeded_baseline_on_the_scenes_of_a_run_config() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval-synthetic",
            "--size",
            "32",
            "--train",
            "10",
            "--test",
            "6",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        dinoscope(&args)
    };
    let plain = eval(&[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let report: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(report["test_scenes"], 6);
    assert_eq!(
        eval(&[]).stdout,
        plain.stdout,
        "seeded baseline is repeatable"
    );

    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"synthetic": {"object_scale": [0.4, 0.45], "background_contrast": 0.0}}"#,
    )
    .unwrap();
    let run_scenes = eval(&["--scenes-from", config.to_str().unwrap()]);
    assert!(run_scenes.status.success(), "{}", stderr(&run_scenes));
    assert_ne!(
        run_scenes.stdout, plain.stdout,
        "other scenes, other scores"
    );

    let missing = eval(&[
        "--scenes-from",
        dir.path().join("nope.json").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("nope.json"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn every_benchmark_refuses_zero_timed_iterations_with_one_message() {
    for command in [
        vec!["bench", "--iters", "0"],
        vec!["bench-train", "--iters", "0"],
        vec!["bench-analysis", "a.png", "--data-out", "d", "--iters", "0"],
    ] {
        let out = dinoscope(&command);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(
            err.contains("--iters") && err.contains("at least 1 timed iteration is needed"),
            "{command:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{command:?}: {err}");
    }
}

#[test]
fn a_successful_command_without_a_desktop_session_prints_no_driver_noise() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args([
            "bench", "--arch", "vit-nano", "--size", "16", "--iters", "1",
        ])
        .args(["--warmup", "0", "--device", "auto"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!err.to_lowercase().contains("error"), "{err}");
}
