//! The side-by-side view's jobs, run by the worker: one side's view of one image (the attention
//! of \[CLS\] in every head of a block, or the PCA colouring of a block's output tokens) under the
//! loaded model or under the second checkpoint the worker keeps, and loading that checkpoint to
//! learn its shape.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analysis::attention::{AttentionMaps, Query, attention_maps};
use crate::analysis::features::{DescriptorSpec, extract};
use crate::analysis::pca_rgb::{PcaColoring, pca_colors};
use crate::app::notifications::{AppError, file_label};
use crate::app::state::{CompareShow, InputSize};
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::preprocess::DEFAULT_MAX_PATCHES;
use crate::model::vit::Vit;
use crate::model::{Facet, Grid, PreparedImage, VitConfig};

/// Which model a side shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Which {
    Loaded,
    Second(PathBuf),
}

/// Everything one side's result depends on (head, threshold and colours only redraw).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SideKey {
    pub which: Which,
    pub image: ImageId,
    pub block: usize,
    pub input_size: InputSize,
    pub show: CompareShow,
    /// The loaded model's generation (jobs of an older one are dropped).
    pub generation: u64,
}

/// What a side shows, on the model's patch grid.
#[derive(Debug)]
pub enum SideMaps {
    Attention(AttentionMaps),
    /// A colour per patch: the first three principal components of the block's tokens.
    Pca {
        grid: Grid,
        colors: Vec<[u8; 3]>,
    },
}

impl SideMaps {
    pub fn grid(&self) -> Grid {
        match self {
            SideMaps::Attention(maps) => maps.grid,
            SideMaps::Pca { grid, .. } => *grid,
        }
    }
}

#[derive(Debug)]
pub struct SideResult {
    /// The pixels the model saw (the two models may crop differently: their patches differ).
    pub prepared: Arc<PreparedImage>,
    pub maps: SideMaps,
    pub elapsed: Duration,
}

pub struct SideOutput {
    pub key: SideKey,
    pub result: Arc<SideResult>,
}

pub struct SideJob {
    pub key: SideKey,
    pub input: ImageInput,
}

impl ModelJob for SideJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let SideJob { key, input } = *self;
        let start = Instant::now();
        task.progress(format!("Preparing {}", input.name));
        let device = state.device().clone();
        let (vit, prepared) = match &key.which {
            Which::Loaded => {
                let prepared = state.prepared_image(&input, key.input_size, DEFAULT_MAX_PATCHES)?;
                let Some(vit) = state.vit() else {
                    return Ok(None);
                };
                (vit, prepared)
            }
            Which::Second(path) => {
                task.progress(format!("Loading {}", file_label(path)));
                let vit = state.second_model(path)?;
                let patch = vit.config().patch_size;
                let prepared = input.prepare(key.input_size, patch, DEFAULT_MAX_PATCHES)?;
                (vit, Arc::new(prepared))
            }
        };
        if task.is_cancelled() {
            return Ok(None);
        }
        let what = format!("{} of {}", key.show.label(), input.name);
        task.progress(format!("{what}, block {}", key.block));
        let maps = side_maps(vit, &prepared, &device, key.block, key.show).map_err(|detail| {
            AppError::Compute {
                what: what.clone(),
                detail,
            }
        })?;
        let result = SideResult {
            prepared,
            maps,
            elapsed: start.elapsed(),
        };
        Ok(Some(Box::new(SideOutput {
            key,
            result: Arc::new(result),
        })))
    }
}

fn side_maps(
    vit: &Vit,
    prepared: &PreparedImage,
    device: &burn::tensor::Device,
    block: usize,
    show: CompareShow,
) -> Result<SideMaps, String> {
    let config = vit.config();
    if block >= config.depth {
        return Err(format!(
            "block {block} does not exist: the model has {} blocks",
            config.depth
        ));
    }
    match show {
        CompareShow::Attention => {
            let maps = attention_maps(
                vit,
                prepared.to_tensor(device),
                block,
                Query::Cls,
                config.patch_size,
            )
            .map_err(|e| e.to_string())?;
            if maps.grid.is_empty() || maps.values.len() != maps.heads * maps.grid.len() {
                return Err("the model returned no attention values".into());
            }
            Ok(SideMaps::Attention(maps))
        }
        CompareShow::Pca => {
            let spec = DescriptorSpec {
                layer: block,
                facet: Facet::Token,
                stride: None,
                log_bin: false,
            };
            let map = extract(vit, prepared, spec).map_err(|e| e.to_string())?;
            let grid = map.grid;
            let view = pca_colors(&[map], PcaColoring::default())
                .into_iter()
                .next()
                .filter(|v| v.colors.len() == grid.len())
                .ok_or("the model returned no features")?;
            Ok(SideMaps::Pca {
                grid,
                colors: view.colors,
            })
        }
    }
}

/// The second checkpoint's shape, learnt by loading it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecondLoad(pub PathBuf);

#[derive(Clone, Debug)]
pub struct SecondInfo {
    pub path: PathBuf,
    pub config: VitConfig,
    pub load_time: Duration,
}

pub struct SecondLoadJob {
    pub path: PathBuf,
    pub generation: u64,
}

impl ModelJob for SecondLoadJob {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let start = Instant::now();
        task.progress(format!("Loading {}", file_label(&self.path)));
        let config = state.second_model(&self.path)?.config().clone();
        Ok(Some(Box::new(SecondInfo {
            path: self.path,
            config,
            load_time: start.elapsed(),
        })))
    }
}
