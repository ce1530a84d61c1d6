//! One read-out of an embedded image set, as the command line and the app report it: the labelled
//! rows split into training and test, a classifier (DINO's k-NN or logistic regression) fitted on
//! the first and scored on the second, with accuracy, per-class accuracy and the confusion matrix.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::embed::{LabelledImages, Subset};
use super::knn::{KnnConfig, KnnError, knn_classify};
use super::logistic::{self, LogisticConfig, LogisticError};
use super::split::{SplitError, train_test_split};

/// How the labelled rows are split when the folder has no `train/` and `val/`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitSettings {
    /// Share held out for testing (scikit-learn's `test_size`).
    pub test_size: f64,
    /// scikit-learn's `random_state`.
    pub seed: u32,
}

impl Default for SplitSettings {
    /// The DINOv2 article's Omniglot example: 70 / 30 with seed 42.
    fn default() -> Self {
        SplitSettings {
            test_size: 0.3,
            seed: 42,
        }
    }
}

/// The classifier read out of the features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Classifier {
    Knn(KnnConfig),
    Logistic(LogisticConfig),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadoutError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Knn(#[from] KnnError),
    #[error(transparent)]
    Logistic(#[from] LogisticError),
    #[error("{train} training and {test} test images; both are needed")]
    Empty { train: usize, test: usize },
    #[error("{values} feature values for {images} images of {dim} features")]
    Shape {
        values: usize,
        images: usize,
        dim: usize,
    },
}

/// Accuracy, per-class accuracy, the confusion matrix and every test prediction.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct ReadoutReport {
    pub accuracy: f64,
    pub classes: Vec<String>,
    /// `None` for a class with no test image.
    pub per_class_accuracy: Vec<Option<f64>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub train: Vec<PathBuf>,
    /// The rows of the training images in the embedded set.
    pub train_rows: Vec<usize>,
    pub test: Vec<TestPrediction>,
    /// Logistic regression only: L-BFGS stopped at its iteration limit before its tolerance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_converged: bool,
}

#[derive(Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct TestPrediction {
    pub path: PathBuf,
    /// The image's row in the embedded set.
    pub row: usize,
    pub label: usize,
    pub predicted: usize,
}

impl ReadoutReport {
    /// The test predictions in the confusion matrix's cell (`label`, `predicted`).
    pub fn cell(&self, label: usize, predicted: usize) -> impl Iterator<Item = &TestPrediction> {
        self.test
            .iter()
            .filter(move |p| p.label == label && p.predicted == predicted)
    }

    pub fn misclassified(&self) -> impl Iterator<Item = &TestPrediction> {
        self.test.iter().filter(|p| p.label != p.predicted)
    }
}

/// The labelled rows of `images` as (train, test) row numbers: the folder's `train/` and `val/`
/// when it has them, else `train_test_split` over the labelled rows in path order.
pub fn split_rows(
    images: &LabelledImages,
    split: SplitSettings,
) -> Result<(Vec<usize>, Vec<usize>), SplitError> {
    let labelled: Vec<usize> = (0..images.paths.len())
        .filter(|&i| images.labels.get(i).is_some_and(Option::is_some))
        .collect();
    if let Some(subsets) = &images.subsets {
        let of = |want: Subset| -> Vec<usize> {
            labelled
                .iter()
                .copied()
                .filter(|&i| subsets.get(i) == Some(&want))
                .collect()
        };
        return Ok((of(Subset::Train), of(Subset::Val)));
    }
    let shuffled = train_test_split(labelled.len(), split.test_size, split.seed)?;
    let rows = |positions: Vec<usize>| positions.into_iter().map(|p| labelled[p]).collect();
    Ok((rows(shuffled.train), rows(shuffled.test)))
}

/// The rows `rows` of `values` (`dim` values each), in that order.
pub fn rows_of(values: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| values[r * dim..(r + 1) * dim].iter().copied())
        .collect()
}

/// Splits the labelled images of `images` (features `values`, `dim` per image), fits `classifier`
/// on the training rows and reports on the test rows.
pub fn read_out(
    images: &LabelledImages,
    values: &[f32],
    dim: usize,
    split: SplitSettings,
    classifier: Classifier,
) -> Result<ReadoutReport, ReadoutError> {
    let n = images.paths.len();
    if dim == 0 || values.len() != n * dim || images.labels.len() != n {
        return Err(ReadoutError::Shape {
            values: values.len(),
            images: n,
            dim,
        });
    }
    let classes = images.classes.len();
    let (train, test) = split_rows(images, split)?;
    if train.is_empty() || test.is_empty() {
        return Err(ReadoutError::Empty {
            train: train.len(),
            test: test.len(),
        });
    }
    let label = |i: usize| images.labels[i].unwrap_or_default();
    let train_labels: Vec<usize> = train.iter().map(|&i| label(i)).collect();
    let train_features = rows_of(values, dim, &train);
    let test_features = rows_of(values, dim, &test);
    let (predictions, not_converged) = match classifier {
        Classifier::Knn(config) => {
            let result = knn_classify(
                &train_features,
                &train_labels,
                &test_features,
                dim,
                classes,
                config,
            )?;
            (result.predictions, false)
        }
        Classifier::Logistic(config) => {
            let model = logistic::fit(&train_features, &train_labels, dim, classes, config)?;
            (model.predict(&test_features), !model.converged)
        }
    };
    let classes = classes.max(predictions.iter().max().map_or(0, |m| m + 1));
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&row, &predicted) in test.iter().zip(&predictions) {
        confusion[label(row)][predicted] += 1;
    }
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            (total > 0).then(|| row[c] as f64 / total as f64)
        })
        .collect();
    Ok(ReadoutReport {
        accuracy: correct as f64 / test.len() as f64,
        classes: images.classes.clone(),
        per_class_accuracy,
        confusion,
        train: train.iter().map(|&i| images.paths[i].clone()).collect(),
        test: test
            .iter()
            .zip(predictions)
            .map(|(&row, predicted)| TestPrediction {
                path: images.paths[row].clone(),
                row,
                label: label(row),
                predicted,
            })
            .collect(),
        train_rows: train,
        not_converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[usize]) -> LabelledImages {
        LabelledImages {
            paths: (0..labels.len())
                .map(|i| PathBuf::from(format!("{i}.png")))
                .collect(),
            labels: labels.iter().map(|&l| Some(l)).collect(),
            classes: vec!["a".into(), "b".into()],
            subsets: None,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_confusion_matrix_counts_every_test_image_once() {
        // Class 0 along x, class 1 along y, one class-1 image placed on the x axis.
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let mut values = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let on_x = l == 0 || i == 9;
            values.extend(if on_x {
                [1.0, 0.01 * i as f32]
            } else {
                [0.01 * i as f32, 1.0]
            });
        }
        let config = KnnConfig {
            k: 1,
            temperature: 0.07,
        };
        let report = read_out(
            &set(&labels),
            &values,
            2,
            SplitSettings {
                test_size: 0.5,
                seed: 0,
            },
            Classifier::Knn(config),
        )
        .unwrap();
        let total: usize = report.confusion.iter().flatten().sum();
        assert_eq!(total, report.test.len());
        assert_eq!(report.test.len() + report.train_rows.len(), labels.len());
        for p in &report.test {
            assert_eq!(p.label, labels[p.row]);
            let on_x = p.label == 0 || p.row == 9;
            assert_eq!(p.predicted, if on_x { 0 } else { 1 });
        }
        let correct = report
            .test
            .iter()
            .filter(|p| p.label == p.predicted)
            .count();
        assert_eq!(report.accuracy, correct as f64 / report.test.len() as f64);
        assert_eq!(
            report.misclassified().count(),
            report.confusion[1][0] + report.confusion[0][1]
        );
        assert_eq!(report.cell(1, 1).count(), report.confusion[1][1]);
    }

    #[test]
    fn train_and_val_folders_are_the_split_and_unlabelled_rows_are_left_out() {
        let mut images = set(&[0, 1, 0, 1]);
        images.labels[3] = None;
        images.subsets = Some(vec![Subset::Train, Subset::Train, Subset::Val, Subset::Val]);
        let (train, test) = split_rows(&images, SplitSettings::default()).unwrap();
        assert_eq!((train, test), (vec![0, 1], vec![2]));
    }

    #[test]
    fn features_that_do_not_match_the_images_are_an_error() {
        let err = read_out(
            &set(&[0, 1]),
            &[1.0; 3],
            2,
            SplitSettings::default(),
            Classifier::Knn(KnnConfig::default()),
        );
        assert!(matches!(err, Err(ReadoutError::Shape { .. })));
    }
}
