//! LayerNorm over the last dimension, forward and backward, one pass per row.
//!
//! Under autodiff, burn decomposes LayerNorm into about ten element-wise operations forward and more
//! backward, each a pass over the tokens on one thread. Here each row is normalised in one go, rows
//! run in parallel, and the backward pass recomputes the row statistics from the input. The
//! parameter gradients are summed per fixed block of rows and the blocks added in order, so results
//! do not depend on the thread count.

use rayon::prelude::*;

use super::vector_math::{dispatched, dot, sum};

/// Rows per parallel task of the forward pass: small enough that a few hundred tokens still
/// split evenly over the threads.
const FORWARD_ROWS_PER_TASK: usize = 32;

/// Rows per parallel task of the backward pass (and per partial sum of the parameter gradients).
const ROWS_PER_TASK: usize = 128;

/// `(x - mean)` into `centered`; returns `sqrt(var + eps)` (biased variance, as burn computes it).
#[inline(always)]
fn centre(x: &[f32], centered: &mut [f32], eps: f32) -> f32 {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    for (c, v) in centered.iter_mut().zip(x) {
        *c = v - mean;
    }
    let var = dot(centered, centered) / n;
    (var + eps).sqrt()
}

#[inline(always)]
fn forward_rows_loop(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    for (y, x) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
        let denom = centre(x, y, eps);
        for ((y, g), b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = *y / denom * g + b;
        }
    }
}

dispatched!(forward_rows(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => forward_rows_loop);

/// Gradients of one block of rows; the parameter gradients are added to `sums`
/// (`[d gamma | d beta]`), `scratch` holds `2 * width` values.
#[inline(always)]
fn backward_rows_loop(
    x: &[f32],
    grad: &[f32],
    grad_x: &mut [f32],
    gamma: &[f32],
    eps: f32,
    sums: &mut [f32],
    scratch: &mut [f32],
) {
    let width = gamma.len();
    let n = width as f32;
    let (grad_gamma, grad_beta) = sums.split_at_mut(width);
    let (normalized, scaled) = scratch.split_at_mut(width);
    let rows = grad_x
        .chunks_exact_mut(width)
        .zip(x.chunks_exact(width))
        .zip(grad.chunks_exact(width));
    for ((dx, x), dy) in rows {
        let denom = centre(x, normalized, eps);
        for v in normalized.iter_mut() {
            *v /= denom;
        }
        for ((s, d), g) in scaled.iter_mut().zip(dy).zip(gamma) {
            *s = d * g;
        }
        for ((gg, d), v) in grad_gamma.iter_mut().zip(dy).zip(normalized.iter()) {
            *gg += d * v;
        }
        for (gb, d) in grad_beta.iter_mut().zip(dy) {
            *gb += d;
        }
        let mean_scaled = sum(scaled) / n;
        let mean_projection = dot(scaled, normalized) / n;
        for ((dx, s), v) in dx.iter_mut().zip(scaled.iter()).zip(normalized.iter()) {
            *dx = (s - mean_scaled - v * mean_projection) / denom;
        }
    }
}

dispatched!(backward_rows(
    x: &[f32],
    grad: &[f32],
    grad_x: &mut [f32],
    gamma: &[f32],
    eps: f32,
    sums: &mut [f32],
    scratch: &mut [f32]
) => backward_rows_loop);

/// `(x - mean) / sqrt(var + eps) * gamma + beta` for every row of `x` (`gamma.len()` values each).
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let width = gamma.len();
    assert!(
        beta.len() == width && width > 0 && x.len().is_multiple_of(width),
        "layer norm: {} values, gamma {width}, beta {}",
        x.len(),
        beta.len()
    );
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(FORWARD_ROWS_PER_TASK * width)
        .zip(x.par_chunks(FORWARD_ROWS_PER_TASK * width))
        .for_each(|(out, x)| forward_rows(x, out, gamma, beta, eps));
    out
}

/// Gradients of [`forward`] given the output gradient `grad`: `(d x, d gamma, d beta)`.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert!(
        width > 0 && x.len().is_multiple_of(width) && grad.len() == x.len(),
        "layer norm backward: {} values, {} gradients, gamma {width}",
        x.len(),
        grad.len()
    );
    let mut grad_x = vec![0.0; x.len()];
    let partials: Vec<Vec<f32>> = grad_x
        .par_chunks_mut(ROWS_PER_TASK * width)
        .zip(x.par_chunks(ROWS_PER_TASK * width))
        .zip(grad.par_chunks(ROWS_PER_TASK * width))
        .map(|((grad_x, x), grad)| {
            let mut sums = vec![0.0f32; 2 * width];
            let mut scratch = vec![0.0f32; 2 * width];
            backward_rows(x, grad, grad_x, gamma, eps, &mut sums, &mut scratch);
            sums
        })
        .collect();
    let mut totals = vec![0.0f32; 2 * width];
    for partial in &partials {
        for (total, v) in totals.iter_mut().zip(partial) {
            *total += v;
        }
    }
    let grad_beta = totals.split_off(width);
    (grad_x, totals, grad_beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        super::super::test_values(len, seed, -1.0)
    }

    fn reference(x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
        let w = gamma.len();
        x.chunks(w)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / w as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w as f64;
                let denom = (var + eps).sqrt();
                row.iter()
                    .zip(gamma.iter().zip(beta))
                    .map(move |(&v, (&g, &b))| (v as f64 - mean) / denom * g as f64 + b as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        let (rows, width) = (300, 24);
        let (x, gamma, beta) = (values(rows * width, 1), values(width, 2), values(width, 3));
        let got = forward(&x, &gamma, &beta, 1e-6);
        for (g, w) in got.iter().zip(reference(&x, &gamma, &beta, 1e-6)) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (rows, width) = (5, 6);
        let (x, gamma, beta) = (values(rows * width, 4), values(width, 5), values(width, 6));
        let weights = values(rows * width, 7);
        let (dx, dgamma, dbeta) = backward(&x, &gamma, &weights, 1e-6);
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            reference(x, gamma, beta, 1e-6)
                .iter()
                .zip(&weights)
                .map(|(o, w)| o * *w as f64)
                .sum()
        };
        let step = 1e-3f32;
        let numeric = |f: &dyn Fn(f32) -> f64| (f(step) - f(-step)) / (2.0 * step as f64);
        for i in 0..x.len() {
            let n = numeric(&|d| {
                let mut x = x.clone();
                x[i] += d;
                loss(&x, &gamma, &beta)
            });
            assert!((dx[i] as f64 - n).abs() < 2e-3, "dx[{i}]: {} vs {n}", dx[i]);
        }
        for j in 0..width {
            let n = numeric(&|d| {
                let mut gamma = gamma.clone();
                gamma[j] += d;
                loss(&x, &gamma, &beta)
            });
            assert!((dgamma[j] as f64 - n).abs() < 2e-3, "dgamma[{j}]");
            let n = numeric(&|d| {
                let mut beta = beta.clone();
                beta[j] += d;
                loss(&x, &gamma, &beta)
            });
            assert!((dbeta[j] as f64 - n).abs() < 2e-3, "dbeta[{j}]");
        }
    }
}
