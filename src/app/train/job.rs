//! A training run on its own thread: the library's [`train_with`] reporting through a channel, paused,
//! resumed and stopped through its [`RunControl`]. Dropping the handle (closing the app) stops the run,
//! which saves its checkpoints, and waits for it.

use eframe::egui;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;

use crate::model::{DeviceChoice, backend};
use crate::panics;
use crate::train::RunControl;
use crate::train::TrainConfig;
use crate::train::run::{RunEvent, RunOptions, RunSummary, train_with};

/// What the training thread sends.
#[derive(Debug)]
pub enum TrainUpdate {
    /// The compute device it chose.
    Device(String),
    Event(RunEvent),
    Finished(RunSummary),
    Failed(String),
}

/// A run under way.
pub struct TrainingRun {
    pub control: RunControl,
    updates: Receiver<TrainUpdate>,
    thread: Option<JoinHandle<()>>,
}

impl TrainingRun {
    /// Starts `config` on a new thread, writing to `out` and saving every `save_every` iterations;
    /// every update wakes the UI.
    pub fn spawn(
        ctx: egui::Context,
        config: TrainConfig,
        out: PathBuf,
        save_every: usize,
        resume: bool,
    ) -> std::io::Result<TrainingRun> {
        let (tx, updates) = channel();
        let control = RunControl::default();
        let run_control = control.clone();
        let thread = std::thread::Builder::new()
            .name("dinoscope-train".into())
            .spawn(move || {
                let send = |update| {
                    // The receiver goes away only when the app closes.
                    let _ = tx.send(update);
                    ctx.request_repaint();
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let device =
                        backend::select(DeviceChoice::Auto).unwrap_or_else(|_| backend::cpu());
                    send(TrainUpdate::Device(device.description.clone()));
                    let options = RunOptions {
                        out,
                        resume,
                        max_steps: None,
                        save_every,
                        device: device.device,
                        progress: false,
                    };
                    train_with(config, &options, &run_control, &mut |event| {
                        send(TrainUpdate::Event(event))
                    })
                }));
                send(match outcome {
                    Ok(Ok(summary)) => TrainUpdate::Finished(summary),
                    Ok(Err(e)) => TrainUpdate::Failed(e.to_string()),
                    Err(payload) => TrainUpdate::Failed(format!(
                        "the training thread stopped: {}",
                        panics::message(payload.as_ref())
                    )),
                });
            })?;
        Ok(TrainingRun {
            control,
            updates,
            thread: Some(thread),
        })
    }

    pub fn try_recv(&self) -> Option<TrainUpdate> {
        self.updates.try_recv().ok()
    }
}

impl Drop for TrainingRun {
    fn drop(&mut self) {
        self.control.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
