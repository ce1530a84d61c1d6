//! Parity with the PyTorch reference (tools/make_fixtures.py): every official checkpoint layout, at
//! native, resampled, non-square and overlapping-patch sizes; and with timm itself for supervised ViTs
//! (tools/make_supervised_fixtures.py). Tolerance: 1e-4 max abs error, f32, CPU.

mod common;

use burn::tensor::{Device, Tensor};
use common::{fixture, manifest, max_abs_diff, read_expected, to_tensor};
use dinoscope::model::config::{Arch, FfnKind, PosEmbedMode};
use dinoscope::model::{Facet, Family, InputNorm, LoadOptions, Vit, load_model};

const TOLERANCE: f32 = 1e-4;

fn supervised_manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("supervised/manifest.json"))
        .expect("tests/fixtures/supervised/manifest.json (run tools/make_supervised_fixtures.py)");
    serde_json::from_str(&text).expect("valid manifest")
}

fn check_model(name: &str) {
    check_model_in(&manifest(), name);
}

/// The cases of `model` in `manifest`, each checked on `vit`.
fn check_cases(manifest: &serde_json::Value, model: &str, vit: &Vit, label: &str) {
    let cases: Vec<&serde_json::Value> = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == model)
        .collect();
    assert!(!cases.is_empty());
    for case in cases {
        check_case(vit, case, &format!("{label} / {}", case["file"]));
    }
}

fn check_model_in(manifest: &serde_json::Value, name: &str) {
    let model = &manifest["models"][name];
    assert!(model.is_object(), "model {name} missing from manifest");
    let device = Device::flex();
    let heads = model["heads"].as_u64().unwrap() as usize;
    let files = model["files"].as_object().unwrap();
    assert!(!files.is_empty());
    for (format, file) in files {
        let path = fixture(file.as_str().unwrap());
        let options = LoadOptions {
            config: None,
            heads: Some(heads),
            ..LoadOptions::default()
        };
        let loaded =
            load_model(&path, &options, &device).unwrap_or_else(|e| panic!("{format}: {e}"));
        let config = &loaded.config;
        assert_eq!(
            config.patch_size as u64,
            model["patch"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(config.dim as u64, model["dim"].as_u64().unwrap(), "{file}");
        assert_eq!(
            config.depth as u64,
            model["depth"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            config.registers as u64,
            model["registers"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            config.layer_scale,
            model["layerscale"].as_bool().unwrap(),
            "{file}"
        );
        assert_eq!(
            config.pos_grid as u64,
            model["pos_grid"].as_u64().unwrap(),
            "{file}"
        );
        let ffn = if matches!(config.ffn, FfnKind::SwiGlu { .. }) {
            "swiglu"
        } else {
            "mlp"
        };
        assert_eq!(ffn, model["ffn"], "{file}");
        let mode = match config.pos_mode {
            PosEmbedMode::BicubicOffset => "offset",
            PosEmbedMode::BicubicAntialias => "antialias",
        };
        assert_eq!(mode, model["pos_mode"], "{file}");
        let family = match config.family {
            Family::Dino => "dino",
            Family::Dinov2 => "dinov2",
            Family::Supervised => "supervised",
        };
        assert_eq!(family, model["family"], "{file}");
        if let Some(norm) = model["input_norm"].as_str() {
            // Read from the timm config.json beside the file, or ImageNet's without one.
            assert_eq!(loaded.input_norm, norm.parse().unwrap(), "{file}");
            // The classifier's weight and bias.
            assert_eq!(loaded.ignored, 2, "{file}");
        }

        check_cases(manifest, name, &loaded.vit, file.as_str().unwrap());
    }
}

fn check_case(vit: &dinoscope::model::Vit, case: &serde_json::Value, label: &str) {
    let device = vit.device();
    let expected = read_expected(case["file"].as_str().unwrap());
    let stride = case["stride"].as_u64().unwrap() as usize;
    let layer = case["facet_layer"].as_u64().unwrap() as usize;
    let input = &expected["input"];
    let image = to_tensor::<4>(&input.0, &input.1, &device);
    let prefix = vit.config().prefix_tokens();
    let mut errors = Vec::new();

    let (tokens, grid) = vit.forward_tokens(image.clone(), stride);
    assert_eq!(
        [grid.rows as u64, grid.cols as u64],
        [
            case["grid"][0].as_u64().unwrap(),
            case["grid"][1].as_u64().unwrap()
        ],
        "{label}: grid"
    );
    let [_, t, d] = tokens.dims();
    errors.push((
        "cls",
        max_abs_diff(
            tokens.clone().narrow(1, 0, 1).reshape([d]),
            &expected["cls"],
            label,
        ),
    ));
    errors.push((
        "patch_tokens",
        max_abs_diff(
            tokens
                .narrow(1, prefix, t - prefix)
                .reshape([t - prefix, d]),
            &expected["patch_tokens"],
            label,
        ),
    ));
    errors.push((
        "pos_embed_resampled",
        max_abs_diff(
            vit.positional_table(grid, input.0[2] == input.0[3]),
            &expected["pos_embed_resampled"],
            label,
        ),
    ));

    let all_rows: Vec<usize> = (0..t).collect();
    let last = vit.config().depth - 1;
    errors.push((
        "attn_last",
        max_abs_diff(
            vit.attention_rows(image.clone(), last, &all_rows, stride).0,
            &expected["attn_last"],
            label,
        ),
    ));
    errors.push((
        "attn_l1",
        max_abs_diff(
            vit.attention_rows(image.clone(), layer, &all_rows, stride)
                .0,
            &expected["attn_l1"],
            label,
        ),
    ));

    let outputs = vit.layer_outputs(image, layer, stride);
    errors.push((
        "tokens_l1",
        max_abs_diff(outputs.tokens.clone(), &expected["tokens_l1"], label),
    ));
    for (facet, key) in [
        (Facet::Query, "q_l1"),
        (Facet::Key, "k_l1"),
        (Facet::Value, "v_l1"),
    ] {
        errors.push((
            key,
            max_abs_diff(outputs.per_head(facet), &expected[key], label),
        ));
    }
    println!("{label}: {errors:?}");
    for (what, err) in errors {
        assert!(
            err <= TOLERANCE,
            "{label}: {what} max abs error {err:e} > {TOLERANCE:e}"
        );
    }
}

#[test]
fn dino_v1_backbone_pth_and_hf_safetensors_match_pytorch() {
    check_model("v1_p8");
}

#[test]
fn dino_v1_full_training_checkpoint_uses_the_teacher() {
    check_model("v1_p16_full");
}

#[test]
fn dinov2_pth_and_hf_safetensors_match_pytorch() {
    check_model("v2_p14");
}

#[test]
fn dinov2_registers_chunked_teacher_checkpoint_and_hf_match_pytorch() {
    check_model("v2_reg4");
}

#[test]
fn dinov2_swiglu_matches_pytorch() {
    check_model("v2_swiglu");
}

#[test]
fn supervised_deit_pth_matches_timm() {
    check_model_in(&supervised_manifest(), "deit");
}

/// timm's Hub folder: `model.safetensors` and a `config.json` with mean = std = 0.5, folded into the
/// patch embedding so that the ImageNet-normalised input gives timm's outputs.
#[test]
fn supervised_timm_hub_folder_with_inception_normalisation_matches_timm() {
    check_model_in(&supervised_manifest(), "augreg");
}

/// `input_norm` overrides the config.json: the same weights give the other model's outputs.
#[test]
fn input_norm_option_overrides_the_config_json() {
    let manifest = supervised_manifest();
    for (file, norm, cases) in [
        ("supervised/deit_tiny.pth", InputNorm::INCEPTION, "augreg"),
        (
            "supervised/augreg/model.safetensors",
            InputNorm::IMAGENET,
            "deit",
        ),
    ] {
        let options = LoadOptions {
            heads: Some(2),
            input_norm: Some(norm),
            ..LoadOptions::default()
        };
        let loaded = load_model(&fixture(file), &options, &Device::flex()).unwrap();
        assert_eq!(loaded.input_norm, norm);
        check_cases(&manifest, cases, &loaded.vit, &format!("{file} as {cases}"));
    }
}

/// The same parity on burn's wgpu backend (CI installs Mesa's lavapipe, a software Vulkan
/// driver). Same tolerance as on the CPU. Without any wgpu adapter the test fails: it must not
/// pass having checked nothing.
#[test]
fn wgpu_backend_matches_pytorch() {
    let device = dinoscope::model::backend::gpu().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter, so the wgpu backend cannot be checked ({e}): install a GPU driver \
             or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        )
    });
    println!("wgpu device: {}", device.description);
    let heads = Some(2);
    let loaded = load_model(
        &fixture("v2_reg4_hf.safetensors"),
        &LoadOptions {
            config: None,
            heads,
            ..LoadOptions::default()
        },
        &device.device,
    )
    .unwrap();
    let case = manifest()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "v2_reg4__70x42.safetensors")
        .cloned()
        .unwrap();
    check_case(&loaded.vit, &case, "wgpu v2_reg4_hf / 70x42");
}

/// Dense-feature lengths on the wgpu backend: a one-block ViT-nano at stride 4 on 244 px (3,601 tokens, whose
/// score matrices for all queries would be 156 MB, over wgpu's 128 MiB buffer-binding limit) gives
/// the CPU's tokens.
#[test]
fn wgpu_attention_over_long_sequences_matches_the_cpu() {
    let gpu = dinoscope::model::backend::gpu()
        .unwrap_or_else(|e| panic!("no wgpu adapter, so the wgpu backend cannot be checked ({e})"));
    let cpu = dinoscope::model::backend::cpu();
    let side = 244;
    let pixels: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let tokens = |device: &Device| {
        // One block is enough to form the scores; it keeps the software GPU's run short.
        let config = dinoscope::model::VitConfig {
            depth: 1,
            ..Arch::VitNano.config()
        };
        let vit = Vit::init_seeded(config, 7, device);
        let image = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(pixels.clone(), [1, 3, side, side]),
            device,
        );
        let (tokens, grid) = vit.forward_tokens(image, 4);
        assert_eq!(grid.len() + 1, 3601);
        dinoscope::model::host::f32_values(tokens).unwrap()
    };
    let on_cpu = tokens(&cpu.device);
    let on_gpu = tokens(&gpu.device);
    let worst = on_cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{}: largest difference from the CPU {worst:.2e}",
        gpu.description
    );
    assert!(worst < 1e-3, "largest difference {worst}");
}
