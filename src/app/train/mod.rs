//! The Training view: a DINO run started from the form on its own thread ([`job`]), its metrics
//! and attention probe as they arrive, pause / resume / stop, and loading its teacher into the
//! other views.

pub mod job;
pub mod panel;

use eframe::egui;
use std::path::PathBuf;

use super::dialogs::{Dialog, Pick};
use super::notifications::{AppError, Notifications, file_label};
use super::state::ViewTab;
use super::view::{View, ViewContext};
use super::worker::{ModelInfo, ModelRequest, ModelSource};
use crate::train::Probe;
use crate::train::TrainConfig;
use crate::train::run::{
    Metrics, RESUME_FILE, RunEvent, RunPlan, RunSummary, TEACHER_FILE, metrics_before,
};
use job::{TrainUpdate, TrainingRun};
use panel::{Phase, ProbeTextures, TrainAction, TrainForm};

/// Which path a folder dialog picks.
#[derive(Clone, Copy, Debug)]
enum Folder {
    Data,
    Out,
}

/// The form, the run under way and what it reported.
pub struct TrainingTab {
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
    dialog: Dialog<Folder>,
}

impl Default for TrainingTab {
    fn default() -> Self {
        TrainingTab {
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
            dialog: Dialog::default(),
        }
    }
}

/// The checkpoint fine-tuning would start from: the loaded model's file, if it has one.
fn fine_tune_source(model: Option<&ModelInfo>) -> Option<(PathBuf, usize)> {
    let model = model?;
    match &model.source {
        ModelSource::File(p) | ModelSource::Default(p) => Some((p.clone(), model.config.heads)),
        ModelSource::Untrained => None,
    }
}

impl TrainingTab {
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

    /// Starts a run with the form's settings (a new output folder's files are overwritten), or
    /// with `resume` continues the run saved in the form's output folder.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        model: Option<&ModelInfo>,
        notifications: &mut Notifications,
        resume: bool,
    ) {
        if self.run.is_some() {
            return;
        }
        let form = &self.form;
        let mut config = TrainConfig {
            data: form
                .folder
                .as_ref()
                .map_or("synthetic".into(), |f| f.display().to_string()),
            ..form.config.clone()
        };
        if form.fine_tune {
            let Some((path, heads)) = fine_tune_source(model) else {
                return;
            };
            config.init = Some(path);
            config.init_heads = Some(heads);
        }
        let out = form.out.clone();
        match TrainingRun::spawn(ctx.clone(), config, out.clone(), form.save_every, resume) {
            Ok(run) => {
                self.run = Some(run);
                self.phase = Phase::Running;
                self.plan = None;
                self.history.clear();
                self.probe = None;
                self.textures = None;
                self.saved = None;
                self.summary = None;
                self.out = Some(out);
            }
            Err(e) => notifications.error(&AppError::Compute {
                what: "starting the training thread".into(),
                detail: e.to_string(),
            }),
        }
    }

    fn act(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>, action: TrainAction) {
        let control = self.run.as_ref().map(|r| r.control.clone());
        match action {
            TrainAction::Start => self.start(ctx, cx.model, cx.notifications, false),
            TrainAction::Continue => self.start(ctx, cx.model, cx.notifications, true),
            TrainAction::Pause => {
                if let Some(control) = control {
                    control.pause();
                    self.phase = Phase::Paused;
                }
            }
            TrainAction::Resume => {
                if let Some(control) = control {
                    control.resume();
                    self.phase = Phase::Running;
                }
            }
            TrainAction::Stop => {
                if let Some(control) = control {
                    control.stop();
                    self.phase = Phase::Stopping;
                }
            }
            TrainAction::ViewTeacher => {
                if let Some(path) = self.teacher() {
                    cx.worker.load(cx.tasks, ModelRequest::File(path));
                }
            }
            TrainAction::PickFolder => self.pick(ctx, cx, Folder::Data),
            TrainAction::PickOut => self.pick(ctx, cx, Folder::Out),
        }
    }

    fn pick(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>, folder: Folder) {
        let title = match folder {
            Folder::Data => "Training images (class sub-folders enable the k-NN evaluation)",
            Folder::Out => "Output folder of the run",
        };
        let pick = Pick::Folder {
            title: title.into(),
        };
        if let Err(e) = self.dialog.open(ctx, pick, folder) {
            cx.notifications.error(&e);
        }
    }

    /// Takes what the training thread sent.
    fn take_updates(&mut self, notifications: &mut Notifications) {
        let mut ended = None;
        if let Some(run) = &self.run {
            while let Some(update) = run.try_recv() {
                match update {
                    TrainUpdate::Device(d) => self.device = Some(d),
                    TrainUpdate::Event(RunEvent::Started(plan)) => {
                        if let Some(out) = &self.out {
                            self.history = metrics_before(out, plan.start);
                        }
                        self.plan = Some(*plan);
                    }
                    TrainUpdate::Event(RunEvent::Iteration(m)) => self.history.push(m),
                    TrainUpdate::Event(RunEvent::Probe(p)) => self.probe = Some(p),
                    TrainUpdate::Event(RunEvent::Saved { next_step }) => {
                        self.saved = Some(next_step)
                    }
                    TrainUpdate::Finished(summary) => ended = Some(Ok(summary)),
                    TrainUpdate::Failed(detail) => ended = Some(Err(detail)),
                }
            }
        }
        if let Some(end) = ended {
            // The thread has sent its last update: joining it (in drop) does not wait.
            self.run = None;
            self.ended(end, notifications);
        }
    }

    fn ended(&mut self, end: Result<RunSummary, String>, notifications: &mut Notifications) {
        match end {
            Ok(summary) => {
                notifications.info(format!(
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
                self.summary = Some(summary);
                self.phase = Phase::Finished;
            }
            Err(detail) => {
                notifications.error(&AppError::Compute {
                    what: "training".into(),
                    detail,
                });
                self.phase = Phase::Failed;
            }
        }
    }

    /// The state line: phase, iteration, loss, throughput, device, last save.
    fn status_line(&self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let state = match self.phase {
                Phase::Idle => "Not started",
                Phase::Running => "Running",
                Phase::Paused => "Paused",
                Phase::Stopping => "Stopping (saving)",
                Phase::Finished => "Done",
                Phase::Failed => "Failed",
            };
            ui.label(egui::RichText::new(state).strong());
            if let (Some(plan), Some(last)) = (&self.plan, self.history.last()) {
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
            if let Some(d) = &self.device {
                ui.label(egui::RichText::new(d).weak());
            }
            if let Some(next) = self.saved {
                ui.label(egui::RichText::new(format!("saved at iteration {next}")).weak());
            }
        });
        if let Some(last) = self.history.last()
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
    }
}

impl View for TrainingTab {
    fn id(&self) -> ViewTab {
        ViewTab::TRAINING
    }

    fn title(&self) -> &'static str {
        "Training"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let loaded = fine_tune_source(cx.model).map(|(p, _)| file_label(&p));
        let editable = self.run.is_none();
        if let Some(action) = panel::form(ui, &mut self.form, loaded.as_deref(), editable) {
            self.act(&ui.ctx().clone(), cx, action);
        }
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let has_saved_run = self.run.is_none() && self.form.out.join(RESUME_FILE).is_file();
        let action = panel::buttons(ui, self.phase, has_saved_run, self.teacher().is_some());
        self.status_line(ui);
        ui.separator();
        let opacity = cx.settings.opacity;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                if let Some(textures) = &self.textures {
                    textures.ui(ui, opacity);
                    ui.separator();
                }
                panel::charts(ui, self.plan.as_ref(), &self.history);
            });
        if let Some(action) = action {
            self.act(&ui.ctx().clone(), cx, action);
        }
    }

    /// Takes what the training thread and the folder dialog sent.
    fn poll(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        match self.dialog.poll() {
            Some((folder, Ok(paths))) => match (folder, paths.into_iter().next()) {
                (Folder::Data, Some(p)) => self.form.folder = Some(p),
                (Folder::Out, Some(p)) => self.form.out = p,
                (_, None) => {}
            },
            Some((_, Err(e))) => cx.notifications.error(&e),
            None => {}
        }
        self.take_updates(cx.notifications);
        let colormap = cx.settings.colormap;
        if let Some(probe) = &self.probe
            && self
                .textures
                .as_ref()
                .is_none_or(|x| x.step != probe.step || x.colormap() != colormap)
        {
            self.textures = Some(ProbeTextures::new(ctx, probe, colormap));
        }
    }
}
