//! The Stable Diffusion UNet against diffusers 0.42.1 on tiny models with SD's structure
//! (tools/make_sd_unet_vae_fixtures.py): every tap, both flavours (SD 1.x conv projections in f32,
//! SD 2.1 linear projections from an fp16 file), on the CPU and on wgpu; early exit; bad inputs.

mod sd_common;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use dinoscope::model::sd::{
    LoadedUpBlock, SdLoadError, Unet, UnetInputError, UnetTap, WeightsProblem,
};
use sd_common::{check, fixture, golden, read, values};

const CPU_REL: f32 = 1e-4;
const GPU_REL: f32 = 1e-3;

fn full(model: &str, device: &Device) -> Unet {
    Unet::load(&fixture(model), device, &[UnetTap::Output]).unwrap()
}

/// Compares every traced output of `case` (`square`: batch 4, t = 0, 100, 261, 999; `wide`: 16x24;
/// `odd`: 12x12, not a multiple of the UNet's stride of 8).
fn check_trace(model: &str, case: &str, device: &Device, rel: f32) {
    let unet = full(model, device);
    let g = golden(model);
    let name = |tap: &str| format!("{case}.{tap}");
    let t = values(&g, &name("t"));
    let trace = unet
        .trace(
            read(&g, &name("latent"), device),
            &t,
            read(&g, &name("context"), device),
        )
        .unwrap();
    let what = |tap: &str| format!("{model} {case} {tap}");
    check(
        &what("time_embedding"),
        trace.time_embedding,
        read(&g, &name("time_embedding"), device),
        rel,
    );
    assert_eq!(trace.down_blocks.len(), 4);
    for (i, x) in trace.down_blocks.into_iter().enumerate() {
        let tap = format!("down.{i}");
        check(&what(&tap), x, read(&g, &name(&tap), device), rel);
    }
    check(&what("mid"), trace.mid, read(&g, &name("mid"), device), rel);
    assert_eq!(trace.up_blocks.len(), 4);
    assert_eq!(trace.up_layer1.len(), 4);
    for (u, (x, layer1)) in trace.up_blocks.into_iter().zip(trace.up_layer1).enumerate() {
        let tap = format!("up.{u}");
        check(&what(&tap), x, read(&g, &name(&tap), device), rel);
        let tap = format!("up.{u}.layer1");
        check(&what(&tap), layer1, read(&g, &name(&tap), device), rel);
    }
    let output = trace.output.expect("the full model has conv_out");
    check(&what("out"), output, read(&g, &name("out"), device), rel);
}

fn cpu() -> Device {
    dinoscope::model::backend::cpu().device
}

#[test]
fn sd1_unet_matches_diffusers_on_the_cpu() {
    check_trace("unet_v1", "square", &cpu(), CPU_REL);
    check_trace("unet_v1", "wide", &cpu(), CPU_REL);
    check_trace("unet_v1", "odd", &cpu(), CPU_REL);
}

#[test]
fn sd2_unet_from_fp16_weights_matches_diffusers_on_the_cpu() {
    let unet = full("unet_v2", &cpu());
    assert!(unet.config().use_linear_projection && unet.config().upcast_attention);
    assert_eq!(unet.config().heads, [2, 4, 4, 4]);
    check_trace("unet_v2", "square", &cpu(), CPU_REL);
    check_trace("unet_v2", "wide", &cpu(), CPU_REL);
    check_trace("unet_v2", "odd", &cpu(), CPU_REL);
}

/// The wgpu backend (lavapipe in CI): fails, never skips, without an adapter.
#[test]
fn unet_on_wgpu_matches_diffusers() {
    let gpu = dinoscope::model::backend::gpu().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter, so the wgpu backend cannot be checked ({e}): install a GPU driver \
             or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        )
    });
    println!("wgpu device: {}", gpu.description);
    // Every tap of both flavours; one case each keeps lavapipe's run short.
    check_trace("unet_v1", "square", &gpu.device, GPU_REL);
    check_trace("unet_v2", "wide", &gpu.device, GPU_REL);
}

#[test]
fn a_unet_loaded_for_dift_stops_after_up_block_1() {
    let device = cpu();
    let g = golden("unet_v1");
    let unet = Unet::load(&fixture("unet_v1"), &device, &[UnetTap::UpBlock(1)]).unwrap();
    let whole = LoadedUpBlock {
        layers: 3,
        upsampler: true,
    };
    assert_eq!(unet.loaded_up_blocks(), [whole, whole]);
    assert!(!unet.has_output_head());
    let inputs = || {
        (
            read::<4>(&g, "square.latent", &device),
            values(&g, "square.t"),
            read::<3>(&g, "square.context", &device),
        )
    };
    let (latent, t, context) = inputs();
    let taps = unet
        .forward(latent, &t, context, &[UnetTap::UpBlock(1)])
        .unwrap();
    assert_eq!(taps.len(), 1);
    let reference = read(&g, "square.up.1", &device);
    check("dift tap", taps[0].clone(), reference, CPU_REL);
    // The same tap of the whole network.
    let (latent, t, context) = inputs();
    let from_full = full("unet_v1", &device)
        .forward(latent, &t, context, &[UnetTap::UpBlock(1)])
        .unwrap();
    check(
        "dift tap vs the full model",
        taps[0].clone(),
        from_full[0].clone(),
        1e-6,
    );
    // Taps beyond what was loaded are refused.
    let (latent, t, context) = inputs();
    let err = unet
        .forward(latent, &t, context, &[UnetTap::UpBlockLayer1(2)])
        .unwrap_err();
    assert!(
        matches!(err, UnetInputError::NotLoaded(UnetTap::UpBlockLayer1(2))),
        "{err}"
    );
}

#[test]
fn a_unet_loaded_for_sd_dino_reads_two_layers_of_up_block_2() {
    let device = cpu();
    let g = golden("unet_v2");
    let taps = [0, 1, 2].map(UnetTap::UpBlockLayer1);
    let unet = Unet::load(&fixture("unet_v2"), &device, &taps).unwrap();
    let whole = LoadedUpBlock {
        layers: 3,
        upsampler: true,
    };
    let partial = LoadedUpBlock {
        layers: 2,
        upsampler: false,
    };
    assert_eq!(unet.loaded_up_blocks(), [whole, whole, partial]);
    assert!(!unet.has_output_head());
    // Batch 1 with one timestep and a context shared by the batch.
    let latent: Tensor<4> = read(&g, "wide.latent", &device);
    let features = unet
        .forward(latent, &[261.0], read(&g, "wide.context", &device), &taps)
        .unwrap();
    for (u, x) in features.into_iter().enumerate() {
        let tap = format!("wide.up.{u}.layer1");
        check(&tap, x, read(&g, &tap, &device), CPU_REL);
    }
}

#[test]
fn a_pass_reports_each_layer_and_stops_inside_when_asked() {
    let device = cpu();
    let g = golden("unet_v1");
    let taps = [UnetTap::UpBlockLayer1(2)];
    let unet = Unet::load(&fixture("unet_v1"), &device, &taps).unwrap();
    let latent: Tensor<4> = read(&g, "square.latent", &device);
    let context: Tensor<3> = read(&g, "square.context", &device);
    let mut shares = Vec::new();
    let full = unet
        .forward_cancellable(
            latent.clone(),
            &[100.0],
            context.clone(),
            &taps,
            &mut |done| {
                shares.push(done);
                true
            },
        )
        .unwrap()
        .expect("not cancelled");
    // 4 x 2 down layers, the mid block, 3 + 3 layers of up blocks 0 and 1, 2 of up block 2.
    assert_eq!(shares.len(), 8 + 1 + 3 + 3 + 2, "{shares:?}");
    assert!(shares.windows(2).all(|w| w[0] < w[1]), "{shares:?}");
    assert_eq!(shares.last(), Some(&1.0));
    let plain = unet.forward(latent.clone(), &[100.0], context.clone(), &taps);
    check(
        "cancellable",
        full[0].clone(),
        plain.unwrap()[0].clone(),
        0.0,
    );

    let mut calls = 0;
    let stopped = unet
        .forward_cancellable(latent, &[100.0], context, &taps, &mut |_| {
            calls += 1;
            calls < 4
        })
        .unwrap();
    assert!(stopped.is_none());
    assert_eq!(calls, 4, "ran on after being told to stop");
}

#[test]
fn one_context_serves_a_batch() {
    let device = cpu();
    let g = golden("unet_v1");
    let unet = Unet::load(&fixture("unet_v1"), &device, &[UnetTap::UpBlock(0)]).unwrap();
    let latent: Tensor<4> = read(&g, "square.latent", &device);
    let context: Tensor<3> = read(&g, "square.context", &device);
    let first = context.clone().narrow(0, 0, 1);
    let shared = unet
        .forward(
            latent.clone(),
            &[100.0],
            first.clone(),
            &[UnetTap::UpBlock(0)],
        )
        .unwrap();
    let repeated = unet
        .forward(
            latent,
            &[100.0; 4],
            first.repeat_dim(0, 4),
            &[UnetTap::UpBlock(0)],
        )
        .unwrap();
    check(
        "shared context",
        shared[0].clone(),
        repeated[0].clone(),
        1e-6,
    );
    let err = unet
        .forward(
            read(&g, "square.latent", &device),
            &[1.0, 2.0],
            context.clone(),
            &[UnetTap::UpBlock(0)],
        )
        .unwrap_err();
    assert!(matches!(err, UnetInputError::Batch { .. }), "{err}");
    let err = unet
        .forward(
            read(&g, "square.latent", &device),
            &[1.0],
            context.narrow(2, 0, 4),
            &[UnetTap::UpBlock(0)],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnetInputError::ContextWidth {
                expected: 8,
                found: 4
            }
        ),
        "{err}"
    );
}

/// A copy of the v1 fixture folder to break.
fn scratch_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(fixture("unet_v1").join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> SdLoadError {
    match Unet::load(dir, &cpu(), &[UnetTap::Output]) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn missing_files_are_named() {
    let dir = scratch_copy();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, SdLoadError::Config { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    let dir = scratch_copy();
    std::fs::remove_file(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, SdLoadError::NoWeights { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_missing_tensor_is_named_with_its_file() {
    let dir = scratch_copy();
    let path = dir.path().join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dropped = "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight";
    let kept: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != dropped)
        .collect();
    std::fs::write(&path, safetensors::serialize(kept, None).unwrap()).unwrap();
    let err = load_err(dir.path());
    let SdLoadError::Weights(weights) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&weights.problem, WeightsProblem::Missing { name } if name == dropped),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("diffusion_pytorch_model.safetensors"),
        "{err}"
    );
    // A model loaded only to up_blocks[1] never reads that tensor.
    Unet::load(dir.path(), &cpu(), &[UnetTap::UpBlock(1)]).unwrap();
}

#[test]
fn a_config_that_does_not_fit_the_weights_gives_a_shape_error() {
    let dir = scratch_copy();
    edit_config(dir.path(), |c| c["cross_attention_dim"] = 12.into());
    let err = load_err(dir.path());
    let SdLoadError::Weights(weights) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(weights.problem, WeightsProblem::Shape { .. }),
        "{err}"
    );
}

#[test]
fn a_truncated_weights_file_is_refused() {
    let dir = scratch_copy();
    let path = dir.path().join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    let SdLoadError::Weights(weights) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(weights.problem, WeightsProblem::Truncated { .. }),
        "{err}"
    );
}

type ConfigEdit = fn(&mut serde_json::Value);

#[test]
fn configs_that_are_not_a_stable_diffusion_unet_are_refused_by_key() {
    let cases: [(&str, ConfigEdit); 5] = [
        ("down_block_types", |c| {
            c["down_block_types"][3] = "CrossAttnDownBlock2D".into()
        }),
        ("up_block_types", |c| {
            c["up_block_types"][0] = "CrossAttnUpBlock2D".into()
        }),
        ("transformer_layers_per_block", |c| {
            c["transformer_layers_per_block"] = 2.into()
        }),
        ("attention_head_dim", |c| c["attention_head_dim"] = 3.into()),
        ("_class_name", |c| c["_class_name"] = "AutoencoderKL".into()),
    ];
    for (key, edit) in cases {
        let dir = scratch_copy();
        edit_config(dir.path(), edit);
        let err = load_err(dir.path());
        assert!(matches!(err, SdLoadError::Config { .. }), "{key}: {err}");
        let message = err.to_string();
        assert!(message.contains(&format!("`{key}`")), "{message}");
        assert!(message.contains("config.json"), "{message}");
    }
    // The VAE's folder is not a UNet either.
    let err = load_err(&fixture("vae"));
    assert!(err.to_string().contains("_class_name"), "{err}");
}

#[test]
fn taps_outside_the_unet_are_refused() {
    let err = Unet::load(&fixture("unet_v1"), &cpu(), &[UnetTap::UpBlock(4)]).unwrap_err();
    assert!(
        matches!(err, SdLoadError::TapOutOfRange { levels: 4, .. }),
        "{err}"
    );
}
