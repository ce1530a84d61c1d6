//! `x W + b` and its three gradients as direct `gemm` calls on strided `f32` matrices.
//!
//! Through burn's CPU backend a linear layer is a matrix product (whose output buffer is zeroed,
//! then copied once more to re-align it) followed by a separate broadcast bias add, and its
//! backward pass repeats that for each product. Here the bias is written into the output first
//! and the product accumulated onto it, transposes are only strides, and every output is written
//! once.

use rayon::prelude::*;

use crate::linalg::{View, gemm_block};

/// Output values each task of the bias fill writes.
const FILL_CHUNK: usize = 1 << 15;

/// `x w + bias` (`x`: `[m, k]`, `w`: `[k, n]`, `bias`: `[n]`), row-major `[m, n]`.
pub fn affine(x: View<'_, f32>, w: View<'_, f32>, bias: &[f32]) -> Vec<f32> {
    assert_eq!(bias.len(), w.cols(), "affine: bias length");
    let cols = w.cols();
    // A zeroed allocation maps its pages on first write: filling in parallel spreads the page
    // faults of these large outputs over the threads (filled serially, they were most of the
    // forward pass's serial time at 3,601 tokens).
    let mut out = vec![0.0f32; x.rows() * cols];
    if let Some(rows_per_task) = FILL_CHUNK.checked_div(cols) {
        out.par_chunks_mut(rows_per_task.max(1) * cols)
            .for_each(|block| {
                block
                    .chunks_exact_mut(cols)
                    .for_each(|row| row.copy_from_slice(bias))
            });
    }
    gemm_block(&mut out, cols, true, 1.0, 1.0, x, w);
    out
}

/// Sum over rows (the bias gradient), `[g.cols]`.
pub fn column_sums(g: View<'_, f32>) -> Vec<f32> {
    let mut sums = vec![0.0f32; g.cols()];
    for i in 0..g.rows() {
        match g.contiguous_row(i) {
            Some(row) => sums.iter_mut().zip(row).for_each(|(s, v)| *s += v),
            None => sums
                .iter_mut()
                .enumerate()
                .for_each(|(j, s)| *s += g.at(i, j)),
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::matmul;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-3)
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() < 1e-5 * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn affine_and_gradients_match_naive_products() {
        // Sizes on both sides of the parallel bound.
        for (m, k, n) in [(5, 3, 4), (130, 96, 288), (400, 200, 150)] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            let bias = values(n, 3);
            let g = values(m * n, 4);
            let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let xm = View::strided(&x, m, k, k, 1).unwrap();
            let wm = View::strided(&w, k, n, n, 1).unwrap();
            let gm = View::strided(&g, m, n, n, 1).unwrap();

            let mut want = naive(&f64s(&x), &f64s(&w), m, k, n);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[i % n] as f64;
            }
            assert_close(&affine(xm, wm, &bias), &want);

            // dx = g w^T, dw = x^T g, through transposed views.
            let w_t: Vec<f64> = (0..n * k).map(|i| w[(i % k) * n + i / k] as f64).collect();
            let want = naive(&f64s(&g), &w_t, m, n, k);
            assert_close(&matmul(gm, wm.t(), 1.0), &want);
            let x_t: Vec<f64> = (0..k * m).map(|i| x[(i % m) * k + i / m] as f64).collect();
            let want = naive(&x_t, &f64s(&g), k, m, n);
            assert_close(&matmul(xm.t(), gm, 1.0), &want);

            let want: Vec<f64> = (0..n)
                .map(|j| (0..m).map(|i| g[i * n + j] as f64).sum())
                .collect();
            assert_close(&column_sums(gm), &want);
            assert_close(&column_sums(gm.t().t()), &want);
        }
    }

    #[test]
    fn empty_inner_dimension_gives_the_bias() {
        let x: [f32; 0] = [];
        let w: [f32; 0] = [];
        let xm = View::strided(&x, 2, 0, 0, 1).unwrap();
        let wm = View::strided(&w, 0, 3, 3, 1).unwrap();
        assert_eq!(
            affine(xm, wm, &[1.0, 2.0, 3.0]),
            [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(matmul(xm, wm, 1.0), [0.0; 6]);

        let x = [1.0f32; 6];
        let xm = View::strided(&x, 2, 3, 3, 1).unwrap();
        let wm = View::strided(&w, 3, 0, 0, 1).unwrap();
        assert!(affine(xm, wm, &[]).is_empty());
    }
}
