//! Sums and means along an axis that stay right on wgpu for any axis length. burn 0.22's wgpu
//! `sum_dim` / `mean_dim` go wrong once the axis reaches about 2^16 elements (measured on Mesa's
//! lavapipe: from 65,535 elements on, a column sum stops growing, so 262,144 rows sum to about a
//! quarter of the truth), while 40,000 are exact. Longer axes are therefore reduced in pieces of
//! at most 2^15 and the pieces combined; softmax over such axes (a DINO head with 65,536
//! prototypes) is composed from those reductions.

use burn::tensor::Tensor;

/// The longest axis reduced in one piece.
pub const SAFE_AXIS: usize = 1 << 15;

/// `x.sum_dim(dim)`, in pieces of at most [`SAFE_AXIS`] along `dim`.
pub fn sum_dim<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let n = x.dims()[dim];
    if n <= SAFE_AXIS {
        return x.sum_dim(dim);
    }
    let mut total = x.clone().narrow(dim, 0, SAFE_AXIS).sum_dim(dim);
    let mut start = SAFE_AXIS;
    while start < n {
        let len = SAFE_AXIS.min(n - start);
        total = total + x.clone().narrow(dim, start, len).sum_dim(dim);
        start += len;
    }
    total
}

/// `x.max_dim(dim)`, in pieces as [`sum_dim`].
pub fn max_dim<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let n = x.dims()[dim];
    if n <= SAFE_AXIS {
        return x.max_dim(dim);
    }
    let mut best = x.clone().narrow(dim, 0, SAFE_AXIS).max_dim(dim);
    let mut start = SAFE_AXIS;
    while start < n {
        let len = SAFE_AXIS.min(n - start);
        best = best.max_pair(x.clone().narrow(dim, start, len).max_dim(dim));
        start += len;
    }
    best
}

/// Softmax along `dim`: burn's up to [`SAFE_AXIS`] elements, past it the same steps (shift by
/// the maximum, exponentiate, divide by the sum) with the reductions in pieces.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if x.dims()[dim] <= SAFE_AXIS {
        return burn::tensor::activation::softmax(x, dim);
    }
    let shifted = (x.clone() - max_dim(x, dim).detach()).exp();
    shifted.clone() / sum_dim(shifted, dim)
}

/// Log-softmax along `dim`, long axes as in [`softmax`].
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if x.dims()[dim] <= SAFE_AXIS {
        return burn::tensor::activation::log_softmax(x, dim);
    }
    let shifted = x.clone() - max_dim(x, dim).detach();
    shifted.clone() - sum_dim(shifted.exp(), dim).log()
}

/// `x.mean_dim(dim)`, summed as [`sum_dim`] does.
pub fn mean_dim<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let n = x.dims()[dim].max(1);
    sum_dim(x, dim).div_scalar(n as f32)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn pieces_add_up_to_the_whole_on_the_cpu() {
        let device = Device::flex();
        let n = 2 * SAFE_AXIS + 5;
        let values: Vec<f32> = (0..n * 2).map(|i| (i % 7) as f32 - 3.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values.clone(), [n, 2]), &device);
        let sums = sum_dim(x.clone(), 0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected: Vec<f32> = (0..2)
            .map(|c| values.iter().skip(c).step_by(2).sum())
            .collect();
        assert_eq!(sums, expected);
        let means = mean_dim(x.clone(), 0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            means,
            expected.iter().map(|s| s / n as f32).collect::<Vec<_>>()
        );
        let maxima = max_dim(x, 0).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(maxima, vec![3.0, 3.0]);
    }

    #[test]
    fn long_softmax_equals_burns_and_sums_to_one() {
        let device = Device::flex();
        let n = SAFE_AXIS + 1000;
        let values: Vec<f32> = (0..2 * n).map(|i| ((i * 31) % 97) as f32 / 9.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [2, n]), &device);
        let ours = softmax(x.clone(), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let theirs = burn::tensor::activation::softmax(x.clone(), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let worst = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Probabilities are about 1/n: compare relative to that.
        assert!(worst * (n as f32) < 1e-3, "{worst}");
        let row: f32 = ours[..n].iter().sum();
        assert!((row - 1.0).abs() < 1e-4, "{row}");
        let log = log_softmax(x, 1).into_data().try_to_vec::<f32>().unwrap();
        let worst_log = log
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (l, p)| m.max((l.exp() - p).abs()));
        assert!(worst_log * (n as f32) < 1e-3, "{worst_log}");
    }
}
