//! Operations burn's CPU backend (Flex) runs slowly, replaced by vectorised kernels through a burn
//! backend extension. The GPU backend (Cube) and anything the kernels do not cover (other dtypes,
//! strided views) keep burn's own implementation, and autodiff gets a hand-written backward step.

mod gelu;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};

#[backend_extension(Autodiff, Flex, Cube)]
pub trait FusedOps: Backend {
    /// Exact (erf) GELU, `x Φ(x)`.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad * gelu'(x)`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }
}

impl FusedOps for Cube {}

/// The `f32` values of a contiguous tensor that starts at the beginning of its storage.
fn contiguous_f32(tensor: &FlexTensor) -> Option<&[f32]> {
    if tensor.dtype() == DType::F32 {
        tensor.as_slice::<f32>()
    } else {
        None
    }
}

/// Whether `tensor` can be overwritten: not shared, contiguous, `f32`, from offset 0.
fn writable_f32(tensor: &FlexTensor) -> bool {
    tensor.dtype() == DType::F32
        && tensor.is_unique()
        && tensor.layout().is_contiguous()
        && tensor.layout().start_offset() == 0
}

fn with_values_of(like: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

impl FusedOps for Flex {
    fn gelu_exact(mut x: FlexTensor) -> FlexTensor {
        if writable_f32(&x) {
            let n = x.layout().num_elements();
            gelu::gelu_in_place(&mut x.storage_mut::<f32>()[..n]);
            return x;
        }
        let Some(values) = contiguous_f32(&x) else {
            return Flex::gelu(x);
        };
        let mut out = vec![0.0; values.len()];
        gelu::gelu_into(values, &mut out);
        with_values_of(&x, out)
    }

    fn gelu_exact_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(values), Some(incoming)) = (contiguous_f32(&x), contiguous_f32(&grad)) else {
            return Flex::gelu_backward(x, grad);
        };
        if values.len() != incoming.len() {
            return Flex::gelu_backward(x, grad);
        }
        let mut out = vec![0.0; values.len()];
        gelu::gelu_backward_into(values, incoming, &mut out);
        with_values_of(&x, out)
    }
}

#[derive(Debug)]
struct GeluExactBackward;

impl<B: FusedOps> Backward<B, 1> for GeluExactBackward {
    /// The forward input.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, B::gelu_exact_backward(ops.state, grad));
        }
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluExactBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The input stays shared with the saved state, so it is not overwritten.
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::gelu_exact(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }
}

/// Exact GELU (as `torch.nn.GELU()`), differentiable, on any device.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_exact(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation;
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn matches_burn_gelu_on_every_layout() {
        let device = Device::flex();
        let x = Tensor::<3>::random([4, 33, 70], Distribution::Normal(0.0, 3.0), &device);
        // Contiguous and shared (allocating path), then unique (in place), then a strided view.
        let shared = gelu(x.clone());
        assert!(max_abs_diff(shared, activation::gelu(x.clone())) < 2e-6);
        let unique = gelu(x.clone() * 1.0);
        assert!(max_abs_diff(unique, activation::gelu(x.clone())) < 2e-6);
        let strided = x.clone().swap_dims(1, 2);
        assert!(max_abs_diff(gelu(strided.clone()), activation::gelu(strided)) < 2e-6);
        // The input a shared call reads is left as it was.
        let before = x.clone().into_data();
        let _ = gelu(x.clone());
        x.into_data().assert_eq(&before, true);
    }

    #[test]
    fn gradients_match_burn_gelu() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([37, 129], Distribution::Normal(0.0, 2.0), &device);
        let weights = Tensor::<2>::random([37, 129], Distribution::Default, &device);
        let ours = x.clone().require_grad();
        let theirs = x.require_grad();
        let grads_ours = (gelu(ours.clone()) * weights.clone()).sum().backward();
        let grads_theirs = (activation::gelu(theirs.clone()) * weights)
            .sum()
            .backward();
        let a = ours.grad(&grads_ours).unwrap();
        let b = theirs.grad(&grads_theirs).unwrap();
        assert!(max_abs_diff(a, b) < 2e-6);
    }
}
