//! What defines a training run: [`TrainConfig`] (JSON or TOML), checked in one place ([`TrainConfig::validate`])
//! whenever it is built, read from a file or read back from a checkpoint.

use std::path::{Path, PathBuf};

use super::augment::{AugmentConfig, AugmentError};
use super::data::{DataError, Dataset, ImageFolder};
use super::head::DinoHeadConfig;
use super::monitor::MonitorSettings;
use super::synthetic::{SyntheticConfig, SyntheticScenes};
use crate::model::checkpoint::{CheckpointError, read_state_dict};
use crate::model::config::{Arch, ConfigError, VitConfig};
use crate::model::load::detect_config;

/// Bounds far above any run this tool makes, so a crafted config cannot ask for absurd allocations.
const MAX_BATCH: usize = 65_536;
const MAX_HEAD_WIDTH: usize = 1 << 20;
const MAX_HEAD_LAYERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TrainConfigError {
    #[error("config: {0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Augment(#[from] AugmentError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("backbone: {0}")]
    Backbone(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<TrainConfigError>,
    },
}

/// The DINO head's shape; `in_dim` comes from the backbone.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadShape {
    pub out_dim: usize,
    pub hidden_dim: usize,
    pub bottleneck_dim: usize,
    pub nlayers: usize,
    pub norm_last_layer: bool,
}

impl Default for HeadShape {
    /// Smaller than DINO's (65536 / 2048 / 256) to suit the tiny models trained on a CPU.
    fn default() -> Self {
        HeadShape {
            out_dim: 2048,
            hidden_dim: 512,
            bottleneck_dim: 128,
            nlayers: 3,
            norm_last_layer: true,
        }
    }
}

/// Everything that defines a run (JSON in `--config` and `config.json`; every field optional).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `synthetic` or an image folder.
    pub data: String,
    /// Architecture name as on the command line (`vit-nano`, `vits16`, ...).
    pub arch: String,
    pub epochs: usize,
    /// Images per iteration.
    pub batch: usize,
    pub seed: u64,
    /// Peak learning rate for a batch of 256; the run uses `lr * batch / 256` (as `main_dino.py`).
    pub lr: f64,
    pub min_lr: f64,
    /// Linear lr warm-up epochs (capped at `epochs`).
    pub warmup_epochs: usize,
    pub weight_decay: f64,
    pub weight_decay_end: f64,
    pub momentum_teacher: f64,
    pub teacher_temp: f64,
    pub warmup_teacher_temp: f64,
    /// Capped at `epochs`.
    pub warmup_teacher_temp_epochs: usize,
    /// Per-parameter gradient-norm clipping; 0 disables it.
    pub clip_grad: f64,
    pub freeze_last_layer: usize,
    /// Student stochastic-depth rate at the last block.
    pub drop_path: f64,
    pub head: HeadShape,
    pub augment: AugmentConfig,
    pub synthetic: SyntheticConfig,
    /// Fine-tune from this checkpoint (`.pth` / `.safetensors`, architecture detected; `arch` is then
    /// ignored): student and teacher backbones start from its weights, the head starts fresh.
    pub init: Option<PathBuf>,
    /// Attention heads of the `init` backbone when its file does not say (official models: `dim / 64`).
    pub init_heads: Option<usize>,
    /// Evaluate the teacher (k-NN accuracy, attention-mask IoU) every this many iterations; 0: never.
    pub eval_every: usize,
    /// Send the teacher's last-block attention on the probe image every this many iterations; 0: never.
    pub probe_every: usize,
    /// Images in the evaluation's k-NN memory bank.
    pub eval_bank: usize,
    /// Images classified by the evaluation.
    pub eval_queries: usize,
}

impl Default for TrainConfig {
    /// `main_dino.py`'s defaults, except the model, head, crops and warm-up sized for a CPU.
    fn default() -> Self {
        TrainConfig {
            data: "synthetic".into(),
            arch: "vit-nano".into(),
            epochs: 10,
            batch: 32,
            seed: 0,
            lr: 0.0005,
            min_lr: 1e-6,
            warmup_epochs: 10,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            momentum_teacher: 0.996,
            teacher_temp: 0.04,
            warmup_teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 0,
            clip_grad: 3.0,
            freeze_last_layer: 1,
            drop_path: 0.1,
            head: HeadShape::default(),
            augment: AugmentConfig::default(),
            synthetic: SyntheticConfig::default(),
            init: None,
            init_heads: None,
            eval_every: 100,
            probe_every: 0,
            eval_bank: 100,
            eval_queries: 50,
        }
    }
}

impl TrainConfig {
    pub fn arch(&self) -> Result<Arch, TrainConfigError> {
        use clap::ValueEnum;
        Arch::from_str(&self.arch, true).map_err(|_| {
            let names: Vec<String> = Arch::ALL.iter().map(|a| a.to_string()).collect();
            TrainConfigError::Invalid(format!(
                "unknown architecture `{}`; use one of: {}",
                self.arch,
                names.join(", ")
            ))
        })
    }

    /// The backbone's configuration: the `init` checkpoint's (detected from the file) or `arch`'s.
    pub fn backbone_config(&self) -> Result<VitConfig, TrainConfigError> {
        match &self.init {
            Some(path) => config_of_checkpoint(path, self.init_heads),
            None => Ok(self.arch()?.config()),
        }
    }

    pub fn validate(&self) -> Result<(), TrainConfigError> {
        self.validate_for(&self.backbone_config()?)
    }

    pub(super) fn validate_for(&self, backbone: &VitConfig) -> Result<(), TrainConfigError> {
        if self.epochs == 0 || self.batch == 0 {
            return Err(TrainConfigError::Invalid(
                "epochs and batch must be positive".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(TrainConfigError::Invalid(format!(
                "drop_path must be in [0, 1), got {}",
                self.drop_path
            )));
        }
        let h = &self.head;
        if h.out_dim == 0 || h.hidden_dim == 0 || h.bottleneck_dim == 0 || h.nlayers == 0 {
            return Err(TrainConfigError::Invalid(
                "head sizes must be positive".into(),
            ));
        }
        let sizes = [
            ("batch", self.batch, MAX_BATCH),
            ("head.out_dim", h.out_dim, MAX_HEAD_WIDTH),
            ("head.hidden_dim", h.hidden_dim, MAX_HEAD_WIDTH),
            ("head.bottleneck_dim", h.bottleneck_dim, MAX_HEAD_WIDTH),
            ("head.nlayers", h.nlayers, MAX_HEAD_LAYERS),
        ];
        for (name, value, max) in sizes {
            if value > max {
                return Err(TrainConfigError::Invalid(format!(
                    "{name} {value} is larger than {max}"
                )));
            }
        }
        let non_negative = [
            ("lr", self.lr),
            ("min_lr", self.min_lr),
            ("weight_decay", self.weight_decay),
            ("weight_decay_end", self.weight_decay_end),
            ("clip_grad", self.clip_grad),
        ];
        for (name, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(TrainConfigError::Invalid(format!(
                    "{name} must be a finite number >= 0, got {value}"
                )));
            }
        }
        for (name, value) in [
            ("teacher_temp", self.teacher_temp),
            ("warmup_teacher_temp", self.warmup_teacher_temp),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(TrainConfigError::Invalid(format!(
                    "{name} must be a finite number > 0, got {value}"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.momentum_teacher) {
            return Err(TrainConfigError::Invalid(format!(
                "momentum_teacher must be in [0, 1], got {}",
                self.momentum_teacher
            )));
        }
        backbone.validate()?;
        self.augment.validate()?;
        let patch = backbone.patch_size as u32;
        let a = &self.augment;
        if a.global_size < patch || (a.local_crops > 0 && a.local_size < patch) {
            return Err(TrainConfigError::Invalid(format!(
                "crops ({} / {} px) must be at least one {patch}-pixel patch",
                a.global_size, a.local_size
            )));
        }
        Ok(())
    }

    /// Reads and validates a config file: TOML when its name ends in `.toml`, JSON otherwise
    /// (unknown keys are errors in both).
    pub fn from_file(path: &Path) -> Result<Self, TrainConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let parsed = if toml {
            toml::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        let config: Self =
            parsed.map_err(|e| TrainConfigError::Invalid(format!("{}: {e}", path.display())))?;
        config.validate().map_err(|e| TrainConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok(config)
    }

    pub fn dataset(&self) -> Result<Dataset, TrainConfigError> {
        if self.data == "synthetic" {
            Ok(Dataset::Synthetic(SyntheticScenes::new(
                self.synthetic.clone(),
                self.seed,
            )))
        } else {
            Ok(Dataset::Folder(ImageFolder::scan(Path::new(&self.data))?))
        }
    }

    pub(super) fn monitor_settings(&self) -> MonitorSettings {
        MonitorSettings {
            eval_every: self.eval_every,
            probe_every: self.probe_every,
            eval_bank: self.eval_bank,
            eval_queries: self.eval_queries,
            image_size: self.augment.global_size,
            seed: self.seed,
        }
    }

    pub(super) fn head_config(&self, in_dim: usize) -> DinoHeadConfig {
        DinoHeadConfig {
            in_dim,
            out_dim: self.head.out_dim,
            nlayers: self.head.nlayers,
            hidden_dim: self.head.hidden_dim,
            bottleneck_dim: self.head.bottleneck_dim,
            norm_last_layer: self.head.norm_last_layer,
        }
    }
}

/// The configuration a checkpoint's backbone has (read from its metadata, or detected from its tensors).
pub(super) fn config_of_checkpoint(
    path: &Path,
    heads: Option<usize>,
) -> Result<VitConfig, TrainConfigError> {
    let dict = read_state_dict(path)?;
    Ok(detect_config(&dict, heads).map_err(|e| CheckpointError::new(path, e))?)
}
