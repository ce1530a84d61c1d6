//! Weighted k-nearest-neighbour classification as DINO evaluates frozen features (Caron et al.
//! 2021, `eval_knn.py` in facebookresearch/dino): features L2-normalised, the `k` most
//! cosine-similar training features vote for their labels with weight `exp(similarity / T)`, and
//! the class with the largest total wins.

use crate::linalg::dot_rows;

/// DINO's defaults: k = 20 ("usually working the best"), T = 0.07.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 20,
            temperature: 0.07,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KnnError {
    #[error("k must be at least 1")]
    ZeroK,
    #[error("the temperature must be a positive number, got {0}")]
    Temperature(f32),
    #[error("no training features")]
    NoTraining,
    #[error("{features} feature values are not whole rows of {dim}")]
    Shape { features: usize, dim: usize },
    #[error("{labels} labels for {rows} training rows")]
    Labels { labels: usize, rows: usize },
}

/// Rows of `features` (`dim` values each) scaled to unit length (zero rows stay zero).
pub fn l2_normalized(features: &[f32], dim: usize) -> Vec<f32> {
    let mut out = features.to_vec();
    for row in out.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        // torch.nn.functional.normalize's floor on the norm.
        let norm = norm.max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// The class scores of each test row (`classes` values per row) and the predicted class.
pub struct KnnResult {
    pub scores: Vec<f32>,
    pub predictions: Vec<usize>,
}

pub fn knn_classify(
    train: &[f32],
    train_labels: &[usize],
    test: &[f32],
    dim: usize,
    classes: usize,
    config: KnnConfig,
) -> Result<KnnResult, KnnError> {
    if config.k == 0 {
        return Err(KnnError::ZeroK);
    }
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return Err(KnnError::Temperature(config.temperature));
    }
    for len in [train.len(), test.len()] {
        if dim == 0 || !len.is_multiple_of(dim) {
            return Err(KnnError::Shape { features: len, dim });
        }
    }
    let rows = train.len() / dim;
    if rows == 0 {
        return Err(KnnError::NoTraining);
    }
    if train_labels.len() != rows {
        return Err(KnnError::Labels {
            labels: train_labels.len(),
            rows,
        });
    }
    let classes = classes.max(train_labels.iter().max().map_or(0, |m| m + 1));
    let k = config.k.min(rows);
    let similarities = dot_rows(&l2_normalized(test, dim), &l2_normalized(train, dim), dim);
    let mut scores = Vec::with_capacity(test.len() / dim * classes);
    let mut predictions = Vec::with_capacity(test.len() / dim);
    for row in similarities.chunks(rows) {
        let mut order: Vec<usize> = (0..rows).collect();
        // Most similar first; ties by training index, as a stable top-k keeps them.
        order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let mut class_scores = vec![0f32; classes];
        for &neighbour in &order[..k] {
            class_scores[train_labels[neighbour]] += (row[neighbour] / config.temperature).exp();
        }
        let best = (0..classes)
            .max_by(|&a, &b| class_scores[a].total_cmp(&class_scores[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        predictions.push(best);
        scores.extend_from_slice(&class_scores);
    }
    Ok(KnnResult {
        scores,
        predictions,
    })
}

/// One neighbour of a query: its row in the bank and its cosine similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub row: usize,
    pub similarity: f32,
}

/// For each query row, the `k` rows of `bank` most cosine-similar to it, most similar first (ties
/// by row), as [`knn_classify`] ranks the voters.
pub fn nearest(bank: &[f32], queries: &[f32], dim: usize, k: usize) -> Vec<Vec<Neighbour>> {
    if dim == 0 {
        return Vec::new();
    }
    let rows = bank.len() / dim;
    let bank = &bank[..rows * dim];
    let queries = &queries[..queries.len() / dim * dim];
    let k = k.min(rows);
    if k == 0 {
        return vec![Vec::new(); queries.len() / dim];
    }
    let similarities = dot_rows(&l2_normalized(queries, dim), &l2_normalized(bank, dim), dim);
    similarities
        .chunks(rows)
        .map(|row| {
            let mut order: Vec<usize> = (0..rows).collect();
            let by_similarity = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            order.select_nth_unstable_by(k - 1, by_similarity);
            order.truncate(k);
            order.sort_by(by_similarity);
            order
                .into_iter()
                .map(|r| Neighbour {
                    row: r,
                    similarity: row[r],
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ranks_the_bank_by_cosine_similarity() {
        let bank = [1.0, 0.0, 0.0, 2.0, 3.0, 3.0, -1.0, 0.0];
        let found = nearest(&bank, &[1.0, 0.1, 0.0, -5.0], 2, 3);
        let rows: Vec<Vec<usize>> = found
            .iter()
            .map(|n| n.iter().map(|n| n.row).collect())
            .collect();
        assert_eq!(rows, [vec![0, 2, 1], vec![0, 3, 2]]);
        assert!((found[0][1].similarity - (1.1 / (1.01f32.sqrt() * 2f32.sqrt()))).abs() < 1e-6);
        assert!(nearest(&bank, &[1.0, 0.0], 2, 0)[0].is_empty());
    }

    #[test]
    fn the_nearest_neighbours_vote_with_exponential_weights() {
        // Two training points per class on the unit circle; the test point sits near class 1.
        let train = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        let labels = [0, 0, 1, 1];
        let test = [0.2, 1.0];
        let config = KnnConfig {
            k: 3,
            temperature: 0.5,
        };
        let result = knn_classify(&train, &labels, &test, 2, 2, config).unwrap();
        assert_eq!(result.predictions, [1]);
        // By hand: cosine similarities of the three nearest, exp(s / T) summed per class.
        let unit = |x: f32, y: f32| {
            let n = (x * x + y * y).sqrt();
            (x / n, y / n)
        };
        let t = unit(0.2, 1.0);
        let cos = |x: f32, y: f32| {
            let u = unit(x, y);
            u.0 * t.0 + u.1 * t.1
        };
        let class1 = (cos(0.0, 1.0) / 0.5).exp() + (cos(0.1, 0.9) / 0.5).exp();
        let class0 = (cos(0.9, 0.1) / 0.5).exp();
        assert!((result.scores[1] - class1).abs() < 1e-5);
        assert!((result.scores[0] - class0).abs() < 1e-5);
    }

    #[test]
    fn bad_settings_are_errors() {
        let cfg = |k, temperature| KnnConfig { k, temperature };
        let train = [1.0, 0.0];
        assert_eq!(
            knn_classify(&train, &[0], &train, 2, 1, cfg(0, 0.07)).err(),
            Some(KnnError::ZeroK)
        );
        assert_eq!(
            knn_classify(&train, &[0], &train, 2, 1, cfg(1, 0.0)).err(),
            Some(KnnError::Temperature(0.0))
        );
        assert_eq!(
            knn_classify(&train, &[0, 1], &train, 2, 1, cfg(1, 0.07)).err(),
            Some(KnnError::Labels { labels: 2, rows: 1 })
        );
    }
}
