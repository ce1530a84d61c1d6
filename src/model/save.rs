//! Writing a model as `.safetensors` under the official DINO names, with its exact configuration.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Tensor;

use super::checkpoint::{CONFIG_METADATA_KEY, CheckpointError, CheckpointProblem, RawTensor};
use super::config::FfnKind;
use super::host::{HostReadError, raw_tensor as host};
use super::vit::Vit;

/// burn `[in, out]` Linear weight -> PyTorch `[out, in]`.
fn linear_weight(weight: Tensor<2>) -> Result<RawTensor, HostReadError> {
    host(weight.transpose())
}

/// The model's tensors under official names (`blocks.0.attn.qkv.weight`, ...), PyTorch layouts.
pub fn official_tensors(vit: &Vit) -> Result<Vec<(String, RawTensor)>, HostReadError> {
    let mut out = vec![
        ("cls_token".to_string(), host(vit.cls_token.val())?),
        ("pos_embed".to_string(), host(vit.pos_embed.val())?),
        (
            "patch_embed.proj.weight".to_string(),
            host(vit.patch_embed.weight.val())?,
        ),
        (
            "patch_embed.proj.bias".to_string(),
            host(vit.patch_embed.bias.val())?,
        ),
        ("norm.weight".to_string(), host(vit.norm.gamma.val())?),
    ];
    if let Some(beta) = &vit.norm.beta {
        out.push(("norm.bias".into(), host(beta.val())?));
    }
    if let Some(r) = &vit.register_tokens {
        out.push(("register_tokens".into(), host(r.val())?));
    }
    if let Some(m) = &vit.mask_token {
        out.push(("mask_token".into(), host(m.val())?));
    }
    let (ffn_in, ffn_out) = match vit.config().ffn {
        FfnKind::Mlp { .. } => ("mlp.fc1", "mlp.fc2"),
        FfnKind::SwiGlu { .. } => ("mlp.w12", "mlp.w3"),
    };
    for (i, block) in vit.blocks.iter().enumerate() {
        let mut push = |name: &str, value| out.push((format!("blocks.{i}.{name}"), value));
        for (name, norm) in [("norm1", &block.norm1), ("norm2", &block.norm2)] {
            push(&format!("{name}.weight"), host(norm.gamma.val())?);
            if let Some(beta) = &norm.beta {
                push(&format!("{name}.bias"), host(beta.val())?);
            }
        }
        for (name, linear) in [
            ("attn.qkv", &block.attn.qkv),
            ("attn.proj", &block.attn.proj),
            (ffn_in, &block.mlp.input),
            (ffn_out, &block.mlp.output),
        ] {
            push(
                &format!("{name}.weight"),
                linear_weight(linear.weight.val())?,
            );
            if let Some(bias) = &linear.bias {
                push(&format!("{name}.bias"), host(bias.val())?);
            }
        }
        for (name, gamma) in [("ls1.gamma", &block.ls1), ("ls2.gamma", &block.ls2)] {
            if let Some(gamma) = gamma {
                push(name, host(gamma.val())?);
            }
        }
    }
    Ok(out)
}

/// Serialises f32 tensors (with metadata) to the safetensors format.
pub fn serialize_safetensors(
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), data)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
}

/// Saves the backbone as safetensors; the configuration goes into the metadata so the file
/// loads with `--arch auto` even when its head count is not `dim / 64`.
pub fn save_safetensors(vit: &Vit, path: &Path) -> Result<(), CheckpointError> {
    let config = serde_json::to_string(vit.config()).unwrap_or_default();
    let metadata = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config)]);
    let tensors = official_tensors(vit)
        .map_err(|e| CheckpointError::new(path, CheckpointProblem::Corrupt(e.to_string())))?;
    let serialized = serialize_safetensors(&tensors, metadata)
        .map_err(|e| CheckpointError::new(path, CheckpointProblem::Corrupt(e.to_string())))?;
    crate::atomic_file::write(path, &serialized).map_err(|e| CheckpointError::new(path, e))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::model::config::{Arch, VitConfig};
    use crate::model::load::{LoadOptions, load_model};

    fn round_trip(config: VitConfig) {
        let device = Device::flex();
        let vit = Vit::init(config.clone(), &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save_safetensors(&vit, &path).unwrap();
        let loaded = load_model(&path, &LoadOptions::default(), &device).unwrap();
        assert_eq!(loaded.config, config, "the config travels in the metadata");
        let p = config.patch_size;
        let x = Tensor::<4>::random(
            [1, 3, 3 * p, 2 * p],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let a = vit
            .forward(x.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let b = loaded
            .vit
            .forward(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn saved_models_load_back_identically() {
        round_trip(Arch::VitNano.config());
        let mut v2 = VitConfig::dinov2(48, 2, 3, true, 4);
        v2.pos_grid = 4;
        round_trip(v2);
    }

    #[test]
    fn seeded_models_are_the_same_every_time_and_differ_between_seeds() {
        let device = Device::flex();
        let config = Arch::VitNano.config();
        let tensors =
            |seed| official_tensors(&Vit::init_seeded(config.clone(), seed, &device)).unwrap();
        let (a, b, c) = (tensors(0), tensors(0), tensors(1));
        let data =
            |t: &[(String, RawTensor)]| t.iter().map(|(_, t)| t.data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&a), data(&b));
        assert_ne!(data(&a), data(&c));
        let std = {
            let w = &a
                .iter()
                .find(|(n, _)| n == "blocks.0.attn.qkv.weight")
                .unwrap()
                .1
                .data;
            (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt()
        };
        assert!((std - 0.02).abs() < 0.002, "std {std}");
    }
}
