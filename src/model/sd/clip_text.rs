//! The CLIP text transformer SD conditions on (Radford et al. 2021): OpenAI CLIP ViT-L/14's in
//! SD 1.x (12 layers, quick GELU), OpenCLIP ViT-H/14's penultimate 23 layers in SD 2.x (exact GELU),
//! read from a diffusers `text_encoder/` folder (transformers `CLIPTextModel` layout). Diffusers
//! uses `last_hidden_state` after `final_layer_norm`, with the causal mask and no padding mask.

use std::path::{Path, PathBuf};

use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::weights::{SafetensorsFile, WeightsError};
use crate::model::kernels::{gelu, layer_norm_forward, linear_forward};

/// Weight files of a `text_encoder/` folder, in the order they are preferred.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "model.fp16.safetensors"];

#[derive(Debug, thiserror::Error)]
pub enum ClipTextError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: not a CLIP text encoder configuration (model_type `{found}`)", path.display())]
    NotClip { path: PathBuf, found: String },
    #[error("{}: hidden_act `{found}` is not supported (quick_gelu or gelu)", path.display())]
    Activation { path: PathBuf, found: String },
    #[error("{}: no {} or {}", dir.display(), WEIGHT_FILES[0], WEIGHT_FILES[1])]
    NoWeights { dir: PathBuf },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("token ids: {0}")]
    Ids(String),
}

/// The MLP non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(1.702x)`, OpenAI CLIP's (SD 1.x).
    QuickGelu,
    /// Exact (erf) GELU, OpenCLIP's (SD 2.x).
    Gelu,
}

/// The fields of transformers' `CLIPTextConfig` the forward pass needs; missing ones take
/// transformers' defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl ClipTextConfig {
    /// Reads `config.json` of a `text_encoder/` folder.
    pub fn read(path: &Path) -> Result<Self, ClipTextError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClipTextError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ClipTextError::Config {
            path: path.to_path_buf(),
            message,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let model_type = json["model_type"].as_str().unwrap_or("");
        let clip_architecture = json["architectures"].as_array().is_some_and(|a| {
            a.iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with("CLIPTextModel")))
        });
        if model_type != "clip_text_model" && !(model_type.is_empty() && clip_architecture) {
            return Err(ClipTextError::NotClip {
                path: path.to_path_buf(),
                found: model_type.into(),
            });
        }
        let size = |key: &str, default: usize| -> Result<usize, ClipTextError> {
            match &json[key] {
                serde_json::Value::Null => Ok(default),
                value => value
                    .as_u64()
                    .filter(|&v| v > 0)
                    .map(|v| v as usize)
                    .ok_or_else(|| bad(format!("`{key}` is not a positive integer: {value}"))),
            }
        };
        let hidden_act = match json["hidden_act"].as_str().unwrap_or("quick_gelu") {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => {
                return Err(ClipTextError::Activation {
                    path: path.to_path_buf(),
                    found: other.into(),
                });
            }
        };
        let layer_norm_eps = match &json["layer_norm_eps"] {
            serde_json::Value::Null => 1e-5,
            value => value.as_f64().filter(|&e| e > 0.0).ok_or_else(|| {
                bad(format!(
                    "`layer_norm_eps` is not a positive number: {value}"
                ))
            })?,
        };
        let config = ClipTextConfig {
            vocab_size: size("vocab_size", 49408)?,
            hidden_size: size("hidden_size", 512)?,
            intermediate_size: size("intermediate_size", 2048)?,
            num_hidden_layers: size("num_hidden_layers", 12)?,
            num_attention_heads: size("num_attention_heads", 8)?,
            max_position_embeddings: size("max_position_embeddings", 77)?,
            hidden_act,
            layer_norm_eps,
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        Ok(config)
    }
}

/// One pre-norm transformer layer.
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded CLIP text encoder.
#[derive(Debug)]
pub struct ClipTextEncoder {
    config: ClipTextConfig,
    weights_path: PathBuf,
    token_embedding: Tensor<2>,
    position_embedding: Tensor<2>,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
}

impl ClipTextEncoder {
    /// Loads `config.json` and `model.safetensors` (else `model.fp16.safetensors`, decoded to f32)
    /// from a diffusers `text_encoder/` folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ClipTextError> {
        let config = ClipTextConfig::read(&dir.join("config.json"))?;
        let weights_path = WEIGHT_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ClipTextError::NoWeights {
                dir: dir.to_path_buf(),
            })?;
        let file = SafetensorsFile::open(&weights_path)?;
        Self::from_file(&file, config, device)
    }

    /// Builds the encoder from an opened weights file and its configuration.
    pub fn from_file(
        file: &SafetensorsFile,
        config: ClipTextConfig,
        device: &Device,
    ) -> Result<Self, ClipTextError> {
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        // SD's files (transformers 4) name tensors `text_model.…`; transformers 5 saves
        // `CLIPTextModel` without that prefix.
        let root = ["text_model.", ""]
            .into_iter()
            .find(|root| file.contains(&format!("{root}embeddings.token_embedding.weight")))
            .unwrap_or("text_model.");
        let embeddings = format!("{root}embeddings");
        let token_embedding = file.tensor(
            &format!("{embeddings}.token_embedding.weight"),
            [config.vocab_size, d],
            device,
        )?;
        let position_embedding = file.tensor(
            &format!("{embeddings}.position_embedding.weight"),
            [config.max_position_embeddings, d],
            device,
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("{root}encoder.layers.{i}");
                let linear =
                    |name: &str, shape| file.linear(&format!("{p}.{name}"), shape, true, device);
                Ok(EncoderLayer {
                    layer_norm1: file.layer_norm(&format!("{p}.layer_norm1"), d, eps, device)?,
                    q_proj: linear("self_attn.q_proj", [d, d])?,
                    k_proj: linear("self_attn.k_proj", [d, d])?,
                    v_proj: linear("self_attn.v_proj", [d, d])?,
                    out_proj: linear("self_attn.out_proj", [d, d])?,
                    layer_norm2: file.layer_norm(&format!("{p}.layer_norm2"), d, eps, device)?,
                    fc1: linear("mlp.fc1", [d, config.intermediate_size])?,
                    fc2: linear("mlp.fc2", [config.intermediate_size, d])?,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let final_layer_norm =
            file.layer_norm(&format!("{root}final_layer_norm"), d, eps, device)?;
        Ok(ClipTextEncoder {
            config,
            weights_path: file.path().to_path_buf(),
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The weights file it was loaded from (the identity prompt embeddings are cached under).
    pub fn weights_path(&self) -> &Path {
        &self.weights_path
    }

    pub fn device(&self) -> Device {
        self.token_embedding.device()
    }

    /// `last_hidden_state` `[B, T, D]` for `B` rows of `T` ids each (`T` = 77 in SD), every id in
    /// the vocabulary and `T` at most `max_position_embeddings`.
    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>, ClipTextError> {
        let tokens = ids.first().map_or(0, Vec::len);
        if ids.is_empty() || tokens == 0 {
            return Err(ClipTextError::Ids("no tokens".into()));
        }
        if let Some(row) = ids.iter().find(|row| row.len() != tokens) {
            return Err(ClipTextError::Ids(format!(
                "rows of {tokens} and {} ids in one batch",
                row.len()
            )));
        }
        if tokens > self.config.max_position_embeddings {
            return Err(ClipTextError::Ids(format!(
                "{tokens} tokens, more than the {} positions",
                self.config.max_position_embeddings
            )));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = ids.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(ClipTextError::Ids(format!(
                "id {id} is outside the vocabulary of {vocab}"
            )));
        }
        let flat: Vec<i64> = ids.iter().flatten().map(|&id| id as i64).collect();
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [ids.len(), tokens]), &self.device());
        Ok(self.forward(ids))
    }

    /// The forward pass on ids already checked against the vocabulary and positions.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, tokens] = ids.dims();
        let d = self.config.hidden_size;
        let words = self
            .token_embedding
            .clone()
            .select(0, ids.reshape([batch * tokens]))
            .reshape([batch, tokens, d]);
        let positions = self
            .position_embedding
            .clone()
            .narrow(0, 0, tokens)
            .unsqueeze::<3>();
        let mut x = words + positions;
        let eps = self.config.layer_norm_eps;
        for layer in &self.layers {
            let h = layer_norm_forward(&layer.layer_norm1, eps, x.clone());
            x = x + self.self_attention(layer, h);
            let h = layer_norm_forward(&layer.layer_norm2, eps, x.clone());
            let h = per_token(&layer.fc1, h);
            let h = match self.config.hidden_act {
                Activation::QuickGelu => h.clone() * sigmoid(h.mul_scalar(1.702)),
                Activation::Gelu => gelu(h),
            };
            x = x + per_token(&layer.fc2, h);
        }
        layer_norm_forward(&self.final_layer_norm, eps, x)
    }

    /// Causal multi-head self-attention: token `i` sees tokens `0..=i`.
    fn self_attention(&self, layer: &EncoderLayer, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let heads = self.config.num_attention_heads;
        let hd = d / heads;
        let split = |proj: &Linear| {
            per_token(proj, x.clone())
                .reshape([b, t, heads, hd])
                .swap_dims(1, 2)
        };
        let options = AttentionModuleOptions {
            scale: Some((hd as f64).powf(-0.5)),
            softcap: None,
            is_causal: true,
        };
        let out = attention(
            split(&layer.q_proj),
            split(&layer.k_proj),
            split(&layer.v_proj),
            None,
            None,
            options,
        );
        per_token(&layer.out_proj, out.swap_dims(1, 2).reshape([b, t, d]))
    }
}

/// `layer` on every token as one `[B*T, D]` matrix product.
fn per_token(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = linear_forward(layer, x.reshape([b * t, d]));
    let width = y.dims()[1];
    y.reshape([b, t, width])
}
