//! Reading checkpoint files into a state dict with the official DINO / DINOv2 tensor names.
//!
//! Accepted: official DINO `.pth` backbones and full training checkpoints (teacher / student,
//! `module.` and `backbone.` prefixes), DINOv2 `.pth` (plain, `teacher` wrapped, chunked blocks) and
//! Hugging Face `.safetensors` (`ViTModel`, `Dinov2Model`, `Dinov2WithRegistersModel` names). The file
//! type is recognised from its first bytes, not its extension. Pickles are parsed by burn's
//! `pytorch-reader`, which never executes code from the file. Supervised ViTs use the official DINO names
//! too: timm `VisionTransformer` state dicts (`.pth`, Hub `model.safetensors`) and DeiT `.pth` files
//! (`{'model': state_dict}`); their classifier `head` is recorded and ignored.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{self, PickleValue, PytorchReader};

/// Metadata key under which dinoscope stores the exact configuration in the files it writes.
pub const CONFIG_METADATA_KEY: &str = "dinoscope.config";

/// Top-level entry of the training checkpoints (`checkpoint.pth`) dinoscope writes with its own
/// information; its [`PTH_BACKBONE_KEY`] string is the backbone's configuration as JSON.
pub const PTH_EXTRAS_KEY: &str = "dinoscope";
pub const PTH_BACKBONE_KEY: &str = "backbone";

pub use super::raw_tensor::RawTensor;
use super::raw_tensor::f32_values;

/// Tensors under official DINO names (`blocks.0.attn.qkv.weight`, ...), plus what was dropped.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub tensors: BTreeMap<String, RawTensor>,
    /// Names in the file that are not part of a backbone (heads, optimizer state, ...).
    pub ignored: Vec<String>,
    /// `[classes, width]` of a classifier head (`head.weight` and `head.bias`, as in timm and DeiT).
    pub classifier: Option<[usize; 2]>,
    /// Free-form metadata stored in the file (safetensors `__metadata__`; for a dinoscope training
    /// checkpoint, its backbone configuration under [`CONFIG_METADATA_KEY`]).
    pub metadata: HashMap<String, String>,
}

/// What is wrong with a checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointProblem {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PyTorch checkpoint or safetensors file")]
    UnknownFormat,
    #[error("the file is truncated or corrupt ({0})")]
    Corrupt(String),
    #[error("no ViT backbone found: {0}")]
    UnknownArchitecture(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tensor `{name}` is missing")]
    Missing { name: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` has unsupported element type {dtype}")]
    DType { name: String, dtype: String },
    #[error(transparent)]
    Config(#[from] crate::model::config::ConfigError),
    #[error(transparent)]
    InputConfig(#[from] crate::model::input_norm::InputConfigError),
}

/// A checkpoint problem, with the file it was found in.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct CheckpointError {
    pub path: PathBuf,
    pub problem: CheckpointProblem,
}

impl CheckpointError {
    pub fn new(path: &Path, problem: impl Into<CheckpointProblem>) -> Self {
        CheckpointError {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

enum FileKind {
    Safetensors,
    Pytorch,
}

fn sniff(path: &Path) -> Result<FileKind, CheckpointProblem> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path)?;
    let n = file.read(&mut head)?;
    kind_of(&head[..n]).ok_or(CheckpointProblem::UnknownFormat)
}

/// The format of a file from its first nine bytes. Safetensors is tested before the legacy pickle:
/// its first byte is the low byte of the header length, which is 0x80 for one header in 256.
fn kind_of(head: &[u8]) -> Option<FileKind> {
    if head.starts_with(b"PK\x03\x04") {
        // ZIP container (PyTorch >= 1.6).
        Some(FileKind::Pytorch)
    } else if head.len() == 9 && head[8] == b'{' {
        Some(FileKind::Safetensors)
    } else if matches!(head, [0x80, 2..=5, ..]) {
        // A legacy pickle stream: a PROTO opcode and its protocol.
        Some(FileKind::Pytorch)
    } else {
        None
    }
}

/// Reads a checkpoint and renames its backbone tensors to the official names.
pub fn read_state_dict(path: &Path) -> Result<StateDict, CheckpointError> {
    let raw = match sniff(path).map_err(|e| CheckpointError::new(path, e))? {
        FileKind::Safetensors => read_safetensors(path),
        FileKind::Pytorch => read_pytorch(path),
    }
    .map_err(|e| CheckpointError::new(path, e))?;
    canonicalize(raw).map_err(|e| CheckpointError::new(path, e))
}

struct RawFile {
    tensors: Vec<(String, RawTensor)>,
    metadata: HashMap<String, String>,
}

fn read_pytorch(path: &Path) -> Result<RawFile, CheckpointProblem> {
    let reader = PytorchReader::new(path).map_err(|e| match e {
        pytorch_reader::PytorchError::Io(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            CheckpointProblem::Io(io)
        }
        other => CheckpointProblem::Corrupt(other.to_string()),
    })?;
    let mut tensors = Vec::new();
    for (name, tensor) in reader.into_tensors() {
        let shape = tensor.shape().to_vec();
        let dtype = tensor.dtype();
        if !is_backbone_candidate(&name) {
            tensors.push((
                name,
                RawTensor {
                    shape,
                    data: Vec::new(),
                },
            ));
            continue;
        }
        let bytes = tensor
            .read()
            .map_err(|e| CheckpointProblem::Corrupt(format!("tensor `{name}`: {e}")))?;
        let data =
            f32_values(&bytes, dtype_name(dtype)).ok_or_else(|| CheckpointProblem::DType {
                name: name.clone(),
                dtype: format!("{dtype:?}"),
            })?;
        tensors.push((name, RawTensor { shape, data }));
    }
    let full_checkpoint = tensors.iter().any(|(n, _)| n.starts_with("teacher."));
    let metadata = if full_checkpoint {
        backbone_config_json(path)?
            .map(|json| HashMap::from([(CONFIG_METADATA_KEY.to_string(), json)]))
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    Ok(RawFile { tensors, metadata })
}

/// The backbone configuration a dinoscope training checkpoint carries: `None` for files without a
/// `dinoscope` entry (official checkpoints) or written before it held one; an entry of the wrong
/// form is an error, so that the head count is never guessed for a file that states it.
fn backbone_config_json(path: &Path) -> Result<Option<String>, CheckpointProblem> {
    let malformed = |why: String| {
        CheckpointProblem::Corrupt(format!("malformed `{PTH_EXTRAS_KEY}` entry: {why}"))
    };
    let extras = match PytorchReader::read_pickle_data(path, Some(PTH_EXTRAS_KEY)) {
        Ok(extras) => extras,
        Err(pytorch_reader::PytorchError::KeyNotFound(_)) => return Ok(None),
        Err(e) => return Err(malformed(e.to_string())),
    };
    let PickleValue::Dict(mut extras) = extras else {
        return Err(malformed(format!("not a dict but {extras:?}")));
    };
    match extras.remove(PTH_BACKBONE_KEY) {
        None => Ok(None),
        Some(PickleValue::String(json)) => Ok(Some(json)),
        Some(other) => Err(malformed(format!(
            "`{PTH_BACKBONE_KEY}` is not a string but {other:?}"
        ))),
    }
}

fn dtype_name(dtype: pytorch_reader::DType) -> &'static str {
    use pytorch_reader::DType::*;
    match dtype {
        F32 => "F32",
        F16 => "F16",
        BF16 => "BF16",
        F64 => "F64",
        _ => "other",
    }
}

fn read_safetensors(path: &Path) -> Result<RawFile, CheckpointProblem> {
    let bytes = std::fs::read(path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| CheckpointProblem::Corrupt(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| CheckpointProblem::Corrupt(e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        if !is_backbone_candidate(&name) {
            tensors.push((
                name,
                RawTensor {
                    shape,
                    data: Vec::new(),
                },
            ));
            continue;
        }
        let dtype = format!("{:?}", view.dtype());
        let data = f32_values(view.data(), &dtype).ok_or_else(|| CheckpointProblem::DType {
            name: name.clone(),
            dtype,
        })?;
        tensors.push((name, RawTensor { shape, data }));
    }
    Ok(RawFile { tensors, metadata })
}

/// Cheap pre-filter so optimizer moments and training heads are never decoded.
fn is_backbone_candidate(name: &str) -> bool {
    !(name.starts_with("optimizer.")
        || name.starts_with("student.")
        || name.starts_with("fp16_scaler.")
        || name.starts_with("dino_loss.")
        || name.contains("head."))
}

/// Picks the backbone out of a checkpoint and renames it to official names.
fn canonicalize(raw: RawFile) -> Result<StateDict, CheckpointProblem> {
    let has_prefix = |p: &str| raw.tensors.iter().any(|(n, _)| n.starts_with(p));
    // Full checkpoints keep several models; evaluation always uses the teacher.
    let scope = ["teacher.", "model.", "state_dict."]
        .into_iter()
        .find(|p| has_prefix(p));
    let mut dict = StateDict {
        metadata: raw.metadata,
        ..StateDict::default()
    };
    let mut hf_qkv: BTreeMap<(usize, &'static str), [Option<RawTensor>; 3]> = BTreeMap::new();
    let (mut head_weight, mut head_bias) = (None, None);
    for (name, tensor) in raw.tensors {
        let local = match scope {
            Some(p) => match name.strip_prefix(p) {
                Some(rest) => rest.to_string(),
                None => {
                    dict.ignored.push(name);
                    continue;
                }
            },
            None => name.clone(),
        };
        let local = local.replace("module.", "").replace("backbone.", "");
        if let Some(feature) = unsupported_feature(&local) {
            return Err(CheckpointProblem::Unsupported(feature.to_string()));
        }
        match local.as_str() {
            "head.weight" => head_weight = Some(tensor.shape.clone()),
            "head.bias" => head_bias = Some(tensor.shape.clone()),
            _ => {}
        }
        match official_name(&local) {
            Some(Renamed::Official(official))
                if !tensor.data.is_empty() || tensor.shape.contains(&0) =>
            {
                dict.tensors.insert(official, tensor);
            }
            Some(Renamed::QkvPart { block, part, field }) => {
                hf_qkv.entry((block, field)).or_default()[part] = Some(tensor);
            }
            _ => dict.ignored.push(name),
        }
    }
    if let (Some(&[classes, width]), Some(&[bias])) = (head_weight.as_deref(), head_bias.as_deref())
        && bias == classes
    {
        dict.classifier = Some([classes, width]);
    }
    for ((block, field), parts) in hf_qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            return Err(CheckpointProblem::Missing {
                name: format!(
                    "encoder.layer.{block}.attention.attention.{{query,key,value}}.{field}"
                ),
            });
        };
        let mut shape = q.shape.clone();
        if k.shape != shape || v.shape != shape || shape.is_empty() {
            return Err(CheckpointProblem::Shape {
                name: format!("encoder.layer.{block}.attention.attention.key.{field}"),
                found: k.shape,
                expected: shape,
            });
        }
        shape[0] *= 3;
        let data = [q.data, k.data, v.data].concat();
        dict.tensors.insert(
            format!("blocks.{block}.attn.qkv.{field}"),
            RawTensor { shape, data },
        );
    }
    Ok(dict)
}

/// timm / DeiT parts that change the forward pass of the backbone and that dinoscope does not
/// implement, named by their (prefix-stripped) key; ignoring them would give wrong features silently.
fn unsupported_feature(key: &str) -> Option<&'static str> {
    let top = match key {
        "dist_token" => Some(
            "distilled DeiT (`dist_token`) is not supported; use the DeiT checkpoint without \
             distillation",
        ),
        "reg_token" => Some("timm register tokens (`reg_token`) are not supported"),
        "norm_pre.weight" => {
            Some("a LayerNorm before the blocks (`norm_pre`, CLIP-style) is not supported")
        }
        "fc_norm.weight" => Some(
            "a LayerNorm on the pooled output instead of a final `norm` of the tokens (`fc_norm`, \
             average pooling) is not supported",
        ),
        _ => None,
    };
    let in_block = key
        .strip_prefix("blocks.")
        .and_then(|rest| rest.split_once('.'))
        .map(|(_, field)| field);
    top.or(match in_block {
        Some(f) if f.starts_with("attn.q_norm.") || f.starts_with("attn.k_norm.") => {
            Some("normalised queries and keys (`attn.q_norm` / `attn.k_norm`) are not supported")
        }
        Some(f) if f.starts_with("attn.norm.") || f.starts_with("mlp.norm.") => {
            Some("a LayerNorm inside attention or MLP (`attn.norm` / `mlp.norm`) is not supported")
        }
        Some(f) if f.starts_with("attn.gate.") => {
            Some("gated attention (`attn.gate`) is not supported")
        }
        _ => None,
    })
}

enum Renamed {
    Official(String),
    /// One of HF's separate query / key / value projections (part 0, 1, 2).
    QkvPart {
        block: usize,
        part: usize,
        field: &'static str,
    },
}

/// Maps a (prefix-stripped) key to its official name; `None` for keys that are not backbone weights.
fn official_name(key: &str) -> Option<Renamed> {
    let key = key
        .strip_prefix("vit.")
        .or_else(|| key.strip_prefix("dinov2."))
        .unwrap_or(key);
    const TOP: [(&str, &str); 8] = [
        ("embeddings.cls_token", "cls_token"),
        ("embeddings.mask_token", "mask_token"),
        ("embeddings.register_tokens", "register_tokens"),
        ("embeddings.position_embeddings", "pos_embed"),
        (
            "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.weight",
        ),
        (
            "embeddings.patch_embeddings.projection.bias",
            "patch_embed.proj.bias",
        ),
        ("layernorm.weight", "norm.weight"),
        ("layernorm.bias", "norm.bias"),
    ];
    if let Some((_, official)) = TOP.iter().find(|(hf, _)| *hf == key) {
        return Some(Renamed::Official(official.to_string()));
    }
    if let Some(rest) = key.strip_prefix("encoder.layer.") {
        let (index, field) = rest.split_once('.')?;
        let block: usize = index.parse().ok()?;
        const QKV: [&str; 3] = ["query", "key", "value"];
        for (part, name) in QKV.iter().enumerate() {
            if let Some(param) = field.strip_prefix(&format!("attention.attention.{name}.")) {
                let field = match param {
                    "weight" => "weight",
                    "bias" => "bias",
                    _ => return None,
                };
                return Some(Renamed::QkvPart { block, part, field });
            }
        }
        const BLOCK: [(&str, &str); 12] = [
            ("layernorm_before.", "norm1."),
            ("layernorm_after.", "norm2."),
            ("norm1.", "norm1."),
            ("norm2.", "norm2."),
            ("attention.output.dense.", "attn.proj."),
            ("intermediate.dense.", "mlp.fc1."),
            ("output.dense.", "mlp.fc2."),
            ("layer_scale1.lambda1", "ls1.gamma"),
            ("layer_scale2.lambda1", "ls2.gamma"),
            ("mlp.fc1.", "mlp.fc1."),
            ("mlp.fc2.", "mlp.fc2."),
            ("mlp.weights_in.", "mlp.w12."),
        ];
        let mapped = BLOCK
            .iter()
            .chain(&[("mlp.weights_out.", "mlp.w3.")])
            .find_map(|(hf, official)| {
                field
                    .strip_prefix(hf)
                    .map(|param| format!("blocks.{block}.{official}{param}"))
            })?;
        return Some(Renamed::Official(mapped));
    }
    // Official names; DINOv2 FSDP checkpoints chunk blocks as `blocks.<chunk>.<index>.`.
    if let Some(rest) = key.strip_prefix("blocks.") {
        let (first, tail) = rest.split_once('.')?;
        first.parse::<usize>().ok()?;
        if let Some((second, param)) = tail.split_once('.')
            && second.parse::<usize>().is_ok()
        {
            return Some(Renamed::Official(format!("blocks.{second}.{param}")));
        }
        return Some(Renamed::Official(key.to_string()));
    }
    const OFFICIAL_TOP: [&str; 8] = [
        "cls_token",
        "pos_embed",
        "mask_token",
        "register_tokens",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    ];
    OFFICIAL_TOP
        .contains(&key)
        .then(|| Renamed::Official(key.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_safetensors_header_length_ending_in_0x80_is_not_taken_for_a_pickle() {
        let mut head = 0x1280u64.to_le_bytes().to_vec();
        head.push(b'{');
        assert!(matches!(
            super::kind_of(&head),
            Some(super::FileKind::Safetensors)
        ));
        assert!(matches!(
            super::kind_of(&[0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0]),
            Some(super::FileKind::Pytorch)
        ));
        assert!(matches!(
            super::kind_of(b"PK\x03\x04abcde"),
            Some(super::FileKind::Pytorch)
        ));
        assert!(super::kind_of(b"not a checkpoint").is_none());
        assert!(super::kind_of(&[0x80]).is_none());
    }

    use super::*;

    fn name(key: &str) -> Option<String> {
        match official_name(key)? {
            Renamed::Official(s) => Some(s),
            Renamed::QkvPart { block, part, field } => Some(format!("qkv{block}/{part}/{field}")),
        }
    }

    #[test]
    fn hugging_face_names_map_to_official_ones() {
        assert_eq!(
            name("embeddings.position_embeddings").as_deref(),
            Some("pos_embed")
        );
        assert_eq!(
            name("encoder.layer.3.output.dense.bias").as_deref(),
            Some("blocks.3.mlp.fc2.bias")
        );
        assert_eq!(
            name("encoder.layer.3.attention.output.dense.weight").as_deref(),
            Some("blocks.3.attn.proj.weight")
        );
        assert_eq!(
            name("encoder.layer.0.attention.attention.key.bias").as_deref(),
            Some("qkv0/1/bias")
        );
        assert_eq!(
            name("encoder.layer.2.layer_scale2.lambda1").as_deref(),
            Some("blocks.2.ls2.gamma")
        );
        assert_eq!(
            name("encoder.layer.2.mlp.weights_out.weight").as_deref(),
            Some("blocks.2.mlp.w3.weight")
        );
        assert_eq!(name("pooler.dense.weight"), None);
    }

    #[test]
    fn chunked_block_names_drop_the_chunk_index() {
        assert_eq!(
            name("blocks.1.6.norm1.weight").as_deref(),
            Some("blocks.6.norm1.weight")
        );
        assert_eq!(
            name("blocks.6.norm1.weight").as_deref(),
            Some("blocks.6.norm1.weight")
        );
    }

    fn raw_file(names: &[(&str, Vec<usize>)]) -> RawFile {
        let tensors = names
            .iter()
            .map(|(name, shape)| {
                let data = if name.contains("head.") {
                    Vec::new()
                } else {
                    vec![0.0; shape.iter().product()]
                };
                let shape = shape.clone();
                (name.to_string(), RawTensor { shape, data })
            })
            .collect();
        RawFile {
            tensors,
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn a_deit_classifier_head_is_recorded_and_ignored() {
        let dict = canonicalize(raw_file(&[
            ("model.cls_token", vec![1, 1, 8]),
            ("model.head.weight", vec![10, 8]),
            ("model.head.bias", vec![10]),
        ]))
        .unwrap();
        assert_eq!(dict.classifier, Some([10, 8]));
        assert_eq!(dict.ignored, ["model.head.weight", "model.head.bias"]);
        assert!(dict.tensors.contains_key("cls_token"));
        // DINO's projection head is no classifier.
        let dino = canonicalize(raw_file(&[
            ("teacher.backbone.cls_token", vec![1, 1, 8]),
            ("teacher.head.mlp.0.weight", vec![16, 8]),
            ("teacher.head.last_layer.weight_g", vec![64, 1]),
        ]))
        .unwrap();
        assert_eq!(dino.classifier, None);
        let no_bias = canonicalize(raw_file(&[("head.weight", vec![10, 8])])).unwrap();
        assert_eq!(no_bias.classifier, None);
    }

    #[test]
    fn timm_features_that_change_the_forward_pass_are_refused() {
        for (key, named) in [
            ("dist_token", "distilled DeiT"),
            ("reg_token", "reg_token"),
            ("norm_pre.weight", "norm_pre"),
            ("fc_norm.weight", "fc_norm"),
            ("blocks.3.attn.q_norm.weight", "q_norm"),
            ("blocks.0.mlp.norm.bias", "mlp.norm"),
            ("blocks.1.attn.gate.weight", "attn.gate"),
        ] {
            let scoped = format!("model.{key}");
            let err = canonicalize(raw_file(&[
                ("model.cls_token", vec![1, 1, 8]),
                (&scoped, vec![8]),
            ]))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("unsupported model") && err.contains(named),
                "{key}: {err}"
            );
        }
        // A DeiT training checkpoint's EMA copy is outside the scope that is read.
        let dict = canonicalize(raw_file(&[
            ("model.cls_token", vec![1, 1, 8]),
            ("model_ema.dist_token", vec![1, 1, 8]),
        ]))
        .unwrap();
        assert_eq!(dict.ignored, ["model_ema.dist_token"]);
    }

    #[test]
    fn f16_and_bf16_are_widened() {
        let one_f16 = half::f16::from_f32(1.5).to_le_bytes();
        assert_eq!(f32_values(&one_f16, "F16"), Some(vec![1.5]));
        let one_bf16 = half::bf16::from_f32(-2.0).to_le_bytes();
        assert_eq!(f32_values(&one_bf16, "BF16"), Some(vec![-2.0]));
        assert_eq!(f32_values(&[0, 0], "I16"), None);
    }
}
