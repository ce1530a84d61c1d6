//! The training checkpoint in the layout of `main_dino.py`'s `checkpoint.pth`, written as `torch.save`
//! writes it ([`crate::model::pth_writer`]) so the official tools load it, and read back for exact resuming.
//!
//! `torch.load(path)` gives a dict:
//! - `student`: `OrderedDict` of `module.backbone.*` and `module.head.*` (the DDP-wrapped
//!   `MultiCropWrapper`), PyTorch layouts, `head.last_layer.weight_g|weight_v` as old-style weight norm;
//! - `teacher`: `OrderedDict` of `backbone.*` and `head.*`;
//! - `optimizer`: the AdamW `state_dict()`: `state` `{index: {'step': tensor(float), 'exp_avg', 'exp_avg_sq'}}`
//!   for the parameters updated so far, `param_groups` = [regularised group, not-regularised group
//!   (`weight_decay` 0)] with torch's keys, parameter indices as `get_params_groups` and
//!   `named_parameters()` order give them (`weight_g` left out while frozen by `norm_last_layer`);
//!   `lr` / `weight_decay` are the scheduled values of the last iteration done;
//! - `epoch`: the epoch of the next iteration (at an epoch boundary, `main_dino.py`'s "next epoch");
//! - `args`: a plain `dict` of `main_dino.py`'s argument names (not an `argparse.Namespace`, so it
//!   unpickles without any class and with `weights_only=True`; `argparse.Namespace(**ckpt['args'])` rebuilds it);
//! - `dino_loss`: `OrderedDict` `{'center': [1, out_dim]}`;
//! - [`EXTRAS_KEY`]: `{'format', 'next_step', 'config', 'backbone'}`: the next global iteration (saves can
//!   fall inside an epoch) and the [`TrainConfig`] as JSON, for exact resuming; the backbone's
//!   [`VitConfig`] as JSON, so the visualizer knows its head count.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{self, PickleValue, PytorchReader};

use super::adamw::AdamWEntry;
use super::config::TrainConfig;
use super::official_names::{burn_path, pytorch_order};
use super::params::is_regularized;
use super::step::TrainStep;
use crate::arrays::transpose;
use crate::model::checkpoint::{PTH_BACKBONE_KEY, PTH_EXTRAS_KEY, RawTensor};
use crate::model::config::{Arch, VitConfig};
use crate::model::host::f32_values;
use crate::model::pth_writer::{PyValue, write_pth};

#[derive(Debug, thiserror::Error)]
pub enum OfficialCheckpointError {
    #[error("{}: cannot save the training checkpoint: {detail}", path.display())]
    Save { path: PathBuf, detail: String },
    #[error("{}: not a usable resume checkpoint: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
}

/// Top-level key of dinoscope's own resume information.
pub const EXTRAS_KEY: &str = PTH_EXTRAS_KEY;
const FORMAT: i64 = 2;

/// What a training checkpoint holds, as the run rebuilds its state from it.
#[derive(Clone, Debug)]
pub struct Resume {
    pub config: TrainConfig,
    pub next_step: usize,
    /// `student.backbone.*`, `student.head.*`, `teacher.*` (official names and layouts), `loss.center`,
    /// and `optimizer.<burn module path>.exp_avg|exp_avg_sq` (flattened in burn's layout).
    pub tensors: BTreeMap<String, RawTensor>,
    /// AdamW's step count per burn module path.
    pub optimizer_steps: BTreeMap<String, i32>,
}

fn host(t: burn::tensor::Tensor<1>) -> Result<Vec<f32>, String> {
    f32_values(t).map_err(|e| e.to_string())
}

/// Whether AdamW sees the parameter (`weight_g` is frozen with `norm_last_layer`).
fn trainable(name: &str, config: &TrainConfig) -> bool {
    !(config.head.norm_last_layer && name == "head.last_layer.weight_g")
}

/// `get_params_groups`: the trainable parameter names of the student (official names, PyTorch order)
/// in the regularised and the not-regularised group.
fn param_groups(
    student: &[(String, Vec<usize>)],
    config: &TrainConfig,
) -> Result<[Vec<String>; 2], String> {
    let mut groups = [Vec::new(), Vec::new()];
    for (name, shape) in student {
        if !trainable(name, config) {
            continue;
        }
        let (path, _) = burn_path(name).ok_or_else(|| format!("unknown parameter `{name}`"))?;
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        let group = usize::from(!is_regularized(&segments, shape.len()));
        groups[group].push(name.clone());
    }
    Ok(groups)
}

fn tensor(shape: Vec<usize>, data: Vec<f32>) -> PyValue {
    PyValue::Tensor(RawTensor { shape, data })
}

fn state_dict(tensors: Vec<(String, RawTensor)>, prefix: &str) -> PyValue {
    PyValue::OrderedDict(
        pytorch_order(tensors)
            .into_iter()
            .map(|(n, t)| (format!("{prefix}{n}"), PyValue::Tensor(t)))
            .collect(),
    )
}

/// One entry of `param_groups`, keys as torch 2.x writes them (a group's own keys first).
fn group(lr: f64, weight_decay: f64, own_decay: bool, params: std::ops::Range<usize>) -> PyValue {
    let mut items = vec![
        ("lr", PyValue::Float(lr)),
        (
            "betas",
            PyValue::Tuple(vec![PyValue::Float(0.9), PyValue::Float(0.999)]),
        ),
        ("eps", PyValue::Float(1e-8)),
        ("weight_decay", PyValue::Float(weight_decay)),
        ("amsgrad", PyValue::Bool(false)),
        ("maximize", PyValue::Bool(false)),
        ("foreach", PyValue::None),
        ("capturable", PyValue::Bool(false)),
        ("differentiable", PyValue::Bool(false)),
        ("fused", PyValue::None),
        ("decoupled_weight_decay", PyValue::Bool(true)),
        (
            "params",
            PyValue::List(params.map(|i| PyValue::Int(i as i64)).collect()),
        ),
    ];
    if own_decay {
        let decay = items.remove(3);
        items.insert(0, decay);
    }
    PyValue::dict(items)
}

/// `main_dino.py`'s `--arch` name of `backbone` (`vit_small` for ViT-S/16 and ViT-S/8 alike, as
/// `--patch_size` tells them apart); dinoscope's own name for the others.
fn official_arch_name(backbone: &VitConfig) -> String {
    match Arch::matching(backbone) {
        Some(Arch::VitTiny) => "vit_tiny".into(),
        Some(Arch::VitS16 | Arch::VitS8) => "vit_small".into(),
        Some(Arch::VitB16 | Arch::VitB8) => "vit_base".into(),
        Some(other) => other.to_string().replace('-', "_"),
        None => "custom".into(),
    }
}

/// `main_dino.py`'s arguments that this run has values for.
fn args(config: &TrainConfig, backbone: &VitConfig) -> PyValue {
    let a = &config.augment;
    let pair = |(x, y): (f64, f64)| PyValue::Tuple(vec![PyValue::Float(x), PyValue::Float(y)]);
    let int = |v: usize| PyValue::Int(v as i64);
    PyValue::dict([
        ("arch", PyValue::str(official_arch_name(backbone))),
        ("patch_size", int(backbone.patch_size)),
        ("out_dim", int(config.head.out_dim)),
        (
            "norm_last_layer",
            PyValue::Bool(config.head.norm_last_layer),
        ),
        ("momentum_teacher", PyValue::Float(config.momentum_teacher)),
        ("use_bn_in_head", PyValue::Bool(false)),
        (
            "warmup_teacher_temp",
            PyValue::Float(config.warmup_teacher_temp),
        ),
        ("teacher_temp", PyValue::Float(config.teacher_temp)),
        (
            "warmup_teacher_temp_epochs",
            int(config.warmup_teacher_temp_epochs),
        ),
        ("use_fp16", PyValue::Bool(false)),
        ("weight_decay", PyValue::Float(config.weight_decay)),
        ("weight_decay_end", PyValue::Float(config.weight_decay_end)),
        ("clip_grad", PyValue::Float(config.clip_grad)),
        ("batch_size_per_gpu", int(config.batch)),
        ("epochs", int(config.epochs)),
        ("freeze_last_layer", int(config.freeze_last_layer)),
        ("lr", PyValue::Float(config.lr)),
        ("warmup_epochs", int(config.warmup_epochs)),
        ("min_lr", PyValue::Float(config.min_lr)),
        ("optimizer", PyValue::str("adamw")),
        ("drop_path_rate", PyValue::Float(config.drop_path)),
        ("global_crops_scale", pair(a.global_scale)),
        ("local_crops_number", int(a.local_crops)),
        ("local_crops_scale", pair(a.local_scale)),
        ("data_path", PyValue::str(config.data.clone())),
        ("seed", PyValue::Int(config.seed as i64)),
    ])
}

/// Writes the checkpoint of `state` (about to run iteration `next_step`) to `path`, atomically.
pub fn save(
    state: &TrainStep,
    config: &TrainConfig,
    next_step: usize,
    path: &Path,
) -> Result<(), OfficialCheckpointError> {
    let corrupt = |detail: String| OfficialCheckpointError::Save {
        path: path.to_path_buf(),
        detail,
    };
    let student = pytorch_order(
        state
            .student
            .official_tensors()
            .map_err(|e| corrupt(e.to_string()))?,
    );
    let shapes: Vec<(String, Vec<usize>)> = student
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect();
    let groups = param_groups(&shapes, config).map_err(corrupt)?;
    let index: HashMap<&str, usize> = groups
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let official: HashMap<String, (&str, bool, &[usize])> = shapes
        .iter()
        .filter_map(|(n, s)| burn_path(n).map(|(p, t)| (p, (n.as_str(), t, s.as_slice()))))
        .collect();
    let mut moments = BTreeMap::new();
    for AdamWEntry {
        path: burn,
        exp_avg,
        exp_avg_sq,
        step,
    } in state.optimizer.export(&state.student)
    {
        let &(name, transposed, shape) = official
            .get(&burn)
            .ok_or_else(|| corrupt(format!("optimizer state of unknown parameter `{burn}`")))?;
        let i = *index
            .get(name)
            .ok_or_else(|| corrupt(format!("optimizer state of frozen parameter `{name}`")))?;
        let torch = |v: Vec<f32>| match (transposed, shape) {
            (true, &[rows, cols]) => tensor(shape.to_vec(), transpose(&v, cols, rows)),
            _ => tensor(shape.to_vec(), v),
        };
        let entry = PyValue::dict([
            ("step", tensor(Vec::new(), vec![step as f32])),
            ("exp_avg", torch(host(exp_avg).map_err(corrupt)?)),
            ("exp_avg_sq", torch(host(exp_avg_sq).map_err(corrupt)?)),
        ]);
        moments.insert(i, entry);
    }
    let schedules = &state.schedules;
    let last = next_step
        .saturating_sub(1)
        .min(schedules.lr.len().saturating_sub(1));
    let lr = schedules.lr.get(last).copied().unwrap_or(0.0);
    let wd = schedules.weight_decay.get(last).copied().unwrap_or(0.0);
    let n0 = groups[0].len();
    let optimizer = PyValue::dict([
        (
            "state",
            PyValue::Dict(
                moments
                    .into_iter()
                    .map(|(i, v)| (PyValue::Int(i as i64), v))
                    .collect(),
            ),
        ),
        (
            "param_groups",
            PyValue::List(vec![
                group(lr, wd, false, 0..n0),
                group(lr, 0.0, true, n0..n0 + groups[1].len()),
            ]),
        ),
    ]);
    let center = state.loss.center.clone();
    let center_shape = center.dims().to_vec();
    let center = f32_values(center).map_err(|e| corrupt(e.to_string()))?;
    let config_json = serde_json::to_string(config).map_err(|e| corrupt(e.to_string()))?;
    let backbone = state.teacher.backbone.config();
    let backbone_json = serde_json::to_string(backbone).map_err(|e| corrupt(e.to_string()))?;
    let root = PyValue::dict([
        ("student", state_dict(student, "module.")),
        (
            "teacher",
            state_dict(
                state
                    .teacher
                    .official_tensors()
                    .map_err(|e| corrupt(e.to_string()))?,
                "",
            ),
        ),
        ("optimizer", optimizer),
        (
            "epoch",
            PyValue::Int((next_step / schedules.niter_per_ep.max(1)) as i64),
        ),
        ("args", args(config, backbone)),
        (
            "dino_loss",
            PyValue::OrderedDict(vec![("center".into(), tensor(center_shape, center))]),
        ),
        (
            EXTRAS_KEY,
            PyValue::dict([
                ("format", PyValue::Int(FORMAT)),
                ("next_step", PyValue::Int(next_step as i64)),
                ("config", PyValue::Str(config_json)),
                (PTH_BACKBONE_KEY, PyValue::Str(backbone_json)),
            ]),
        ),
    ]);
    write_pth(path, &root).map_err(|e| corrupt(e.to_string()))
}

fn read_f32(name: &str, t: &pytorch_reader::Tensor) -> Result<RawTensor, String> {
    if t.dtype() != pytorch_reader::DType::F32 {
        return Err(format!("`{name}` is {:?}, expected float32", t.dtype()));
    }
    let bytes = t.read().map_err(|e| format!("`{name}`: {e}"))?;
    Ok(RawTensor {
        shape: t.shape().to_vec(),
        data: bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    })
}

fn entry<'a>(dict: &'a HashMap<String, PickleValue>, key: &str) -> Result<&'a PickleValue, String> {
    dict.get(key).ok_or_else(|| format!("no `{key}` entry"))
}

fn as_dict(value: PickleValue, what: &str) -> Result<HashMap<String, PickleValue>, String> {
    match value {
        PickleValue::Dict(d) => Ok(d),
        other => Err(format!("`{what}` is not a dict: {other:?}")),
    }
}

/// The extras: format check, next iteration and config.
fn extras(path: &Path) -> Result<(usize, TrainConfig), String> {
    let value = PytorchReader::read_pickle_data(path, Some(EXTRAS_KEY))
        .map_err(|e| format!("{e} (no `{EXTRAS_KEY}` entry: not written by `dinoscope train`?)"))?;
    let dict = as_dict(value, EXTRAS_KEY)?;
    match entry(&dict, "format")? {
        PickleValue::Int(FORMAT) => {}
        other => return Err(format!("unknown format {other:?}")),
    }
    let next_step = match entry(&dict, "next_step")? {
        PickleValue::Int(n) if *n >= 0 => *n as usize,
        other => return Err(format!("bad `next_step` {other:?}")),
    };
    let PickleValue::String(json) = entry(&dict, "config")? else {
        return Err("`config` is not a string".into());
    };
    let config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
    Ok((next_step, config))
}

/// The parameter indices of AdamW's two groups, as stored.
fn stored_groups(path: &Path) -> Result<Vec<Vec<i64>>, String> {
    let value =
        PytorchReader::read_pickle_data(path, Some("optimizer")).map_err(|e| e.to_string())?;
    let dict = as_dict(value, "optimizer")?;
    let PickleValue::List(groups) = entry(&dict, "param_groups")? else {
        return Err("`param_groups` is not a list".into());
    };
    groups
        .iter()
        .map(|g| {
            let PickleValue::Dict(g) = g else {
                return Err("a parameter group is not a dict".to_string());
            };
            match entry(g, "params")? {
                PickleValue::List(ids) => ids
                    .iter()
                    .map(|i| match i {
                        PickleValue::Int(i) => Ok(*i),
                        other => Err(format!("parameter index {other:?}")),
                    })
                    .collect(),
                other => Err(format!("`params` is {other:?}")),
            }
        })
        .collect()
}

fn read(path: &Path) -> Result<Resume, String> {
    let (next_step, config) = extras(path)?;
    let reader = PytorchReader::new(path).map_err(|e| e.to_string())?;
    let mut tensors = BTreeMap::new();
    let mut student_shapes = Vec::new();
    for (name, t) in reader.tensors() {
        let key = if let Some(rest) = name.strip_prefix("student.") {
            let rest = rest.strip_prefix("module.").unwrap_or(rest);
            student_shapes.push((rest.to_string(), t.shape().to_vec()));
            format!("student.{rest}")
        } else if let Some(rest) = name.strip_prefix("teacher.") {
            format!("teacher.{}", rest.strip_prefix("module.").unwrap_or(rest))
        } else if name == "dino_loss.center" {
            "loss.center".to_string()
        } else {
            continue;
        };
        tensors.insert(key, read_f32(name, t)?);
    }
    let ours = param_groups(&pytorch_order(student_shapes.clone()), &config)?;
    let stored = stored_groups(path)?;
    if stored.len() != 2 || stored.iter().zip(&ours).any(|(s, o)| s.len() != o.len()) {
        return Err(format!(
            "the optimizer has groups of {:?} parameters, the model {} and {}",
            stored.iter().map(Vec::len).collect::<Vec<_>>(),
            ours[0].len(),
            ours[1].len()
        ));
    }
    let shapes: HashMap<String, Vec<usize>> = student_shapes.into_iter().collect();
    let mut optimizer_steps = BTreeMap::new();
    for (index, name) in stored.iter().flatten().zip(ours.iter().flatten()) {
        let prefix = format!("optimizer.state.{index}");
        let (Some(avg), Some(avg_sq), Some(step)) = (
            reader.get(&format!("{prefix}.exp_avg")),
            reader.get(&format!("{prefix}.exp_avg_sq")),
            reader.get(&format!("{prefix}.step")),
        ) else {
            continue;
        };
        let (burn, transposed) =
            burn_path(name).ok_or_else(|| format!("unknown parameter `{name}`"))?;
        let shape = &shapes[name];
        let flat = |t: RawTensor| -> Result<Vec<f32>, String> {
            if &t.shape != shape {
                return Err(format!(
                    "`{prefix}` has shape {:?}, its parameter `{name}` {shape:?}",
                    t.shape
                ));
            }
            Ok(match (transposed, shape.as_slice()) {
                (true, &[rows, cols]) => transpose(&t.data, rows, cols),
                _ => t.data,
            })
        };
        let step = read_f32(&format!("{prefix}.step"), step)?;
        let count = match step.data[..] {
            [s] if s >= 0.0 && s.fract() == 0.0 => s as i32,
            _ => return Err(format!("`{prefix}.step` is {:?}", step.data)),
        };
        let shape_of = |data: Vec<f32>| RawTensor {
            shape: vec![data.len()],
            data,
        };
        tensors.insert(
            format!("optimizer.{burn}.exp_avg"),
            shape_of(flat(read_f32(&prefix, avg)?)?),
        );
        tensors.insert(
            format!("optimizer.{burn}.exp_avg_sq"),
            shape_of(flat(read_f32(&prefix, avg_sq)?)?),
        );
        optimizer_steps.insert(burn, count);
    }
    Ok(Resume {
        config,
        next_step,
        tensors,
        optimizer_steps,
    })
}

/// Reads a checkpoint written by [`save`] (or by PyTorch in the same layout, with the extras).
pub fn load(path: &Path) -> Result<Resume, OfficialCheckpointError> {
    read(path).map_err(|detail| OfficialCheckpointError::Read {
        path: path.to_path_buf(),
        detail,
    })
}
