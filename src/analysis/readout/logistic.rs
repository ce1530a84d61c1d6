//! Multinomial logistic regression with an L2 penalty, as scikit-learn's `LogisticRegression`
//! (defaults: `C = 1`, the intercept fitted and not penalised, `lbfgs`). The objective is strictly
//! convex in the weights, so any solver run to convergence reaches scikit-learn's optimum; this
//! one is L-BFGS (Liu & Nocedal 1989) with a backtracking line search, run to a tighter gradient
//! tolerance than scikit-learn's default so that the probabilities agree.

use crate::linalg::{View, matmul};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogisticConfig {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    pub max_iterations: usize,
    /// Stop when the largest gradient entry of the per-sample objective is below this.
    pub tolerance: f64,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        LogisticConfig {
            c: 1.0,
            max_iterations: 1000,
            tolerance: 1e-9,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogisticError {
    #[error("C must be a positive number, got {0}")]
    C(f64),
    #[error("{features} feature values are not whole rows of {dim}")]
    Shape { features: usize, dim: usize },
    #[error("{labels} labels for {rows} rows")]
    Labels { labels: usize, rows: usize },
    #[error("at least two classes are needed, got {0}")]
    Classes(usize),
}

/// A fitted model: `classes x dim` weights and `classes` intercepts.
#[derive(Clone, Debug)]
pub struct LogisticModel {
    pub dim: usize,
    pub classes: usize,
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
}

/// Rows of logits `x Wᵀ + b`.
fn logits(x: &[f64], dim: usize, weights: &[f64], intercepts: &[f64]) -> Vec<f64> {
    let classes = intercepts.len();
    let rows = x.len() / dim;
    let mut z = matmul(
        View::new(x, rows, dim),
        View::new(weights, classes, dim).t(),
        1.0,
    );
    for row in z.chunks_mut(classes) {
        row.iter_mut().zip(intercepts).for_each(|(v, b)| *v += b);
    }
    z
}

/// Softmax of each row, in place.
fn softmax_rows(z: &mut [f64], classes: usize) {
    for row in z.chunks_mut(classes) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        row.iter_mut().for_each(|v| {
            *v = (*v - max).exp();
            sum += *v;
        });
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// The per-sample objective `(1/n) [Σ -log p(y_i | x_i) + |W|² / (2C)]` and its gradient with
/// respect to `[W | b]` (weights first, then intercepts).
struct Objective<'a> {
    x: &'a [f64],
    labels: &'a [usize],
    dim: usize,
    classes: usize,
    c: f64,
}

impl Objective<'_> {
    fn rows(&self) -> usize {
        self.labels.len()
    }

    fn value_and_gradient(&self, params: &[f64]) -> (f64, Vec<f64>) {
        let (k, d, n) = (self.classes, self.dim, self.rows());
        let (weights, intercepts) = params.split_at(k * d);
        let mut z = logits(self.x, d, weights, intercepts);
        let mut loss = 0.0;
        for (row, &y) in z.chunks(k).zip(self.labels) {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += log_sum - row[y];
        }
        softmax_rows(&mut z, k);
        // Residuals p - onehot(y).
        for (row, &y) in z.chunks_mut(k).zip(self.labels) {
            row[y] -= 1.0;
        }
        let mut gradient = matmul(View::new(&z, n, k).t(), View::new(self.x, n, d), 1.0);
        let mut intercept_gradient = vec![0.0; k];
        for row in z.chunks(k) {
            intercept_gradient
                .iter_mut()
                .zip(row)
                .for_each(|(g, r)| *g += r);
        }
        let penalty: f64 = weights.iter().map(|w| w * w).sum::<f64>() / (2.0 * self.c);
        gradient
            .iter_mut()
            .zip(weights)
            .for_each(|(g, w)| *g += w / self.c);
        gradient.extend(intercept_gradient);
        let scale = 1.0 / n as f64;
        gradient.iter_mut().for_each(|g| *g *= scale);
        ((loss + penalty) * scale, gradient)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `objective` from zero with L-BFGS (10 correction pairs, as SciPy's default).
fn lbfgs(
    objective: &Objective<'_>,
    size: usize,
    config: LogisticConfig,
) -> (Vec<f64>, usize, bool) {
    const PAIRS: usize = 10;
    let mut x = vec![0.0; size];
    let (mut f, mut g) = objective.value_and_gradient(&x);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    for iteration in 0..config.max_iterations {
        let largest = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if largest <= config.tolerance {
            return (x, iteration, true);
        }
        // Two-loop recursion: the direction -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * y);
            alphas.push(alpha);
        }
        let gamma = history
            .back()
            .map_or(1.0 / largest.max(1e-12), |(s, y, _)| dot(s, y) / dot(y, y));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), alpha) in history.iter().zip(alphas.into_iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(q, s)| *q += (alpha - beta) * s);
        }
        let direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (rounding): start the memory again.
            history.clear();
            continue;
        }
        // Backtracking to the Armijo condition.
        let mut step = 1.0;
        let (next, f_next, g_next) = loop {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&direction)
                .map(|(x, d)| x + step * d)
                .collect();
            let (f_c, g_c) = objective.value_and_gradient(&candidate);
            if f_c <= f + 1e-4 * step * slope || step < 1e-20 {
                break (candidate, f_c, g_c);
            }
            step *= 0.5;
        };
        let s: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
        let curvature = dot(&s, &y);
        if curvature > 1e-16 {
            if history.len() == PAIRS {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / curvature));
        }
        let stalled = (f - f_next).abs() <= f64::EPSILON * f.abs().max(1.0);
        (x, f, g) = (next, f_next, g_next);
        if stalled && history.is_empty() {
            return (x, iteration + 1, false);
        }
    }
    let converged = g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= config.tolerance;
    (x, config.max_iterations, converged)
}

/// Fits `features` (`dim` values per row) to `labels` (`0..classes`).
pub fn fit(
    features: &[f32],
    labels: &[usize],
    dim: usize,
    classes: usize,
    config: LogisticConfig,
) -> Result<LogisticModel, LogisticError> {
    if !(config.c.is_finite() && config.c > 0.0) {
        return Err(LogisticError::C(config.c));
    }
    if dim == 0 || !features.len().is_multiple_of(dim) {
        return Err(LogisticError::Shape {
            features: features.len(),
            dim,
        });
    }
    let rows = features.len() / dim;
    if labels.len() != rows {
        return Err(LogisticError::Labels {
            labels: labels.len(),
            rows,
        });
    }
    let classes = classes.max(labels.iter().max().map_or(0, |m| m + 1));
    if classes < 2 {
        return Err(LogisticError::Classes(classes));
    }
    let x: Vec<f64> = features.iter().map(|&v| v as f64).collect();
    let objective = Objective {
        x: &x,
        labels,
        dim,
        classes,
        c: config.c,
    };
    let (params, iterations, converged) = lbfgs(&objective, classes * (dim + 1), config);
    let (weights, intercepts) = params.split_at(classes * dim);
    Ok(LogisticModel {
        dim,
        classes,
        weights: weights.to_vec(),
        intercepts: intercepts.to_vec(),
        iterations,
        converged,
    })
}

impl LogisticModel {
    /// Class probabilities, `classes` per row of `features`.
    pub fn predict_proba(&self, features: &[f32]) -> Vec<f64> {
        let x: Vec<f64> = features.iter().map(|&v| v as f64).collect();
        let mut z = logits(&x, self.dim, &self.weights, &self.intercepts);
        softmax_rows(&mut z, self.classes);
        z
    }

    /// The most probable class of each row (the first on a tie, as NumPy's `argmax`).
    pub fn predict(&self, features: &[f32]) -> Vec<usize> {
        self.predict_proba(features)
            .chunks(self.classes)
            .map(|row| (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_is_zero_at_the_fitted_optimum_and_matches_finite_differences() {
        let features: Vec<f32> = (0..60)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let labels: Vec<usize> = (0..20).map(|i| i % 3).collect();
        let x: Vec<f64> = features.iter().map(|&v| v as f64).collect();
        let objective = Objective {
            x: &x,
            labels: &labels,
            dim: 3,
            classes: 3,
            c: 0.5,
        };
        let params: Vec<f64> = (0..12).map(|i| (i as f64 - 6.0) / 10.0).collect();
        let (_, gradient) = objective.value_and_gradient(&params);
        for i in 0..params.len() {
            let mut up = params.clone();
            let mut down = params.clone();
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let numeric = (objective.value_and_gradient(&up).0
                - objective.value_and_gradient(&down).0)
                / 2e-6;
            assert!(
                (numeric - gradient[i]).abs() < 1e-7,
                "{i}: {numeric} vs {}",
                gradient[i]
            );
        }
        let config = LogisticConfig {
            c: 0.5,
            ..LogisticConfig::default()
        };
        let model = fit(&features, &labels, 3, 3, config).unwrap();
        assert!(model.converged, "{} iterations", model.iterations);
        let mut fitted = model.weights.clone();
        fitted.extend(&model.intercepts);
        let (_, at_optimum) = objective.value_and_gradient(&fitted);
        assert!(at_optimum.iter().all(|g| g.abs() <= 1e-9));
    }

    #[test]
    fn bad_settings_are_errors() {
        let config = LogisticConfig {
            c: 0.0,
            ..LogisticConfig::default()
        };
        assert_eq!(
            fit(&[1.0], &[0], 1, 2, config).err(),
            Some(LogisticError::C(0.0))
        );
        assert_eq!(
            fit(&[1.0, 2.0], &[0, 0], 1, 1, LogisticConfig::default()).err(),
            Some(LogisticError::Classes(1))
        );
    }
}
