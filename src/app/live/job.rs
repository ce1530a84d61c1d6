//! One live frame on the model thread: the job takes the newest frame when the model is free for
//! it (not when it was asked for), analyses it and hands the analyzer back with the result, so
//! the held PCA basis and the tracks travel with the work and no state is shared between threads.

use std::sync::Arc;

use crate::analysis::live::{LiveAnalyzer, LiveFrame, LiveOptions};
use crate::app::notifications::AppError;
use crate::app::tasks::{Output, TaskContext};
use crate::app::worker::{ModelJob, WorkerState};
use crate::video::Frame;
use crate::video::latest::LatestSlot;

/// The key of live-frame tasks: at most one is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveKey;

pub struct LiveJob {
    pub generation: u64,
    pub frames: Arc<LatestSlot<Frame>>,
    pub analyzer: LiveAnalyzer,
    pub options: LiveOptions,
}

/// What comes back: the analyzer always, and the frame analysed if there was one.
pub struct LiveOutput {
    pub analyzer: LiveAnalyzer,
    pub result: Option<Result<LiveFrame, AppError>>,
}

impl ModelJob for LiveJob {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        _task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let LiveJob {
            frames,
            mut analyzer,
            options,
            ..
        } = *self;
        let result = match (frames.try_take(), state.vit()) {
            (Some(frame), Some(vit)) => Some(analyzer.analyse(vit, &frame, &options).map_err(
                |e| AppError::Compute {
                    what: format!("live frame {}", frame.index),
                    detail: e.to_string(),
                },
            )),
            _ => None,
        };
        Ok(Some(Box::new(LiveOutput { analyzer, result })))
    }
}
