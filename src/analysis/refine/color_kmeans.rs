//! The k-means that seeds GrabCut's colour models, shaped like OpenCV's `cv::kmeans` as
//! `grabCut` calls it (`modules/core/src/kmeans.cpp`; one attempt, `KMEANS_PP_CENTERS`, 10
//! iterations): k-means++ seeding that draws 3 candidates per centre and keeps the one leaving
//! the lowest potential (Arthur & Vassilvitskii 2007, greedy variant), Lloyd updates in single
//! precision, and an empty cluster refilled with the point farthest from the centre of the
//! biggest one. The random stream is ours, so the clusters can differ from OpenCV's.

use crate::rng::Rng;

/// Candidates drawn per k-means++ centre (OpenCV's `SPP_TRIALS`).
const TRIALS: usize = 3;

fn distance(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    (0..3).map(|i| (a[i] - b[i]) * (a[i] - b[i])).sum()
}

/// Labels of `points` in `k` clusters after `iterations` passes (the first one seeds).
pub fn kmeans_labels(points: &[[f32; 3]], k: usize, iterations: usize, seed: u64) -> Vec<usize> {
    let n = points.len();
    if n == 0 || k == 0 {
        return vec![0; n];
    }
    let k = k.min(n);
    let mut rng = Rng::new(seed);
    let mut centres = seed_centres(points, k, &mut rng);
    let mut labels = vec![0usize; n];
    assign(points, &centres, &mut labels);
    for _ in 1..iterations.max(2) {
        let old = centres.clone();
        centres = update_centres(points, k, &mut labels);
        let shift = centres
            .iter()
            .zip(&old)
            .map(|(a, b)| distance(a, b))
            .fold(0f32, f32::max);
        assign(points, &centres, &mut labels);
        if shift <= f32::EPSILON * f32::EPSILON {
            break;
        }
    }
    labels
}

fn seed_centres(points: &[[f32; 3]], k: usize, rng: &mut Rng) -> Vec<[f32; 3]> {
    let n = points.len();
    let first = points[rng.below(n)];
    let mut centres = vec![first];
    let mut dist: Vec<f32> = points.iter().map(|p| distance(p, &first)).collect();
    let mut potential: f64 = dist.iter().map(|&d| f64::from(d)).sum();
    let mut trial = vec![0f32; n];
    let mut best = vec![0f32; n];
    for _ in 1..k {
        let mut best_potential = f64::MAX;
        let mut best_centre = None;
        for _ in 0..TRIALS {
            let mut p = rng.uniform() * potential;
            let mut chosen = n - 1;
            for (i, &d) in dist.iter().enumerate().take(n - 1) {
                p -= f64::from(d);
                if p <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            let candidate = points[chosen];
            let mut sum = 0f64;
            for ((t, p), &d) in trial.iter_mut().zip(points).zip(&dist) {
                *t = distance(p, &candidate).min(d);
                sum += f64::from(*t);
            }
            if sum < best_potential {
                best_potential = sum;
                best_centre = Some(candidate);
                std::mem::swap(&mut best, &mut trial);
            }
        }
        // All points coincide with chosen centres: any point will do.
        centres.push(best_centre.unwrap_or(first));
        if best_centre.is_some() {
            potential = best_potential;
            std::mem::swap(&mut dist, &mut best);
        }
    }
    centres
}

fn assign(points: &[[f32; 3]], centres: &[[f32; 3]], labels: &mut [usize]) {
    for (label, p) in labels.iter_mut().zip(points) {
        let mut best = 0;
        let mut best_distance = f32::MAX;
        for (c, centre) in centres.iter().enumerate() {
            let d = distance(p, centre);
            if d < best_distance {
                best_distance = d;
                best = c;
            }
        }
        *label = best;
    }
}

/// Cluster means; an empty cluster takes the point farthest from the centre of the biggest
/// cluster (whose label is changed).
fn update_centres(points: &[[f32; 3]], k: usize, labels: &mut [usize]) -> Vec<[f32; 3]> {
    let mut sums = vec![[0f64; 3]; k];
    let mut counts = vec![0usize; k];
    for (p, &l) in points.iter().zip(labels.iter()) {
        counts[l] += 1;
        for i in 0..3 {
            sums[l][i] += f64::from(p[i]);
        }
    }
    for empty in 0..k {
        if counts[empty] != 0 {
            continue;
        }
        let biggest = (0..k).max_by_key(|&c| counts[c]).unwrap_or(0);
        let centre = mean(&sums[biggest], counts[biggest]);
        let farthest = points
            .iter()
            .enumerate()
            .filter(|&(i, _)| labels[i] == biggest)
            .map(|(i, p)| (i, distance(p, &centre)))
            .fold(
                (None, -1f32),
                |acc, (i, d)| if d > acc.1 { (Some(i), d) } else { acc },
            )
            .0;
        if let Some(i) = farthest {
            counts[biggest] -= 1;
            counts[empty] += 1;
            for c in 0..3 {
                sums[biggest][c] -= f64::from(points[i][c]);
                sums[empty][c] += f64::from(points[i][c]);
            }
            labels[i] = empty;
        }
    }
    (0..k).map(|c| mean(&sums[c], counts[c])).collect()
}

fn mean(sum: &[f64; 3], count: usize) -> [f32; 3] {
    let n = count.max(1) as f64;
    [
        (sum[0] / n) as f32,
        (sum[1] / n) as f32,
        (sum[2] / n) as f32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_well_apart_groups() {
        let groups = [[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0]];
        let points: Vec<[f32; 3]> = (0..90)
            .map(|i| {
                let g = groups[i % 3];
                [g[0] + (i % 5) as f32, g[1] - (i % 7) as f32, g[2]]
            })
            .collect();
        for seed in 0..5 {
            let labels = kmeans_labels(&points, 3, 10, seed);
            for i in 0..90 {
                assert_eq!(labels[i], labels[i % 3], "seed {seed} point {i}");
            }
            assert_ne!(labels[0], labels[1]);
            assert_ne!(labels[1], labels[2]);
            assert_ne!(labels[0], labels[2]);
        }
    }

    #[test]
    fn more_clusters_than_distinct_points_still_labels_everything() {
        let points = vec![[1.0, 2.0, 3.0]; 4];
        let labels = kmeans_labels(&points, 5, 10, 0);
        assert_eq!(labels.len(), 4);
        assert!(labels.iter().all(|&l| l < 5));
        assert!(kmeans_labels(&[], 5, 10, 0).is_empty());
    }
}
