//! The timestep embedding: diffusers `get_timestep_embedding` (a transformer-style sinusoid of the
//! float timestep) followed by `TimestepEmbedding` (`linear_2(silu(linear_1(·)))`).

use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::model::kernels::linear_forward;
use crate::model::sd::weights::{SafetensorsFile, WeightsError};

/// `[len(t), dim]` sinusoid: `freq_i = exp(-ln(10000) i / (dim/2 - shift))`, halves
/// `[sin(t freq) | cos(t freq)]`, swapped to `[cos | sin]` when `flip_sin_to_cos` (Stable Diffusion).
/// Frequencies and products are rounded to f32 as diffusers computes them, so a timestep of 999
/// gives PyTorch's arguments, not more exact ones.
pub fn timestep_sinusoid(t: &[f32], dim: usize, flip_sin_to_cos: bool, shift: f64) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10000f64.ln() as f32) * i as f32 / (half as f64 - shift) as f32;
            exponent.exp()
        })
        .collect();
    let mut out = vec![0f32; t.len() * dim];
    for (row, &t) in out.chunks_exact_mut(dim).zip(t) {
        let (first, second) = row.split_at_mut(half);
        for ((a, b), &f) in first.iter_mut().zip(second.iter_mut()).zip(&freqs) {
            let arg = f64::from(t * f);
            let (sin, cos) = (arg.sin() as f32, arg.cos() as f32);
            (*a, *b) = if flip_sin_to_cos {
                (cos, sin)
            } else {
                (sin, cos)
            };
        }
    }
    out
}

#[derive(burn::module::Module, Debug)]
pub struct TimeEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
    /// Width of the sinusoid (the first level's width).
    channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

impl TimeEmbedding {
    pub fn load(
        file: &SafetensorsFile,
        channels: usize,
        embed_dim: usize,
        flip_sin_to_cos: bool,
        freq_shift: f64,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        Ok(TimeEmbedding {
            linear_1: file.linear(
                "time_embedding.linear_1",
                [channels, embed_dim],
                true,
                device,
            )?,
            linear_2: file.linear(
                "time_embedding.linear_2",
                [embed_dim, embed_dim],
                true,
                device,
            )?,
            channels,
            flip_sin_to_cos,
            freq_shift,
        })
    }

    /// `[B, embed_dim]` for one timestep per batch item.
    pub fn forward(&self, t: &[f32], device: &Device) -> Tensor<2> {
        let sinusoid = timestep_sinusoid(t, self.channels, self.flip_sin_to_cos, self.freq_shift);
        let x = Tensor::from_data(TensorData::new(sinusoid, [t.len(), self.channels]), device);
        linear_forward(&self.linear_2, silu(linear_forward(&self.linear_1, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_matches_the_closed_form() {
        let t = [0.0f32, 1.0, 261.0, 999.0];
        let dim = 320;
        let e = timestep_sinusoid(&t, dim, true, 0.0);
        for (row, &t) in t.iter().enumerate() {
            for i in 0..160 {
                let freq = (-(10000f64.ln()) * i as f64 / 160.0).exp();
                let arg = t as f64 * freq;
                // f32 rounding of the frequency and the product: a few ulps of the argument.
                let tol = 1e-6 + arg.abs() * 6e-7;
                assert!(
                    (e[row * dim + i] as f64 - arg.cos()).abs() < tol,
                    "cos t={t} i={i}"
                );
                assert!(
                    (e[row * dim + 160 + i] as f64 - arg.sin()).abs() < tol,
                    "sin t={t} i={i}"
                );
            }
        }
        // t = 0: cos half ones, sin half zeros.
        assert!(e[..160].iter().all(|&v| v == 1.0));
        assert!(e[160..320].iter().all(|&v| v == 0.0));
        // Unflipped with a shift of 1: sin first, frequencies over (half - 1).
        let e = timestep_sinusoid(&[2.0], 8, false, 1.0);
        let freq = |i: f64| (-(10000f64.ln()) * i / 3.0).exp();
        for i in 0..4 {
            assert!((e[i] as f64 - (2.0 * freq(i as f64)).sin()).abs() < 1e-6);
            assert!((e[4 + i] as f64 - (2.0 * freq(i as f64)).cos()).abs() < 1e-6);
        }
    }
}
