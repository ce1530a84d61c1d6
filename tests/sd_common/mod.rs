//! Helpers for the Stable Diffusion parity tests: fixture folders, golden tensors, comparison.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use dinoscope::model::sd::SafetensorsFile;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sd")
        .join(name)
}

pub fn golden(model: &str) -> SafetensorsFile {
    SafetensorsFile::open(&fixture(model).join("golden.safetensors")).unwrap()
}

/// A golden tensor with its stored shape.
pub fn read<const D: usize>(file: &SafetensorsFile, name: &str, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = file
        .shape(name)
        .unwrap_or_else(|| panic!("golden tensor {name} missing"))
        .try_into()
        .unwrap_or_else(|_| panic!("golden tensor {name} is not {D}-d"));
    file.tensor(name, shape, device).unwrap()
}

/// The values of a golden 1-d tensor.
pub fn values(file: &SafetensorsFile, name: &str) -> Vec<f32> {
    let shape = file.shape(name).unwrap().to_vec();
    file.read(name, &shape).unwrap()
}

/// Checks `got` against `want` within `rel * max(1, max|want|)` and returns the max |difference|.
pub fn check<const D: usize>(what: &str, got: Tensor<D>, want: Tensor<D>, rel: f32) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got: Vec<f32> = got.into_data().convert::<f32>().try_to_vec().unwrap();
    let want: Vec<f32> = want.into_data().convert::<f32>().try_to_vec().unwrap();
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| {
        if (a - b).abs().is_nan() {
            f32::INFINITY
        } else {
            m.max((a - b).abs())
        }
    });
    println!("{what}: max|d| = {diff:.2e} (max|ref| = {scale:.3})");
    assert!(
        diff <= rel * scale,
        "{what}: max|d| = {diff} over {} (max|ref| {scale})",
        rel * scale
    );
    diff
}
