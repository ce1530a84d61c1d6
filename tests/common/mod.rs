//! Helpers shared by the integration tests: fixture paths and tensor comparison.

#![allow(dead_code)]

pub mod fake_hub;
pub mod ffmpeg;
pub mod http;
pub mod sd_folder;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};

/// A DINO run small enough for a test: batch 4, a 64-prototype head, 2 local crops, 8 synthetic
/// scenes of `scene_size` pixels, no periodic evaluation.
pub fn tiny_train_config(scene_size: u32) -> dinoscope::train::TrainConfig {
    use dinoscope::train::config::HeadShape;
    use dinoscope::train::{AugmentConfig, SyntheticConfig, TrainConfig};
    TrainConfig {
        batch: 4,
        head: HeadShape {
            out_dim: 64,
            hidden_dim: 32,
            bottleneck_dim: 16,
            ..HeadShape::default()
        },
        augment: AugmentConfig {
            local_crops: 2,
            ..AugmentConfig::default()
        },
        synthetic: SyntheticConfig {
            size: scene_size,
            images: 8,
            ..SyntheticConfig::default()
        },
        eval_every: 0,
        ..TrainConfig::default()
    }
}

/// Runs the crate's binary with `args` and waits for it.
pub fn dinoscope(args: &[&str]) -> std::process::Output {
    dinoscope_with_env(args, &[])
}

/// Runs the crate's binary with `args` and extra environment variables, and waits for it.
pub fn dinoscope_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run dinoscope")
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("manifest.json"))
        .expect("tests/fixtures/manifest.json (run tools/make_fixtures.py)");
    serde_json::from_str(&text).expect("valid manifest")
}

/// All tensors of a safetensors fixture as (shape, f32 data).
pub fn read_expected(name: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture(name)).expect("fixture file");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors fixture");
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

pub fn to_tensor<const D: usize>(
    shape: &[usize],
    data: &[f32],
    device: &burn::tensor::Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data.to_vec(), shape.to_vec()), device)
}

/// Largest absolute difference, panicking on a shape mismatch.
pub fn max_abs_diff<const D: usize>(
    actual: Tensor<D>,
    expected: &(Vec<usize>, Vec<f32>),
    what: &str,
) -> f32 {
    let dims = actual.dims().to_vec();
    let flat: usize = dims.iter().product();
    assert_eq!(
        flat,
        expected.1.len(),
        "{what}: shape {dims:?} vs expected {:?}",
        expected.0
    );
    let values = actual.into_data().try_into_vec::<f32>().unwrap();
    values
        .iter()
        .zip(&expected.1)
        .map(|(a, e)| (a - e).abs())
        .fold(0f32, f32::max)
}

/// Three classes of 8 images: a colour per class, stripes and noise varying within the class.
pub fn labelled_folder(root: &std::path::Path) {
    let colours = [
        ("blue", [40u8, 60, 200]),
        ("green", [40, 180, 60]),
        ("red", [200, 40, 40]),
    ];
    for (class, colour) in colours {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..8u32 {
            image::RgbImage::from_fn(40, 32, |x, y| {
                let stripe = ((x + i * 3) / (2 + i % 3)) % 2 == 0;
                let wobble = ((x * 7 + y * 13 + i * 31) % 23) as u8;
                image::Rgb(colour.map(|c| {
                    c.saturating_add(wobble)
                        .saturating_sub(if stripe { 30 } else { 0 })
                }))
            })
            .save(root.join(class).join(format!("{i}.png")))
            .unwrap();
        }
    }
    // An unlabelled file in the root.
    image::RgbImage::new(40, 32)
        .save(root.join("loose.png"))
        .unwrap();
}
