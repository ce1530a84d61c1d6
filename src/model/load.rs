//! Recognising the architecture of a state dict and building the model from it.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::checkpoint::{
    CONFIG_METADATA_KEY, CheckpointError, CheckpointProblem, RawTensor, StateDict, read_state_dict,
};
use super::config::{Family, FfnKind, PosEmbedMode, VitConfig};
use super::input_norm::{InputNorm, fold_into_patch_embed, timm_config_norm};
use super::vit::{BlockParts, Vit, VitParts};

/// How to interpret a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Use this configuration instead of detecting one (`--arch`).
    pub config: Option<VitConfig>,
    /// Number of attention heads when detecting (shapes do not reveal it; official models use 64-d heads).
    pub heads: Option<usize>,
    /// The normalisation the model was trained with (`--input-norm`); `None`: the `config.json` of a
    /// timm Hub folder next to the file, else ImageNet's. Folded into the patch embedding.
    pub input_norm: Option<InputNorm>,
}

/// A model together with what is known about where it came from.
#[derive(Debug)]
pub struct LoadedModel {
    pub vit: Vit,
    pub config: VitConfig,
    /// Tensor names in the file that were not used (heads, optimizer state...).
    pub ignored: usize,
    /// The normalisation the model was trained with; the model takes ImageNet-normalised inputs
    /// all the same (see [`fold_into_patch_embed`]).
    pub input_norm: InputNorm,
}

/// Reads, recognises and builds a model from a checkpoint file.
pub fn load_model(
    path: &Path,
    options: &LoadOptions,
    device: &Device,
) -> Result<LoadedModel, CheckpointError> {
    let mut dict = read_state_dict(path)?;
    let input_norm = match options.input_norm {
        Some(norm) => norm,
        None => timm_config_norm(path)
            .map_err(|e| CheckpointError::new(path, e))?
            .unwrap_or(InputNorm::IMAGENET),
    };
    if let Some(mut weight) = dict.tensors.remove("patch_embed.proj.weight") {
        if let Some(bias) = dict.tensors.get_mut("patch_embed.proj.bias") {
            fold_into_patch_embed(&mut weight, bias, input_norm);
        }
        dict.tensors
            .insert("patch_embed.proj.weight".into(), weight);
    }
    let config = match &options.config {
        Some(config) => Ok(config.clone()),
        None => detect_config(&dict, options.heads),
    }
    .map_err(|e| CheckpointError::new(path, e))?;
    let vit = build(&dict, config.clone(), device).map_err(|e| CheckpointError::new(path, e))?;
    Ok(LoadedModel {
        vit,
        config,
        ignored: dict.ignored.len(),
        input_norm,
    })
}

fn shape_of<'a>(dict: &'a StateDict, name: &str) -> Result<&'a [usize], CheckpointProblem> {
    dict.tensors
        .get(name)
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| CheckpointProblem::Missing {
            name: name.to_string(),
        })
}

/// Works out the architecture from tensor names and shapes.
pub fn detect_config(
    dict: &StateDict,
    heads: Option<usize>,
) -> Result<VitConfig, CheckpointProblem> {
    let config = detect_unchecked(dict, heads)?;
    config.validate()?;
    Ok(config)
}

fn detect_unchecked(
    dict: &StateDict,
    heads: Option<usize>,
) -> Result<VitConfig, CheckpointProblem> {
    if let Some(json) = dict.metadata.get(CONFIG_METADATA_KEY) {
        return serde_json::from_str(json).map_err(|e| {
            CheckpointProblem::UnknownArchitecture(format!(
                "invalid `{CONFIG_METADATA_KEY}` metadata: {e}"
            ))
        });
    }
    let unknown = |why: String| CheckpointProblem::UnknownArchitecture(why);
    let sample: Vec<&str> = dict.tensors.keys().take(3).map(String::as_str).collect();
    let pos = match dict.tensors.get("pos_embed") {
        Some(t) => t.shape.clone(),
        None if dict.tensors.is_empty() => {
            return Err(unknown(format!(
                "none of its {} tensors has a ViT name (no `pos_embed`, `cls_token`, `blocks.N...`)",
                dict.ignored.len()
            )));
        }
        None => {
            return Err(unknown(format!(
                "no `pos_embed` tensor (found {sample:?}...)"
            )));
        }
    };
    let [1, tokens, dim] = pos[..] else {
        return Err(unknown(format!(
            "`pos_embed` has shape {pos:?}, expected [1, 1+M*M, D]"
        )));
    };
    let grid = (tokens.saturating_sub(1) as f64).sqrt().round() as usize;
    let side = (tokens as f64).sqrt().round() as usize;
    if tokens > 1 && side * side == tokens {
        return Err(CheckpointProblem::Unsupported(format!(
            "a positional table of {tokens} rows for a {side}x{side} grid and none for the CLS \
             token (timm `no_embed_class`, e.g. DeiT III) is not supported"
        )));
    }
    if grid == 0 || grid * grid + 1 != tokens {
        return Err(unknown(format!(
            "`pos_embed` has {tokens} rows, not 1 + a square number"
        )));
    }
    let patch_shape = shape_of(dict, "patch_embed.proj.weight")?;
    let patch_size = match patch_shape {
        [d, 3, p, q] if *d == dim && p == q => *p,
        other => {
            return Err(CheckpointProblem::Shape {
                name: "patch_embed.proj.weight".into(),
                found: other.to_vec(),
                expected: vec![dim, 3, 0, 0],
            });
        }
    };
    let depth = (0..)
        .take_while(|i| {
            dict.tensors
                .contains_key(&format!("blocks.{i}.norm1.weight"))
        })
        .count();
    if depth == 0 {
        return Err(unknown(
            "no transformer blocks (`blocks.0.norm1.weight`)".into(),
        ));
    }
    let ffn_shape = |name: &str, t: &RawTensor| CheckpointProblem::Shape {
        name: name.into(),
        found: t.shape.clone(),
        expected: vec![4 * dim, dim],
    };
    let ffn = if let Some(t) = dict.tensors.get("blocks.0.mlp.fc1.weight") {
        match t.shape[..] {
            [hidden, d] if d == dim => FfnKind::Mlp { hidden },
            _ => return Err(ffn_shape("blocks.0.mlp.fc1.weight", t)),
        }
    } else if let Some(t) = dict.tensors.get("blocks.0.mlp.w12.weight") {
        match t.shape[..] {
            [twice, d] if d == dim && twice % 2 == 0 => FfnKind::SwiGlu { hidden: twice / 2 },
            _ => return Err(ffn_shape("blocks.0.mlp.w12.weight", t)),
        }
    } else {
        return Err(unknown(
            "block 0 has neither `mlp.fc1` nor `mlp.w12` weights".into(),
        ));
    };
    let layer_scale = dict.tensors.contains_key("blocks.0.ls1.gamma");
    let registers = match dict.tensors.get("register_tokens") {
        Some(t) => match t.shape[..] {
            [1, r, d] if d == dim => r,
            _ => {
                return Err(CheckpointProblem::Shape {
                    name: "register_tokens".into(),
                    found: t.shape.clone(),
                    expected: vec![1, 4, dim],
                });
            }
        },
        None => 0,
    };
    let family = if dict.classifier.is_some_and(|[_, width]| width == dim) {
        Family::Supervised
    } else if layer_scale || dict.tensors.contains_key("mask_token") {
        Family::Dinov2
    } else {
        Family::Dino
    };
    // Official models all have 64-channel heads; guessing for other widths would build a model
    // that loads but attends wrongly.
    let heads = match heads {
        Some(heads) => heads,
        None if dim % 64 == 0 => dim / 64,
        None => {
            return Err(unknown(format!(
                "its {dim} channels are not 64-channel heads as in official models, so the head \
                 count is unknown; give it (--heads N)"
            )));
        }
    };
    Ok(VitConfig {
        family,
        patch_size,
        dim,
        depth,
        heads,
        ffn,
        layer_scale,
        registers,
        pos_grid: grid,
        // timm's `resample_abs_pos_embed` (`dynamic_img_size=True`) is the antialiased one.
        pos_mode: if registers > 0 || family == Family::Supervised {
            PosEmbedMode::BicubicAntialias
        } else {
            PosEmbedMode::BicubicOffset
        },
        layer_norm_eps: 1e-6,
    })
}

/// Pulls tensors out of the dict, checking each shape, and uploads them to `device`.
struct Fetch<'a> {
    dict: &'a StateDict,
    device: &'a Device,
}

impl Fetch<'_> {
    fn raw(&self, name: &str, expected: &[usize]) -> Result<&RawTensor, CheckpointProblem> {
        let tensor = self
            .dict
            .tensors
            .get(name)
            .ok_or_else(|| CheckpointProblem::Missing { name: name.into() })?;
        if tensor.shape != expected || tensor.data.len() != expected.iter().product::<usize>() {
            return Err(CheckpointProblem::Shape {
                name: name.into(),
                found: tensor.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(tensor)
    }

    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, CheckpointProblem> {
        let raw = self.raw(name, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(raw.data.clone(), shape),
            self.device,
        ))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>, CheckpointProblem> {
        self.tensor(name, [len])
    }

    /// A PyTorch `[out, in]` Linear weight, transposed to burn's `[in, out]`, and its bias.
    fn linear(
        &self,
        prefix: &str,
        input: usize,
        output: usize,
    ) -> Result<(Tensor<2>, Tensor<1>), CheckpointProblem> {
        let name = format!("{prefix}.weight");
        let raw = self.raw(&name, &[output, input])?;
        let mut transposed = vec![0f32; raw.data.len()];
        for (o, row) in raw.data.chunks_exact(input).enumerate() {
            for (i, &w) in row.iter().enumerate() {
                transposed[i * output + o] = w;
            }
        }
        let weight = Tensor::from_data(TensorData::new(transposed, [input, output]), self.device);
        Ok((weight, self.vector(&format!("{prefix}.bias"), output)?))
    }

    fn norm(&self, prefix: &str, dim: usize) -> Result<(Tensor<1>, Tensor<1>), CheckpointProblem> {
        Ok((
            self.vector(&format!("{prefix}.weight"), dim)?,
            self.vector(&format!("{prefix}.bias"), dim)?,
        ))
    }
}

/// Builds a model with the given configuration from a state dict.
pub fn build(
    dict: &StateDict,
    config: VitConfig,
    device: &Device,
) -> Result<Vit, CheckpointProblem> {
    let fetch = Fetch { dict, device };
    let d = config.dim;
    let p = config.patch_size;
    let m = config.pos_grid;
    let (ffn_in, ffn_out, ffn_hidden_in, ffn_hidden_out) = match config.ffn {
        FfnKind::Mlp { hidden } => ("mlp.fc1", "mlp.fc2", hidden, hidden),
        FfnKind::SwiGlu { hidden } => ("mlp.w12", "mlp.w3", 2 * hidden, hidden),
    };
    let blocks = (0..config.depth)
        .map(|i| {
            let b = |s: &str| format!("blocks.{i}.{s}");
            let gamma = |s: &str| {
                config
                    .layer_scale
                    .then(|| fetch.vector(&b(s), d))
                    .transpose()
            };
            Ok(BlockParts {
                norm1: fetch.norm(&b("norm1"), d)?,
                qkv: fetch.linear(&b("attn.qkv"), d, 3 * d)?,
                proj: fetch.linear(&b("attn.proj"), d, d)?,
                ls1: gamma("ls1.gamma")?,
                norm2: fetch.norm(&b("norm2"), d)?,
                ffn_in: fetch.linear(&b(ffn_in), d, ffn_hidden_in)?,
                ffn_out: fetch.linear(&b(ffn_out), ffn_hidden_out, d)?,
                ls2: gamma("ls2.gamma")?,
            })
        })
        .collect::<Result<Vec<_>, CheckpointProblem>>()?;
    let mask_token = match dict.tensors.get("mask_token") {
        Some(t) if t.shape.iter().product::<usize>() == d => Some(Tensor::<2>::from_data(
            TensorData::new(t.data.clone(), [1, d]),
            device,
        )),
        _ => None,
    };
    let parts = VitParts {
        cls_token: fetch.tensor("cls_token", [1, 1, d])?,
        pos_embed: fetch.tensor("pos_embed", [1, 1 + m * m, d])?,
        register_tokens: (config.registers > 0)
            .then(|| fetch.tensor("register_tokens", [1, config.registers, d]))
            .transpose()?,
        mask_token,
        patch_weight: fetch.tensor("patch_embed.proj.weight", [d, 3, p, p])?,
        patch_bias: fetch.vector("patch_embed.proj.bias", d)?,
        blocks,
        norm: fetch.norm("norm", d)?,
    };
    Ok(Vit::from_parts(config, parts))
}
