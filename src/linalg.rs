//! The dense linear algebra the analyses need: matrix products through the `gemm` crate
//! (multi-threaded, SIMD) and a symmetric eigen-solver for the top of a spectrum.

use gemm::{Parallelism, gemm};

use crate::rng::Rng;

/// A matrix view: `rows x cols`, element `(i, j)` at `i * row_stride + j * col_stride`.
///
/// The fields are private and every constructor checks that each element lies inside `data`:
/// [`gemm_block`] hands the view to `unsafe` gemm, so a view must not be able to lie about its extent.
///
/// ```compile_fail,E0451
/// // Out of reach of safe code: a view claiming more elements than its slice holds.
/// let data = [0.0f32; 2];
/// let view = dinoscope::linalg::View { data: &data, rows: 100, cols: 100, row_stride: 100, col_stride: 1 };
/// ```
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// A `rows x cols` row-major matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data and shape disagree");
        View {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A strided view; `None` when some element would lie outside `data`.
    pub fn strided(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Option<Self> {
        let fits = rows == 0
            || cols == 0
            || (rows - 1)
                .checked_mul(row_stride)
                .zip((cols - 1).checked_mul(col_stride))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < data.len());
        fits.then_some(View {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`; panics outside `rows x cols`.
    pub fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        assert!(
            i < self.rows && j < self.cols,
            "({i}, {j}) outside the view"
        );
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// Row `i` as a slice, when the columns are contiguous (`col_stride == 1`).
    pub fn contiguous_row(&self, i: usize) -> Option<&'a [T]> {
        if i >= self.rows || (self.col_stride != 1 && self.cols > 1) {
            return None;
        }
        if self.cols == 0 {
            return Some(&[]);
        }
        let start = i * self.row_stride;
        Some(&self.data[start..start + self.cols])
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// `a @ b` as a new row-major matrix.
pub fn matmul<T: Copy + Default + 'static>(a: View<'_, T>, b: View<'_, T>, one: T) -> Vec<T> {
    let mut out = vec![T::default(); a.rows * b.cols];
    gemm_block(&mut out, b.cols, false, one, one, a, b);
    out
}

/// `D = scale * a @ b`, or `D += scale * a @ b` when `accumulate`, where `D` is the `a.rows x b.cols`
/// block of `dst` with element `(i, j)` at `dst[i * dst_row_stride + j]`. `one` is `T`'s 1.
pub fn gemm_block<T: Copy + Default + 'static>(
    dst: &mut [T],
    dst_row_stride: usize,
    accumulate: bool,
    one: T,
    scale: T,
    a: View<'_, T>,
    b: View<'_, T>,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= dst_row_stride && (m - 1) * dst_row_stride + n <= dst.len(),
        "a [{m}, {n}] block with row stride {dst_row_stride} does not fit {} values",
        dst.len()
    );
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row_stride).take(m) {
                row[..n].fill(T::default());
            }
        }
        return;
    }
    let work = m * n * k;
    // Inside a rayon task the caller already splits the work across threads.
    let parallelism = if work > 1 << 18 && rayon::current_thread_index().is_none() {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every element of `a` and `b` lies inside its slice (`View::new` and `View::strided`
    // check it) and the block written, rows `i < m` at `i * dst_row_stride` with `n` values each,
    // fits `dst` (checked above).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            one,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `a @ b^T` for row-major `a: [m, k]` and `b: [n, k]` (all dot products of rows), f32.
pub fn dot_rows(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    if k == 0 {
        return Vec::new();
    }
    matmul(
        View::new(a, a.len() / k, k),
        View::new(b, b.len() / k, k).t(),
        1.0,
    )
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations (f64).
/// Returns eigenvalues in descending order and the matching eigenvectors as rows.
pub fn jacobi_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = matrix.to_vec();
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = order
        .iter()
        .flat_map(|&col| (0..n).map(move |row| (row, col)))
        .map(|(row, col)| v[row * n + col])
        .collect();
    (values, vectors)
}

/// The `k` largest eigenpairs of a symmetric positive semi-definite `n x n` matrix, by subspace
/// iteration with Rayleigh-Ritz (a few extra vectors speed convergence). Eigenvectors are rows.
pub fn top_eigen(matrix: &[f64], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let k = k.min(n);
    let p = (k + 8).min(n);
    if p == n {
        let (values, vectors) = jacobi_eigen(matrix, n);
        return (values[..k].to_vec(), vectors[..k * n].to_vec());
    }
    let m = View::new(matrix, n, n);
    let mut rng = Rng::new(0x5eed);
    // Basis stored as `p` rows of length `n`.
    let mut basis: Vec<f64> = (0..p * n).map(|_| rng.uniform() - 0.5).collect();
    orthonormalize_rows(&mut basis, n);
    let mut previous = vec![f64::INFINITY; k];
    for iteration in 0..2000 {
        // Rows of (M B^T)^T = B M (M is symmetric).
        basis = matmul(View::new(&basis, p, n), m, 1.0);
        if iteration % 4 == 3 {
            let (values, vectors) = rayleigh_ritz(&mut basis, matrix, n, p);
            let top = values[0].abs().max(f64::MIN_POSITIVE);
            let converged = values[..k]
                .iter()
                .zip(&previous)
                .all(|(v, old)| (v - old).abs() <= 1e-13 * top);
            previous.copy_from_slice(&values[..k]);
            if converged {
                return (values[..k].to_vec(), vectors[..k * n].to_vec());
            }
        } else {
            orthonormalize_rows(&mut basis, n);
        }
    }
    let (values, vectors) = rayleigh_ritz(&mut basis, matrix, n, p);
    (values[..k].to_vec(), vectors[..k * n].to_vec())
}

/// Orthonormalises `basis` (rows) and rotates it onto the Ritz vectors of `matrix`; returns the
/// Ritz values (descending) and vectors (rows).
fn rayleigh_ritz(basis: &mut Vec<f64>, matrix: &[f64], n: usize, p: usize) -> (Vec<f64>, Vec<f64>) {
    orthonormalize_rows(basis, n);
    let b = View::new(basis, p, n);
    let mb = matmul(b, View::new(matrix, n, n), 1.0);
    let small = matmul(View::new(&mb, p, n), b.t(), 1.0);
    let (values, rotation) = jacobi_eigen(&small, p);
    let vectors = matmul(View::new(&rotation, p, p), b, 1.0);
    *basis = vectors.clone();
    (values, vectors)
}

/// Modified Gram-Schmidt on the rows (twice, for stability). Degenerate rows become zero.
fn orthonormalize_rows(rows: &mut [f64], n: usize) {
    let count = rows.len() / n;
    for _pass in 0..2 {
        for i in 0..count {
            let (done, rest) = rows.split_at_mut(i * n);
            let row = &mut rest[..n];
            for j in 0..i {
                let other = &done[j * n..(j + 1) * n];
                let dot: f64 = row.iter().zip(other).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(other).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let inv = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_outside_their_data_are_refused() {
        let data = [0.0; 12];
        assert!(View::strided(&data, 3, 4, 4, 1).is_some());
        assert!(View::strided(&data, 4, 3, 1, 4).is_some());
        assert!(View::strided(&data, 3, 5, 4, 1).is_none());
        assert!(View::strided(&data, usize::MAX, 2, usize::MAX, 1).is_none());
        assert!(View::strided(&data, 0, 100, 100, 1).is_some());
    }

    #[test]
    fn matmul_matches_the_definition_with_transposed_views() {
        let a: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 2x3
        let b: Vec<f32> = (0..12).map(|v| (v as f32) - 3.0).collect(); // 4x3
        let c = dot_rows(&a, &b, 3);
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3).map(|l| a[i * 3 + l] * b[j * 3 + l]).sum();
                assert_eq!(c[i * 4 + j], want);
            }
        }
        // a^T a through a transposed view.
        let gram = matmul(View::new(&a, 2, 3).t(), View::new(&a, 2, 3), 1.0);
        assert_eq!(gram[1], a[0] * a[1] + a[3] * a[4]);
    }

    fn planted(n: usize, values: &[f64]) -> Vec<f64> {
        // Q diag(values) Q^T with Q from Gram-Schmidt on a seeded random matrix.
        let mut rng = Rng::new(3);
        let mut q: Vec<f64> = (0..n * n).map(|_| rng.uniform() - 0.5).collect();
        orthonormalize_rows(&mut q, n);
        let mut m = vec![0f64; n * n];
        for (e, &value) in values.iter().enumerate() {
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] += value * q[e * n + i] * q[e * n + j];
                }
            }
        }
        m
    }

    #[test]
    fn top_eigen_recovers_a_planted_spectrum() {
        let n = 40;
        let values: Vec<f64> = (0..n).map(|i| 10.0 * 0.8f64.powi(i as i32)).collect();
        let m = planted(n, &values);
        let (found, vectors) = top_eigen(&m, n, 4);
        for (f, v) in found.iter().zip(&values) {
            assert!((f - v).abs() < 1e-9, "{f} vs {v}");
        }
        // Each vector satisfies M v = lambda v.
        for e in 0..4 {
            let v = &vectors[e * n..(e + 1) * n];
            for i in 0..n {
                let mv: f64 = (0..n).map(|j| m[i * n + j] * v[j]).sum();
                assert!((mv - found[e] * v[i]).abs() < 1e-8);
            }
        }
    }

    #[test]
    fn jacobi_solves_a_two_by_two() {
        let (values, vectors) = jacobi_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-12 && (values[1] - 1.0).abs() < 1e-12);
        assert!((vectors[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vectors[0] - vectors[1]).abs() < 1e-12);
    }
}
