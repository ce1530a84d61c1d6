//! Descriptor similarity (cosine, as dino-vit-features' `chunk_cosine_sim` and sd-dino): one query
//! against a map
//! (a single matrix-vector product on rows prepared once) and nearest neighbours between two maps,
//! computed in row chunks (gemm) so the full `t1 x t2` matrix is never held when it is large.

use rayon::prelude::*;

use crate::analysis::features::{FeatureMap, l2_normalize_rows};
use crate::linalg::dot_rows;

/// How two descriptors are compared; a larger score always means more similar.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Score {
    /// Cosine similarity (dino-vit-features, DIFT, DINO-only sd-dino).
    #[value(name = "cos")]
    Cosine,
    /// Negative Euclidean distance (sd-dino's fused matching).
    #[value(name = "l2")]
    NegativeL2,
}

/// Descriptors prepared once for repeated scoring: unit rows for cosine, raw rows and their squared
/// norms for L2. Build it when a map is computed and keep it; every query then costs one mat-vec.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringRows {
    pub score: Score,
    pub dim: usize,
    rows: Vec<f32>,
    squared_norms: Vec<f32>,
}

impl ScoringRows {
    /// Prepares `[n, dim]` row-major descriptors for `score`.
    pub fn new(data: &[f32], dim: usize, score: Score) -> Self {
        let mut rows = data.to_vec();
        if score == Score::Cosine {
            l2_normalize_rows(&mut rows, dim);
        }
        let squared_norms = rows
            .chunks_exact(dim.max(1))
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        ScoringRows {
            score,
            dim,
            rows,
            squared_norms,
        }
    }

    pub fn from_map(map: &FeatureMap, score: Score) -> Self {
        ScoringRows::new(&map.data, map.dim, score)
    }

    pub fn len(&self) -> usize {
        self.squared_norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.squared_norms.is_empty()
    }

    /// Prepared row `index` (unit length for cosine).
    pub fn row(&self, index: usize) -> &[f32] {
        &self.rows[index * self.dim..(index + 1) * self.dim]
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ScoringRows {
        ScoringRows {
            score: self.score,
            dim: self.dim,
            rows: indices.iter().flat_map(|&i| self.row(i)).copied().collect(),
            squared_norms: indices.iter().map(|&i| self.squared_norms[i]).collect(),
        }
    }

    /// Turns dot products `dots[i * n + j] = a_i . b_j` into scores in place.
    fn finish_scores(&self, a_norms: &[f32], dots: &mut [f32]) {
        if self.score == Score::NegativeL2 {
            let n = self.len();
            dots.par_chunks_mut(n.max(1))
                .zip(a_norms.par_iter())
                .for_each(|(row, &a2)| {
                    for (d, &b2) in row.iter_mut().zip(&self.squared_norms) {
                        *d = -(a2 + b2 - 2.0 * *d).max(0.0).sqrt();
                    }
                });
        }
    }
}

/// Score of every row of `target` against one query descriptor.
pub fn scores_to_query(target: &ScoringRows, query: &[f32]) -> Vec<f32> {
    assert_eq!(
        query.len(),
        target.dim,
        "query and rows have the same length"
    );
    let query = ScoringRows::new(query, target.dim, target.score);
    let mut out = dot_rows(&target.rows, &query.rows, target.dim);
    if target.score == Score::NegativeL2 {
        let q2 = query.squared_norms[0];
        for (d, &b2) in out.iter_mut().zip(&target.squared_norms) {
            *d = -(q2 + b2 - 2.0 * *d).max(0.0).sqrt();
        }
    }
    out
}

/// Best match of every row of `a` in `b` (`forward`) and of every row of `b` in `a` (`backward`),
/// with their scores. Ties go to the lowest index.
#[derive(Clone, Debug, PartialEq)]
pub struct NearestNeighbors {
    pub forward: Vec<usize>,
    pub forward_score: Vec<f32>,
    pub backward: Vec<usize>,
    pub backward_score: Vec<f32>,
}

/// Largest score block held at once (bytes); the full matrix is used when it fits.
const CHUNK_BYTES: usize = 64 << 20;
/// Columns one worker scans when updating the backward maxima.
const COLUMN_BLOCK: usize = 256;

/// Nearest neighbours both ways between two prepared maps (`chunk_cosine_sim` + the two argmaxes
/// of dino-vit-features, or sd-dino's negative-L2 NN), a chunk of rows of `a` at a time.
pub fn nearest_neighbors(a: &ScoringRows, b: &ScoringRows) -> NearestNeighbors {
    assert_eq!(a.dim, b.dim, "both maps have the same descriptor length");
    assert_eq!(
        a.score, b.score,
        "both maps are prepared for the same score"
    );
    let (na, nb) = (a.len(), b.len());
    let mut out = NearestNeighbors {
        forward: vec![0; na],
        forward_score: vec![f32::NEG_INFINITY; na],
        backward: vec![0; nb],
        backward_score: vec![f32::NEG_INFINITY; nb],
    };
    if na == 0 || nb == 0 {
        return out;
    }
    let chunk_rows = (CHUNK_BYTES / 4 / nb).clamp(1, na);
    for start in (0..na).step_by(chunk_rows) {
        let rows = (na - start).min(chunk_rows);
        let mut block = dot_rows(
            &a.rows[start * a.dim..(start + rows) * a.dim],
            &b.rows,
            a.dim,
        );
        b.finish_scores(&a.squared_norms[start..start + rows], &mut block);
        block
            .par_chunks(nb)
            .zip(out.forward[start..start + rows].par_iter_mut())
            .zip(out.forward_score[start..start + rows].par_iter_mut())
            .for_each(|((row, best), best_score)| {
                for (j, &s) in row.iter().enumerate() {
                    if s > *best_score {
                        *best_score = s;
                        *best = j;
                    }
                }
            });
        let block = &block;
        out.backward
            .par_chunks_mut(COLUMN_BLOCK)
            .zip(out.backward_score.par_chunks_mut(COLUMN_BLOCK))
            .enumerate()
            .for_each(|(c, (best, best_score))| {
                let c0 = c * COLUMN_BLOCK;
                for r in 0..rows {
                    let row = &block[r * nb + c0..r * nb + c0 + best.len()];
                    for (j, &s) in row.iter().enumerate() {
                        if s > best_score[j] {
                            best_score[j] = s;
                            best[j] = start + r;
                        }
                    }
                }
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_scores(a: &[f32], b: &[f32], dim: usize, score: Score) -> Vec<Vec<f32>> {
        a.chunks(dim)
            .map(|x| {
                b.chunks(dim)
                    .map(|y| match score {
                        Score::Cosine => {
                            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
                            let nx = x.iter().map(|v| v * v).sum::<f32>().sqrt();
                            let ny = y.iter().map(|v| v * v).sum::<f32>().sqrt();
                            dot / (nx * ny)
                        }
                        Score::NegativeL2 => -x
                            .iter()
                            .zip(y)
                            .map(|(p, q)| (p - q) * (p - q))
                            .sum::<f32>()
                            .sqrt(),
                    })
                    .collect()
            })
            .collect()
    }

    /// Uniform-ish values in [-1, 1), a different stream per seed.
    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    #[test]
    fn query_scores_match_the_definitions() {
        let dim = 7;
        let rows = pseudo_random(13 * dim, 1);
        let query = pseudo_random(dim, 2);
        for score in [Score::Cosine, Score::NegativeL2] {
            let expected = naive_scores(&query, &rows, dim, score).remove(0);
            let got = scores_to_query(&ScoringRows::new(&rows, dim, score), &query);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-4, "{score:?}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn chunked_neighbours_match_a_full_matrix_both_ways() {
        let dim = 5;
        let a = pseudo_random(700 * dim, 3);
        let b = pseudo_random(900 * dim, 4);
        for score in [Score::Cosine, Score::NegativeL2] {
            let full = naive_scores(&a, &b, dim, score);
            let nn = nearest_neighbors(
                &ScoringRows::new(&a, dim, score),
                &ScoringRows::new(&b, dim, score),
            );
            for (i, row) in full.iter().enumerate() {
                let best = row[nn.forward[i]];
                assert!(row.iter().all(|&s| s <= best + 1e-5), "{score:?} row {i}");
                assert!((nn.forward_score[i] - best).abs() < 1e-4);
            }
            for j in 0..b.len() / dim {
                let best = full[nn.backward[j]][j];
                assert!(
                    full.iter().all(|row| row[j] <= best + 1e-5),
                    "{score:?} col {j}"
                );
            }
        }
    }

    #[test]
    fn ties_go_to_the_first_index() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
        let nn = nearest_neighbors(
            &ScoringRows::new(&a, 2, Score::Cosine),
            &ScoringRows::new(&b, 2, Score::Cosine),
        );
        assert_eq!(nn.forward, vec![1]);
        assert_eq!(nn.backward, vec![0, 0, 0]);
    }

    #[test]
    fn zero_descriptors_score_zero_under_cosine() {
        let rows = ScoringRows::new(&[0.0, 0.0, 3.0, 4.0], 2, Score::Cosine);
        assert_eq!(scores_to_query(&rows, &[3.0, 4.0]), vec![0.0, 1.0]);
    }
}
