//! The co-segmentation job run by the worker: the library's co-segmentation or part
//! co-segmentation of the chosen images, with the overlays rendered (library figures) so the UI
//! only uploads textures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::analysis::coords::PixelMap;
use crate::analysis::coseg::{
    CosegConfig, CosegError, Cosegmentation, PartConfig, cosegment, part_cosegment, refine_masks,
    refine_parts,
};
use crate::analysis::overlay::{cutout, parts_overlay};
use crate::analysis::refine::{CrfConfig, GrabCutConfig};
use crate::app::notifications::AppError;
use crate::app::state::{CosegMode, InputSize};
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState, patch_budget};
use crate::model::{Grid, PreparedImage};

/// Everything a co-segmentation depends on; results are cached under it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CosegKey {
    /// The images, in gallery order.
    pub images: Vec<ImageId>,
    pub mode: CosegMode,
    /// Parts asked for (part mode).
    pub num_parts: usize,
    /// Stride in pixels (resolved against the model's patch size).
    pub stride: usize,
    /// Saliency threshold of the vote, in thousandths.
    pub saliency_milli: u16,
    /// Share of the images a cluster needs to be foreground, in percent.
    pub votes_percentage: u32,
    pub input_size: InputSize,
    /// Refine at pixel level as the reference does: GrabCut on the foreground masks, a dense
    /// CRF on the part labels.
    pub refine: Option<RefineSettings>,
    /// Which loaded model.
    pub generation: u64,
}

/// The refinement's parameters, in whole units (tenths for the CRF's widths and weights) so that
/// the key hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefineSettings {
    pub grabcut_iterations: u8,
    pub crf_iterations: u8,
    pub gaussian_sxy_tenths: u16,
    pub gaussian_compat_tenths: u16,
    pub bilateral_sxy_tenths: u16,
    pub bilateral_srgb_tenths: u16,
    pub bilateral_compat_tenths: u16,
}

fn tenths(value: f32) -> u16 {
    (value * 10.0).round().clamp(0.0, u16::MAX as f32) as u16
}

impl Default for RefineSettings {
    /// The reference's: GrabCut 5 iterations; CRF Gaussian sxy 3 compat 50, bilateral sxy 5 srgb 13
    /// compat 15, 10 iterations.
    fn default() -> Self {
        let (grabcut, crf) = (GrabCutConfig::default(), CrfConfig::default());
        RefineSettings {
            grabcut_iterations: grabcut.iterations.min(u8::MAX as usize) as u8,
            crf_iterations: crf.iterations.min(u8::MAX as usize) as u8,
            gaussian_sxy_tenths: tenths(crf.gaussian_sxy),
            gaussian_compat_tenths: tenths(crf.gaussian_compat),
            bilateral_sxy_tenths: tenths(crf.bilateral_sxy),
            bilateral_srgb_tenths: tenths(crf.bilateral_srgb),
            bilateral_compat_tenths: tenths(crf.bilateral_compat),
        }
    }
}

impl RefineSettings {
    pub fn grabcut(&self) -> GrabCutConfig {
        GrabCutConfig {
            iterations: self.grabcut_iterations as usize,
            ..GrabCutConfig::default()
        }
    }

    pub fn crf(&self) -> CrfConfig {
        let value = |t: u16| t as f32 / 10.0;
        CrfConfig {
            gaussian_sxy: value(self.gaussian_sxy_tenths),
            gaussian_compat: value(self.gaussian_compat_tenths),
            bilateral_sxy: value(self.bilateral_sxy_tenths),
            bilateral_srgb: value(self.bilateral_srgb_tenths),
            bilateral_compat: value(self.bilateral_compat_tenths),
            iterations: self.crf_iterations as usize,
        }
    }
}

impl CosegKey {
    fn config(&self) -> CosegConfig {
        CosegConfig {
            stride: self.stride,
            saliency_threshold: self.saliency_milli as f32 / 1000.0,
            votes_percentage: self.votes_percentage,
            ..CosegConfig::default()
        }
    }
}

/// One image's segmentation.
#[derive(Debug)]
pub struct CosegImage {
    pub id: ImageId,
    pub name: String,
    /// The pixels the model saw.
    pub prepared: Arc<PreparedImage>,
    pub grid: Grid,
    /// Per patch: its cluster (foreground mode) or part (`None`: background), row-major.
    pub labels: Vec<Option<usize>>,
    /// Foreground per patch.
    pub foreground: Vec<bool>,
    /// Labels coloured at half opacity over the image (checkerboard where unlabelled).
    pub overlay: RgbImage,
    /// The foreground cut out on a checkerboard.
    pub cutout: RgbImage,
    /// Left out as an outlier (foreground mode with outlier removal).
    pub outlier: bool,
}

/// One legend entry: a cluster or a part.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    pub label: usize,
    /// Foreground cluster (always true for parts).
    pub foreground: bool,
    /// Images that voted for the cluster (foreground mode).
    pub votes: Option<usize>,
    /// Patches with this label over all images.
    pub patches: usize,
}

#[derive(Debug)]
pub struct CosegResult {
    pub mode: CosegMode,
    pub images: Vec<CosegImage>,
    /// Clusters the elbow chose (stage 1).
    pub k: usize,
    /// Labels coloured: `k` clusters, or the parts found.
    pub labels: usize,
    pub legend: Vec<LegendEntry>,
    /// Votes a cluster needed.
    pub needed: usize,
    pub elapsed: Duration,
}

/// What the worker sends back.
pub struct CosegOutput {
    pub key: CosegKey,
    pub result: Arc<CosegResult>,
}

pub struct CosegJob {
    pub key: CosegKey,
    pub inputs: Vec<ImageInput>,
}

impl ModelJob for CosegJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let CosegJob { key, inputs } = *self;
        let result = run(state, &key, inputs, task)?;
        Ok(result.map(|result| {
            Box::new(CosegOutput {
                key,
                result: Arc::new(result),
            }) as Output
        }))
    }
}

/// Runs the co-segmentation; `Ok(None)` when cancelled.
fn run(
    state: &mut WorkerState,
    key: &CosegKey,
    inputs: Vec<ImageInput>,
    task: &TaskContext,
) -> Result<Option<CosegResult>, AppError> {
    let start = Instant::now();
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let patch = state.config().map_or(16, |c| c.patch_size);
    let budget = patch_budget(patch, key.stride);
    let mut prepared = Vec::with_capacity(inputs.len());
    for input in &inputs {
        if task.is_cancelled() {
            return Ok(None);
        }
        prepared.push(state.prepared_image(input, key.input_size, budget)?);
    }
    let Some(vit) = state.vit() else {
        return Ok(None);
    };
    let owned: Vec<PreparedImage> = prepared.iter().map(|p| p.as_ref().clone()).collect();
    let mut report = |done: f32, what: &str| {
        task.report(format!("Co-segmentation: {what}"), Some(done));
        !task.is_cancelled()
    };
    let error = |e: CosegError| coseg_error(e, &names);
    let (coseg, parts) = match key.mode {
        CosegMode::Foreground => match cosegment(vit, &owned, &key.config(), &mut report) {
            Ok(mut c) => {
                if let Some(refine) = key.refine {
                    task.report(
                        "Co-segmentation: refining edges (GrabCut)".into(),
                        Some(1.0),
                    );
                    // Where GrabCut fails the patch mask stays, as in the reference.
                    refine_masks(&mut c, &owned, &refine.grabcut());
                }
                (c, None)
            }
            Err(CosegError::Cancelled(_)) => return Ok(None),
            Err(e) => return Err(error(e)),
        },
        CosegMode::Parts => {
            let config = PartConfig {
                coseg: key.config(),
                num_parts: key.num_parts,
                ..PartConfig::default()
            };
            match part_cosegment(vit, &owned, &config, &mut report) {
                Ok(mut p) => {
                    if let Some(refine) = key.refine {
                        task.report("Co-segmentation: refining edges (CRF)".into(), Some(1.0));
                        refine_parts(&mut p, &owned, &refine.crf()).map_err(|e| {
                            AppError::Compute {
                                what: "the dense CRF of the part co-segmentation".into(),
                                detail: e.to_string(),
                            }
                        })?;
                    }
                    let num = p.num_parts;
                    let images = p.images;
                    (p.foreground, Some((num, images)))
                }
                Err(CosegError::Cancelled(_)) => return Ok(None),
                Err(e) => return Err(error(e)),
            }
        }
    };
    task.report("Co-segmentation: overlays".into(), Some(1.0));
    Ok(Some(assemble(
        key.mode, inputs, prepared, coseg, parts, start,
    )))
}

/// Names the image an error is about (the library counts images from 0).
fn coseg_error(error: CosegError, names: &[String]) -> AppError {
    let image = match &error {
        CosegError::ImageTooSmall { index, .. } | CosegError::CropTooSmall { index, .. } => {
            names.get(*index).cloned()
        }
        _ => None,
    };
    AppError::Compute {
        what: match image {
            Some(name) => format!("co-segmentation of {name}"),
            None => format!("co-segmentation of {}", names.join(", ")),
        },
        detail: error.to_string(),
    }
}

type Parts = Option<(usize, Vec<crate::analysis::coseg::ImageParts>)>;

fn assemble(
    mode: CosegMode,
    inputs: Vec<ImageInput>,
    prepared: Vec<Arc<PreparedImage>>,
    coseg: Cosegmentation,
    parts: Parts,
    start: Instant,
) -> CosegResult {
    let k = coseg.k;
    let salient = &coseg.votes.salient;
    let labels_count = match &parts {
        Some((n, _)) => *n,
        None => k,
    };
    let mut patches = vec![0usize; labels_count];
    let mut images = Vec::with_capacity(inputs.len());
    let part_images = parts.map(|(_, images)| images);
    for (i, ((input, prepared), seg)) in inputs
        .into_iter()
        .zip(prepared)
        .zip(coseg.images)
        .enumerate()
    {
        let (labels, pixel_labels): (Vec<Option<usize>>, Vec<Option<usize>>) =
            match part_images.as_ref().and_then(|p| p.get(i)) {
                Some(p) => (p.parts.clone(), p.pixel_parts.clone()),
                None => {
                    let labels: Vec<Option<usize>> = seg.labels.iter().map(|&l| Some(l)).collect();
                    let pixels = PixelMap::new(seg.grid, &prepared);
                    let (w, h) = (prepared.width(), prepared.height());
                    let per_pixel = (0..w * h)
                        .map(|p| {
                            let (x, y) = ((p % w) as f64 + 0.5, (p / w) as f64 + 0.5);
                            labels.get(pixels.patch_at_model(x, y)).copied().flatten()
                        })
                        .collect();
                    (labels, per_pixel)
                }
            };
        for l in labels.iter().flatten() {
            if let Some(c) = patches.get_mut(*l) {
                *c += 1;
            }
        }
        let overlay = parts_overlay(&prepared.rgb, &pixel_labels, labels_count.max(1));
        let cutout = cutout(&prepared.rgb, &seg.mask);
        images.push(CosegImage {
            id: input.id,
            name: input.name,
            grid: seg.grid,
            labels,
            foreground: seg.grid_mask,
            overlay,
            cutout,
            outlier: seg.outlier,
            prepared,
        });
    }
    let legend = (0..labels_count)
        .map(|label| LegendEntry {
            label,
            foreground: mode == CosegMode::Parts || salient.contains(&label),
            votes: (mode == CosegMode::Foreground)
                .then(|| coseg.votes.counts.get(label).copied().unwrap_or(0)),
            patches: patches[label],
        })
        .collect();
    CosegResult {
        mode,
        images,
        k,
        labels: labels_count,
        legend,
        needed: coseg.votes.needed,
        elapsed: start.elapsed(),
    }
}
