//! End-to-end runs of `dinoscope token-norms` on the fixture checkpoints.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{dinoscope, fixture, stderr};
use dinoscope::analysis::token_norms::{all_token_norms, register_attention};
use dinoscope::arrays::read_npy;
use dinoscope::model::preprocess::prepare;
use dinoscope::model::{LoadOptions, Resize, load_model};

/// A 70 x 42 (w x h) picture: a 3 x 5 grid of the fixtures' 14-pixel patches.
fn write_picture(dir: &Path) -> (PathBuf, image::RgbImage) {
    let img = image::RgbImage::from_fn(70, 42, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    });
    let path = dir.join("picture.png");
    img.save(&path).unwrap();
    (path, img)
}

fn run(weights: &str, picture: &Path, extra: &[&str]) -> std::process::Output {
    let weights = fixture(weights);
    let mut args = vec![
        "token-norms",
        "--weights",
        weights.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--image",
        picture.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dinoscope(&args)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn token_norms_of_every_block_and_register_attention_match_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, img) = write_picture(dir.path());
    let norms = dir.path().join("norms.npy");
    let registers = dir.path().join("reg.npy");
    let out = run(
        "v2_reg4_teacher_checkpoint.pth",
        &picture,
        &[
            "--block",
            "all",
            "--out",
            norms.to_str().unwrap(),
            "--registers-out",
            registers.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("block 3: ") && stderr(&out).contains("patches above"),
        "each block's outliers are reported: {}",
        stderr(&out)
    );

    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    let vit = load_model(
        &fixture("v2_reg4_teacher_checkpoint.pth"),
        &options,
        &Device::flex(),
    )
    .unwrap()
    .vit;
    let prepared = prepare(&img, Resize::None, 14, 1000).unwrap();
    let expected = all_token_norms(&vit, &prepared).unwrap();
    let (shape, values) = read_npy(&norms).unwrap();
    assert_eq!(shape, vec![4, 3, 5]);
    let flat: Vec<f32> = expected.iter().flat_map(|n| n.patches.clone()).collect();
    assert!(max_diff(&values, &flat) < 1e-5);

    // Register attention of the last block, mean over heads, CLS first.
    let (shape, values) = read_npy(&registers).unwrap();
    assert_eq!(shape, vec![1 + 15, 4]);
    let attn = register_attention(&vit, &prepared, 3).unwrap();
    assert!(max_diff(&values, &attn.head_mean()) < 1e-6);

    // One block: `[rows, cols]`.
    let one = dir.path().join("one.npy");
    let out = run(
        "v2_reg4_teacher_checkpoint.pth",
        &picture,
        &["--block", "1", "--out", one.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, values) = read_npy(&one).unwrap();
    assert_eq!(shape, vec![3, 5]);
    assert!(max_diff(&values, &expected[1].patches) < 1e-5);
}

#[test]
fn register_attention_of_a_model_without_registers_and_a_bad_block_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (picture, _) = write_picture(dir.path());
    let norms = dir.path().join("norms.npy");
    let registers = dir.path().join("reg.npy");
    let out = run(
        "v2_p14.pth",
        &picture,
        &[
            "--out",
            norms.to_str().unwrap(),
            "--registers-out",
            registers.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the model has no register tokens"),
        "{}",
        stderr(&out)
    );
    assert!(!norms.exists() && !registers.exists(), "nothing is written");

    let out = run(
        "v2_p14.pth",
        &picture,
        &["--block", "3", "--out", norms.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--block 3 is out of range: the model has 3 blocks"),
        "{}",
        stderr(&out)
    );
    let out = run(
        "v2_p14.pth",
        &picture,
        &["--block", "last", "--out", norms.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected a 0-based block index or `all`"),
        "{}",
        stderr(&out)
    );
}
