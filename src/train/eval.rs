//! Evaluation on held-out synthetic scenes: attention-mask IoU with the object masks and DINO's
//! weighted k-NN classifier (k = 20, T = 0.07) on the CLS embeddings.

use burn::tensor::{Device, Tensor};
use image::{GrayImage, RgbImage};

use super::data::ImageFolder;
use super::synthetic::{Scene, SyntheticConfig, SyntheticScenes};
use crate::analysis::attention::{Query, attention_maps, mass_mask};
use crate::analysis::readout::knn::{KnnConfig, knn_classify};
use crate::model::host::{HostReadError, f32_values};
use crate::model::preprocess::{load_rgb, normalize};
use crate::model::vit::Vit;

/// Scene indices at or above this are never produced by training runs of the same seed.
const HELD_OUT_OFFSET: u64 = 1 << 40;
/// The held-out scene used as the attention probe (past any evaluation scene).
const PROBE_INDEX: u64 = HELD_OUT_OFFSET - 1;

/// DINO's k-NN classifier settings (`eval_knn.py`).
pub const KNN_K: usize = 20;
pub const KNN_TEMPERATURE: f32 = 0.07;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// Mean IoU of the head-mean CLS attention mask (keeping 60 % of the mass) with the object.
    pub mask_iou: f64,
    /// Top-1 accuracy of the k-NN classifier on the shape classes.
    pub knn_accuracy: f64,
    pub train_scenes: usize,
    pub test_scenes: usize,
}

/// One labelled evaluation image, with its object mask when known.
#[derive(Clone, Debug)]
pub struct EvalImage {
    pub image: RgbImage,
    pub label: usize,
    pub mask: Option<GrayImage>,
}

impl From<Scene> for EvalImage {
    fn from(scene: Scene) -> Self {
        EvalImage {
            image: scene.image,
            label: scene.label,
            mask: Some(scene.mask),
        }
    }
}

/// A k-NN memory bank and the images classified against it.
#[derive(Clone, Debug)]
pub struct EvalSet {
    pub bank: Vec<EvalImage>,
    pub queries: Vec<EvalImage>,
    pub classes: usize,
}

impl EvalSet {
    /// `train + test` held-out synthetic scenes (never drawn by training runs of the same seed).
    pub fn synthetic(config: &SyntheticConfig, seed: u64, train: usize, test: usize) -> EvalSet {
        let scenes = SyntheticScenes::new(config.clone(), seed);
        let scene = |i: usize| EvalImage::from(scenes.scene(HELD_OUT_OFFSET + i as u64));
        EvalSet {
            bank: (0..train).map(scene).collect(),
            queries: (train..train + test).map(scene).collect(),
            classes: scenes.classes(),
        }
    }

    /// Labelled images of a folder with class sub-folders, resized to `size` x `size`: every third
    /// labelled image is a query, the others go to the bank, up to `train` and `test` of each.
    /// `None` when the folder has fewer than two classes (nothing to classify).
    pub fn folder(folder: &ImageFolder, size: u32, train: usize, test: usize) -> Option<EvalSet> {
        if folder.classes.len() < 2 {
            return None;
        }
        let mut set = EvalSet {
            bank: Vec::new(),
            queries: Vec::new(),
            classes: folder.classes.len(),
        };
        let labelled = folder
            .items
            .iter()
            .filter_map(|(path, label)| label.map(|l| (path, l)));
        for (i, (path, label)) in labelled.enumerate() {
            let (list, cap) = if i % 3 == 2 {
                (&mut set.queries, test)
            } else {
                (&mut set.bank, train)
            };
            if list.len() >= cap {
                if set.bank.len() >= train && set.queries.len() >= test {
                    break;
                }
                continue;
            }
            // Unreadable images are left out (the training loader reports them).
            if let Ok(rgb) = load_rgb(path) {
                list.push(EvalImage {
                    image: image::imageops::resize(
                        &rgb,
                        size,
                        size,
                        image::imageops::FilterType::Triangle,
                    ),
                    label,
                    mask: None,
                });
            }
        }
        (!set.bank.is_empty() && !set.queries.is_empty()).then_some(set)
    }
}

/// The held-out synthetic scene used as the attention probe of a run.
pub fn probe_scene(config: &SyntheticConfig, seed: u64) -> Scene {
    SyntheticScenes::new(config.clone(), seed).scene(PROBE_INDEX)
}

/// What [`evaluate`] measured.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalScores {
    /// Top-1 accuracy of the k-NN classifier (k = 20, T = 0.07).
    pub knn_accuracy: f64,
    /// Mean IoU of the head-mean CLS attention mask (60 % of the mass) with the object masks, when
    /// the queries have masks.
    pub mask_iou: Option<f64>,
}

fn image_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    Tensor::from_data(
        burn::tensor::TensorData::new(normalize(image), [1, 3, h, w]),
        device,
    )
}

/// The object mask on the patch grid: a patch is object when most of its pixels are.
fn patch_mask(mask: &GrayImage, rows: usize, cols: usize, patch: usize) -> Vec<bool> {
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let mut inside = 0;
            for y in r * patch..(r + 1) * patch {
                for x in c * patch..(c + 1) * patch {
                    inside += usize::from(mask.get_pixel(x as u32, y as u32).0[0] > 127);
                }
            }
            2 * inside > patch * patch
        })
        .collect()
}

pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let either = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    }
}

/// The final CLS embedding (the k-NN normalises it).
fn embedding(vit: &Vit, image: &RgbImage, device: &Device) -> Result<Vec<f32>, HostReadError> {
    f32_values(vit.forward(image_tensor(image, device)))
}

/// k-NN accuracy of `vit`'s final CLS embeddings on `set`, and the attention-mask IoU of the queries
/// that have masks.
pub fn evaluate(vit: &Vit, set: &EvalSet) -> Result<EvalScores, HostReadError> {
    let device = vit.device();
    let patch = vit.config().patch_size;
    let last = vit.config().depth - 1;
    let mut bank = Vec::new();
    for entry in &set.bank {
        bank.extend(embedding(vit, &entry.image, &device)?);
    }
    let bank_labels: Vec<usize> = set.bank.iter().map(|e| e.label).collect();
    let dim = vit.config().dim;
    let knn = KnnConfig {
        k: KNN_K,
        temperature: KNN_TEMPERATURE,
    };
    let (mut iou_sum, mut masks) = (0.0, 0);
    let mut queries = Vec::new();
    for query in &set.queries {
        if let Some(mask) = &query.mask {
            let maps = attention_maps(
                vit,
                image_tensor(&query.image, &device),
                last,
                Query::Cls,
                patch,
            )?;
            let predicted = mass_mask(&maps.head_mean(), 0.6);
            iou_sum += iou(
                &predicted,
                &patch_mask(mask, maps.grid.rows, maps.grid.cols, patch),
            );
            masks += 1;
        }
        queries.extend(embedding(vit, &query.image, &device)?);
    }
    // An empty bank (no training scenes) predicts nothing: accuracy 0.
    let predictions = knn_classify(&bank, &bank_labels, &queries, dim, set.classes, knn)
        .map(|r| r.predictions)
        .unwrap_or_default();
    let correct = predictions
        .iter()
        .zip(&set.queries)
        .filter(|(p, q)| **p == q.label)
        .count();
    Ok(EvalScores {
        knn_accuracy: correct as f64 / set.queries.len().max(1) as f64,
        mask_iou: (masks > 0).then(|| iou_sum / masks as f64),
    })
}

/// Evaluates `vit` on `train + test` held-out scenes of the given configuration and seed.
pub fn evaluate_synthetic(
    vit: &Vit,
    config: &SyntheticConfig,
    seed: u64,
    train: usize,
    test: usize,
) -> Result<EvalReport, HostReadError> {
    let scores = evaluate(vit, &EvalSet::synthetic(config, seed, train, test))?;
    Ok(EvalReport {
        mask_iou: scores.mask_iou.unwrap_or(0.0),
        knn_accuracy: scores.knn_accuracy,
        train_scenes: train,
        test_scenes: test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_runs_on_held_out_scenes() {
        let device = Device::flex();
        let vit = Vit::init(crate::model::config::Arch::VitNano.config(), &device);
        let config = SyntheticConfig {
            size: 48,
            ..Default::default()
        };
        let report = evaluate_synthetic(&vit, &config, 3, 10, 5).unwrap();
        assert!((0.0..=1.0).contains(&report.mask_iou));
        assert!((0.0..=1.0).contains(&report.knn_accuracy));
        assert_eq!((report.train_scenes, report.test_scenes), (10, 5));
        assert_eq!(
            report,
            evaluate_synthetic(&vit, &config, 3, 10, 5).unwrap(),
            "deterministic"
        );
    }

    #[test]
    fn patch_mask_follows_the_majority_of_pixels() {
        let mut mask = image::GrayImage::new(4, 2);
        for (x, y) in [(0, 0), (1, 0), (0, 1)] {
            mask.put_pixel(x, y, image::Luma([255]));
        }
        assert_eq!(patch_mask(&mask, 1, 2, 2), vec![true, false]);
    }

    #[test]
    fn iou_of_known_masks() {
        assert_eq!(
            iou(&[true, true, false, false], &[true, false, true, false]),
            1.0 / 3.0
        );
        assert_eq!(iou(&[false; 3], &[false; 3]), 1.0);
    }
}
