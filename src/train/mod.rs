//! Self-supervised DINO training (`main_dino.py` / `utils.py` of facebookresearch/dino), as a library.
//!
//! Numerics follow the official code (`main_dino.py`, `utils.py`, `vision_transformer.py`) and are checked against PyTorch by
//! `tests/train_parity.rs`. Layering: uses [`crate::model`], never the app or the command line.

pub mod adamw;
pub mod augment;
pub mod config;
pub mod control;
pub mod data;
pub mod ema;
pub mod eval;
pub mod head;
pub mod loss;
pub mod monitor;
pub mod network;
pub mod official_checkpoint;
pub mod official_names;
pub mod params;
pub mod run;
pub mod schedule;
pub mod step;
pub mod synthetic;

pub use crate::rng::Rng;
pub use adamw::{AdamW, AdamWEntry, AdamWSettings};
pub use augment::{AugmentConfig, DataAugmentationDino};
pub use config::{TrainConfig, TrainConfigError};
pub use control::RunControl;
pub use data::{Batch, BatchLoader, DataError, Dataset, ImageFolder};
pub use ema::{EmaError, ema_update};
pub use head::{DinoHead, DinoHeadConfig, HeadError};
pub use loss::{DinoLoss, LossError};
pub use monitor::Probe;
pub use network::{DinoNetwork, NetworkError};
pub use run::{RunError, RunEvent, RunOptions, RunPlan, RunSummary, train, train_with};
pub use schedule::{ScheduleError, Schedules, cosine_scheduler, teacher_temp_schedule};
pub use step::{StepError, StepOutcome, TrainStep};
pub use synthetic::{Scene, Shape, SyntheticConfig, SyntheticScenes};
