//! What a run measures besides its loss: periodic k-NN / attention-mask evaluation of the teacher and
//! a live attention probe (the teacher's last-block CLS attention, all heads, on one fixed image).

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use super::data::Dataset;
use super::eval::{EvalScores, EvalSet, evaluate, probe_scene};
use crate::analysis::attention::{AttentionMaps, Query, attention_maps};
use crate::model::host::HostReadError;
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, PreparedImage, Resize, prepare};
use crate::model::vit::Vit;

/// How often and on how much a run evaluates and probes its teacher (0 disables).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonitorSettings {
    pub eval_every: usize,
    pub probe_every: usize,
    /// Images in the k-NN memory bank.
    pub eval_bank: usize,
    /// Images classified (and, with masks, compared with the attention).
    pub eval_queries: usize,
    /// Side of the evaluation and probe images for image folders (synthetic scenes keep theirs).
    pub image_size: u32,
    pub seed: u64,
}

/// The teacher's attention on the probe image after an iteration.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The iteration after which it was taken (0-based).
    pub step: usize,
    /// The pixels the teacher saw.
    pub image: Arc<RgbImage>,
    /// Last block, CLS query, every head.
    pub maps: AttentionMaps,
}

/// An evaluation and how long it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed<T> {
    pub value: T,
    pub seconds: f64,
}

/// The fixed data a run evaluates and probes on, built once at the start.
pub struct Monitor {
    settings: MonitorSettings,
    eval: Option<EvalSet>,
    probe: Option<PreparedImage>,
}

impl Monitor {
    /// Held-out synthetic scenes, or a folder's labelled images (no evaluation without class
    /// sub-folders); the probe is a held-out scene or the folder's first readable image.
    pub fn new(settings: MonitorSettings, dataset: &Dataset, patch: usize) -> Monitor {
        let wants_eval = settings.eval_every > 0;
        let wants_probe = settings.probe_every > 0;
        let size = settings.image_size - settings.image_size % patch as u32;
        let (eval, probe_rgb) = match dataset {
            Dataset::Synthetic(scenes) => (
                wants_eval.then(|| {
                    EvalSet::synthetic(
                        &scenes.config,
                        settings.seed,
                        settings.eval_bank,
                        settings.eval_queries,
                    )
                }),
                wants_probe.then(|| probe_scene(&scenes.config, settings.seed).image),
            ),
            Dataset::Folder(folder) => (
                wants_eval
                    .then(|| {
                        EvalSet::folder(folder, size, settings.eval_bank, settings.eval_queries)
                    })
                    .flatten(),
                wants_probe
                    .then(|| {
                        (0..dataset.len())
                            .find_map(|i| dataset.get(i).ok())
                            .map(|x| x.0)
                    })
                    .flatten(),
            ),
        };
        let resize = match dataset {
            Dataset::Synthetic(_) => Resize::None,
            Dataset::Folder(_) => Resize::ShortSide(size),
        };
        let probe =
            probe_rgb.and_then(|rgb| prepare(&rgb, resize, patch, DEFAULT_MAX_PATCHES).ok());
        Monitor {
            settings,
            eval,
            probe,
        }
    }

    /// Whether the run can evaluate (labelled data and `eval_every > 0`).
    pub fn evaluates(&self) -> bool {
        self.eval.is_some()
    }

    /// The evaluation due after iteration `step` (0-based), if one is.
    pub fn eval_after(
        &self,
        step: usize,
        vit: &Vit,
    ) -> Result<Option<Timed<EvalScores>>, HostReadError> {
        let every = self.settings.eval_every;
        let due = self
            .eval
            .as_ref()
            .filter(|_| every > 0 && (step + 1).is_multiple_of(every));
        let Some(set) = due else {
            return Ok(None);
        };
        let start = Instant::now();
        let value = evaluate(vit, set)?;
        Ok(Some(Timed {
            value,
            seconds: start.elapsed().as_secs_f64(),
        }))
    }

    /// The probe due after iteration `step` (0-based), if one is.
    pub fn probe_after(
        &self,
        step: usize,
        vit: &Vit,
    ) -> Result<Option<Timed<Probe>>, HostReadError> {
        let every = self.settings.probe_every;
        let due = self
            .probe
            .as_ref()
            .filter(|_| every > 0 && (step + 1).is_multiple_of(every));
        let Some(image) = due else {
            return Ok(None);
        };
        let start = Instant::now();
        let config = vit.config();
        let maps = attention_maps(
            vit,
            image.to_tensor(&vit.device()),
            config.depth - 1,
            Query::Cls,
            config.patch_size,
        )?;
        Ok(Some(Timed {
            value: Probe {
                step,
                image: Arc::new(image.rgb.clone()),
                maps,
            },
            seconds: start.elapsed().as_secs_f64(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;
    use crate::train::{SyntheticConfig, SyntheticScenes};
    use burn::tensor::Device;

    fn settings(eval_every: usize, probe_every: usize) -> MonitorSettings {
        MonitorSettings {
            eval_every,
            probe_every,
            eval_bank: 6,
            eval_queries: 3,
            image_size: 48,
            seed: 1,
        }
    }

    fn synthetic() -> Dataset {
        Dataset::Synthetic(SyntheticScenes::new(
            SyntheticConfig {
                size: 48,
                images: 4,
                ..SyntheticConfig::default()
            },
            1,
        ))
    }

    #[test]
    fn evaluations_and_probes_come_at_their_iterations() {
        let vit = Vit::init(Arch::VitNano.config(), &Device::flex());
        let monitor = Monitor::new(settings(3, 2), &synthetic(), 8);
        assert!(monitor.evaluates());
        let evals: Vec<usize> = (0..7)
            .filter(|&s| monitor.eval_after(s, &vit).unwrap().is_some())
            .collect();
        assert_eq!(evals, vec![2, 5]);
        let probes: Vec<usize> = (0..7)
            .filter_map(|s| monitor.probe_after(s, &vit).unwrap().map(|p| p.value.step))
            .collect();
        assert_eq!(probes, vec![1, 3, 5]);
        let probe = monitor.probe_after(1, &vit).unwrap().map(|p| p.value);
        let probe = probe
            .as_ref()
            .map(|p| (p.maps.heads, p.maps.grid.rows, p.image.width()));
        assert_eq!(probe, Some((3, 6, 48)));
        let scores = monitor.eval_after(2, &vit).unwrap().map(|t| t.value);
        assert!(
            scores.is_some_and(|s| s.mask_iou.is_some() && (0.0..=1.0).contains(&s.knn_accuracy))
        );
    }

    #[test]
    fn zero_disables_and_unlabelled_folders_are_not_evaluated() {
        let vit = Vit::init(Arch::VitNano.config(), &Device::flex());
        let off = Monitor::new(settings(0, 0), &synthetic(), 8);
        assert!(!off.evaluates());
        assert!(
            off.probe_after(0, &vit).unwrap().is_none()
                && off.eval_after(0, &vit).unwrap().is_none()
        );

        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            image::RgbImage::from_pixel(40, 30, image::Rgb([i * 60, 20, 90]))
                .save(dir.path().join(format!("{i}.png")))
                .unwrap();
        }
        let folder = Dataset::Folder(crate::train::ImageFolder::scan(dir.path()).unwrap());
        let monitor = Monitor::new(settings(1, 1), &folder, 8);
        assert!(!monitor.evaluates(), "no class sub-folders: no labels");
        let probe = monitor.probe_after(0, &vit).unwrap().map(|p| p.value.image);
        assert_eq!(probe.map(|i| (i.width(), i.height())), Some((64, 48)));
    }
}
