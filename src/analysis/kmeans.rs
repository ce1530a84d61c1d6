//! k-means for descriptor clustering: k-means++ seeding, Lloyd iterations with gemm-based
//! assignment, several restarts keeping the lowest inertia, and the elbow rule of
//! dino-vit-features' co-segmentation (`cosegmentation.py`). Deterministic for a seed.

use rayon::prelude::*;

use super::features::l2_normalize_rows;
use crate::linalg::dot_rows;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Squared L2 distance to the centroid mean.
    Euclidean,
    /// Spherical k-means: rows and centroids are L2-normalised; distances are squared L2 between
    /// unit vectors (`2 - 2 cos`), as faiss on normalised data.
    Cosine,
}

#[derive(Clone, Debug)]
pub struct KMeansConfig {
    pub k: usize,
    /// Lloyd iterations per restart (stops early when no label changes).
    pub iterations: usize,
    /// Independent seedings; the lowest inertia wins (faiss `nredo`).
    pub restarts: usize,
    pub seed: u64,
    pub metric: Metric,
}

impl KMeansConfig {
    /// The co-segmentation settings: 300 iterations, 10 restarts (faiss `niter`, `nredo`).
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            iterations: 300,
            restarts: 10,
            seed: 0,
            metric: Metric::Euclidean,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Clustering {
    pub k: usize,
    pub dim: usize,
    /// `[k, dim]`.
    pub centroids: Vec<f32>,
    /// Label of each clustered row.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the rows to their centroids.
    pub inertia: f64,
}

/// Clusters the `dim`-long rows of `data`. `k` is capped at the number of rows; no rows gives an
/// empty clustering.
pub fn kmeans(data: &[f32], dim: usize, config: &KMeansConfig) -> Clustering {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let k = config.k.clamp(1, rows.max(1));
    if rows == 0 {
        return Clustering {
            k: 0,
            dim,
            centroids: Vec::new(),
            labels: Vec::new(),
            inertia: 0.0,
        };
    }
    let mut owned;
    let data = match config.metric {
        Metric::Euclidean => data,
        Metric::Cosine => {
            owned = data.to_vec();
            l2_normalize_rows(&mut owned, dim);
            &owned
        }
    };
    let norms = squared_norms(data, dim);
    (0..config.restarts.max(1))
        .map(|restart| {
            let mut rng = Rng::derive(config.seed, &[restart as u64]);
            let seeds = kmeans_plus_plus(data, &norms, dim, k, &mut rng);
            lloyd(data, &norms, dim, seeds, config)
        })
        .min_by(|a, b| a.inertia.total_cmp(&b.inertia))
        .unwrap_or_else(|| unreachable!("at least one restart runs"))
}

/// Nearest centroid of each row and the squared L2 distance to it.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let norms = squared_norms(data, dim);
    nearest(data, &norms, dim, centroids)
}

/// Result of the elbow search: the chosen clustering and every row's assignment.
#[derive(Clone, Debug)]
pub struct Elbow {
    /// Fitted on the training rows with the chosen k.
    pub clustering: Clustering,
    /// Label of each row of `all`.
    pub labels: Vec<usize>,
    /// Squared distance of each row of `all` to its centroid.
    pub distances: Vec<f32>,
    /// Mean squared distance of `all` for k = 1, 2, ... as tried.
    pub mean_distances: Vec<f64>,
}

/// Fits k = 1, 2, ..., `max_k` on `train`, assigns `all`, and stops at the first k whose mean
/// distance exceeds `coefficient` times the previous one, keeping that k (the reference's quirk:
/// not k - 1).
pub fn elbow(
    train: &[f32],
    all: &[f32],
    dim: usize,
    max_k: usize,
    coefficient: f64,
    config: &KMeansConfig,
) -> Elbow {
    let mut mean_distances = Vec::new();
    let mut k = 1;
    loop {
        let clustering = kmeans(
            train,
            dim,
            &KMeansConfig {
                k,
                ..config.clone()
            },
        );
        let (labels, distances) = assign(all, dim, &clustering.centroids);
        let mean = distances.iter().map(|&d| d as f64).sum::<f64>() / distances.len().max(1) as f64;
        let stop = mean_distances
            .last()
            .is_some_and(|&previous: &f64| mean > coefficient * previous);
        mean_distances.push(mean);
        if stop || k >= max_k || clustering.k < k {
            return Elbow {
                clustering,
                labels,
                distances,
                mean_distances,
            };
        }
        k += 1;
    }
}

fn squared_norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.chunks_exact(dim)
        .map(|row| row.iter().map(|v| v * v).sum())
        .collect()
}

/// k-means++ (Arthur & Vassilvitskii): first centre uniform, then each next one with probability
/// proportional to the squared distance to the nearest chosen centre.
fn kmeans_plus_plus(data: &[f32], norms: &[f32], dim: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let rows = norms.len();
    let first = rng.below(rows);
    let mut centroids = data[first * dim..(first + 1) * dim].to_vec();
    let mut nearest_distance: Vec<f64> = distances_to(data, norms, dim, &centroids);
    while centroids.len() < k * dim {
        let total: f64 = nearest_distance.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.uniform() * total;
            let mut cumulative = 0.0;
            nearest_distance
                .iter()
                .position(|&d| {
                    cumulative += d;
                    cumulative > target
                })
                .unwrap_or(rows - 1)
        } else {
            rng.below(rows)
        };
        let centre = &data[pick * dim..(pick + 1) * dim];
        let to_new = distances_to(data, norms, dim, centre);
        nearest_distance
            .iter_mut()
            .zip(to_new)
            .for_each(|(d, new)| *d = d.min(new));
        centroids.extend_from_slice(centre);
    }
    centroids
}

/// Squared distances of every row to one point.
fn distances_to(data: &[f32], norms: &[f32], dim: usize, point: &[f32]) -> Vec<f64> {
    let point_norm: f32 = point.iter().map(|v| v * v).sum();
    data.par_chunks_exact(dim)
        .zip(norms)
        .map(|(row, &norm)| {
            let dot: f32 = row.iter().zip(point).map(|(a, b)| a * b).sum();
            (norm + point_norm - 2.0 * dot).max(0.0) as f64
        })
        .collect()
}

fn nearest(data: &[f32], norms: &[f32], dim: usize, centroids: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let k = centroids.len() / dim;
    let centroid_norms = squared_norms(centroids, dim);
    let dots = dot_rows(data, centroids, dim);
    dots.par_chunks_exact(k)
        .zip(norms)
        .map(|(row, &norm)| {
            row.iter()
                .zip(&centroid_norms)
                .map(|(dot, cn)| (norm + cn - 2.0 * dot).max(0.0))
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0))
        })
        .unzip()
}

fn lloyd(
    data: &[f32],
    norms: &[f32],
    dim: usize,
    mut centroids: Vec<f32>,
    config: &KMeansConfig,
) -> Clustering {
    let k = centroids.len() / dim;
    let (mut labels, mut distances) = nearest(data, norms, dim, &centroids);
    for _ in 0..config.iterations {
        update_centroids(data, dim, &labels, &distances, &mut centroids);
        if config.metric == Metric::Cosine {
            l2_normalize_rows(&mut centroids, dim);
        }
        let (new_labels, new_distances) = nearest(data, norms, dim, &centroids);
        let changed = new_labels != labels;
        (labels, distances) = (new_labels, new_distances);
        if !changed {
            break;
        }
    }
    Clustering {
        k,
        dim,
        inertia: distances.iter().map(|&d| d as f64).sum(),
        centroids,
        labels,
    }
}

/// Means of the assigned rows (in f64); an emptied cluster takes the row farthest from its centre.
fn update_centroids(
    data: &[f32],
    dim: usize,
    labels: &[usize],
    distances: &[f32],
    centroids: &mut [f32],
) {
    let k = centroids.len() / dim;
    let mut sums = vec![0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (row, &label) in data.chunks_exact(dim).zip(labels) {
        counts[label] += 1;
        sums[label * dim..(label + 1) * dim]
            .iter_mut()
            .zip(row)
            .for_each(|(s, &v)| *s += v as f64);
    }
    let mut by_distance: Vec<usize> = (0..labels.len()).collect();
    by_distance.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]));
    let mut spare = by_distance.into_iter();
    for c in 0..k {
        let centroid = &mut centroids[c * dim..(c + 1) * dim];
        if counts[c] > 0 {
            centroid
                .iter_mut()
                .zip(&sums[c * dim..(c + 1) * dim])
                .for_each(|(v, &s)| *v = (s / counts[c] as f64) as f32);
        } else if let Some(row) = spare.next() {
            centroid.copy_from_slice(&data[row * dim..(row + 1) * dim]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centres` (2-d), jittered by at most `spread`.
    fn blobs(centres: &[[f32; 2]], per: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for i in 0..per * centres.len() {
            let c = i % centres.len();
            for centre in centres[c] {
                data.push(centre + spread * (rng.uniform() as f32 - 0.5));
            }
            truth.push(c);
        }
        (data, truth)
    }

    /// Labels equal up to a renaming of clusters.
    fn same_partition(a: &[usize], b: &[usize]) -> bool {
        let mut map = std::collections::HashMap::new();
        a.iter()
            .zip(b)
            .all(|(x, y)| *map.entry(*x).or_insert(*y) == *y)
            && map.values().collect::<std::collections::HashSet<_>>().len() == map.len()
    }

    #[test]
    fn recovers_planted_clusters() {
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let (data, truth) = blobs(&centres, 50, 2.0, 1);
        let result = kmeans(&data, 2, &KMeansConfig::new(4));
        assert!(same_partition(&result.labels, &truth));
        for centre in centres {
            let closest = result
                .centroids
                .chunks_exact(2)
                .map(|c| (c[0] - centre[0]).hypot(c[1] - centre[1]))
                .fold(f32::INFINITY, f32::min);
            assert!(closest < 0.5, "centre {centre:?} off by {closest}");
        }
    }

    #[test]
    fn same_seed_same_answer_and_restarts_never_hurt() {
        let (data, _) = blobs(&[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], 40, 4.0, 2);
        let one = KMeansConfig {
            restarts: 1,
            ..KMeansConfig::new(5)
        };
        let a = kmeans(&data, 2, &one);
        let b = kmeans(&data, 2, &one);
        assert_eq!(a.labels, b.labels);
        let many = kmeans(&data, 2, &KMeansConfig::new(5));
        assert!(many.inertia <= a.inertia);
    }

    #[test]
    fn cosine_groups_by_direction_not_length() {
        // Two directions, lengths from 1 to 20: Euclidean would split by length.
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for i in 0..40 {
            let length = 1.0 + (i / 2) as f32;
            let (x, y) = if i % 2 == 0 { (1.0, 0.1) } else { (0.1, 1.0) };
            data.extend([x * length, y * length]);
            truth.push(i % 2);
        }
        let config = KMeansConfig {
            metric: Metric::Cosine,
            ..KMeansConfig::new(2)
        };
        assert!(same_partition(&kmeans(&data, 2, &config).labels, &truth));
    }

    #[test]
    fn elbow_stops_at_the_first_small_gain_and_keeps_that_k() {
        // Three well-separated clusters in 32 dimensions: splitting one further removes well under
        // 2.5% of the mean distance, so k = 4 triggers the stop and is the k kept.
        let dim = 32;
        let mut rng = Rng::new(4);
        let (mut data, mut truth) = (Vec::new(), Vec::new());
        for i in 0..180 {
            let c = i % 3;
            for d in 0..dim {
                let centre = if d % 3 == c { 30.0 } else { 0.0 };
                data.push(centre + rng.uniform() as f32 - 0.5);
            }
            truth.push(c);
        }
        let train: Vec<f32> = data
            .chunks_exact(dim)
            .step_by(5)
            .flatten()
            .copied()
            .collect();
        let result = elbow(&train, &data, dim, 14, 0.975, &KMeansConfig::new(1));
        assert_eq!(
            result.mean_distances.len(),
            4,
            "{:?}",
            result.mean_distances
        );
        assert_eq!(result.clustering.k, 4);
        let m = &result.mean_distances;
        assert!(m[1] < 0.975 * m[0] && m[2] < 0.975 * m[1] && m[3] > 0.975 * m[2]);
        // No label mixes two planted clusters.
        for (i, a) in result.labels.iter().enumerate() {
            for (j, b) in result.labels.iter().enumerate() {
                assert!(a != b || truth[i] == truth[j]);
            }
        }
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let same = vec![1.0f32; 20];
        let result = kmeans(&same, 2, &KMeansConfig::new(3));
        assert_eq!(result.labels.len(), 10);
        assert_eq!(result.inertia, 0.0);
        assert_eq!(kmeans(&[], 2, &KMeansConfig::new(3)).k, 0);
        assert_eq!(kmeans(&[1.0, 2.0], 2, &KMeansConfig::new(3)).k, 1);
    }
}
