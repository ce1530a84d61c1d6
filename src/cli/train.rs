//! `dinoscope train`: DINO self-supervised training on an image folder or synthetic scenes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::model::{DeviceChoice, backend};
use crate::train::TrainConfig;
use crate::train::run::{RunOptions, train};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// `synthetic` (generated shapes on textures) or an image folder (searched recursively).
    #[arg(long)]
    pub data: Option<String>,
    /// Architecture (`vit-nano` by default; see `--arch` of the other commands for names).
    #[arg(long)]
    pub arch: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per iteration.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Output directory: config.json, metrics.jsonl, teacher.safetensors, checkpoint.pth (official DINO layout).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML (`*.toml`) or JSON file with any `TrainConfig` fields (flags given on the command line win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run saved in `--out` exactly (its saved config is used).
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate for a batch of 256 (scaled by batch / 256).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Number of prototypes of the DINO head.
    #[arg(long)]
    pub out_dim: Option<usize>,
    /// Number of local crops.
    #[arg(long)]
    pub local_crops: Option<usize>,
    /// Student stochastic-depth rate (0.1 by default).
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Fine-tune from this checkpoint (`.pth` / `.safetensors`, architecture detected; `--arch` is then
    /// ignored): student and teacher backbones start from it, the DINO head starts fresh.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Attention heads of the `--init` backbone when the file does not say (default `dim / 64`).
    #[arg(long)]
    pub init_heads: Option<usize>,
    /// Evaluate the teacher every this many iterations (k-NN accuracy, k = 20, T = 0.07; attention-mask
    /// IoU on synthetic scenes; image folders need class sub-folders); 0 never. Default 100.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Compute the teacher's attention on a fixed probe image every this many iterations (for
    /// library callers and the app; 0 never, the default).
    #[arg(long)]
    pub probe_every: Option<usize>,
    /// Save the checkpoints every this many iterations (0: only at the end).
    #[arg(long, default_value_t = 100)]
    pub save_every: usize,
    /// Stop after this many iterations in total (the schedules still span all epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The config file (or the defaults) with the command-line flags applied.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => TrainConfig::from_file(path)?,
            None => TrainConfig::default(),
        };
        if let Some(v) = &self.data {
            c.data = v.clone();
        }
        if let Some(v) = &self.arch {
            c.arch = v.clone();
        }
        if let Some(v) = &self.init {
            c.init = Some(v.clone());
        }
        if let Some(v) = self.init_heads {
            c.init_heads = Some(v);
        }
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(v) = self.$flag { c.$($field).+ = v; })*
            };
        }
        set!(
            epochs => epochs,
            batch => batch,
            seed => seed,
            lr => lr,
            out_dim => head.out_dim,
            local_crops => augment.local_crops,
            drop_path => drop_path,
            eval_every => eval_every,
            probe_every => probe_every,
        );
        Ok(c)
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let config = args.config()?;
    if args.resume {
        eprintln!(
            "resuming from {} (its saved config is used)",
            args.out.display()
        );
    }
    let device = backend::select(args.device)?;
    eprintln!("device: {}", device.description);
    if !args.resume {
        config.validate()?;
        eprintln!("data: {}", config.dataset()?.describe());
    }
    let options = RunOptions {
        out: args.out.clone(),
        resume: args.resume,
        max_steps: args.max_steps,
        save_every: args.save_every,
        device: device.device,
        progress: !args.quiet,
    };
    let summary = train(config, &options).context("training")?;
    if summary.skipped_images > 0 {
        eprintln!(
            "warning: {} unreadable images were skipped",
            summary.skipped_images
        );
    }
    eprintln!(
        "done {}/{} iterations{}, {:.1} images/s; teacher: {}, resume: {}",
        summary.steps,
        summary.total_steps,
        summary
            .last_loss
            .map(|l| format!(", last loss {l:.4}"))
            .unwrap_or_default(),
        summary.images_per_s,
        summary.teacher.display(),
        summary.resume.display()
    );
    Ok(())
}

/// `dinoscope eval-synthetic`: how well a model separates objects in held-out synthetic scenes.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint to evaluate; without it, an untrained model of `--arch` (the baseline).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::model::config::Arch::VitNano)]
    pub arch: crate::model::config::Arch,
    /// Scene side in pixels (a multiple of the patch size).
    #[arg(long, default_value_t = 96)]
    pub size: u32,
    /// A training run's `config.json` (or any `--config` file): score on scenes drawn like its
    /// `synthetic` section (object sizes, background contrast); `--size` still sets the side.
    #[arg(long)]
    pub scenes_from: Option<PathBuf>,
    /// Seed of the untrained baseline's weights (without `--weights`).
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
    /// Scenes in the k-NN memory bank.
    #[arg(long, default_value_t = 200)]
    pub train: usize,
    /// Scenes classified and compared with their masks.
    #[arg(long, default_value_t = 100)]
    pub test: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let device = backend::select(args.device)?;
    let vit = match &args.weights {
        Some(path) => crate::model::load_model(path, &Default::default(), &device.device)?.vit,
        None => crate::model::Vit::init_seeded(args.arch.config(), args.init_seed, &device.device),
    };
    let scenes = match &args.scenes_from {
        Some(path) => TrainConfig::from_file(path)?.synthetic,
        None => Default::default(),
    };
    let config = crate::train::synthetic::SyntheticConfig {
        size: args.size,
        ..scenes
    };
    let report =
        crate::train::eval::evaluate_synthetic(&vit, &config, args.seed, args.train, args.test)?;
    println!("{}", serde_json::to_string(&report).context("report")?);
    Ok(())
}
