//! Percentage of correct keypoints (as sd-dino's `pck_spair_pascal.py` and DIFT's SPair evaluation
//! compute it): a prediction is correct
//! when its distance to the truth is strictly below `alpha * L`, with `L` the larger side of the
//! target bounding box (SPair-71k) or of the image, in the frame the points are given in.

use std::collections::BTreeMap;

/// End-point errors of one image pair and the length `L` its thresholds scale with.
#[derive(Clone, Debug, PartialEq)]
pub struct PairErrors {
    pub category: String,
    /// Euclidean distance of each prediction to its ground truth, pixels.
    pub errors: Vec<f64>,
    pub normalizer: f64,
}

/// Euclidean distance between two `(x, y)` points.
pub fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

/// How many `errors` are strictly below `threshold`.
pub fn count_correct(errors: &[f64], threshold: f64) -> usize {
    errors.iter().filter(|&&e| e < threshold).count()
}

/// PCK of one group at each alpha: pooled over points and averaged over pairs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GroupPck {
    pub pairs: usize,
    pub points: usize,
    /// All points pooled (sd-dino, DIFT "per point"), one value per alpha.
    pub per_point: Vec<f64>,
    /// Mean over pairs of each pair's PCK (DIFT "per image"); pairs without points are skipped.
    pub per_image: Vec<f64>,
}

/// PCK overall, per category and averaged over categories.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PckSummary {
    pub alphas: Vec<f64>,
    pub overall: GroupPck,
    pub per_category: BTreeMap<String, GroupPck>,
    /// Unweighted mean over categories of their per-point PCK (how sd-dino and DIFT tabulate).
    pub category_mean_per_point: Vec<f64>,
    /// Unweighted mean over categories of their per-image PCK.
    pub category_mean_per_image: Vec<f64>,
}

fn group_pck(pairs: &[&PairErrors], alphas: &[f64]) -> GroupPck {
    let points = pairs.iter().map(|p| p.errors.len()).sum::<usize>();
    let scored: Vec<&&PairErrors> = pairs.iter().filter(|p| !p.errors.is_empty()).collect();
    let per_point = alphas
        .iter()
        .map(|&alpha| {
            let correct: usize = pairs
                .iter()
                .map(|p| count_correct(&p.errors, alpha * p.normalizer))
                .sum();
            ratio(correct as f64, points as f64)
        })
        .collect();
    let per_image = alphas
        .iter()
        .map(|&alpha| {
            let sum: f64 = scored
                .iter()
                .map(|p| {
                    count_correct(&p.errors, alpha * p.normalizer) as f64 / p.errors.len() as f64
                })
                .sum();
            ratio(sum, scored.len() as f64)
        })
        .collect();
    GroupPck {
        pairs: pairs.len(),
        points,
        per_point,
        per_image,
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

fn mean_over(
    groups: &BTreeMap<String, GroupPck>,
    pick: impl Fn(&GroupPck) -> &[f64],
    n: usize,
) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let values: Vec<f64> = groups.values().map(|g| pick(g)[i]).collect();
            ratio(values.iter().sum(), values.len() as f64)
        })
        .collect()
}

/// PCK at every alpha for a set of evaluated pairs.
pub fn summarize(pairs: &[PairErrors], alphas: &[f64]) -> PckSummary {
    let all: Vec<&PairErrors> = pairs.iter().collect();
    let mut by_category: BTreeMap<String, Vec<&PairErrors>> = BTreeMap::new();
    for pair in pairs {
        by_category
            .entry(pair.category.clone())
            .or_default()
            .push(pair);
    }
    let per_category: BTreeMap<String, GroupPck> = by_category
        .into_iter()
        .map(|(name, group)| (name, group_pck(&group, alphas)))
        .collect();
    PckSummary {
        alphas: alphas.to_vec(),
        overall: group_pck(&all, alphas),
        category_mean_per_point: mean_over(&per_category, |g| &g.per_point, alphas.len()),
        category_mean_per_image: mean_over(&per_category, |g| &g.per_image, alphas.len()),
        per_category,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(category: &str, errors: &[f64], normalizer: f64) -> PairErrors {
        PairErrors {
            category: category.into(),
            errors: errors.to_vec(),
            normalizer,
        }
    }

    #[test]
    fn the_threshold_is_strict() {
        assert_eq!(count_correct(&[0.0, 0.99, 1.0, 1.01], 1.0), 2);
    }

    #[test]
    fn per_point_per_image_and_category_means_differ_as_defined() {
        // Category a: pair 1 has 1 of 2 points within 0.1 * 100 = 10, pair 2 has 3 of 3 within 2.
        // Category b: one pair, 0 of 1 within 10.
        let pairs = [
            pair("a", &[5.0, 15.0], 100.0),
            pair("a", &[0.5, 1.0, 1.5], 20.0),
            pair("b", &[10.0], 100.0),
        ];
        let s = summarize(&pairs, &[0.1]);
        assert_eq!(s.overall.points, 6);
        assert!((s.overall.per_point[0] - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.overall.per_image[0] - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
        let a = &s.per_category["a"];
        assert!((a.per_point[0] - 4.0 / 5.0).abs() < 1e-12);
        assert!((a.per_image[0] - 0.75).abs() < 1e-12);
        assert!((s.category_mean_per_point[0] - (0.8 + 0.0) / 2.0).abs() < 1e-12);
        assert!((s.category_mean_per_image[0] - (0.75 + 0.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn pairs_without_points_do_not_count_per_image() {
        let s = summarize(&[pair("a", &[], 10.0), pair("a", &[0.0], 10.0)], &[0.1]);
        assert_eq!(s.overall.per_image, vec![1.0]);
        assert_eq!(s.overall.pairs, 2);
    }
}
