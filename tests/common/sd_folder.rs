//! Fake Stable Diffusion diffusers folders: real-looking JSON configs, weights files of garbage
//! bytes (folder discovery never reads them).

use std::path::Path;

/// Which UNet config to write.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    V1,
    V2V768,
    V2Base,
}

pub fn unet_config(kind: Kind) -> serde_json::Value {
    let (cross, linear, sample, heads) = match kind {
        Kind::V1 => (768, false, 64, serde_json::json!(8)),
        Kind::V2V768 => (1024, true, 96, serde_json::json!([5, 10, 20, 20])),
        Kind::V2Base => (1024, true, 64, serde_json::json!([5, 10, 20, 20])),
    };
    serde_json::json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.8.0",
        "act_fn": "silu",
        "attention_head_dim": heads,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": false,
        "cross_attention_dim": cross,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "in_channels": 4,
        "layers_per_block": 2,
        "out_channels": 4,
        "sample_size": sample,
        "upcast_attention": matches!(kind, Kind::V2V768),
        "use_linear_projection": linear,
    })
}

/// Deterministic garbage of `len` bytes.
pub fn garbage(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// The files of a complete diffusers SD folder: `(path, bytes)`, weights `weights_len` bytes
/// each; `fp32` and `fp16` choose which weights variants exist.
pub fn sd_files(kind: Kind, fp32: bool, fp16: bool, weights_len: usize) -> Vec<(String, Vec<u8>)> {
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).unwrap();
    let mut files = vec![
        (
            "model_index.json".to_string(),
            json(serde_json::json!({"_class_name": "StableDiffusionPipeline"})),
        ),
        ("unet/config.json".into(), json(unet_config(kind))),
        (
            "vae/config.json".into(),
            json(serde_json::json!({"_class_name": "AutoencoderKL", "latent_channels": 4})),
        ),
        (
            "text_encoder/config.json".into(),
            json(serde_json::json!({"architectures": ["CLIPTextModel"]})),
        ),
        (
            "tokenizer/vocab.json".into(),
            json(serde_json::json!({"!": 0})),
        ),
        ("tokenizer/merges.txt".into(), b"#version: 0.2\n".to_vec()),
        ("tokenizer/tokenizer_config.json".into(), b"{}".to_vec()),
        (
            "tokenizer/special_tokens_map.json".into(),
            br#"{"pad_token": "!"}"#.to_vec(),
        ),
    ];
    let mut seed = 1;
    for (dir, name) in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ] {
        for (wanted, suffix) in [(fp32, ""), (fp16, ".fp16")] {
            if wanted {
                files.push((
                    format!("{dir}/{name}{suffix}.safetensors"),
                    garbage(weights_len, seed),
                ));
                seed += 1;
            }
        }
    }
    files
}

/// Every file below `root` as `(path relative to root with `/`, bytes)`, sorted by path.
pub fn read_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(root).unwrap();
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            (parts.join("/"), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

pub fn write_files(root: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A complete fake SD folder at `root` (fp32 weights only).
pub fn write_sd_folder(root: &Path, kind: Kind) {
    write_files(root, &sd_files(kind, true, false, 16));
}

/// A whole tiny SD folder at `root` assembled from the real fixtures: the SD 1.x- or 2.x-flavoured
/// tiny UNet, the tiny VAE, the 8-wide text encoder over the full vocabulary and the fixture
/// tokenizer (padding with `!` for 2.x, as SD 2's tokenizer does).
pub fn tiny_sd_folder(root: &Path, v2: bool) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd");
    let unet = if v2 { "unet_v2" } else { "unet_v1" };
    for (from, to) in [
        (unet, "unet"),
        ("vae", "vae"),
        ("text_tiny_sd", "text_encoder"),
        ("tokenizer", "tokenizer"),
    ] {
        let into = root.join(to);
        std::fs::create_dir_all(&into).unwrap();
        for entry in std::fs::read_dir(fixtures.join(from)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_owned();
            if name == "golden.safetensors" {
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            if v2 && (name == "special_tokens_map.json" || name == "tokenizer_config.json") {
                let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                json["pad_token"] = "!".into();
                bytes = serde_json::to_vec(&json).unwrap();
            }
            std::fs::write(into.join(name), bytes).unwrap();
        }
    }
    std::fs::write(
        root.join("model_index.json"),
        br#"{"_class_name": "StableDiffusionPipeline"}"#,
    )
    .unwrap();
}
