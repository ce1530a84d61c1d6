//! Exact t-SNE (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008) into two
//! dimensions, reproducing scikit-learn 1.9's `TSNE(method="exact", init="pca",
//! learning_rate="auto")` (sklearn/manifold/_t_sne.py): `_kl_divergence`'s gradient,
//! `_gradient_descent`'s momentum and gains, its two phases and its stopping rules.
//!
//! The optimisation is chaotic: in scikit-learn itself, moving one initial coordinate by one f32
//! ulp moves the result by O(1) after about 25 iterations (the gains jump between +0.2 and x0.8 on
//! the sign of a near-zero gradient). So the arithmetic is f64 but the embedding, the gradient and
//! the gains are rounded to f32 where scikit-learn keeps them as float32 (its PCA initialisation is
//! cast to float32 and every array of the descent follows it), and its sums are taken in NumPy's
//! order; that makes the run follow scikit-learn's step for step on the fixtures.

use rayon::prelude::*;

use super::joint::{Condensed, MACHINE_EPSILON, joint_probabilities};
use super::numpy_sum::numpy_sum;
use crate::analysis::pca;
use crate::analysis::progress::{Cancelled, Progress, report};

/// Largest number of points callers should give exact t-SNE: each iteration is O(n^2) in time and
/// the two condensed n x n matrices take 8 n^2 bytes (72 MB at 3,000 points), and 1,000
/// iterations of 3,000 points take about a minute of CPU time.
pub const MAX_EXACT_POINTS: usize = 3_000;

/// `TSNE._EXPLORATION_MAX_ITER`: iterations with early exaggeration and momentum 0.5.
const EXPLORATION_ITERATIONS: usize = 250;
/// `TSNE._N_ITER_CHECK`: the error and the stopping rules are evaluated every this many steps.
const N_ITER_CHECK: usize = 50;
/// `TSNE(n_iter_without_progress=300)` after the exploration (which uses its own length).
const N_ITER_WITHOUT_PROGRESS: usize = 300;
const MIN_GRAD_NORM: f64 = 1e-7;
/// `_gradient_descent`'s gains live in float32 like the embedding.
const MIN_GAIN: f32 = 0.01;
const GAIN_INCREASE: f32 = 0.2;
const GAIN_DECREASE: f32 = 0.8;
const EXPLORATION_MOMENTUM: f64 = 0.5;
const FINAL_MOMENTUM: f64 = 0.8;
/// The PCA initialisation is scaled so that its first column has this standard deviation, the
/// one of scikit-learn's random initialisation (scikit-learn issue #18018).
const INIT_STD: f32 = 1e-4;
/// Student-t degrees of freedom `max(n_components - 1, 1)` for two components (van der Maaten,
/// "Learning a Parametric Embedding by Preserving Local Structure", 2009), and the gradient's
/// factor `2 (dof + 1) / dof`.
const DEGREES_OF_FREEDOM: f64 = 1.0;
const GRADIENT_FACTOR: f32 = (2.0 * (DEGREES_OF_FREEDOM + 1.0) / DEGREES_OF_FREEDOM) as f32;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours of each point's Gaussian; less than the number of points.
    pub perplexity: f64,
    /// Factor on P during the first 250 iterations.
    pub early_exaggeration: f64,
    /// Total iterations, at least the 250 of the exploration phase.
    pub max_iter: usize,
}

impl Default for TsneConfig {
    /// scikit-learn's defaults.
    fn default() -> Self {
        TsneConfig {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            max_iter: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TsneError {
    #[error("descriptors of length {dim} cannot split {values} values into points")]
    BadShape { values: usize, dim: usize },
    #[error("t-SNE needs at least 2 points, got {0}")]
    TooFewPoints(usize),
    #[error("the PCA initialisation needs descriptors of at least 2 values, got {0}")]
    TooFewDimensions(usize),
    #[error("value {index} of the descriptors is not finite")]
    NonFinite { index: usize },
    #[error(
        "perplexity {perplexity} must be positive and less than the number of points ({points})"
    )]
    BadPerplexity { perplexity: f64, points: usize },
    #[error("early exaggeration {0} must be at least 1")]
    BadExaggeration(f64),
    #[error("{0} iterations are fewer than the 250 of the early-exaggeration phase")]
    TooFewIterations(usize),
    #[error("the points do not vary along their first principal component")]
    NoSpread,
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tsne {
    pub embedding: Vec<[f32; 2]>,
    /// KL(P || Q) at the start of the last iteration, as scikit-learn's `kl_divergence_` (with
    /// exactly 250 iterations, where scikit-learn reports the largest float, that of the result).
    pub kl_divergence: f64,
    /// Gradient steps taken (scikit-learn's `n_iter_ + 1`): fewer than `max_iter` when a
    /// stopping rule ended the run.
    pub iterations: usize,
}

fn validate(features: &[f32], dim: usize, config: &TsneConfig) -> Result<usize, TsneError> {
    if dim == 0 || !features.len().is_multiple_of(dim) {
        return Err(TsneError::BadShape {
            values: features.len(),
            dim,
        });
    }
    let points = features.len() / dim;
    if points < 2 {
        return Err(TsneError::TooFewPoints(points));
    }
    if dim < 2 {
        return Err(TsneError::TooFewDimensions(dim));
    }
    if let Some(index) = features.iter().position(|v| !v.is_finite()) {
        return Err(TsneError::NonFinite { index });
    }
    let perplexity = config.perplexity;
    // `TSNE._check_params_vs_input`, and the parameter constraint perplexity > 0.
    if !(perplexity > 0.0 && perplexity < points as f64) {
        return Err(TsneError::BadPerplexity { perplexity, points });
    }
    if !(config.early_exaggeration >= 1.0 && config.early_exaggeration.is_finite()) {
        return Err(TsneError::BadExaggeration(config.early_exaggeration));
    }
    if config.max_iter < EXPLORATION_ITERATIONS {
        return Err(TsneError::TooFewIterations(config.max_iter));
    }
    Ok(points)
}

/// The joint probabilities P of exact t-SNE for `config.perplexity`, as scikit-learn's
/// `_joint_probabilities` (condensed; its entries sum to 1/2).
pub fn tsne_joint_probabilities(
    features: &[f32],
    dim: usize,
    config: &TsneConfig,
) -> Result<Condensed, TsneError> {
    validate(features, dim, config)?;
    Ok(joint_probabilities(features, dim, config.perplexity))
}

/// `TSNE(init="pca")`'s start: `PCA(2).fit_transform` cast to float32, divided by the standard
/// deviation of its first column (`np.std` in float32) and times 1e-4, all in float32.
fn pca_init(features: &[f32], dim: usize) -> Result<Vec<f32>, TsneError> {
    let projected: Vec<f32> = pca::fit_transform(features, dim, 2)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let first: Vec<f32> = projected.iter().step_by(2).copied().collect();
    let count = first.len() as f32;
    let mean = numpy_sum(&first) / count;
    let squares: Vec<f32> = first.iter().map(|v| (v - mean) * (v - mean)).collect();
    let std = (numpy_sum(&squares) / count).sqrt();
    if !(std > 0.0 && std.is_finite()) {
        return Err(TsneError::NoSpread);
    }
    Ok(projected.iter().map(|v| v / std * INIT_STD).collect())
}

/// `_kl_divergence` on a condensed P: Student-t similarities of the current embedding, the KL
/// divergence when asked, and the gradient.
struct Objective {
    p: Condensed,
    /// Student-t kernel `1 / (1 + d_ij)`, then `(p_ij - q_ij) * kernel`, condensed.
    weights: Vec<f64>,
}

impl Objective {
    fn new(p: Condensed) -> Self {
        let weights = vec![0.0; p.values.len()];
        Objective { p, weights }
    }

    /// Writes the gradient at `y` (`[n, 2]`) into `grad`, rounded to f32 as scikit-learn's
    /// float32 gradient array; returns KL(P || Q) when `with_error`.
    fn evaluate(&mut self, y: &[f32], grad: &mut [f32], with_error: bool) -> Option<f64> {
        let n = self.p.points;
        // pdist(Y, "sqeuclidean") in f64, then (1 + d / dof) ** -1 for dof = 1.
        Condensed::rows_mut(&mut self.weights, n)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, row)| {
                let (xi, yi) = (y[2 * i] as f64, y[2 * i + 1] as f64);
                for (w, j) in row.iter_mut().zip(i + 1..n) {
                    let (dx, dy) = (xi - y[2 * j] as f64, yi - y[2 * j + 1] as f64);
                    *w = 1.0 / (dx * dx + dy * dy + 1.0);
                }
            });
        let twice_sum = 2.0 * numpy_sum(&self.weights);
        let p = &self.p.values;
        let starts: Vec<usize> = (0..n).map(|i| Condensed::row_start(n, i)).collect();
        let kl_rows: Vec<f64> = Condensed::rows_mut(&mut self.weights, n)
            .into_par_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut kl = 0.0;
                for (w, &p) in row.iter_mut().zip(&p[starts[i]..]) {
                    let q = (*w / twice_sum).max(MACHINE_EPSILON);
                    if with_error {
                        kl += p * (p.max(MACHINE_EPSILON) / q).ln();
                    }
                    *w *= p - q;
                }
                kl
            })
            .collect();
        let forces = &self.weights;
        grad.par_chunks_mut(2).enumerate().for_each(|(i, g)| {
            let (xi, yi) = (y[2 * i], y[2 * i + 1]);
            let (mut gx, mut gy) = (0f64, 0f64);
            // scikit-learn forms Y[i] - Y in float32 before the f64 dot product.
            let mut add = |force: f64, j: usize| {
                gx += force * (xi - y[2 * j]) as f64;
                gy += force * (yi - y[2 * j + 1]) as f64;
            };
            for (j, &start) in starts.iter().enumerate().take(i) {
                add(forces[start + i - j - 1], j);
            }
            for (k, &force) in forces[starts[i]..starts[i] + n - i - 1].iter().enumerate() {
                add(force, i + 1 + k);
            }
            g[0] = gx as f32 * GRADIENT_FACTOR;
            g[1] = gy as f32 * GRADIENT_FACTOR;
        });
        with_error.then(|| 2.0 * kl_rows.iter().sum::<f64>())
    }
}

/// One call of `_gradient_descent`.
struct Phase {
    start: usize,
    max_iter: usize,
    momentum: f64,
    n_iter_without_progress: usize,
}

/// What a phase ends with: the error of its last evaluation (`None` when it took no step) and
/// the index of its last iteration (`start` when none).
struct PhaseEnd {
    error: Option<f64>,
    last: usize,
}

/// `_gradient_descent`: momentum, per-coordinate gains and the checks every `N_ITER_CHECK`
/// steps (no progress for `n_iter_without_progress` steps, or a gradient norm at most 1e-7).
fn gradient_descent(
    objective: &mut Objective,
    y: &mut [f32],
    phase: &Phase,
    learning_rate: f64,
    total: usize,
    progress: &mut Progress<'_>,
) -> Result<PhaseEnd, Cancelled> {
    let mut update = vec![0f64; y.len()];
    let mut gains = vec![1f32; y.len()];
    let mut grad = vec![0f32; y.len()];
    let (mut error, mut best_error) = (None, f64::MAX);
    let (mut best_iter, mut last) = (phase.start, phase.start);
    for i in phase.start..phase.max_iter {
        report(progress, i as f32 / total as f32, "t-SNE iterations")?;
        last = i;
        let check = (i + 1) % N_ITER_CHECK == 0;
        error = objective.evaluate(y, &mut grad, check || i + 1 == phase.max_iter);
        for (((p, u), gain), g) in y.iter_mut().zip(&mut update).zip(&mut gains).zip(&mut grad) {
            *gain = if *u * (*g as f64) < 0.0 {
                *gain + GAIN_INCREASE
            } else {
                *gain * GAIN_DECREASE
            }
            .max(MIN_GAIN);
            *g *= *gain;
            *u = phase.momentum * *u - learning_rate * *g as f64;
            *p = (*p as f64 + *u) as f32;
        }
        if let (true, Some(e)) = (check, error) {
            let grad_norm = grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt();
            if e < best_error {
                (best_error, best_iter) = (e, i);
            } else if i - best_iter > phase.n_iter_without_progress {
                break;
            }
            if grad_norm <= MIN_GRAD_NORM {
                break;
            }
        }
    }
    Ok(PhaseEnd { error, last })
}

/// Exact t-SNE of the `dim`-long rows of `features` into two dimensions, as scikit-learn's
/// `TSNE(n_components=2, method="exact", init="pca", learning_rate="auto")`. O(n^2) per iteration:
/// see [`MAX_EXACT_POINTS`]. Reports progress before every iteration; a `false` answer cancels.
///
/// Deterministic, and the same for any number of rayon threads: every sum has a fixed order.
pub fn tsne(
    features: &[f32],
    dim: usize,
    config: &TsneConfig,
    progress: &mut Progress<'_>,
) -> Result<Tsne, TsneError> {
    let points = validate(features, dim, config)?;
    report(progress, 0.0, "t-SNE input similarities")?;
    let mut y = pca_init(features, dim)?;
    let mut p = joint_probabilities(features, dim, config.perplexity);
    // learning_rate="auto": max(N / early_exaggeration / 4, 50) (Belkina et al. 2019, Kobak &
    // Berens 2019).
    let learning_rate = (points as f64 / config.early_exaggeration / 4.0).max(50.0);
    // Exaggerated and restored in place as scikit-learn does (P * 12 / 12 need not be P).
    p.values
        .iter_mut()
        .for_each(|v| *v *= config.early_exaggeration);
    let mut objective = Objective::new(p);
    let exploration = Phase {
        start: 0,
        max_iter: EXPLORATION_ITERATIONS,
        momentum: EXPLORATION_MOMENTUM,
        n_iter_without_progress: EXPLORATION_ITERATIONS,
    };
    let explored = gradient_descent(
        &mut objective,
        &mut y,
        &exploration,
        learning_rate,
        config.max_iter,
        progress,
    )?;
    objective
        .p
        .values
        .iter_mut()
        .for_each(|v| *v /= config.early_exaggeration);
    let rest = Phase {
        start: explored.last + 1,
        max_iter: config.max_iter,
        momentum: FINAL_MOMENTUM,
        n_iter_without_progress: N_ITER_WITHOUT_PROGRESS,
    };
    let end = gradient_descent(
        &mut objective,
        &mut y,
        &rest,
        learning_rate,
        config.max_iter,
        progress,
    )?;
    let (kl_divergence, iterations) = match end.error {
        Some(error) => (error, end.last + 1),
        None => {
            let mut grad = vec![0f32; y.len()];
            let error = objective.evaluate(&y, &mut grad, true);
            (error.unwrap_or(f64::NAN), explored.last + 1)
        }
    };
    Ok(Tsne {
        embedding: y.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
        kl_divergence,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `k` tight Gaussian-ish clusters of `per` points in `dim` dimensions, far apart.
    fn clusters(k: usize, per: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        let centres: Vec<f32> = (0..k * dim).map(|_| rng.uniform() as f32 * 40.0).collect();
        (0..k * per)
            .flat_map(|p| {
                let c = p % k;
                (0..dim)
                    .map(|d| centres[c * dim + d] + rng.uniform() as f32 - 0.5)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn short() -> TsneConfig {
        TsneConfig {
            perplexity: 5.0,
            max_iter: 250,
            ..TsneConfig::default()
        }
    }

    #[test]
    fn a_false_answer_cancels_within_one_iteration() {
        let data = clusters(3, 10, 4, 1);
        let mut calls = 0;
        let mut stop_at_ten = |_: f32, _: &str| {
            calls += 1;
            calls < 10
        };
        let result = tsne(&data, 4, &short(), &mut stop_at_ten);
        assert_eq!(result, Err(TsneError::Cancelled(Cancelled)));
        assert_eq!(calls, 10);
    }

    #[test]
    fn the_same_bits_on_one_thread_and_on_three() {
        // 400 points: the Student-t sum has 79,800 terms, enough for the parallel halves of
        // the pairwise sum as well as the parallel rows.
        let data = clusters(4, 100, 6, 2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| tsne(&data, 6, &short(), &mut |_, _| true).unwrap())
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.kl_divergence.to_bits(), three.kl_divergence.to_bits());
        let bits =
            |t: &Tsne| -> Vec<u32> { t.embedding.iter().flatten().map(|v| v.to_bits()).collect() };
        assert_eq!(bits(&one), bits(&three));
    }

    #[test]
    fn exactly_250_iterations_report_the_kl_of_the_result() {
        let data = clusters(3, 10, 4, 3);
        let result = tsne(&data, 4, &short(), &mut |_, _| true).unwrap();
        assert_eq!(result.iterations, 250);
        assert!(result.kl_divergence.is_finite() && result.kl_divergence > 0.0);
        assert!(result.embedding.iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let data = clusters(2, 5, 3, 4);
        let ok = short();
        let run = |data: &[f32], dim: usize, config: TsneConfig| {
            tsne(data, dim, &config, &mut |_, _| true).map(|_| ())
        };
        assert_eq!(
            run(&data, 4, ok),
            Err(TsneError::BadShape { values: 30, dim: 4 })
        );
        assert_eq!(
            run(&data, 0, ok),
            Err(TsneError::BadShape { values: 30, dim: 0 })
        );
        assert_eq!(run(&data[..3], 3, ok), Err(TsneError::TooFewPoints(1)));
        assert_eq!(run(&data, 1, ok), Err(TsneError::TooFewDimensions(1)));
        let mut nan = data.clone();
        nan[7] = f32::NAN;
        assert_eq!(run(&nan, 3, ok), Err(TsneError::NonFinite { index: 7 }));
        for perplexity in [10.0, 0.0, f64::NAN] {
            let config = TsneConfig { perplexity, ..ok };
            assert!(
                matches!(
                    run(&data, 3, config),
                    Err(TsneError::BadPerplexity { points: 10, .. })
                ),
                "{perplexity}"
            );
        }
        let config = TsneConfig {
            early_exaggeration: 0.5,
            ..ok
        };
        assert_eq!(run(&data, 3, config), Err(TsneError::BadExaggeration(0.5)));
        let config = TsneConfig {
            max_iter: 249,
            ..ok
        };
        assert_eq!(run(&data, 3, config), Err(TsneError::TooFewIterations(249)));
        let same = [1.0, 2.0, 3.0].repeat(10);
        assert_eq!(run(&same, 3, ok), Err(TsneError::NoSpread));
    }
}
