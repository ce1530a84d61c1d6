//! SPair-71k keypoint pairs (`<root>/PairAnnotation/<split>/*.json`, images under
//! `<root>/JPEGImages/<category>/`), as read by DIFT's `eval_spair.py` and sd-dino's
//! `load_spair_data`, and their evaluation with bbox-normalised PCK.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::pck::{PairErrors, distance};

#[derive(Debug, thiserror::Error)]
pub enum SpairError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a SPair pair annotation: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("{}: no pair annotations (*.json)", path.display())]
    Empty { path: PathBuf },
}

/// The fields of a pair annotation that evaluation needs (others are ignored).
#[derive(serde::Deserialize)]
struct RawPair {
    src_imname: String,
    trg_imname: String,
    category: String,
    src_kps: Vec<Vec<f64>>,
    trg_kps: Vec<Vec<f64>>,
    trg_bndbox: Vec<f64>,
}

/// One annotated pair; points are pixel-index `(x, y)` in the original images, visible in both.
#[derive(Clone, Debug, PartialEq)]
pub struct SpairPair {
    /// Annotation file stem, e.g. `000001-2008_000585-2008_006019:aeroplane`.
    pub id: String,
    pub category: String,
    pub source_image: PathBuf,
    pub target_image: PathBuf,
    pub source_points: Vec<(f64, f64)>,
    pub target_points: Vec<(f64, f64)>,
    /// `[x1, y1, x2, y2]` of the target object.
    pub target_bbox: [f64; 4],
}

impl SpairPair {
    /// PCK length `L`: the larger side of the target bounding box.
    pub fn normalizer(&self) -> f64 {
        let [x1, y1, x2, y2] = self.target_bbox;
        (x2 - x1).max(y2 - y1)
    }
}

fn visible(point: &[f64]) -> Option<(f64, f64)> {
    match point {
        [x, y, ..] if x.is_finite() && y.is_finite() && *x >= 0.0 && *y >= 0.0 => Some((*x, *y)),
        _ => None,
    }
}

fn parse_pair(root: &Path, path: &Path) -> Result<SpairPair, SpairError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpairError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: RawPair = serde_json::from_str(&text).map_err(|source| SpairError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |detail: String| SpairError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    if raw.src_kps.len() != raw.trg_kps.len() {
        return Err(invalid(format!(
            "{} source keypoints but {} target keypoints",
            raw.src_kps.len(),
            raw.trg_kps.len()
        )));
    }
    let target_bbox: [f64; 4] = raw.trg_bndbox.as_slice().try_into().map_err(|_| {
        invalid(format!(
            "trg_bndbox has {} values, not 4",
            raw.trg_bndbox.len()
        ))
    })?;
    let (source_points, target_points) = raw
        .src_kps
        .iter()
        .zip(&raw.trg_kps)
        .filter_map(|(s, t)| Some((visible(s)?, visible(t)?)))
        .unzip();
    let images = root.join("JPEGImages").join(&raw.category);
    Ok(SpairPair {
        id: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source_image: images.join(&raw.src_imname),
        target_image: images.join(&raw.trg_imname),
        category: raw.category,
        source_points,
        target_points,
        target_bbox,
    })
}

/// Pairs of `split`, sorted by file name, at most `limit_per_category` per category.
pub fn load_pairs(
    root: &Path,
    split: &str,
    limit_per_category: Option<usize>,
) -> Result<Vec<SpairPair>, SpairError> {
    let dir = root.join("PairAnnotation").join(split);
    let io = |source| SpairError::Io {
        path: dir.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(SpairError::Empty { path: dir });
    }
    files.sort();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let mut pairs = Vec::new();
    for path in files {
        let pair = parse_pair(root, &path)?;
        let count = taken.entry(pair.category.clone()).or_default();
        if limit_per_category.is_none_or(|limit| *count < limit) {
            *count += 1;
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// End-point errors of `predict`'s target points (one per source point, pixel-index coordinates).
pub fn evaluate<E>(
    pairs: &[SpairPair],
    mut predict: impl FnMut(&SpairPair) -> Result<Vec<(f64, f64)>, E>,
) -> Result<Vec<PairErrors>, E> {
    pairs
        .iter()
        .map(|pair| {
            let predicted = predict(pair)?;
            debug_assert_eq!(predicted.len(), pair.target_points.len());
            Ok(PairErrors {
                category: pair.category.clone(),
                errors: predicted
                    .iter()
                    .zip(&pair.target_points)
                    .map(|(&p, &t)| distance(p, t))
                    .collect(),
                normalizer: pair.normalizer(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::pck::summarize;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spair_tiny")
    }

    #[test]
    fn loads_the_split_with_points_visible_in_both_images() {
        let pairs = load_pairs(&fixture(), "test", None).unwrap();
        let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "000001-2008_000001-2008_000002:cat",
                "000002-2008_000002-2008_000001:cat",
                "000003-2008_000003-2008_000004:dog"
            ]
        );
        // The fourth keypoint of pair 1 is (-1, -1) in the source: not visible, skipped.
        assert_eq!(pairs[0].source_points.len(), 3);
        assert_eq!(pairs[0].target_points[1], (10.0, 12.0));
        assert_eq!(pairs[0].normalizer(), 20.0);
        assert_eq!(pairs[2].normalizer(), 40.0);
        assert!(
            pairs[2]
                .target_image
                .ends_with("JPEGImages/dog/2008_000004.jpg")
        );
        assert!(pairs[2].target_image.exists());
        assert_eq!(load_pairs(&fixture(), "test", Some(1)).unwrap().len(), 2);
        assert_eq!(load_pairs(&fixture(), "trn", None).unwrap().len(), 1);
    }

    #[test]
    fn identity_predictions_give_the_hand_computed_pck() {
        // Predicting each source point as its own target position:
        // pair 1 (cat, L = 20): errors 1, 2, 0 -> 2 correct at 0.1 (< 2), 1 at 0.05 (< 1);
        // pair 2 (cat, L = 30): errors 1, 2, 0 -> 3 at 0.1 (< 3), 2 at 0.05 (< 1.5);
        // pair 3 (dog, L = 40): errors 5, 1 -> 1 at 0.1 (< 4), 1 at 0.05 (< 2).
        let pairs = load_pairs(&fixture(), "test", None).unwrap();
        let errors = evaluate(&pairs, |p| Ok::<_, ()>(p.source_points.clone())).unwrap();
        let s = summarize(&errors, &[0.1, 0.05]);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert_eq!(s.overall.points, 8);
        assert!(close(&s.overall.per_point, &[6.0 / 8.0, 4.0 / 8.0]));
        assert!(close(
            &s.overall.per_image,
            &[
                (2.0 / 3.0 + 1.0 + 0.5) / 3.0,
                (1.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0
            ]
        ));
        assert!(close(
            &s.per_category["cat"].per_point,
            &[5.0 / 6.0, 3.0 / 6.0]
        ));
        assert!(close(
            &s.category_mean_per_point,
            &[(5.0 / 6.0 + 0.5) / 2.0, 0.5]
        ));
    }

    #[test]
    fn a_broken_annotation_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let split = dir.path().join("PairAnnotation/test");
        std::fs::create_dir_all(&split).unwrap();
        std::fs::write(split.join("bad:cat.json"), r#"{"src_imname": "a.jpg"}"#).unwrap();
        let err = load_pairs(dir.path(), "test", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad:cat.json") && err.contains("trg_imname"),
            "{err}"
        );
        let err = load_pairs(dir.path(), "val", None).unwrap_err().to_string();
        assert!(err.contains("PairAnnotation/val"), "{err}");
    }
}
