//! The Stable Diffusion VAE encoder against diffusers 0.42.1 on a tiny `AutoencoderKL` with SD's
//! structure (tools/make_sd_unet_vae_fixtures.py), with current and legacy attention names.

mod sd_common;

use burn::tensor::Device;
use dinoscope::model::sd::{SdLoadError, VaeEncoder, WeightsProblem};
use sd_common::{check, fixture, golden, read};

fn check_vae(folder: &str, device: &Device, rel: f32) {
    let vae = VaeEncoder::load(&fixture(folder), device).unwrap();
    assert_eq!(vae.config().scaling_factor, 0.18215);
    let g = golden("vae");
    let posterior = vae.encode(read(&g, "image", device));
    let what = |name: &str| format!("{folder} {name}");
    check(
        &what("mean"),
        posterior.mean.clone(),
        read(&g, "mean", device),
        rel,
    );
    check(
        &what("logvar"),
        posterior.logvar.clone(),
        read(&g, "logvar", device),
        rel,
    );
    check(
        &what("latent_mean"),
        posterior.latent_mean(),
        read(&g, "latent_mean", device),
        rel,
    );
    check(
        &what("latent_sample"),
        posterior.latent_sample(read(&g, "eps", device)),
        read(&g, "latent_sample", device),
        rel,
    );
}

#[test]
fn vae_encoder_matches_diffusers_on_the_cpu() {
    check_vae("vae", &dinoscope::model::backend::cpu().device, 1e-4);
}

#[test]
fn legacy_attention_names_and_1x1_conv_weights_load() {
    check_vae(
        "vae_old_names",
        &dinoscope::model::backend::cpu().device,
        1e-4,
    );
}

/// The wgpu backend (lavapipe in CI): fails, never skips, without an adapter.
#[test]
fn vae_encoder_on_wgpu_matches_diffusers() {
    let gpu = dinoscope::model::backend::gpu().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter, so the wgpu backend cannot be checked ({e}): install a GPU driver \
             or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        )
    });
    check_vae("vae", &gpu.device, 1e-3);
}

#[test]
fn vae_loading_errors_name_the_file() {
    let device = dinoscope::model::backend::cpu().device;
    // A UNet folder is not a VAE.
    let err = match VaeEncoder::load(&fixture("unet_v1"), &device) {
        Ok(_) => panic!("a UNet loaded as a VAE"),
        Err(e) => e,
    };
    assert!(matches!(err, SdLoadError::Config { .. }), "{err}");
    assert!(err.to_string().contains("_class_name"), "{err}");

    // Encoder weights missing (only the decoder left).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("vae/config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(fixture("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let decoder: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("encoder.mid_block"))
        .collect();
    let weights = dir.path().join("diffusion_pytorch_model.fp16.safetensors");
    std::fs::write(&weights, safetensors::serialize(decoder, None).unwrap()).unwrap();
    let err = match VaeEncoder::load(dir.path(), &device) {
        Ok(_) => panic!("loaded without a mid block"),
        Err(e) => e,
    };
    let SdLoadError::Weights(w) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&w.problem, WeightsProblem::Missing { name } if name.starts_with("encoder.mid_block")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("diffusion_pytorch_model.fp16.safetensors"),
        "{err}"
    );

    // Truncated.
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    let err = match VaeEncoder::load(dir.path(), &device) {
        Ok(_) => panic!("loaded a truncated file"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("truncated"), "{err}");
}
