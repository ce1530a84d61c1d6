//! `DINOLoss`: cross-entropy between the sharpened, centred teacher and the student, over crop pairs.

use burn::tensor::{Device, Tensor};

use crate::model::reduce::{log_softmax, softmax, sum_dim};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("the DINO loss needs at least the 2 global crops, got {0} crops")]
    TooFewCrops(usize),
    #[error(
        "student output {student:?} and teacher output {teacher:?} do not match {ncrops} crops of {out_dim} prototypes"
    )]
    Shapes {
        student: [usize; 2],
        teacher: [usize; 2],
        ncrops: usize,
        out_dim: usize,
    },
    #[error("epoch {epoch} is past the teacher-temperature schedule ({len} epochs)")]
    EpochOutOfSchedule { epoch: usize, len: usize },
}

/// The loss with its running teacher center.
#[derive(Clone, Debug)]
pub struct DinoLoss {
    pub ncrops: usize,
    pub student_temp: f64,
    pub center_momentum: f64,
    /// Teacher temperature per epoch (see [`crate::train::teacher_temp_schedule`]).
    pub teacher_temp: Vec<f64>,
    /// `[1, out_dim]`, zeros at the start; saved as `dino_loss.center` in DINO checkpoints.
    pub center: Tensor<2>,
}

impl DinoLoss {
    /// Official defaults: student temperature 0.1, center momentum 0.9.
    pub fn new(
        out_dim: usize,
        ncrops: usize,
        teacher_temp: Vec<f64>,
        device: &Device,
    ) -> Result<Self, LossError> {
        if ncrops < 2 {
            return Err(LossError::TooFewCrops(ncrops));
        }
        Ok(DinoLoss {
            ncrops,
            student_temp: 0.1,
            center_momentum: 0.9,
            teacher_temp,
            center: Tensor::zeros([1, out_dim], &device.clone().inner()),
        })
    }

    /// Number of (teacher view, student view) pairs averaged: every pair except the two same-view ones.
    pub fn n_terms(&self) -> usize {
        2 * self.ncrops - 2
    }

    /// Loss of `student` (`[ncrops * B, K]`, crops in order `g1, g2, l1, ...`) against `teacher`
    /// (`[2 * B, K]`, the two global crops) at `epoch`; then moves the center towards the teacher's batch
    /// mean, so the current call uses the previous center. The teacher gets no gradient.
    pub fn forward(
        &mut self,
        student: Tensor<2>,
        teacher: Tensor<2>,
        epoch: usize,
    ) -> Result<Tensor<1>, LossError> {
        let [sn, k] = student.dims();
        let [tn, tk] = teacher.dims();
        let out_dim = self.center.dims()[1];
        let batch = tn / 2;
        if tn % 2 != 0 || batch == 0 || sn != self.ncrops * batch || k != out_dim || tk != out_dim {
            return Err(LossError::Shapes {
                student: [sn, k],
                teacher: [tn, tk],
                ncrops: self.ncrops,
                out_dim,
            });
        }
        let temp = self.teacher_temp_at(epoch)?;
        let teacher = teacher.inner();
        let targets = softmax((teacher.clone() - self.center.clone()).div_scalar(temp), 1);
        let log_probs = log_softmax(student.div_scalar(self.student_temp), 1);
        let mut terms = Vec::with_capacity(self.n_terms());
        for iq in 0..2 {
            let q = targets.clone().narrow(0, iq * batch, batch);
            for v in (0..self.ncrops).filter(|&v| v != iq) {
                let s = log_probs.clone().narrow(0, v * batch, batch);
                terms.push(sum_dim(q.clone() * s, 1).mean());
            }
        }
        let loss = Tensor::cat(terms, 0)
            .sum()
            .div_scalar(-(self.n_terms() as f64));
        self.update_center(teacher);
        Ok(loss)
    }

    fn teacher_temp_at(&self, epoch: usize) -> Result<f64, LossError> {
        self.teacher_temp
            .get(epoch)
            .copied()
            .ok_or(LossError::EpochOutOfSchedule {
                epoch,
                len: self.teacher_temp.len(),
            })
    }

    /// Mean entropy (nats) of the sharpened, centred teacher distributions `softmax((t - c) / τt)` at
    /// `epoch`, with the current center (call it before [`Self::forward`]). Near `ln K` means the teacher is
    /// uniform, near 0 that it is one-hot; the loss minus this is the mean KL(teacher || student).
    pub fn teacher_entropy(&self, teacher: &Tensor<2>, epoch: usize) -> Result<f64, LossError> {
        let temp = self.teacher_temp_at(epoch)?;
        let log_q = log_softmax(
            (teacher.clone().inner() - self.center.clone()).div_scalar(temp),
            1,
        );
        let entropy = sum_dim(log_q.clone().exp() * log_q, 1).mean().neg();
        Ok(entropy.into_scalar::<f64>())
    }

    /// Replaces the center (when resuming a run); `values` must have `out_dim` entries.
    pub fn set_center(&mut self, values: Vec<f32>) -> Result<(), LossError> {
        let out_dim = self.center.dims()[1];
        if values.len() != out_dim {
            return Err(LossError::Shapes {
                student: [1, values.len()],
                teacher: [1, out_dim],
                ncrops: self.ncrops,
                out_dim,
            });
        }
        let device = self.center.device();
        self.center =
            Tensor::from_data(burn::tensor::TensorData::new(values, [1, out_dim]), &device);
        Ok(())
    }

    fn update_center(&mut self, teacher: Tensor<2>) {
        let rows = teacher.dims()[0] as f64;
        let batch_center = sum_dim(teacher, 0).div_scalar(rows);
        self.center = self.center.clone().mul_scalar(self.center_momentum)
            + batch_center.mul_scalar(1.0 - self.center_momentum);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn identical_views_give_the_entropy_of_the_targets() {
        // A student equal to the teacher logits at matching temperatures: every term is H(q) (+ 0 KL).
        let device = Device::flex();
        let mut loss = DinoLoss::new(6, 2, vec![0.1], &device).unwrap();
        let t = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let q = softmax(t.clone().div_scalar(0.1), 1);
        let entropy = -(q.clone() * q.log()).sum_dim(1).mean().into_scalar::<f32>();
        // Swap the halves: the only pairs used are (teacher g1, student g2) and (teacher g2, student g1).
        let [a, b] = [t.clone().narrow(0, 0, 2), t.clone().narrow(0, 2, 2)];
        let value = loss
            .forward(Tensor::cat(vec![b, a], 0), t, 0)
            .unwrap()
            .into_scalar::<f32>();
        assert!((value - entropy).abs() < 1e-5, "{value} vs {entropy}");
    }

    #[test]
    fn center_moves_after_the_loss() {
        let device = Device::flex();
        let mut loss = DinoLoss::new(3, 2, vec![0.04], &device).unwrap();
        let t = Tensor::<2>::ones([2, 3], &device);
        let s = Tensor::<2>::zeros([2, 3], &device);
        loss.forward(s, t, 0).unwrap();
        let c = loss.center.into_data().try_into_vec::<f32>().unwrap();
        assert!(c.iter().all(|&v| (v - 0.1).abs() < 1e-7), "{c:?}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let device = Device::flex();
        assert_eq!(
            DinoLoss::new(3, 1, vec![0.04], &device).unwrap_err(),
            LossError::TooFewCrops(1)
        );
        let mut loss = DinoLoss::new(3, 3, vec![0.04], &device).unwrap();
        let t = Tensor::<2>::ones([2, 3], &device);
        let err = loss.forward(Tensor::zeros([2, 3], &device), t.clone(), 0);
        assert!(matches!(err, Err(LossError::Shapes { .. })));
        let err = loss.forward(Tensor::zeros([3, 3], &device), t, 1);
        assert!(matches!(err, Err(LossError::EpochOutOfSchedule { .. })));
    }
}
