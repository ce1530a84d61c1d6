//! GroupNorm over `[B, C, H, W]` as PyTorch's `nn.GroupNorm(groups, C, eps)`, and the GroupNorm +
//! SiLU pair Stable Diffusion's ResNet blocks and output heads apply (one kernel on the CPU; see
//! `model::kernels::group_norm`).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::model::kernels::group_norm;

#[derive(Module, Debug)]
pub struct GroupNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    groups: usize,
    epsilon: f64,
}

impl GroupNorm {
    pub fn new(gamma: Tensor<1>, beta: Tensor<1>, groups: usize, epsilon: f64) -> Self {
        GroupNorm {
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
            groups,
            epsilon,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, false)
    }

    /// `silu(self.forward(x))`.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, true)
    }

    fn apply(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        group_norm(
            x,
            self.gamma.val(),
            self.beta.val(),
            self.groups,
            self.epsilon,
            silu,
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn equals_burns_group_norm_on_the_cpu() {
        let device = Device::flex();
        let (c, h, w) = (8, 5, 6);
        let values: Vec<f32> = (0..2 * c * h * w)
            .map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, c, h, w]), &device);
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 8.0).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 / 4.0 - 1.0).collect();
        let to_1d = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [c]), &device);
        let ours =
            GroupNorm::new(to_1d(gamma.clone()), to_1d(beta.clone()), 4, 1e-6).forward(x.clone());
        let mut reference = GroupNormConfig::new(4, c).with_epsilon(1e-6).init(&device);
        reference.gamma = Some(Param::from_tensor(to_1d(gamma.clone())));
        reference.beta = Some(Param::from_tensor(to_1d(beta.clone())));
        let expected = reference.forward(x.clone());
        let difference: f32 = (ours - expected.clone()).abs().max().into_scalar::<f32>();
        assert!(difference < 1e-5, "{difference}");
        // With SiLU, and through burn's operations (what autodiff and wgpu run).
        let norm = GroupNorm::new(to_1d(gamma.clone()), to_1d(beta.clone()), 4, 1e-6);
        let silu = burn::tensor::activation::silu(expected.clone());
        let difference: f32 = (norm.forward_silu(x.clone()) - silu.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(difference < 1e-5, "silu: {difference}");
        let autodiff = device.clone().autodiff();
        let on = |t: Tensor<1>| Tensor::<1>::from_data(t.into_data(), &autodiff);
        let generic = GroupNorm::new(on(to_1d(gamma)), on(to_1d(beta)), 4, 1e-6);
        let x = Tensor::<4>::from_data(x.into_data(), &autodiff);
        let difference: f32 = (generic.forward_silu(x).into_data())
            .iter::<f32>()
            .zip(silu.into_data().iter::<f32>())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(difference < 1e-5, "burn's operations: {difference}");
    }
}
