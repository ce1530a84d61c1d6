//! Both SD feature recipes end to end on the tiny fixture networks, against the same steps run
//! with diffusers (`tools/make_sd_pipeline_fixtures.py`) with the same injected noise.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use dinoscope::analysis::features::FeatureMap;
use dinoscope::analysis::sd_features::extract::{
    NoiseSource, SdFeatureError, SdNetworks, dift, sd_dino,
};
use dinoscope::analysis::sd_features::{PosteriorChoice, SdFeatureSettings};
use dinoscope::model::sd::SafetensorsFile;
use dinoscope::model::sd::unet::{Unet, UnetTap};
use dinoscope::model::sd::vae::VaeEncoder;
use image::RgbImage;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd")
}

fn golden() -> SafetensorsFile {
    SafetensorsFile::open(&fixtures().join("pipeline_golden.safetensors")).unwrap()
}

fn values(file: &SafetensorsFile, name: &str) -> (Vec<usize>, Vec<f32>) {
    let shape = file.shape(name).unwrap().to_vec();
    let values = file.read(name, &shape).unwrap();
    (shape, values)
}

/// The fixture script's image: `(3x + 5y + 70c + (x y) mod 17) mod 256`.
fn procedural(size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let (x, y) = (x as u64, y as u64);
        image::Rgb([0u64, 1, 2].map(|c| ((3 * x + 5 * y + 70 * c + (x * y) % 17) % 256) as u8))
    })
}

fn context(device: &Device) -> Tensor<3> {
    let (shape, data) = values(&golden(), "context");
    Tensor::from_data(
        TensorData::new(data, [shape[0], shape[1], shape[2]]),
        device,
    )
}

fn networks(unet: &str, taps: &[UnetTap], device: &Device) -> SdNetworks {
    SdNetworks {
        unet: Unet::load(&fixtures().join(unet), device, taps).unwrap(),
        vae: VaeEncoder::load(&fixtures().join("vae"), device).unwrap(),
    }
}

/// Max |ours - reference| over max(1, max |reference|), with `[1, C, h, w]` reference values.
fn compare(ours: &FeatureMap, name: &str) -> f32 {
    let (shape, reference) = values(&golden(), name);
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    assert_eq!(
        (ours.dim, ours.grid.rows, ours.grid.cols),
        (c, h, w),
        "{name}"
    );
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for k in 0..c {
        for cell in 0..h * w {
            worst = worst.max((ours.data[cell * c + k] - reference[k * h * w + cell]).abs());
        }
    }
    let relative = worst / scale;
    println!("{name}: max |d| {worst:.2e}, relative {relative:.2e}");
    relative
}

fn keep_going() -> impl FnMut(f32, &str) -> bool {
    |_, _| true
}

fn dift_settings() -> SdFeatureSettings {
    SdFeatureSettings {
        size: 128,
        ensemble: 2,
        posterior: PosteriorChoice::Mean,
        ..SdFeatureSettings::dift()
    }
}

fn check_dift(device: &Device, tolerance: f32) {
    let nets = networks("unet_v2", &[UnetTap::UpBlock(1)], device);
    let (_, noise) = values(&golden(), "dift_noise");
    let map = dift(
        &nets,
        &procedural(128),
        &context(device),
        &dift_settings(),
        NoiseSource::Injected(&noise),
        &mut keep_going(),
    )
    .unwrap();
    assert_eq!((map.grid.stride, map.image_size), (16, (128, 128)));
    let error = compare(&map, "dift_features");
    assert!(error <= tolerance, "DIFT features off by {error}");
}

fn check_sd_dino(device: &Device, tolerance: f32) {
    let taps = [0, 1, 2].map(UnetTap::UpBlockLayer1);
    let nets = networks("unet_v1", &taps, device);
    let (_, noise) = values(&golden(), "sd_dino_noise");
    let mut stages = Vec::new();
    let out = sd_dino(
        &nets,
        &procedural(960),
        &context(device),
        &SdFeatureSettings::sd_dino(),
        NoiseSource::Injected(&noise),
        &mut |_, what: &str| {
            stages.push(what.to_string());
            true
        },
    )
    .unwrap();
    assert_eq!(out.letterbox.offset, (0, 0));
    assert!(
        stages.iter().any(|s| s.contains("window 4 of 4")),
        "{stages:?}"
    );
    for (map, name, stride) in [
        (&out.taps.s5, "sd_dino_s5", 64),
        (&out.taps.s4, "sd_dino_s4", 32),
        (&out.taps.s3, "sd_dino_s3", 16),
    ] {
        assert_eq!(map.grid.stride, stride, "{name}");
        let error = compare(map, name);
        assert!(error <= tolerance, "{name} off by {error}");
    }
}

#[test]
fn dift_matches_diffusers_with_injected_noise() {
    check_dift(&Device::flex(), 1e-4);
}

#[test]
fn sd_dino_windows_match_odise_with_injected_noise() {
    check_sd_dino(&Device::flex(), 1e-4);
}

/// The same on the wgpu backend (CI has Mesa's lavapipe); fails without an adapter.
#[test]
fn both_recipes_match_on_wgpu() {
    let gpu = dinoscope::model::backend::gpu()
        .unwrap_or_else(|e| panic!("no wgpu adapter, so the wgpu backend cannot be checked ({e})"));
    check_dift(&gpu.device, 1e-3);
    check_sd_dino(&gpu.device, 1e-3);
}

#[test]
fn a_cancelled_run_stops_inside_the_unet_pass_and_returns_nothing() {
    let device = Device::flex();
    let nets = networks("unet_v2", &[UnetTap::UpBlock(1)], &device);
    let mut calls = 0;
    let result = dift(
        &nets,
        &procedural(128),
        &context(&device),
        &dift_settings(),
        NoiseSource::Seeded,
        &mut |_, _| {
            calls += 1;
            calls < 3
        },
    );
    assert!(
        matches!(result, Err(SdFeatureError::Cancelled(_))),
        "{result:?}"
    );
    // The VAE, the first pass's start, then its first layer: the stop comes inside the pass.
    assert_eq!(calls, 3);
}

#[test]
fn seeded_runs_repeat_and_wrongly_sized_noise_is_refused() {
    let device = Device::flex();
    let nets = networks("unet_v2", &[UnetTap::UpBlock(1)], &device);
    let settings = SdFeatureSettings {
        posterior: PosteriorChoice::Sample,
        ..dift_settings()
    };
    let run = |noise| {
        dift(
            &nets,
            &procedural(128),
            &context(&device),
            &settings,
            noise,
            &mut keep_going(),
        )
    };
    let (a, b) = (
        run(NoiseSource::Seeded).unwrap(),
        run(NoiseSource::Seeded).unwrap(),
    );
    assert_eq!(a.data, b.data);
    let err = run(NoiseSource::Injected(&[0.0; 10])).unwrap_err();
    assert!(err.to_string().contains("2 x 4 x 16 x 16 = 2048"), "{err}");
}
