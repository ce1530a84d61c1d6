//! Why two images match, patch by patch: their mutual nearest-neighbour patches ("best buddies",
//! dino-vit-features' `correspondences.py`; Amir et al., "Deep ViT Features as Dense Visual
//! Descriptors", 2022), each patch's best cosine similarity in the other image (a heatmap over its
//! grid), and a score for the pair of images.

use crate::analysis::correspond::mutual_nearest;
use crate::analysis::similarity::{Score, ScoringRows, nearest_neighbors};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatchExplainError {
    #[error("patches are compared by cosine similarity; these descriptors are prepared for {0:?}")]
    NotCosine(Score),
    #[error("descriptors of length {query} and {result} cannot be compared")]
    DimensionMismatch { query: usize, result: usize },
    #[error("an image without patches has nothing to match")]
    NoPatches,
}

/// Two patches that are each other's nearest neighbour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchPair {
    /// Patch of the query image (its grid, row-major).
    pub query: usize,
    /// Patch of the result image.
    pub result: usize,
    pub similarity: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatchExplanation {
    /// Mutual nearest neighbours by decreasing similarity (equal ones by query patch).
    pub pairs: Vec<PatchPair>,
    /// Each query patch's best similarity to any result patch, over the query grid.
    pub query_best: Vec<f32>,
    /// Each result patch's best similarity to any query patch, over the result grid.
    pub result_best: Vec<f32>,
    /// Mean similarity of the pairs (their count is `pairs.len()`, at least 1 for finite
    /// scores: the most similar pair of patches is always mutual); 0 when there are none.
    pub mean_similarity: f32,
}

/// Explains the match of two images from their patch descriptors prepared for cosine
/// similarity: one nearest-neighbour search both ways ([`nearest_neighbors`]), its mutual pairs
/// ([`mutual_nearest`]) and best scores.
pub fn explain_match(
    query: &ScoringRows,
    result: &ScoringRows,
) -> Result<MatchExplanation, MatchExplainError> {
    for rows in [query, result] {
        if rows.score != Score::Cosine {
            return Err(MatchExplainError::NotCosine(rows.score));
        }
    }
    if query.dim != result.dim {
        return Err(MatchExplainError::DimensionMismatch {
            query: query.dim,
            result: result.dim,
        });
    }
    if query.is_empty() || result.is_empty() {
        return Err(MatchExplainError::NoPatches);
    }
    let nn = nearest_neighbors(query, result);
    let mut pairs: Vec<PatchPair> = mutual_nearest(&nn)
        .into_iter()
        .map(|i| PatchPair {
            query: i,
            result: nn.forward[i],
            similarity: nn.forward_score[i],
        })
        .collect();
    // Stable: equal similarities keep the query order mutual_nearest gives.
    pairs.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let total: f64 = pairs.iter().map(|p| p.similarity as f64).sum();
    let mean_similarity = if pairs.is_empty() {
        0.0
    } else {
        (total / pairs.len() as f64) as f32
    };
    Ok(MatchExplanation {
        pairs,
        query_best: nn.forward_score,
        result_best: nn.backward_score,
        mean_similarity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n * dim)
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect()
    }

    fn cosine_rows(data: &[f32], dim: usize) -> ScoringRows {
        ScoringRows::new(data, dim, Score::Cosine)
    }

    /// Brute-force cosine matrix `[a rows][b rows]` in f64.
    fn cosines(a: &[f32], b: &[f32], dim: usize) -> Vec<Vec<f64>> {
        let norm = |x: &[f32]| x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        a.chunks(dim)
            .map(|x| {
                b.chunks(dim)
                    .map(|y| {
                        let dot: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
                        dot / (norm(x) * norm(y))
                    })
                    .collect()
            })
            .collect()
    }

    fn argmax(values: impl Iterator<Item = f64>) -> (usize, f64) {
        values
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
                if v > best.1 { (i, v) } else { best }
            })
    }

    #[test]
    fn matches_a_brute_force_cosine_matrix() {
        let dim = 8;
        let (a, b) = (random(30, dim, 1), random(45, dim, 2));
        let matrix = cosines(&a, &b, dim);
        let explained = explain_match(&cosine_rows(&a, dim), &cosine_rows(&b, dim)).unwrap();
        let forward: Vec<(usize, f64)> = matrix
            .iter()
            .map(|row| argmax(row.iter().copied()))
            .collect();
        let backward: Vec<(usize, f64)> = (0..45)
            .map(|j| argmax(matrix.iter().map(|row| row[j])))
            .collect();
        let mut expected: Vec<(usize, usize)> = (0..30)
            .filter(|&i| backward[forward[i].0].0 == i)
            .map(|i| (i, forward[i].0))
            .collect();
        let mut got: Vec<(usize, usize)> = explained
            .pairs
            .iter()
            .map(|p| (p.query, p.result))
            .collect();
        got.sort_unstable();
        expected.sort_unstable();
        assert!(!expected.is_empty());
        assert_eq!(got, expected);
        for pair in &explained.pairs {
            assert!((pair.similarity as f64 - matrix[pair.query][pair.result]).abs() < 1e-5);
        }
        assert!(
            explained
                .pairs
                .windows(2)
                .all(|w| w[0].similarity >= w[1].similarity)
        );
        for (got, (_, want)) in explained.query_best.iter().zip(&forward) {
            assert!((*got as f64 - want).abs() < 1e-5);
        }
        for (got, (_, want)) in explained.result_best.iter().zip(&backward) {
            assert!((*got as f64 - want).abs() < 1e-5);
        }
        let mean = expected.iter().map(|&(i, j)| matrix[i][j]).sum::<f64>() / expected.len() as f64;
        assert!((explained.mean_similarity as f64 - mean).abs() < 1e-5);
    }

    #[test]
    fn swapping_the_images_swaps_the_pairs_and_the_heatmaps() {
        let dim = 6;
        let (a, b) = (random(25, dim, 3), random(20, dim, 4));
        let (a, b) = (cosine_rows(&a, dim), cosine_rows(&b, dim));
        let forward = explain_match(&a, &b).unwrap();
        let backward = explain_match(&b, &a).unwrap();
        let sorted = |pairs: Vec<(usize, usize, f32)>| {
            let mut pairs = pairs;
            pairs.sort_by_key(|&(q, r, _)| (q, r));
            pairs
        };
        let there = sorted(
            forward
                .pairs
                .iter()
                .map(|p| (p.query, p.result, p.similarity))
                .collect(),
        );
        let back = sorted(
            backward
                .pairs
                .iter()
                .map(|p| (p.result, p.query, p.similarity))
                .collect(),
        );
        assert_eq!(there.len(), back.len());
        for (x, y) in there.iter().zip(&back) {
            assert_eq!((x.0, x.1), (y.0, y.1));
            assert!((x.2 - y.2).abs() < 1e-6);
        }
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6);
        assert!(close(&forward.query_best, &backward.result_best));
        assert!(close(&forward.result_best, &backward.query_best));
        assert!((forward.mean_similarity - backward.mean_similarity).abs() < 1e-6);
    }

    #[test]
    fn an_image_against_itself_pairs_every_patch_with_itself() {
        let dim = 8;
        let a = cosine_rows(&random(40, dim, 5), dim);
        let explained = explain_match(&a, &a).unwrap();
        assert_eq!(explained.pairs.len(), 40);
        assert!(explained.pairs.iter().all(|p| p.query == p.result));
        assert!(
            explained
                .pairs
                .iter()
                .all(|p| (p.similarity - 1.0).abs() < 1e-6)
        );
        assert!(explained.query_best.iter().all(|s| (s - 1.0).abs() < 1e-6));
        assert!((explained.mean_similarity - 1.0).abs() < 1e-6);
    }

    #[test]
    fn incomparable_descriptors_are_refused() {
        let cosine = cosine_rows(&[1.0, 0.0, 0.0, 1.0], 2);
        let l2 = ScoringRows::new(&[1.0, 0.0], 2, Score::NegativeL2);
        assert_eq!(
            explain_match(&cosine, &l2),
            Err(MatchExplainError::NotCosine(Score::NegativeL2))
        );
        let longer = cosine_rows(&[1.0, 0.0, 0.0], 3);
        assert_eq!(
            explain_match(&cosine, &longer),
            Err(MatchExplainError::DimensionMismatch {
                query: 2,
                result: 3
            })
        );
        let empty = cosine_rows(&[], 2);
        assert_eq!(
            explain_match(&empty, &cosine),
            Err(MatchExplainError::NoPatches)
        );
    }
}
