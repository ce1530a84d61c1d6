//! The explorer's jobs on the model thread: embedding a labelled folder (kept on disk per
//! checkpoint, settings and file content, as `dinoscope embed-folder` keeps it), and reading the
//! classes out of the embedding with the nearest training images of each misclassified one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analysis::progress::Cancelled;
use crate::analysis::readout::embed::{
    CacheUse, EmbedError, LabelledImages, Pooling, cache_settings, embed_images,
    embed_images_cached, feature_dim,
};
use crate::analysis::readout::feature_cache::FeatureCache;
use crate::analysis::readout::image_list::labelled_images;
use crate::analysis::readout::knn::{KnnConfig, Neighbour, nearest};
use crate::analysis::readout::logistic::LogisticConfig;
use crate::analysis::readout::report::{
    Classifier, ReadoutReport, SplitSettings, read_out, rows_of,
};
use crate::app::notifications::AppError;
use crate::app::tasks::{Output, TaskContext};
use crate::app::worker::{ModelJob, WorkerState};
use crate::model::Resize;

/// Training images shown beside each misclassified test image.
pub const NEIGHBOURS_SHOWN: usize = 5;

/// Everything an embedding depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedKey {
    /// A folder of class sub-folders, or a `.csv` list.
    pub folder: PathBuf,
    /// Images are resized to `side` x `side` (98 as in the DINOv2 article's Omniglot example).
    pub side: u32,
    pub pooling: Pooling,
    pub generation: u64,
}

impl EmbedKey {
    pub fn resize(&self) -> Resize {
        Resize::Exact {
            width: self.side,
            height: self.side,
        }
    }
}

/// A folder embedded by the model: one feature row per image.
#[derive(Debug)]
pub struct EmbeddedSet {
    pub key: EmbedKey,
    pub images: LabelledImages,
    pub dim: usize,
    /// `[images, dim]`, row-major.
    pub features: Vec<f32>,
    pub elapsed: Duration,
    /// Images whose features came from the disk cache.
    pub from_cache: usize,
    /// Why some images could not be kept in the disk cache.
    pub not_kept: Vec<String>,
}

impl EmbeddedSet {
    pub fn len(&self) -> usize {
        self.images.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.paths.is_empty()
    }

    pub fn row(&self, row: usize) -> &[f32] {
        &self.features[row * self.dim..(row + 1) * self.dim]
    }

    /// The `k` images most similar to image `row` (itself excluded), most similar first.
    pub fn nearest_to(&self, row: usize, k: usize) -> Vec<Neighbour> {
        nearest(&self.features, self.row(row), self.dim, k + 1)
            .into_iter()
            .flatten()
            .filter(|n| n.row != row)
            .take(k)
            .collect()
    }
}

pub struct EmbedJob {
    pub key: EmbedKey,
    /// The checkpoint file (`None`: random weights, nothing kept on disk).
    pub weights: Option<PathBuf>,
    /// Keep features on disk under this folder.
    pub cache_root: Option<PathBuf>,
    pub batch: usize,
}

impl ModelJob for EmbedJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        Ok(embed(*self, state, task)?.map(|set| Box::new(Arc::new(set)) as Output))
    }
}

fn embedding_failed(folder: &std::path::Path, detail: impl std::fmt::Display) -> AppError {
    AppError::compute(format!("embedding {}", folder.display()), detail)
}

fn embed(
    job: EmbedJob,
    state: &mut WorkerState,
    task: &TaskContext,
) -> Result<Option<EmbeddedSet>, AppError> {
    let start = Instant::now();
    let EmbedJob {
        key,
        weights,
        cache_root,
        batch,
    } = job;
    task.progress(format!("Listing {}", key.folder.display()));
    let images = labelled_images(&key.folder)?;
    if images.paths.is_empty() {
        return Err(embedding_failed(&key.folder, "no images found"));
    }
    let generation = state.generation();
    let vit = state
        .vit()
        .ok_or_else(|| embedding_failed(&key.folder, "no model is loaded"))?;
    let dim = feature_dim(vit, key.pooling);
    let n = images.paths.len();
    let mut progress = |done: f32, _: &str| {
        task.report(
            format!("Embedding {} images", n),
            Some(done.clamp(0.0, 1.0)),
        );
        !task.is_cancelled() && key.generation == generation
    };
    let mut not_kept = Vec::new();
    let cache = match (cache_root, &weights) {
        (Some(root), Some(weights)) => {
            let settings = cache_settings(key.resize(), key.pooling, vit.config());
            match FeatureCache::open(&root, weights, &settings, dim) {
                Ok(cache) => Some(cache),
                // The folder is still embedded; the view says nothing was kept.
                Err(e) => {
                    not_kept.push(format!("{}: {e}", root.display()));
                    None
                }
            }
        }
        _ => None,
    };
    let embedded = match &cache {
        Some(cache) => embed_images_cached(
            vit,
            &images.paths,
            key.resize(),
            key.pooling,
            batch,
            cache,
            &mut progress,
        ),
        None => embed_images(
            vit,
            &images.paths,
            key.resize(),
            key.pooling,
            batch,
            &mut progress,
        )
        .map(|features| (features, CacheUse::default())),
    };
    let (features, used) = match embedded {
        Ok(done) => done,
        Err(EmbedError::Cancelled(Cancelled)) => return Ok(None),
        Err(e) => return Err(embedding_failed(&key.folder, e)),
    };
    not_kept.extend(used.not_kept);
    Ok(Some(EmbeddedSet {
        key,
        images,
        dim,
        features,
        elapsed: start.elapsed(),
        from_cache: used.hits,
        not_kept,
    }))
}

/// The classifier the controls choose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClassifierChoice {
    Knn,
    Logistic,
}

/// Everything a read-out depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadoutKey {
    pub embed: EmbedKey,
    pub classifier: Classifier,
    pub split: SplitSettings,
}

impl ReadoutKey {
    pub fn new(
        embed: EmbedKey,
        choice: ClassifierChoice,
        knn: KnnConfig,
        c: f64,
        split: SplitSettings,
    ) -> ReadoutKey {
        let classifier = match choice {
            ClassifierChoice::Knn => Classifier::Knn(knn),
            ClassifierChoice::Logistic => Classifier::Logistic(LogisticConfig {
                c,
                ..LogisticConfig::default()
            }),
        };
        ReadoutKey {
            embed,
            classifier,
            split,
        }
    }
}

/// A read-out and, per misclassified test row, its nearest training images.
#[derive(Debug)]
pub struct Readout {
    pub key: ReadoutKey,
    pub report: ReadoutReport,
    pub neighbours: HashMap<usize, Vec<Neighbour>>,
    pub elapsed: Duration,
}

pub struct ReadoutJob {
    pub key: ReadoutKey,
    pub set: Arc<EmbeddedSet>,
}

impl ModelJob for ReadoutJob {
    fn generation(&self) -> u64 {
        self.key.embed.generation
    }

    fn run(
        self: Box<Self>,
        _state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let start = Instant::now();
        let ReadoutJob { key, set } = *self;
        task.progress("Reading the classes out".into());
        let report = read_out(
            &set.images,
            &set.features,
            set.dim,
            key.split,
            key.classifier,
        )
        .map_err(|e| AppError::Compute {
            what: format!("the read-out of {}", set.key.folder.display()),
            detail: e.to_string(),
        })?;
        let wrong: Vec<usize> = report.misclassified().map(|p| p.row).collect();
        let bank = rows_of(&set.features, set.dim, &report.train_rows);
        let found = nearest(
            &bank,
            &rows_of(&set.features, set.dim, &wrong),
            set.dim,
            NEIGHBOURS_SHOWN,
        );
        let neighbours = wrong
            .into_iter()
            .zip(found)
            .map(|(row, near)| {
                let near = near
                    .into_iter()
                    .map(|n| Neighbour {
                        row: report.train_rows[n.row],
                        similarity: n.similarity,
                    })
                    .collect();
                (row, near)
            })
            .collect();
        Ok(Some(Box::new(Arc::new(Readout {
            key,
            report,
            neighbours,
            elapsed: start.elapsed(),
        }))))
    }
}
