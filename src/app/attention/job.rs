//! The attention job run by the worker: the image as the model sees it, then every head's
//! attention of one block for one query token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analysis::attention::{AttentionMaps, Query, attention_maps};
use crate::app::notifications::AppError;
use crate::app::state::InputSize;
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::PreparedImage;
use crate::model::preprocess::DEFAULT_MAX_PATCHES;

/// Everything an attention result depends on; results are cached under it, so moving the
/// threshold, opacity or colormap never recomputes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnKey {
    pub image: ImageId,
    pub layer: usize,
    pub query: Query,
    pub input_size: InputSize,
    /// Which loaded model (counts up on each load).
    pub generation: u64,
}

/// One computed attention view: the exact pixels the model saw and the maps.
#[derive(Debug)]
pub struct AttentionResult {
    pub prepared: Arc<PreparedImage>,
    pub maps: AttentionMaps,
    pub elapsed: Duration,
}

/// What the worker sends back.
pub struct AttentionOutput {
    pub key: AttnKey,
    pub result: Arc<AttentionResult>,
}

pub struct AttentionJob {
    pub key: AttnKey,
    pub input: ImageInput,
}

impl ModelJob for AttentionJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let AttentionJob { key, input } = *self;
        let name = &input.name;
        let start = Instant::now();
        task.progress(format!("Preparing {name}"));
        let prepared = state.prepared_image(&input, key.input_size, DEFAULT_MAX_PATCHES)?;
        if task.is_cancelled() {
            return Ok(None);
        }
        let Some(vit) = state.vit() else {
            return Ok(None);
        };
        let config = vit.config();
        let patch = config.patch_size;
        let layer = key.layer.min(config.depth.saturating_sub(1));
        task.progress(format!(
            "Attention of {name}, block {layer}, {} ({}x{} px)",
            match key.query {
                Query::Cls => "CLS".to_string(),
                Query::Patch { row, col } => format!("patch ({row}, {col})"),
            },
            prepared.width(),
            prepared.height()
        ));
        let maps = attention_maps(
            vit,
            prepared.to_tensor(state.device()),
            layer,
            key.query,
            patch,
        )
        .map_err(|e| AppError::Compute {
            what: format!("attention of {name}"),
            detail: e.to_string(),
        })?;
        if maps.values.len() != maps.heads * maps.grid.len() || maps.grid.is_empty() {
            return Err(AppError::Compute {
                what: format!("attention of {name}"),
                detail: "the model returned no attention values".into(),
            });
        }
        let result = AttentionResult {
            prepared,
            maps,
            elapsed: start.elapsed(),
        };
        Ok(Some(Box::new(AttentionOutput {
            key,
            result: Arc::new(result),
        })))
    }
}
