//! Evaluation on held-out synthetic scenes: attention-mask IoU with the object masks and DINO's
//! weighted k-NN classifier (k = 20, T = 0.07) on the CLS embeddings.

use burn::tensor::{Device, Tensor};

use super::synthetic::{Scene, SyntheticConfig, SyntheticScenes};
use crate::analysis::attention::{Query, attention_maps, mass_mask};
use crate::model::preprocess::normalize;
use crate::model::vit::Vit;

/// Scene indices at or above this are never produced by training runs of the same seed.
const HELD_OUT_OFFSET: u64 = 1 << 40;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// Mean IoU of the head-mean CLS attention mask (keeping 60 % of the mass) with the object.
    pub mask_iou: f64,
    /// Top-1 accuracy of the k-NN classifier on the shape classes.
    pub knn_accuracy: f64,
    pub train_scenes: usize,
    pub test_scenes: usize,
}

fn image_tensor(scene: &Scene, device: &Device) -> Tensor<4> {
    let (w, h) = (scene.image.width() as usize, scene.image.height() as usize);
    Tensor::from_data(
        burn::tensor::TensorData::new(normalize(&scene.image), [1, 3, h, w]),
        device,
    )
}

/// The object mask on the patch grid: a patch is object when most of its pixels are.
fn patch_mask(scene: &Scene, rows: usize, cols: usize, patch: usize) -> Vec<bool> {
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let mut inside = 0;
            for y in r * patch..(r + 1) * patch {
                for x in c * patch..(c + 1) * patch {
                    inside += usize::from(scene.mask.get_pixel(x as u32, y as u32).0[0] > 127);
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

/// DINO's k-NN vote: neighbours by cosine similarity, each weighted `exp(sim / T)`.
pub fn knn_predict(
    train: &[(Vec<f32>, usize)],
    query: &[f32],
    classes: usize,
    k: usize,
    temperature: f64,
) -> usize {
    let mut sims: Vec<(f64, usize)> = train
        .iter()
        .map(|(f, label)| {
            (
                f.iter().zip(query).map(|(a, b)| (a * b) as f64).sum(),
                *label,
            )
        })
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut votes = vec![0f64; classes];
    for (sim, label) in sims.into_iter().take(k) {
        votes[label] += (sim / temperature).exp();
    }
    (0..classes)
        .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
        .unwrap_or(0)
}

fn embedding(vit: &Vit, scene: &Scene, device: &Device) -> Vec<f32> {
    let v = vit
        .forward(image_tensor(scene, device))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / norm).collect()
}

/// Evaluates `vit` on `train + test` held-out scenes of the given configuration and seed.
pub fn evaluate_synthetic(
    vit: &Vit,
    config: &SyntheticConfig,
    seed: u64,
    train: usize,
    test: usize,
) -> EvalReport {
    let device = vit.device();
    let scenes = SyntheticScenes::new(config.clone(), seed);
    let patch = vit.config().patch_size;
    let last = vit.config().depth - 1;
    let bank: Vec<(Vec<f32>, usize)> = (0..train as u64)
        .map(|i| {
            let scene = scenes.scene(HELD_OUT_OFFSET + i);
            (embedding(vit, &scene, &device), scene.label)
        })
        .collect();
    let (mut iou_sum, mut correct) = (0.0, 0);
    for i in 0..test as u64 {
        let scene = scenes.scene(HELD_OUT_OFFSET + train as u64 + i);
        let maps = attention_maps(vit, image_tensor(&scene, &device), last, Query::Cls, patch);
        let predicted = mass_mask(&maps.head_mean(), 0.6);
        iou_sum += iou(
            &predicted,
            &patch_mask(&scene, maps.grid.rows, maps.grid.cols, patch),
        );
        let query = embedding(vit, &scene, &device);
        correct +=
            usize::from(knn_predict(&bank, &query, scenes.classes(), 20, 0.07) == scene.label);
    }
    EvalReport {
        mask_iou: iou_sum / test.max(1) as f64,
        knn_accuracy: correct as f64 / test.max(1) as f64,
        train_scenes: train,
        test_scenes: test,
    }
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
        let report = evaluate_synthetic(&vit, &config, 3, 10, 5);
        assert!((0.0..=1.0).contains(&report.mask_iou));
        assert!((0.0..=1.0).contains(&report.knn_accuracy));
        assert_eq!((report.train_scenes, report.test_scenes), (10, 5));
        assert_eq!(
            report,
            evaluate_synthetic(&vit, &config, 3, 10, 5),
            "deterministic"
        );
    }

    #[test]
    fn patch_mask_follows_the_majority_of_pixels() {
        let mut mask = image::GrayImage::new(4, 2);
        for (x, y) in [(0, 0), (1, 0), (0, 1)] {
            mask.put_pixel(x, y, image::Luma([255]));
        }
        let scene = Scene {
            image: image::RgbImage::new(4, 2),
            mask,
            label: 0,
        };
        assert_eq!(patch_mask(&scene, 1, 2, 2), vec![true, false]);
    }

    #[test]
    fn iou_of_known_masks() {
        assert_eq!(
            iou(&[true, true, false, false], &[true, false, true, false]),
            1.0 / 3.0
        );
        assert_eq!(iou(&[false; 3], &[false; 3]), 1.0);
    }

    #[test]
    fn knn_votes_for_the_nearest_class() {
        let bank = vec![
            (vec![1.0, 0.0], 0),
            (vec![0.9, 0.1], 0),
            (vec![0.0, 1.0], 1),
        ];
        assert_eq!(knn_predict(&bank, &[0.95, 0.05], 2, 2, 0.07), 0);
        assert_eq!(knn_predict(&bank, &[0.1, 0.9], 2, 1, 0.07), 1);
        // With k covering all, the exp(sim / T) weights still favour the close class.
        assert_eq!(knn_predict(&bank, &[0.2, 0.98], 2, 3, 0.07), 1);
    }
}
