//! Per-iteration and per-epoch schedules: `utils.cosine_scheduler` and the teacher-temperature warm-up.

/// A schedule that cannot be built from its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{warmup} warm-up epochs do not fit in {epochs} epochs")]
    WarmupTooLong { warmup: usize, epochs: usize },
}

/// `np.linspace(start, stop, num)` (endpoint included), with numpy's arithmetic so values match bit for bit.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    values[num - 1] = stop;
    values
}

/// DINO's `utils.cosine_scheduler`: a linear warm-up from `start_warmup_value` to `base` over
/// `warmup_epochs * niter_per_ep` iterations (endpoint included), then a half cosine from `base` to
/// `final_value` over the remaining iterations. One value per global iteration.
pub fn cosine_scheduler(
    base: f64,
    final_value: f64,
    epochs: usize,
    niter_per_ep: usize,
    warmup_epochs: usize,
    start_warmup_value: f64,
) -> Result<Vec<f64>, ScheduleError> {
    if warmup_epochs > epochs {
        return Err(ScheduleError::WarmupTooLong {
            warmup: warmup_epochs,
            epochs,
        });
    }
    let warmup_iters = warmup_epochs * niter_per_ep;
    let mut schedule = linspace(start_warmup_value, base, warmup_iters);
    let rest = epochs * niter_per_ep - warmup_iters;
    schedule.extend((0..rest).map(|i| {
        let cos = (std::f64::consts::PI * i as f64 / rest as f64).cos();
        final_value + 0.5 * (base - final_value) * (1.0 + cos)
    }));
    Ok(schedule)
}

/// `DINOLoss.teacher_temp_schedule`: `linspace(warmup_temp, temp, warmup_epochs)` then `temp`; one value per
/// epoch.
pub fn teacher_temp_schedule(
    warmup_temp: f64,
    temp: f64,
    warmup_epochs: usize,
    epochs: usize,
) -> Result<Vec<f64>, ScheduleError> {
    if warmup_epochs > epochs {
        return Err(ScheduleError::WarmupTooLong {
            warmup: warmup_epochs,
            epochs,
        });
    }
    let mut schedule = linspace(warmup_temp, temp, warmup_epochs);
    schedule.resize(epochs, temp);
    Ok(schedule)
}

/// The per-iteration schedules of `main_dino.py`: learning rate, weight decay and teacher momentum.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedules {
    pub lr: Vec<f64>,
    pub weight_decay: Vec<f64>,
    pub momentum: Vec<f64>,
    pub niter_per_ep: usize,
}

impl Schedules {
    /// `lr`: warm-up from 0 over `warmup_epochs`, cosine to `min_lr`; `weight_decay` and `momentum`: cosine,
    /// no warm-up (momentum ends at 1). `lr` is the peak already scaled by the batch size.
    #[allow(clippy::too_many_arguments)]
    pub fn dino(
        lr: f64,
        min_lr: f64,
        warmup_epochs: usize,
        weight_decay: f64,
        weight_decay_end: f64,
        momentum_teacher: f64,
        epochs: usize,
        niter_per_ep: usize,
    ) -> Result<Schedules, ScheduleError> {
        Ok(Schedules {
            lr: cosine_scheduler(lr, min_lr, epochs, niter_per_ep, warmup_epochs, 0.0)?,
            weight_decay: cosine_scheduler(
                weight_decay,
                weight_decay_end,
                epochs,
                niter_per_ep,
                0,
                0.0,
            )?,
            momentum: cosine_scheduler(momentum_teacher, 1.0, epochs, niter_per_ep, 0, 0.0)?,
            niter_per_ep,
        })
    }

    /// Number of iterations covered.
    pub fn len(&self) -> usize {
        self.lr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lr.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_edge_cases() {
        assert!(linspace(0.0, 1.0, 0).is_empty());
        assert_eq!(linspace(0.3, 1.0, 1), vec![0.3]);
        assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn cosine_starts_at_base_and_approaches_final() {
        let s = cosine_scheduler(1.0, 0.0, 10, 10, 0, 0.0).unwrap();
        assert_eq!(s.len(), 100);
        assert_eq!(s[0], 1.0);
        assert!(s[99] > 0.0 && s[99] < 1e-3);
        assert!(s.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn too_long_warmups_are_errors() {
        assert!(cosine_scheduler(1.0, 0.0, 2, 10, 3, 0.0).is_err());
        assert!(teacher_temp_schedule(0.04, 0.07, 31, 30).is_err());
    }
}
