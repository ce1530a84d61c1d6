//! The Training tab: a DINO run started from the form on its own thread ([`super::train_job`]), its
//! metrics and attention probe as they arrive, pause / resume / stop, and loading its teacher into the
//! visualizer.

use eframe::egui;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};

use super::App;
use super::notifications::AppError;
use super::train_job::{TrainUpdate, TrainingRun};
use super::train_panel::{self, Phase, ProbeTextures, TrainAction, TrainForm};
use super::worker::ModelSource;
use crate::train::Probe;
use crate::train::run::{
    Metrics, RESUME_FILE, RunEvent, RunPlan, RunSummary, TEACHER_FILE, TrainConfig, metrics_before,
};

/// Which path a folder dialog picks.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Data,
    Out,
}

/// The form, the run under way and what it reported.
pub struct TrainState {
    pub form: TrainForm,
    run: Option<TrainingRun>,
    phase: Phase,
    plan: Option<RunPlan>,
    history: Vec<Metrics>,
    probe: Option<Probe>,
    textures: Option<ProbeTextures>,
    /// Iteration the last saved checkpoints continue at.
    saved: Option<usize>,
    /// Output folder of the current (or last) run.
    out: Option<PathBuf>,
    device: Option<String>,
    summary: Option<RunSummary>,
    dialog: Option<Receiver<(Pick, Option<PathBuf>)>>,
}

impl Default for TrainState {
    fn default() -> Self {
        TrainState {
            form: TrainForm::default(),
            run: None,
            phase: Phase::Idle,
            plan: None,
            history: Vec::new(),
            probe: None,
            textures: None,
            saved: None,
            out: None,
            device: None,
            summary: None,
            dialog: None,
        }
    }
}

impl TrainState {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Every iteration's metrics of the current (or last) run.
    pub fn history(&self) -> &[Metrics] {
        &self.history
    }

    pub fn plan(&self) -> Option<&RunPlan> {
        self.plan.as_ref()
    }

    /// The iteration after which the probe shown was taken.
    pub fn probe_step(&self) -> Option<usize> {
        self.textures.as_ref().map(|t| t.step)
    }

    /// Heads shown by the probe.
    pub fn probe_heads(&self) -> usize {
        self.textures.as_ref().map_or(0, |t| t.heads())
    }

    pub fn summary(&self) -> Option<&RunSummary> {
        self.summary.as_ref()
    }

    /// The teacher checkpoint of the run, once saved.
    pub fn teacher(&self) -> Option<PathBuf> {
        self.saved?;
        self.out.as_ref().map(|o| o.join(TEACHER_FILE))
    }
}

impl App {
    pub fn training(&self) -> &TrainState {
        &self.training
    }

    pub fn training_mut(&mut self) -> &mut TrainState {
        &mut self.training
    }

    /// The checkpoint fine-tuning would start from: the loaded model's file, if it has one.
    fn fine_tune_source(&self) -> Option<(PathBuf, usize)> {
        let model = self.model.as_ref()?;
        match &model.source {
            ModelSource::File(p) | ModelSource::Default(p) => Some((p.clone(), model.config.heads)),
            ModelSource::Untrained => None,
        }
    }

    /// Starts a run with the form's settings (a new output folder's files are overwritten), or with
    /// `resume` continues the run saved in the form's output folder.
    pub fn start_training(&mut self, ctx: &egui::Context, resume: bool) {
        if self.training.run.is_some() {
            return;
        }
        let form = &self.training.form;
        let mut config = TrainConfig {
            data: form
                .folder
                .as_ref()
                .map_or("synthetic".into(), |f| f.display().to_string()),
            ..form.config.clone()
        };
        if form.fine_tune {
            let Some((path, heads)) = self.fine_tune_source() else {
                return;
            };
            config.init = Some(path);
            config.init_heads = Some(heads);
        }
        let out = form.out.clone();
        match TrainingRun::spawn(ctx.clone(), config, out.clone(), form.save_every, resume) {
            Ok(run) => {
                let t = &mut self.training;
                t.run = Some(run);
                t.phase = Phase::Running;
                t.plan = None;
                t.history.clear();
                t.probe = None;
                t.textures = None;
                t.saved = None;
                t.summary = None;
                t.out = Some(out);
            }
            Err(e) => self.notifications.error(&AppError::Compute {
                what: "starting the training thread".into(),
                detail: e.to_string(),
            }),
        }
    }

    fn training_action(&mut self, ctx: &egui::Context, action: TrainAction) {
        let t = &mut self.training;
        match action {
            TrainAction::Start => self.start_training(ctx, false),
            TrainAction::Continue => self.start_training(ctx, true),
            TrainAction::Pause => {
                if let Some(run) = &t.run {
                    run.control.pause();
                    t.phase = Phase::Paused;
                }
            }
            TrainAction::Resume => {
                if let Some(run) = &t.run {
                    run.control.resume();
                    t.phase = Phase::Running;
                }
            }
            TrainAction::Stop => {
                if let Some(run) = &t.run {
                    run.control.stop();
                    t.phase = Phase::Stopping;
                }
            }
            TrainAction::ViewTeacher => {
                if let Some(path) = t.teacher() {
                    self.open_checkpoint(path);
                }
            }
            TrainAction::PickFolder => self.pick_training_path(ctx, Pick::Data),
            TrainAction::PickOut => self.pick_training_path(ctx, Pick::Out),
        }
    }

    /// A native folder dialog on its own thread; the answer is read by [`Self::poll_training`].
    fn pick_training_path(&mut self, ctx: &egui::Context, pick: Pick) {
        if self.training.dialog.is_some() {
            return;
        }
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("dinoscope-dialog".into())
            .spawn(move || {
                let title = match pick {
                    Pick::Data => "Training images (class sub-folders enable the k-NN evaluation)",
                    Pick::Out => "Output folder of the run",
                };
                let _ = tx.send((pick, rfd::FileDialog::new().set_title(title).pick_folder()));
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.training.dialog = Some(rx),
            Err(e) => self.notifications.error(&AppError::Compute {
                what: "opening a file dialog".into(),
                detail: e.to_string(),
            }),
        }
    }

    /// Takes what the training thread and the folder dialog sent.
    pub(super) fn poll_training(&mut self, ctx: &egui::Context) {
        if let Some(rx) = &self.training.dialog
            && let Ok((pick, path)) = rx.try_recv()
        {
            self.training.dialog = None;
            match (pick, path) {
                (Pick::Data, Some(p)) => self.training.form.folder = Some(p),
                (Pick::Out, Some(p)) => self.training.form.out = p,
                (_, None) => {}
            }
        }
        let mut ended = None;
        if let Some(run) = &self.training.run {
            while let Some(update) = run.try_recv() {
                match update {
                    TrainUpdate::Device(d) => self.training.device = Some(d),
                    TrainUpdate::Event(RunEvent::Started(plan)) => {
                        if let Some(out) = &self.training.out {
                            self.training.history = metrics_before(out, plan.start);
                        }
                        self.training.plan = Some(*plan);
                    }
                    TrainUpdate::Event(RunEvent::Iteration(m)) => self.training.history.push(m),
                    TrainUpdate::Event(RunEvent::Probe(p)) => self.training.probe = Some(p),
                    TrainUpdate::Event(RunEvent::Saved { next_step }) => {
                        self.training.saved = Some(next_step)
                    }
                    TrainUpdate::Finished(summary) => ended = Some(Ok(summary)),
                    TrainUpdate::Failed(detail) => ended = Some(Err(detail)),
                }
            }
        }
        if let Some(end) = ended {
            // The thread has sent its last update: joining it (in drop) does not wait.
            self.training.run = None;
            match end {
                Ok(summary) => {
                    self.notifications.info(format!(
                        "Training {} after {} of {} iterations; teacher saved to {}",
                        if summary.stopped {
                            "stopped"
                        } else {
                            "finished"
                        },
                        summary.steps,
                        summary.total_steps,
                        summary.teacher.display()
                    ));
                    self.training.summary = Some(summary);
                    self.training.phase = Phase::Finished;
                }
                Err(detail) => {
                    self.notifications.error(&AppError::Compute {
                        what: "training".into(),
                        detail,
                    });
                    self.training.phase = Phase::Failed;
                }
            }
        }
        let colormap = self.settings.colormap;
        let t = &mut self.training;
        if let Some(probe) = &t.probe
            && t.textures
                .as_ref()
                .is_none_or(|x| x.step != probe.step || x.colormap() != colormap)
        {
            t.textures = Some(ProbeTextures::new(ctx, probe, colormap));
        }
    }

    pub(super) fn train_controls(&mut self, ui: &mut egui::Ui) {
        let loaded = self
            .fine_tune_source()
            .map(|(p, _)| super::worker::file_label(&p));
        let editable = self.training.run.is_none();
        let action = train_panel::form(ui, &mut self.training.form, loaded.as_deref(), editable);
        if let Some(action) = action {
            self.training_action(ui.ctx(), action);
        }
    }

    pub(super) fn train_central(&mut self, ui: &mut egui::Ui) {
        let t = &self.training;
        let has_saved_run = t.run.is_none() && t.form.out.join(RESUME_FILE).is_file();
        let action = train_panel::buttons(ui, t.phase, has_saved_run, t.teacher().is_some());
        ui.horizontal_wrapped(|ui| {
            let state = match t.phase {
                Phase::Idle => "Not started".to_string(),
                Phase::Running => "Running".into(),
                Phase::Paused => "Paused".into(),
                Phase::Stopping => "Stopping (saving)".into(),
                Phase::Finished => "Done".into(),
                Phase::Failed => "Failed".into(),
            };
            ui.label(egui::RichText::new(state).strong());
            if let (Some(plan), Some(last)) = (&t.plan, t.history.last()) {
                ui.label(format!(
                    "iteration {} / {} (epoch {}), loss {:.4}, {:.1} images/s",
                    last.step + 1,
                    plan.total,
                    last.epoch,
                    last.loss,
                    last.images_per_s
                ));
                if !plan.evaluates {
                    ui.label(egui::RichText::new("no evaluation (no labels)").weak());
                }
            }
            if let Some(d) = &t.device {
                ui.label(egui::RichText::new(d).weak());
            }
            if let Some(next) = t.saved {
                ui.label(egui::RichText::new(format!("saved at iteration {next}")).weak());
            }
        });
        if let Some(last) = t.history.last()
            && let Some(mode) = &last.collapse
        {
            ui.colored_label(
                egui::Color32::from_rgb(255, 90, 60),
                format!(
                    "Collapse warning: teacher and student agree (KL {:.1e}): {mode} collapse. \
                     Try a lower teacher temperature or a higher momentum.",
                    last.kl
                ),
            );
        }
        ui.separator();
        let opacity = self.settings.opacity;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                if let Some(textures) = &self.training.textures {
                    textures.ui(ui, opacity);
                    ui.separator();
                }
                train_panel::charts(ui, self.training.plan.as_ref(), &self.training.history);
            });
        if let Some(action) = action {
            self.training_action(ui.ctx(), action);
        }
    }
}
