//! t-SNE's input similarities (van der Maaten & Hinton 2008, §2-3): a Gaussian per point whose
//! width gives the wanted perplexity, symmetrised into joint probabilities. The arithmetic is
//! scikit-learn's `_joint_probabilities` (sklearn/manifold/_t_sne.py) and
//! `_binary_search_perplexity` (sklearn/manifold/_utils.pyx), rounding where they round.

use rayon::prelude::*;

use super::numpy_sum::numpy_sum;

/// scikit-learn's `MACHINE_EPSILON`, `np.finfo(np.double).eps`: the floor of every probability.
pub(super) const MACHINE_EPSILON: f64 = f64::EPSILON;
/// `_utils.pyx` declares these two as C `float`s, so they hold these f32 values.
const PERPLEXITY_TOLERANCE: f32 = 1e-5;
const EPSILON_DBL: f32 = 1e-8;
const BINARY_SEARCH_STEPS: usize = 100;

/// A symmetric matrix with a zero diagonal, stored as its upper triangle row by row (SciPy's
/// condensed form: (0,1), (0,2), ..., (0,n-1), (1,2), ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Condensed {
    pub points: usize,
    pub values: Vec<f64>,
}

impl Condensed {
    /// Index of (i, i + 1) in `values`.
    pub(super) fn row_start(points: usize, i: usize) -> usize {
        i * (2 * points - i - 1) / 2
    }

    /// Entry (i, j); 0 on the diagonal.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (low, high) = (i.min(j), i.max(j));
        if low == high {
            0.0
        } else {
            self.values[Self::row_start(self.points, low) + high - low - 1]
        }
    }

    /// The upper-triangle rows of `values` as separate slices (row i holds (i, i+1..points)).
    pub(super) fn rows_mut(values: &mut [f64], points: usize) -> Vec<&mut [f64]> {
        let mut rows = Vec::with_capacity(points);
        let mut rest = values;
        for i in 0..points {
            let (row, tail) = rest.split_at_mut(points - i - 1);
            rows.push(row);
            rest = tail;
        }
        rows
    }
}

/// Squared euclidean distances `[n, n]` between the `dim`-long rows of `data`, in f64 and then
/// rounded to f32: `_joint_probabilities` casts scikit-learn's distances to float32.
fn squared_distances(data: &[f32], dim: usize) -> Vec<f32> {
    let n = data.len() / dim;
    let mut out = vec![0f32; n * n];
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let a = &data[i * dim..(i + 1) * dim];
        for (j, d) in row.iter_mut().enumerate().skip(i + 1) {
            let b = &data[j * dim..(j + 1) * dim];
            // Four partial sums: exact to well within the f32 rounding that follows.
            let mut partial = [0f64; 4];
            let whole = dim - dim % 4;
            for (x, y) in a[..whole].chunks_exact(4).zip(b[..whole].chunks_exact(4)) {
                for k in 0..4 {
                    let diff = x[k] as f64 - y[k] as f64;
                    partial[k] += diff * diff;
                }
            }
            let tail: f64 = a[whole..]
                .iter()
                .zip(&b[whole..])
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                .sum();
            *d = ((partial[0] + partial[1]) + (partial[2] + partial[3]) + tail) as f32;
        }
    });
    for i in 0..n {
        for j in 0..i {
            out[i * n + j] = out[j * n + i];
        }
    }
    out
}

/// Conditional probabilities `p_{j|i}` of one point from its squared distances `row` (its own
/// entry at `i`), by `_binary_search_perplexity`'s bisection on the precision `beta` until the
/// entropy in nats is within the tolerance of `ln(perplexity)`.
fn conditional_row(row: &[f32], i: usize, desired_entropy: f64, p: &mut [f64]) {
    p[i] = 0.0;
    let (mut beta, mut beta_min, mut beta_max) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
    for _ in 0..BINARY_SEARCH_STEPS {
        let mut sum_p = 0.0;
        for (j, (p, &d)) in p.iter_mut().zip(row).enumerate() {
            if j != i {
                *p = (-(d as f64) * beta).exp();
                sum_p += *p;
            }
        }
        if sum_p == 0.0 {
            sum_p = EPSILON_DBL as f64;
        }
        let mut sum_dist_p = 0.0;
        for (p, &d) in p.iter_mut().zip(row) {
            *p /= sum_p;
            sum_dist_p += d as f64 * *p;
        }
        let entropy = sum_p.ln() + beta * sum_dist_p;
        let difference = entropy - desired_entropy;
        if difference.abs() <= PERPLEXITY_TOLERANCE as f64 {
            break;
        }
        if difference > 0.0 {
            beta_min = beta;
            beta = if beta_max == f64::INFINITY {
                beta * 2.0
            } else {
                (beta + beta_max) / 2.0
            };
        } else {
            beta_max = beta;
            beta = if beta_min == f64::NEG_INFINITY {
                beta / 2.0
            } else {
                (beta + beta_min) / 2.0
            };
        }
    }
}

/// Joint probabilities `p_ij` of the `dim`-long rows of `data` (already validated: at least two
/// finite rows, `0 < perplexity < rows`), as `_joint_probabilities` on squared euclidean distances.
pub(super) fn joint_probabilities(data: &[f32], dim: usize, perplexity: f64) -> Condensed {
    let n = data.len() / dim;
    let distances = squared_distances(data, dim);
    // `_binary_search_perplexity` takes the perplexity as a C float.
    let desired_entropy = (perplexity as f32 as f64).ln();
    let mut conditional = vec![0f64; n * n];
    conditional
        .par_chunks_mut(n)
        .zip(distances.par_chunks(n))
        .enumerate()
        .for_each(|(i, (p, row))| conditional_row(row, i, desired_entropy, p));
    drop(distances);
    // P + P^T in place: both triangles then hold the symmetric sums NumPy adds up.
    for i in 0..n {
        for j in i + 1..n {
            let sum = conditional[i * n + j] + conditional[j * n + i];
            conditional[i * n + j] = sum;
            conditional[j * n + i] = sum;
        }
    }
    let total = numpy_sum(&conditional).max(MACHINE_EPSILON);
    let mut values = vec![0f64; n * (n - 1) / 2];
    Condensed::rows_mut(&mut values, n)
        .into_par_iter()
        .enumerate()
        .for_each(|(i, row)| {
            let full = &conditional[i * n + i + 1..(i + 1) * n];
            for (v, &p) in row.iter_mut().zip(full) {
                *v = (p / total).max(MACHINE_EPSILON);
            }
        });
    Condensed { points: n, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condensed_indexing_is_scipys() {
        let n = 5;
        let values: Vec<f64> = (0..n * (n - 1) / 2).map(|k| k as f64).collect();
        let matrix = Condensed { points: n, values };
        // squareform order: (0,1)=0 (0,2)=1 (0,3)=2 (0,4)=3 (1,2)=4 ... (3,4)=9.
        assert_eq!(matrix.get(1, 2), 4.0);
        assert_eq!(matrix.get(4, 3), 9.0);
        assert_eq!(matrix.get(2, 2), 0.0);
        let mut values = matrix.values.clone();
        let rows = Condensed::rows_mut(&mut values, n);
        assert_eq!(
            rows.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [4, 3, 2, 1, 0]
        );
        assert_eq!(rows[2][0], matrix.get(2, 3));
    }

    #[test]
    fn probabilities_are_symmetric_normalised_and_reach_the_perplexity() {
        let mut rng = crate::rng::Rng::new(5);
        let (n, dim) = (40, 6);
        let data: Vec<f32> = (0..n * dim).map(|_| rng.uniform() as f32 * 4.0).collect();
        let joint = joint_probabilities(&data, dim, 10.0);
        let total: f64 = joint.values.iter().sum::<f64>() * 2.0;
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        // Each conditional distribution has perplexity 10: exp(entropy in nats).
        let distances = squared_distances(&data, dim);
        let mut p = vec![0.0; n];
        for i in 0..n {
            conditional_row(&distances[i * n..(i + 1) * n], i, 10f64.ln(), &mut p);
            let entropy: f64 = -p
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|v| v * v.ln())
                .sum::<f64>();
            assert!(
                (entropy.exp() - 10.0).abs() < 1e-3,
                "row {i}: {}",
                entropy.exp()
            );
            assert_eq!(p[i], 0.0);
        }
    }
}
