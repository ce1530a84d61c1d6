//! One DINO training iteration (`train_one_epoch` body of `main_dino.py`), fp32, one process.

use burn::module::Module;
use burn::tensor::Tensor;

use super::adamw::{AdamW, AdamWSettings};
use super::ema::{EmaError, ema_update};
use super::loss::{DinoLoss, LossError};
use super::network::{DinoNetwork, NetworkError};
use super::schedule::Schedules;
use crate::rng::Rng;

/// Stream id of the drop-path masks in [`Rng::derive`].
const DROP_PATH_STREAM: u64 = 0xD709;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("iteration {it} is past the schedules ({len} iterations)")]
    PastSchedule { it: usize, len: usize },
    #[error("{got} crops given, the loss expects {expected}")]
    Crops { got: usize, expected: usize },
    #[error("loss is {0}, stopping training")]
    NonFiniteLoss(f64),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error(transparent)]
    Ema(#[from] EmaError),
}

/// What an iteration did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    pub epoch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    /// Teacher temperature of the epoch.
    pub teacher_temp: f64,
    /// Mean entropy of the teacher targets (nats; see [`DinoLoss::teacher_entropy`]).
    pub teacher_entropy: f64,
    /// Mean KL(teacher || student) over the loss's view pairs: `loss - teacher_entropy`.
    pub kl: f64,
}

/// Student, teacher, loss state, optimizer and schedules.
#[derive(Debug)]
pub struct TrainStep {
    /// On an autodiff device.
    pub student: DinoNetwork,
    /// Same structure and parameter ids, without autodiff.
    pub teacher: DinoNetwork,
    pub loss: DinoLoss,
    pub optimizer: AdamW,
    pub schedules: Schedules,
    /// Per-parameter gradient-norm clipping (`--clip_grad`, 3.0 by default; `None` disables it).
    pub clip_grad: Option<f64>,
    /// Epochs during which the head's last layer is not updated (`--freeze_last_layer`, 1 by default).
    pub freeze_last_layer: usize,
    /// Stochastic-depth rate of the student's last block (`--drop_path_rate`; 0 here, DINO uses 0.1).
    pub drop_path: f64,
    /// Seed of the drop-path masks; iteration `it` always draws the same masks (so resuming is exact).
    pub drop_path_seed: u64,
}

impl TrainStep {
    /// The teacher starts as a copy of the student (`teacher.load_state_dict(student.state_dict())`).
    pub fn new(
        student: DinoNetwork,
        loss: DinoLoss,
        schedules: Schedules,
        clip_grad: Option<f64>,
        freeze_last_layer: usize,
    ) -> Self {
        TrainStep {
            teacher: student.valid(),
            student,
            loss,
            optimizer: AdamW::default(),
            schedules,
            clip_grad,
            freeze_last_layer,
            drop_path: 0.0,
            drop_path_seed: 0,
        }
    }

    /// Global iteration `it` on `crops` (`[g1, g2, l1, ...]`, each `[B, 3, h, w]`): teacher on the two global
    /// crops, student on all, loss, backward, clipping, last-layer freezing, AdamW with the scheduled lr and
    /// weight decay, then the EMA teacher update with the scheduled momentum.
    pub fn step(&mut self, it: usize, crops: &[Tensor<4>]) -> Result<StepOutcome, StepError> {
        let len = self.schedules.len();
        let at = |s: &[f64]| {
            s.get(it)
                .copied()
                .ok_or(StepError::PastSchedule { it, len })
        };
        let (lr, weight_decay, momentum) = (
            at(&self.schedules.lr)?,
            at(&self.schedules.weight_decay)?,
            at(&self.schedules.momentum)?,
        );
        if crops.len() != self.loss.ncrops {
            return Err(StepError::Crops {
                got: crops.len(),
                expected: self.loss.ncrops,
            });
        }
        let epoch = it / self.schedules.niter_per_ep.max(1);

        let teacher_out = self.teacher.forward_crops(&crops[..2])?;
        let student_out = if self.drop_path > 0.0 {
            let mut rng = Rng::derive(self.drop_path_seed, &[DROP_PATH_STREAM, it as u64]);
            self.student
                .forward_crops_drop_path(crops, self.drop_path, &mut || rng.uniform())?
        } else {
            self.student.forward_crops(crops)?
        };
        let teacher_entropy = self.loss.teacher_entropy(&teacher_out, epoch)?;
        let teacher_temp = self.loss.teacher_temp[epoch];
        let loss = self.loss.forward(student_out, teacher_out, epoch)?;
        let value = loss.clone().inner().into_scalar::<f64>();
        if !value.is_finite() {
            return Err(StepError::NonFiniteLoss(value));
        }
        let mut grads = loss.backward();
        let settings = AdamWSettings {
            lr,
            weight_decay,
            clip_grad: self.clip_grad,
            freeze_last_layer: epoch < self.freeze_last_layer,
        };
        let student = self.student.clone();
        self.student = self.optimizer.step(student, &mut grads, &settings);
        let teacher = self.teacher.clone();
        self.teacher = ema_update(teacher, &self.student, momentum)?;
        Ok(StepOutcome {
            loss: value,
            epoch,
            lr,
            weight_decay,
            momentum,
            teacher_temp,
            teacher_entropy,
            kl: value - teacher_entropy,
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::model::config::{FfnKind, VitConfig};
    use crate::model::vit::Vit;
    use crate::train::head::{DinoHead, DinoHeadConfig};

    fn tiny(device: &Device) -> TrainStep {
        let config = VitConfig {
            pos_grid: 2,
            ffn: FfnKind::Mlp { hidden: 16 },
            ..VitConfig::dino(4, 8, 1, 2)
        };
        let head = DinoHeadConfig {
            hidden_dim: 8,
            bottleneck_dim: 4,
            ..DinoHeadConfig::new(8, 6)
        };
        let student = DinoNetwork {
            backbone: Vit::init(config, device),
            head: DinoHead::init(&head, device),
        };
        let loss = DinoLoss::new(6, 3, vec![0.04, 0.04], device).unwrap();
        let schedules = Schedules::dino(1e-3, 1e-6, 1, 0.04, 0.4, 0.996, 2, 1).unwrap();
        TrainStep::new(student, loss, schedules, Some(3.0), 1)
    }

    fn crops(sizes: &[usize], device: &Device) -> Vec<Tensor<4>> {
        sizes
            .iter()
            .map(|&s| Tensor::random([2, 3, s, s], Distribution::Normal(0.0, 1.0), device))
            .collect()
    }

    #[test]
    fn steps_run_and_bad_calls_are_errors() {
        let device = Device::flex();
        let mut train = tiny(&device.clone().autodiff());
        let outcome = train.step(1, &crops(&[8, 8, 4], &device)).unwrap();
        assert!(outcome.loss.is_finite());
        assert_eq!(outcome.epoch, 1);
        assert!(matches!(
            train.step(2, &crops(&[8, 8, 4], &device)),
            Err(StepError::PastSchedule { it: 2, len: 2 })
        ));
        assert!(matches!(
            train.step(0, &crops(&[8, 8], &device)),
            Err(StepError::Crops {
                got: 2,
                expected: 3
            })
        ));
        assert!(matches!(
            train.student.forward_crops(&[]),
            Err(NetworkError::NoCrops)
        ));
    }
}
