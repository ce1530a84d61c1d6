//! Per-parameter rules of `main_dino.py`: parameter groups, gradient clipping, the frozen last layer.

use burn::tensor::Tensor;

/// `get_params_groups`: weight decay applies to parameters with more than one dimension that are not
/// biases (so to `cls_token`, `pos_embed`, `weight_v`, and `weight_g` when it is trained), not to norms
/// and biases.
pub fn is_regularized(path: &[String], ndim: usize) -> bool {
    ndim > 1 && path.last().is_none_or(|name| name != "bias")
}

/// `cancel_gradients_last_layer` drops the gradients of every parameter whose name contains `last_layer`.
pub fn is_last_layer(path: &[String]) -> bool {
    path.iter().any(|name| name.contains("last_layer"))
}

/// `clip_gradients`, for one parameter: scales `grad` by `clip / (||grad|| + 1e-6)` when that is below 1.
/// Stays on the device (no read-back of the norm).
pub fn clip_gradient<const D: usize>(grad: Tensor<D>, clip: f64) -> Tensor<D> {
    let dims = grad.dims();
    let flat = grad.flatten::<1>(0, D - 1);
    let norm = flat.clone().square().sum().sqrt();
    let coef = norm
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(clip)
        .clamp_max(1.0);
    (flat * coef).reshape(dims)
}

/// `value` put in place of `old`: on the autodiff backend when `old` was, as a leaf that requires a
/// gradient when `old` did.
pub fn replace_value<const D: usize>(old: &Tensor<D>, value: Tensor<D>) -> Tensor<D> {
    let value = value.inner();
    if !old.is_autodiff() {
        return value;
    }
    let value = value.autodiff();
    if old.is_require_grad() {
        value.require_grad()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn path(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn groups_follow_get_params_groups() {
        assert!(is_regularized(&path(&["backbone", "cls_token"]), 3));
        assert!(is_regularized(&path(&["head", "mlp", "0", "weight"]), 2));
        assert!(!is_regularized(&path(&["head", "mlp", "0", "bias"]), 1));
        assert!(!is_regularized(&path(&["backbone", "norm", "gamma"]), 1));
        assert!(is_last_layer(&path(&["head", "last_layer_v"])));
        assert!(!is_last_layer(&path(&["head", "mlp", "2", "weight"])));
    }

    #[test]
    fn clipping_scales_only_large_gradients() {
        let device = Device::flex();
        let g = Tensor::<2>::from_data([[3.0f32, 4.0]], &device);
        let clipped = clip_gradient(g.clone(), 1.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = 1.0 / (5.0 + 1e-6);
        assert!((clipped[0] - 3.0 * scale).abs() < 1e-6 && (clipped[1] - 4.0 * scale).abs() < 1e-6);
        let kept = clip_gradient(g, 10.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(kept, vec![3.0, 4.0]);
    }
}
