//! A whole DINO training run: data, augmentations, [`TrainStep`]s, metrics, checkpoints and resuming.
//!
//! Files written in the output directory:
//! - `config.json`: the [`TrainConfig`] of the run.
//! - `metrics.jsonl`: one JSON object per iteration (see [`Metrics`]).
//! - `teacher.safetensors`: the teacher backbone under the official DINO names, with its configuration in the
//!   metadata ([`crate::model::save::save_safetensors`]); `dinoscope attention --weights` reads it.
//! - `checkpoint.pth`: everything needed to continue exactly, in the layout of `main_dino.py`'s
//!   `checkpoint.pth` (see [`RESUME_FILE`] and [`super::official_checkpoint`]).
//!
//! Both checkpoints are written to a `.partial` file then renamed, so an interrupted save never leaves a
//! truncated file behind.
//!
//! [`train_with`] lets a caller follow a run ([`RunEvent`]s: each iteration's [`Metrics`], with the periodic
//! evaluation, and the attention probe) and pause, resume or stop it through a [`RunControl`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::adamw::AdamWEntry;
use super::augment::{AugmentError, DataAugmentationDino};
use super::config::{TrainConfig, TrainConfigError, config_of_checkpoint};
use super::control::RunControl;
use super::data::{BatchLoader, DataError};
use super::eval::EvalScores;
use super::head::DinoHeadConfig;
use super::loss::{DinoLoss, LossError};
use super::monitor::{Monitor, Probe};
use super::network::{DinoNetwork, NetworkError};
use super::official_checkpoint::{self, OfficialCheckpointError};
use super::params::replace_value;
use super::schedule::{ScheduleError, Schedules, teacher_temp_schedule};
use super::step::{StepError, StepOutcome, TrainStep};
use crate::model::checkpoint::{CheckpointError, RawTensor};
use crate::model::config::VitConfig;
use crate::model::host::HostReadError;
use crate::model::load::{LoadOptions, load_model};
use crate::model::save::{official_tensors, save_safetensors};
use crate::rng::Rng;

/// The training checkpoint, read by `--resume`: `torch.load`-able, in the official DINO layout
/// ([`super::official_checkpoint`]), with the next iteration and the config for exact resuming.
pub const RESUME_FILE: &str = "checkpoint.pth";
pub const TEACHER_FILE: &str = "teacher.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CONFIG_FILE: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] TrainConfigError),
    #[error("cannot write the run's JSON: {0}")]
    Serialize(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a usable resume checkpoint: {detail}", path.display())]
    Resume { path: PathBuf, detail: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Augment(#[from] AugmentError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("iteration {it}: {source}")]
    Step { it: usize, source: StepError },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    ResumeCheckpoint(#[from] OfficialCheckpointError),
    #[error(transparent)]
    HostRead(#[from] HostReadError),
}

/// How to run (not part of the run's definition).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    /// Continue from `out/checkpoint.pth` (its config wins over the one given).
    pub resume: bool,
    /// Stop once this many iterations (counted from the start of the run) are done.
    pub max_steps: Option<usize>,
    /// Save both checkpoints every this many iterations (0: only at the end).
    pub save_every: usize,
    /// Computation device (the student runs on its autodiff version).
    pub device: Device,
    pub progress: bool,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    pub teacher_temp: f64,
    /// Mean entropy of the teacher targets, nats (max `ln out_dim`).
    pub teacher_entropy: f64,
    /// Mean KL(teacher || student), nats.
    pub kl: f64,
    pub images_per_s: f64,
    /// Seconds spent loading and augmenting the batch.
    pub data_s: f64,
    /// `uniform` or `one-hot` when the KL has vanished (see [`collapse`]).
    pub collapse: Option<String>,
    /// The teacher's evaluation after this iteration (every `eval_every` iterations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalScores>,
    /// Seconds the evaluation took (not counted in `images_per_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_s: Option<f64>,
    /// Seconds the attention probe took (not counted in `images_per_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_s: Option<f64>,
}

/// What [`train_with`] reports while it runs.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// Before the first iteration: the run's config (the saved one when resuming), its backbone, and the
    /// planned schedules, one value per iteration of the whole run.
    Started(Box<RunPlan>),
    /// An iteration is done (the same line goes to `metrics.jsonl`).
    Iteration(Metrics),
    /// The teacher's attention on the probe image (every `probe_every` iterations).
    Probe(Probe),
    /// Both checkpoints were written; the run continues (or resumes) at `next_step`.
    Saved { next_step: usize },
}

/// A run as it starts.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub config: TrainConfig,
    pub backbone: VitConfig,
    /// First iteration of this call (0, or where a resumed run continues).
    pub start: usize,
    /// Where this call stops (`max_steps` or the end of the schedules).
    pub end: usize,
    pub total: usize,
    pub niter_per_ep: usize,
    /// Whether the data allows evaluation (labels) and `eval_every > 0`.
    pub evaluates: bool,
    pub lr: Vec<f64>,
    pub momentum: Vec<f64>,
    pub teacher_temp: Vec<f64>,
}

/// DINO's two collapse modes, both with a vanishing KL between teacher and student: a uniform teacher
/// (entropy near `ln K`) or a one-hot one (entropy near 0).
pub fn collapse(outcome: &StepOutcome, out_dim: usize) -> Option<String> {
    let max = (out_dim.max(2) as f64).ln();
    if outcome.kl > 1e-3 {
        return None;
    }
    let ratio = outcome.teacher_entropy / max;
    Some(if ratio > 0.5 { "uniform" } else { "one-hot" }.into())
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Iterations done in total (including those before a resume).
    pub steps: usize,
    /// Iterations in the whole schedule.
    pub total_steps: usize,
    pub last_loss: Option<f64>,
    /// Images per second over the iterations of this call.
    pub images_per_s: f64,
    pub skipped_images: usize,
    pub teacher: PathBuf,
    pub resume: PathBuf,
    /// Ended early by [`RunControl::stop`] (the checkpoints hold the last finished iteration).
    pub stopped: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Initial student tensors drawn from the run's seed (so the start does not depend on burn's global
/// RNG): the layout of [`crate::model::vit::Vit::init`] and [`super::head::DinoHead::init`], constant
/// tensors (zeros, ones) kept, random ones redrawn: N(0, 0.02), and U(±1/sqrt(bottleneck)) for
/// `last_layer.weight_v`.
fn initial_tensors(
    config: &TrainConfig,
    backbone: &VitConfig,
    head: &DinoHeadConfig,
    device: &Device,
) -> Result<BTreeMap<String, RawTensor>, RunError> {
    let vit = crate::model::vit::Vit::init(backbone.clone(), device);
    let network = DinoNetwork {
        backbone: vit,
        head: super::head::DinoHead::init(head, device),
    };
    let mut rng = Rng::derive(config.seed, &[0x1A17]);
    let bound = 1.0 / (head.bottleneck_dim as f64).sqrt();
    Ok(network
        .official_tensors()?
        .into_iter()
        .map(|(name, mut t)| {
            let constant = t.data.windows(2).all(|w| w[0] == w[1]);
            if !constant {
                for v in t.data.iter_mut() {
                    *v = if name == "head.last_layer.weight_v" {
                        rng.range(-bound, bound) as f32
                    } else {
                        rng.normal(0.02) as f32
                    };
                }
            }
            (name, t)
        })
        .collect())
}

/// Replaces the `backbone.*` tensors by those of the `init` checkpoint.
fn load_init(
    tensors: &mut BTreeMap<String, RawTensor>,
    path: &Path,
    backbone: &VitConfig,
    device: &Device,
) -> Result<(), RunError> {
    let options = LoadOptions {
        config: Some(backbone.clone()),
        heads: None,
        ..LoadOptions::default()
    };
    let loaded = load_model(path, &options, device)?;
    tensors.retain(|name, _| !name.starts_with("backbone."));
    tensors.extend(
        official_tensors(&loaded.vit)?
            .into_iter()
            .map(|(n, t)| (format!("backbone.{n}"), t)),
    );
    Ok(())
}

/// The run's [`TrainStep`] before its first iteration.
fn fresh_state(
    config: &TrainConfig,
    vit_config: VitConfig,
    niter_per_ep: usize,
    device: &Device,
) -> Result<TrainStep, RunError> {
    let head = config.head_config(vit_config.dim);
    let mut tensors = initial_tensors(config, &vit_config, &head, device)?;
    if let Some(path) = &config.init {
        load_init(&mut tensors, path, &vit_config, device)?;
    }
    let student =
        DinoNetwork::from_tensors(&tensors, vit_config, &head, &device.clone().autodiff())?;
    let epochs = config.epochs;
    let schedules = Schedules::dino(
        config.lr * config.batch as f64 / 256.0,
        config.min_lr,
        config.warmup_epochs.min(epochs),
        config.weight_decay,
        config.weight_decay_end,
        config.momentum_teacher,
        epochs,
        niter_per_ep,
    )?;
    let temps = teacher_temp_schedule(
        config.warmup_teacher_temp,
        config.teacher_temp,
        config.warmup_teacher_temp_epochs.min(epochs),
        epochs,
    )?;
    let loss = DinoLoss::new(head.out_dim, config.augment.ncrops(), temps, device)?;
    let clip = (config.clip_grad > 0.0).then_some(config.clip_grad);
    let mut step = TrainStep::new(student, loss, schedules, clip, config.freeze_last_layer);
    step.drop_path = config.drop_path;
    step.drop_path_seed = config.seed;
    Ok(step)
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    crate::atomic_file::write(path, bytes).map_err(io_err(path))
}

/// Saves the teacher backbone and the resume checkpoint for continuing at `next_step`.
pub fn save_checkpoints(
    state: &TrainStep,
    config: &TrainConfig,
    next_step: usize,
    out: &Path,
) -> Result<(), RunError> {
    save_safetensors(&state.teacher.backbone, &out.join(TEACHER_FILE))?;
    official_checkpoint::save(state, config, next_step, &out.join(RESUME_FILE))?;
    Ok(())
}

/// Reads the resume checkpoint: its config, next iteration and the state to continue from.
/// What a resume checkpoint holds: config, next iteration, tensors, AdamW step counts.
type Saved = (
    TrainConfig,
    usize,
    BTreeMap<String, RawTensor>,
    BTreeMap<String, i32>,
);

fn load_resume(out: &Path) -> Result<Saved, RunError> {
    let saved = official_checkpoint::load(&out.join(RESUME_FILE))?;
    Ok((
        saved.config,
        saved.next_step,
        saved.tensors,
        saved.optimizer_steps,
    ))
}

fn with_prefix(tensors: &BTreeMap<String, RawTensor>, prefix: &str) -> BTreeMap<String, RawTensor> {
    tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
        .collect()
}

/// Re-creates every parameter from its values in row-major order. Loading transposes the Linear weights
/// (PyTorch `[out, in]` to burn `[in, out]`) as strided views; the optimizer and the EMA leave contiguous
/// tensors. Matmul sums in a layout-dependent order, so without this a resumed run would drift from an
/// uninterrupted one in the last bits.
fn contiguous<M: Module>(module: M) -> M {
    struct Contiguous;
    impl burn::module::ModuleMapper for Contiguous {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let device = tensor.device();
            let fresh = Tensor::from_data(tensor.clone().inner().into_data(), &device.inner());
            burn::module::Param::from_mapped_value(id, replace_value(&tensor, fresh), mapper)
        }
    }
    module.map(&mut Contiguous)
}

/// Rebuilds the state saved by [`save_checkpoints`].
fn resumed_state(
    config: &TrainConfig,
    vit_config: VitConfig,
    niter_per_ep: usize,
    tensors: &BTreeMap<String, RawTensor>,
    steps: &BTreeMap<String, i32>,
    path: &Path,
    device: &Device,
) -> Result<TrainStep, RunError> {
    let corrupt = |detail: String| RunError::Resume {
        path: path.to_path_buf(),
        detail,
    };
    // The fresh state only provides the schedules and loss settings: no need to read `init` again.
    let plain = TrainConfig {
        init: None,
        ..config.clone()
    };
    let mut state = fresh_state(&plain, vit_config.clone(), niter_per_ep, device)?;
    let head = config.head_config(vit_config.dim);
    state.student = DinoNetwork::from_tensors(
        &with_prefix(tensors, "student."),
        vit_config.clone(),
        &head,
        &device.clone().autodiff(),
    )?;
    state.student = contiguous(state.student);
    state.teacher = contiguous(DinoNetwork::from_tensors(
        &with_prefix(tensors, "teacher."),
        vit_config,
        &head,
        device,
    )?);
    let center = tensors
        .get("loss.center")
        .ok_or_else(|| corrupt("`loss.center` is missing".into()))?;
    state.loss.set_center(center.data.clone())?;
    let tensor = |name: &str| -> Result<Tensor<1>, RunError> {
        let t = tensors
            .get(name)
            .ok_or_else(|| corrupt(format!("`{name}` is missing")))?;
        Ok(Tensor::from_data(
            TensorData::new(t.data.clone(), [t.data.len()]),
            device,
        ))
    };
    let mut entries = Vec::with_capacity(steps.len());
    for (path, &step) in steps {
        entries.push(AdamWEntry {
            path: path.clone(),
            exp_avg: tensor(&format!("optimizer.{path}.exp_avg"))?,
            exp_avg_sq: tensor(&format!("optimizer.{path}.exp_avg_sq"))?,
            step,
        });
    }
    let unmatched = state.optimizer.import(&state.student, entries);
    if !unmatched.is_empty() {
        return Err(corrupt(format!(
            "optimizer state for unknown or resized parameters: {}",
            unmatched.join(", ")
        )));
    }
    Ok(state)
}

/// The metrics a run in `out` recorded for the iterations before `next_step` (none when its
/// `metrics.jsonl` cannot be read), e.g. to chart a resumed run from its beginning.
pub fn metrics_before(out: &Path, next_step: usize) -> Vec<Metrics> {
    std::fs::read_to_string(out.join(METRICS_FILE))
        .map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str::<Metrics>(line).ok())
                .filter(|m| m.step < next_step)
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps the metrics lines of iterations before `next_step` (a resumed run rewrites the rest).
fn truncate_metrics(path: &Path, next_step: usize) -> Result<(), RunError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<Metrics>(line).is_ok_and(|m| m.step < next_step))
        .map(|line| format!("{line}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}

fn progress_bar(total: usize, start: usize, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} it (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(start as u64);
    bar
}

/// Prints a line above the progress bar, or on stderr when the bar is hidden but progress is wanted
/// (not a terminal).
fn say(bar: &indicatif::ProgressBar, show: bool, text: String) {
    if !show {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{text}");
    } else {
        bar.println(text);
    }
}

/// The schedules of the whole run, one value per iteration.
fn plan(
    config: &TrainConfig,
    backbone: &VitConfig,
    state: &TrainStep,
    (start, end): (usize, usize),
    evaluates: bool,
) -> RunPlan {
    let niter = state.schedules.niter_per_ep.max(1);
    let total = state.schedules.len();
    RunPlan {
        config: config.clone(),
        backbone: backbone.clone(),
        start,
        end,
        total,
        niter_per_ep: niter,
        evaluates,
        lr: state.schedules.lr.clone(),
        momentum: state.schedules.momentum.clone(),
        teacher_temp: (0..total)
            .map(|it| {
                state
                    .loss
                    .teacher_temp
                    .get(it / niter)
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect(),
    }
}

/// Trains (or continues training) with `config`; see the module documentation for the files written.
pub fn train(config: TrainConfig, options: &RunOptions) -> Result<RunSummary, RunError> {
    train_with(config, options, &RunControl::default(), &mut |_| {})
}

/// [`train`], reporting to `observer` and obeying `control` between iterations. A stop ends the run after
/// the iteration under way and saves both checkpoints (atomically) before returning, so the run resumes
/// exactly where it stopped.
pub fn train_with(
    config: TrainConfig,
    options: &RunOptions,
    control: &RunControl,
    observer: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary, RunError> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let resume_path = out.join(RESUME_FILE);
    let (config, start, saved) = if options.resume {
        let (saved_config, next, tensors, steps) = load_resume(out)?;
        // The saved config defines the run; how it is monitored is the caller's choice.
        let config = TrainConfig {
            eval_every: config.eval_every,
            probe_every: config.probe_every,
            eval_bank: config.eval_bank,
            eval_queries: config.eval_queries,
            ..saved_config
        };
        (config, next, Some((tensors, steps)))
    } else {
        (config, 0, None)
    };
    // A resumed fine-tuning run takes its backbone's configuration from its own teacher checkpoint.
    let backbone = match (&saved, &config.init) {
        (Some(_), Some(_)) => config_of_checkpoint(&out.join(TEACHER_FILE), None)?,
        _ => config.backbone_config()?,
    };
    config.validate_for(&backbone)?;
    let augment = DataAugmentationDino::new(config.augment.clone())?;
    let dataset = config.dataset()?;
    let monitor = Monitor::new(config.monitor_settings(), &dataset, backbone.patch_size);
    let loader = BatchLoader::new(dataset, augment, config.batch, config.seed)?;
    let niter = loader.niter_per_ep();
    let mut state = match &saved {
        Some((tensors, steps)) => resumed_state(
            &config,
            backbone.clone(),
            niter,
            tensors,
            steps,
            &resume_path,
            &options.device,
        )?,
        None => fresh_state(&config, backbone.clone(), niter, &options.device)?,
    };
    let config_json =
        serde_json::to_string_pretty(&config).map_err(|e| RunError::Serialize(e.to_string()))?;
    write_atomic(&out.join(CONFIG_FILE), config_json.as_bytes())?;
    let metrics_path = out.join(METRICS_FILE);
    if options.resume {
        truncate_metrics(&metrics_path, start)?;
    } else {
        write_atomic(&metrics_path, b"")?;
    }
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&metrics_path)
        .map_err(io_err(&metrics_path))?;

    let total = state.schedules.len();
    let end = options.max_steps.map_or(total, |m| m.min(total));
    observer(RunEvent::Started(Box::new(plan(
        &config,
        &backbone,
        &state,
        (start, end),
        monitor.evaluates(),
    ))));
    let bar = progress_bar(total, start, options.progress);
    let began = Instant::now();
    let mut last_loss = None;
    let mut warned = false;
    let mut next = start;
    let mut stopped = false;
    for it in start..end {
        if !control.wait_while_paused() {
            stopped = true;
            break;
        }
        let t0 = Instant::now();
        let batch = loader.batch(it)?;
        let crops = batch.to_tensors(&options.device);
        let data_s = t0.elapsed().as_secs_f64();
        let outcome = state
            .step(it, &crops)
            .map_err(|source| RunError::Step { it, source })?;
        let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
        let collapse = collapse(&outcome, config.head.out_dim);
        if let Some(mode) = &collapse
            && !warned
        {
            warned = true;
            say(
                &bar,
                options.progress,
                format!(
                    "warning: iteration {it}: teacher and student agree (KL {:.2e}, teacher entropy {:.3} nats): \
                     possible {mode} collapse",
                    outcome.kl, outcome.teacher_entropy
                ),
            );
        }
        let eval = monitor.eval_after(it, &state.teacher.backbone)?;
        if let Some(e) = &eval {
            say(
                &bar,
                options.progress,
                format!(
                    "eval after iteration {it}: k-NN accuracy {:.1} %{} ({:.2} s)",
                    100.0 * e.value.knn_accuracy,
                    e.value
                        .mask_iou
                        .map(|m| format!(", attention-mask IoU {m:.3}"))
                        .unwrap_or_default(),
                    e.seconds
                ),
            );
        }
        let probe = monitor.probe_after(it, &state.teacher.backbone)?;
        let line = Metrics {
            step: it,
            epoch: outcome.epoch,
            loss: outcome.loss,
            lr: outcome.lr,
            wd: outcome.weight_decay,
            momentum: outcome.momentum,
            teacher_temp: outcome.teacher_temp,
            teacher_entropy: outcome.teacher_entropy,
            kl: outcome.kl,
            images_per_s: config.batch as f64 / elapsed,
            data_s,
            collapse,
            eval: eval.map(|e| e.value),
            eval_s: eval.map(|e| e.seconds),
            probe_s: probe.as_ref().map(|p| p.seconds),
        };
        let json = serde_json::to_string(&line).map_err(|e| RunError::Serialize(e.to_string()))?;
        writeln!(metrics, "{json}").map_err(io_err(&metrics_path))?;
        last_loss = Some(outcome.loss);
        bar.set_position((it + 1) as u64);
        bar.set_message(format!(
            "loss {:.4} H(t) {:.3} KL {:.3} {:.1} img/s",
            outcome.loss, outcome.teacher_entropy, outcome.kl, line.images_per_s
        ));
        observer(RunEvent::Iteration(line));
        if let Some(p) = probe {
            observer(RunEvent::Probe(p.value));
        }
        next = it + 1;
        if options.save_every > 0 && next % options.save_every == 0 && next < end {
            save_checkpoints(&state, &config, next, out)?;
            observer(RunEvent::Saved { next_step: next });
        }
    }
    save_checkpoints(&state, &config, next, out)?;
    observer(RunEvent::Saved { next_step: next });
    bar.finish();
    let done = next - start;
    Ok(RunSummary {
        steps: next,
        total_steps: total,
        last_loss,
        images_per_s: (done * config.batch) as f64 / began.elapsed().as_secs_f64().max(1e-9),
        skipped_images: loader.skipped(),
        teacher: out.join(TEACHER_FILE),
        resume: resume_path,
        stopped,
    })
}
