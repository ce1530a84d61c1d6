//! The token-norms job run by the worker: the image as the model sees it, then the library's
//! norms of one block's output tokens and, for register models, the attention to the registers;
//! of the loaded model or of a second checkpoint (kept by the worker between jobs), so the same
//! image can be compared with and without registers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analysis::token_norms::{BlockTokens, block_tokens, suggested_threshold};
use crate::app::notifications::AppError;
use crate::app::state::InputSize;
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::worker::{ImageInput, ModelJob, WorkerState};
use crate::model::PreparedImage;
use crate::model::preprocess::DEFAULT_MAX_PATCHES;
use crate::model::vit::Vit;

/// Everything a result depends on; the threshold and the head shown are not part of it, so
/// moving them never recomputes the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormsKey {
    pub image: ImageId,
    /// The block asked for (a second checkpoint with fewer blocks gets its last).
    pub block: usize,
    pub input_size: InputSize,
    /// Which loaded model.
    pub generation: u64,
    /// The second checkpoint measured instead of the loaded model.
    pub second: Option<PathBuf>,
}

/// One block's norms (and register attention) of one image.
#[derive(Debug)]
pub struct NormsResult {
    pub name: String,
    /// The pixels the model saw.
    pub prepared: Arc<PreparedImage>,
    pub tokens: BlockTokens,
    /// [`suggested_threshold`] of the patch norms.
    pub suggested: f32,
    pub elapsed: Duration,
}

/// What the worker sends back.
pub struct NormsOutput {
    pub key: NormsKey,
    pub result: Arc<NormsResult>,
}

pub struct NormsJob {
    pub key: NormsKey,
    pub input: ImageInput,
}

impl ModelJob for NormsJob {
    fn generation(&self) -> u64 {
        self.key.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let NormsJob { key, input } = *self;
        let start = Instant::now();
        let (prepared, tokens) = match &key.second {
            None => {
                state.check_layer(key.block, "token norms")?;
                task.progress(format!("Preparing {}", input.name));
                let prepared = state.prepared_image(&input, key.input_size, DEFAULT_MAX_PATCHES)?;
                if task.is_cancelled() {
                    return Ok(None);
                }
                let Some(vit) = state.vit() else {
                    return Ok(None);
                };
                task.progress(format!(
                    "Token norms of {}, block {}",
                    input.name, key.block
                ));
                measure(vit, prepared, key.block, &input.name)?
            }
            Some(path) => {
                task.progress(format!(
                    "Token norms of {} with {}",
                    input.name,
                    path.display()
                ));
                measure_second(state.second_model(path)?, &key, &input)?
            }
        };
        let result = NormsResult {
            name: input.name,
            prepared,
            suggested: suggested_threshold(&tokens.norms.patches),
            tokens,
            elapsed: start.elapsed(),
        };
        Ok(Some(Box::new(NormsOutput {
            key,
            result: Arc::new(result),
        })))
    }
}

fn measure(
    vit: &Vit,
    prepared: Arc<PreparedImage>,
    block: usize,
    name: &str,
) -> Result<(Arc<PreparedImage>, BlockTokens), AppError> {
    let tokens = block_tokens(vit, &prepared, block).map_err(|e| AppError::Compute {
        what: format!("token norms of {name}"),
        detail: e.to_string(),
    })?;
    Ok((prepared, tokens))
}

fn measure_second(
    vit: &Vit,
    key: &NormsKey,
    input: &ImageInput,
) -> Result<(Arc<PreparedImage>, BlockTokens), AppError> {
    let config = vit.config();
    let prepared = input.prepare(key.input_size, config.patch_size, DEFAULT_MAX_PATCHES)?;
    let block = key.block.min(config.depth.saturating_sub(1));
    measure(vit, Arc::new(prepared), block, &input.name)
}
