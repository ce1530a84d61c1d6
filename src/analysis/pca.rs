//! Principal component analysis of descriptors, with scikit-learn's conventions: centred data,
//! variance with `n - 1`, and each component's sign chosen so its largest-magnitude loading is
//! positive (`svd_flip(u_based_decision=False)`), so projections are comparable to `PCA().fit`.

use crate::linalg::{View, matmul, top_eigen};

#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    pub dim: usize,
    pub mean: Vec<f32>,
    /// `[n_components, dim]`, unit rows, by decreasing variance.
    pub components: Vec<f32>,
    pub explained_variance: Vec<f32>,
}

/// A fit in f64, before [`Pca`] rounds it to f32.
struct Fit {
    mean: Vec<f64>,
    /// `[n, dim]`, unit rows, scikit-learn's signs.
    components: Vec<f64>,
    variances: Vec<f64>,
}

/// Fits up to `n_components` components (capped by the rank bound `min(rows, dim)`) to the
/// `dim`-long rows of `data`, on the smaller of the covariance and Gram matrices.
fn fit_f64(data: &[f32], dim: usize, n_components: usize) -> Fit {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let mut mean = vec![0f64; dim];
    for row in data.chunks_exact(dim.max(1)).take(rows) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let n = n_components.min(rows).min(dim);
    if n == 0 {
        return Fit {
            mean,
            components: Vec::new(),
            variances: Vec::new(),
        };
    }
    let centred: Vec<f64> = data[..rows * dim]
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    let x = View::new(&centred, rows, dim);
    let denominator = (rows.max(2) - 1) as f64;
    let (variances, mut components) = if dim <= rows {
        let covariance: Vec<f64> = matmul(x.t(), x, 1.0)
            .into_iter()
            .map(|v| v / denominator)
            .collect();
        top_eigen(&covariance, dim, n)
    } else {
        // Gram trick: eigenvectors u of X X^T give components X^T u / sqrt(lambda).
        let gram: Vec<f64> = matmul(x, x.t(), 1.0)
            .into_iter()
            .map(|v| v / denominator)
            .collect();
        let (values, u) = top_eigen(&gram, rows, n);
        let mut v = matmul(View::new(&u, n, rows), x, 1.0);
        for row in v.chunks_exact_mut(dim) {
            let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|a| *a /= norm);
            }
        }
        (values, v)
    };
    for row in components.chunks_exact_mut(dim) {
        let largest = row
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(0.0);
        if largest < 0.0 {
            row.iter_mut().for_each(|a| *a = -*a);
        }
    }
    Fit {
        mean,
        components,
        variances,
    }
}

/// scikit-learn's `PCA(n_components).fit_transform` of the `dim`-long rows of `data` in f64:
/// `[rows, n]` projections of the centred rows, `n` capped as in [`Pca::fit`]. Kept in f64 (no f32
/// components in between) for callers that round the result once, as scikit-learn's t-SNE does.
pub fn fit_transform(data: &[f32], dim: usize, n_components: usize) -> Vec<f64> {
    let fit = fit_f64(data, dim, n_components);
    let n = fit.variances.len();
    if n == 0 {
        return Vec::new();
    }
    let rows = data.len() / dim;
    let mut out = Vec::with_capacity(rows * n);
    let mut centred = vec![0f64; dim];
    for row in data[..rows * dim].chunks_exact(dim) {
        centred
            .iter_mut()
            .zip(row.iter().zip(&fit.mean))
            .for_each(|(c, (&v, m))| *c = v as f64 - m);
        for component in fit.components.chunks_exact(dim) {
            out.push(component.iter().zip(&centred).map(|(a, b)| a * b).sum());
        }
    }
    out
}

impl Pca {
    /// Fits up to `n_components` components (capped by the rank bound `min(rows, dim)`) to the
    /// `dim`-long rows of `data`. Computed in f64 on the smaller of the covariance and Gram matrices.
    pub fn fit(data: &[f32], dim: usize, n_components: usize) -> Pca {
        let fit = fit_f64(data, dim, n_components);
        Pca {
            dim,
            mean: fit.mean.iter().map(|&m| m as f32).collect(),
            components: fit.components.iter().map(|&c| c as f32).collect(),
            explained_variance: fit.variances.iter().map(|&v| v.max(0.0) as f32).collect(),
        }
    }

    pub fn n_components(&self) -> usize {
        self.explained_variance.len()
    }

    /// Projections `[rows, n_components]` of the centred rows of `data`.
    pub fn transform(&self, data: &[f32]) -> Vec<f32> {
        let n = self.n_components();
        if n == 0 || self.dim == 0 {
            return Vec::new();
        }
        let rows = data.len() / self.dim;
        let centred: Vec<f32> = data[..rows * self.dim]
            .chunks_exact(self.dim)
            .flat_map(|row| row.iter().zip(&self.mean).map(|(v, m)| v - m))
            .collect();
        matmul(
            View::new(&centred, rows, self.dim),
            View::new(&self.components, n, self.dim).t(),
            1.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Points spread along known orthogonal axes with standard deviations 5, 2 and 0.5.
    fn planted(rows: usize) -> (Vec<f32>, [[f32; 3]; 3]) {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let axes = [[s, s, 0.0], [0.0, 0.0, 1.0], [s, -s, 0.0]];
        let scales = [5.0, 2.0, 0.5];
        let mut rng = Rng::new(9);
        let mut data = Vec::new();
        for _ in 0..rows {
            let mut point = [1.0, -2.0, 3.0];
            for (axis, scale) in axes.iter().zip(scales) {
                let t = scale * (rng.uniform() as f32 - 0.5) * 12f32.sqrt();
                point.iter_mut().zip(axis).for_each(|(p, a)| *p += t * a);
            }
            data.extend(point);
        }
        (data, axes)
    }

    #[test]
    fn finds_planted_axes_in_order_with_sklearn_signs() {
        let (data, axes) = planted(4000);
        let pca = Pca::fit(&data, 3, 3);
        for (c, axis) in pca.components.chunks_exact(3).zip(axes) {
            let cos: f32 = c.iter().zip(axis).map(|(a, b)| a * b).sum();
            assert!(cos.abs() > 0.99, "{c:?} vs {axis:?}");
            let largest = c.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs()));
            assert!(largest.unwrap() > 0.0);
        }
        let v = &pca.explained_variance;
        assert!((v[0] / 25.0 - 1.0).abs() < 0.1 && (v[1] / 4.0 - 1.0).abs() < 0.1);
    }

    #[test]
    fn projections_reconstruct_the_data_with_all_components() {
        let (data, _) = planted(50);
        let pca = Pca::fit(&data, 3, 3);
        let projected = pca.transform(&data);
        for (row, p) in data.chunks_exact(3).zip(projected.chunks_exact(3)) {
            for (d, value) in row.iter().enumerate() {
                let back: f32 = pca.mean[d]
                    + (0..3)
                        .map(|c| p[c] * pca.components[c * 3 + d])
                        .sum::<f32>();
                assert!((back - value).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn wide_data_uses_the_gram_matrix_and_agrees_with_the_covariance_path() {
        // 6 rows of 10 dims: dim > rows takes the Gram path; embedding the same rows in a longer
        // data set is not comparable, so check the defining properties instead.
        let mut rng = Rng::new(2);
        let data: Vec<f32> = (0..60).map(|_| rng.uniform() as f32).collect();
        let pca = Pca::fit(&data, 10, 3);
        assert_eq!(pca.n_components(), 3);
        let projected = pca.transform(&data);
        // Projections on different components are uncorrelated and have the stated variance.
        for a in 0..3 {
            let var: f32 = (0..6).map(|r| projected[r * 3 + a].powi(2)).sum::<f32>() / 5.0;
            assert!((var - pca.explained_variance[a]).abs() < 1e-4);
            for b in a + 1..3 {
                let cov: f32 = (0..6)
                    .map(|r| projected[r * 3 + a] * projected[r * 3 + b])
                    .sum();
                assert!(cov.abs() < 1e-4);
            }
        }
    }

    #[test]
    fn f64_fit_transform_agrees_with_the_f32_projection() {
        let (data, _) = planted(200);
        let projected = Pca::fit(&data, 3, 2).transform(&data);
        let exact = fit_transform(&data, 3, 2);
        assert_eq!(exact.len(), projected.len());
        for (a, b) in exact.iter().zip(&projected) {
            assert!((a - *b as f64).abs() < 1e-4, "{a} vs {b}");
        }
        assert!(fit_transform(&[], 3, 2).is_empty());
    }

    #[test]
    fn empty_input_gives_no_components() {
        let pca = Pca::fit(&[], 4, 3);
        assert_eq!(pca.n_components(), 0);
        assert!(pca.transform(&[1.0, 2.0, 3.0, 4.0]).is_empty());
    }
}
