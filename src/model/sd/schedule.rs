//! Stable Diffusion's training noise schedule and the forward process `q(z_t | z_0)` that DIFT and
//! SD-DINO apply before the single UNet pass (Ho et al. 2020, eq. 4).

use burn::tensor::Tensor;

/// Diffusion steps SD was trained with.
pub const TRAIN_TIMESTEPS: usize = 1000;
/// `scaled_linear` end points of SD 1.x / 2.x (`scheduler/scheduler_config.json` of both).
const BETA_START: f64 = 0.00085;
const BETA_END: f64 = 0.012;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("timestep {0} is outside the schedule's 0..{TRAIN_TIMESTEPS}")]
    Timestep(usize),
    #[error("the noise has shape {noise:?} but the latent {latent:?}")]
    Shape {
        latent: Vec<usize>,
        noise: Vec<usize>,
    },
}

/// `ᾱ_t = Π_{i ≤ t} (1 − β_i)` for every training step.
#[derive(Clone, Debug)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// SD's `scaled_linear` schedule: `β_i = (√0.00085 + (√0.012 − √0.00085)·i/999)²`.
    ///
    /// Computed as diffusers does (`DDIMScheduler`): the linspace, squares and `1 − β` in f32
    /// (PyTorch's CPU linspace fills the first half from the start and the second from the end),
    /// the running product accumulated in f64 (PyTorch's CPU `cumprod` accumulator) and stored as
    /// f32 — so the table is diffusers' to within one f32 step (measured max |Δ| 6e-8).
    pub fn stable_diffusion() -> Self {
        let steps = TRAIN_TIMESTEPS;
        let start = BETA_START.sqrt() as f32;
        let end = BETA_END.sqrt() as f32;
        let step = (end - start) / (steps - 1) as f32;
        let mut product = 1.0f64;
        let alphas_cumprod = (0..steps)
            .map(|i| {
                let root = if i < steps / 2 {
                    start + step * i as f32
                } else {
                    end - step * (steps - 1 - i) as f32
                };
                let alpha = 1.0f32 - root * root;
                product *= alpha as f64;
                product as f32
            })
            .collect();
        NoiseSchedule { alphas_cumprod }
    }

    /// `ᾱ_t` for `t` in `0..1000`.
    pub fn alpha_bar(&self, t: usize) -> Result<f32, ScheduleError> {
        self.alphas_cumprod
            .get(t)
            .copied()
            .ok_or(ScheduleError::Timestep(t))
    }

    /// The whole table, index = timestep.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// `√ᾱ_t · z + √(1 − ᾱ_t) · ε`, diffusers' `add_noise` (identical in DDPM and DDIM).
    pub fn add_noise<const D: usize>(
        &self,
        latent: Tensor<D>,
        noise: Tensor<D>,
        t: usize,
    ) -> Result<Tensor<D>, ScheduleError> {
        let alpha_bar = self.alpha_bar(t)?;
        let (latent_dims, noise_dims) = (latent.dims(), noise.dims());
        if latent_dims != noise_dims {
            return Err(ScheduleError::Shape {
                latent: latent_dims.to_vec(),
                noise: noise_dims.to_vec(),
            });
        }
        let signal = alpha_bar.sqrt();
        let sigma = (1.0 - alpha_bar).sqrt();
        Ok(latent.mul_scalar(signal) + noise.mul_scalar(sigma))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed-form values (Python float64 product of the same betas), to 6 decimals.
    #[test]
    fn alpha_bar_matches_the_closed_form_at_the_timesteps_dift_and_sd_dino_use() {
        let schedule = NoiseSchedule::stable_diffusion();
        for (t, expected) in [
            (0, 0.999150),
            (50, 0.951577),
            (100, 0.894223),
            (261, 0.655669),
            (999, 0.004660),
        ] {
            let got = schedule.alpha_bar(t).unwrap();
            assert!((got - expected).abs() < 6e-7, "t={t}: {got} vs {expected}");
        }
        assert_eq!(schedule.alpha_bar(1000), Err(ScheduleError::Timestep(1000)));
        assert!(schedule.alphas_cumprod().windows(2).all(|w| w[1] < w[0]));
    }
}
