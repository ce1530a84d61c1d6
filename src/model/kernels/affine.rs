//! `x W + b` and its three gradients as direct `gemm` calls on strided `f32` matrices.
//!
//! Through burn's CPU backend a linear layer is a matrix product (whose output buffer is zeroed,
//! then copied once more to re-align it) followed by a separate broadcast bias add, and its
//! backward pass repeats that for each product. Here the bias is written into the output first
//! and the product accumulated onto it, transposes are only strides, and every output is written
//! once.

/// A read-only `rows x cols` view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `None` when some element would lie outside `data`.
    pub fn new(
        data: &'a [f32],
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
        fits.then_some(MatRef {
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

    pub fn transposed(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Products this large are split over rayon's threads (burn's CPU backend uses the same bound).
const PARALLEL_FLOPS: usize = 192 * 192 * 192;

/// `dst = a b`, or `dst += a b` when `accumulate`, into a row-major `a.rows x b.cols` buffer.
fn gemm_into(dst: &mut [f32], accumulate: bool, a: MatRef, b: MatRef) {
    assert_eq!(dst.len(), a.rows * b.cols, "gemm: output size");
    gemm_rows(dst, b.cols, accumulate, 1.0, a, b);
}

/// `D = scale * a b`, or `D += scale * a b` when `accumulate`, where `D` is the `a.rows x b.cols`
/// block of `dst` with element `(i, j)` at `dst[i * dst_row_stride + j]`.
pub(super) fn gemm_rows(
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    scale: f32,
    a: MatRef,
    b: MatRef,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k, "gemm: [{m}, {k}] x [{}, {n}]", b.rows);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= dst_row_stride && (m - 1) * dst_row_stride + n <= dst.len(),
        "gemm: a [{m}, {n}] block with row stride {dst_row_stride} does not fit {} values",
        dst.len()
    );
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_FLOPS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `MatRef::new` checked that every element of `a` and `b` lies inside its slice, and
    // the block written, rows `i < m` at `i * dst_row_stride` with `n` values each, fits `dst`
    // (checked above).
    unsafe {
        gemm::gemm(
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
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `x w + bias` (`x`: `[m, k]`, `w`: `[k, n]`, `bias`: `[n]`), row-major `[m, n]`.
pub fn affine(x: MatRef, w: MatRef, bias: &[f32]) -> Vec<f32> {
    assert_eq!(bias.len(), w.cols, "affine: bias length");
    let mut out = Vec::with_capacity(x.rows * w.cols);
    for _ in 0..x.rows {
        out.extend_from_slice(bias);
    }
    gemm_into(&mut out, true, x, w);
    out
}

/// `a b`, row-major `[a.rows, b.cols]`.
pub fn matmul(a: MatRef, b: MatRef) -> Vec<f32> {
    let mut out = vec![0.0; a.rows * b.cols];
    gemm_into(&mut out, false, a, b);
    out
}

/// Sum over rows (the bias gradient), `[g.cols]`.
pub fn column_sums(g: MatRef) -> Vec<f32> {
    let mut sums = vec![0.0f32; g.cols];
    for i in 0..g.rows {
        let row = i * g.row_stride;
        if g.col_stride == 1 {
            for (s, v) in sums.iter_mut().zip(&g.data[row..row + g.cols]) {
                *s += v;
            }
        } else {
            for (j, s) in sums.iter_mut().enumerate() {
                *s += g.data[row + j * g.col_stride];
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let xm = MatRef::new(&x, m, k, k, 1).unwrap();
            let wm = MatRef::new(&w, k, n, n, 1).unwrap();
            let gm = MatRef::new(&g, m, n, n, 1).unwrap();

            let mut want = naive(&f64s(&x), &f64s(&w), m, k, n);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[i % n] as f64;
            }
            assert_close(&affine(xm, wm, &bias), &want);

            // dx = g w^T, dw = x^T g, through transposed views.
            let w_t: Vec<f64> = (0..n * k).map(|i| w[(i % k) * n + i / k] as f64).collect();
            let want = naive(&f64s(&g), &w_t, m, n, k);
            assert_close(&matmul(gm, wm.transposed()), &want);
            let x_t: Vec<f64> = (0..k * m).map(|i| x[(i % m) * k + i / m] as f64).collect();
            let want = naive(&x_t, &f64s(&g), k, m, n);
            assert_close(&matmul(xm.transposed(), gm), &want);

            let want: Vec<f64> = (0..n)
                .map(|j| (0..m).map(|i| g[i * n + j] as f64).sum())
                .collect();
            assert_close(&column_sums(gm), &want);
            assert_close(&column_sums(gm.transposed().transposed()), &want);
        }
    }

    #[test]
    fn views_outside_their_data_are_refused() {
        let data = [0.0; 12];
        assert!(MatRef::new(&data, 3, 4, 4, 1).is_some());
        assert!(MatRef::new(&data, 4, 3, 1, 4).is_some());
        assert!(MatRef::new(&data, 3, 5, 4, 1).is_none());
        assert!(MatRef::new(&data, usize::MAX, 2, usize::MAX, 1).is_none());
        assert!(MatRef::new(&data, 0, 100, 100, 1).is_some());
    }

    #[test]
    fn empty_inner_dimension_gives_the_bias() {
        let x: [f32; 0] = [];
        let w: [f32; 0] = [];
        let xm = MatRef::new(&x, 2, 0, 0, 1).unwrap();
        let wm = MatRef::new(&w, 0, 3, 3, 1).unwrap();
        assert_eq!(
            affine(xm, wm, &[1.0, 2.0, 3.0]),
            [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(matmul(xm, wm), [0.0; 6]);
    }
}
