//! The Training tab's widgets: the run's form, its buttons, the metric charts and the live attention
//! probe. Drawing only; the run itself is the library's ([`crate::train::run`]).

use eframe::egui;
use egui::{Color32, Pos2, Rect, TextureHandle, TextureOptions, Vec2};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};
use std::path::PathBuf;

use crate::analysis::colormap::{Colormap, render_map};
use crate::app::textures::rgb_texture;
use crate::model::config::Arch;
use crate::train::Probe;
use crate::train::TrainConfig;
use crate::train::run::{Metrics, RunPlan};

/// What the form edits: the run's config and how the app runs it.
#[derive(Clone, Debug)]
pub struct TrainForm {
    pub config: TrainConfig,
    /// `None`: synthetic scenes.
    pub folder: Option<PathBuf>,
    pub out: PathBuf,
    /// Start from the model loaded in the visualizer instead of random weights.
    pub fine_tune: bool,
    /// Save both checkpoints every this many iterations (a stop always saves).
    pub save_every: usize,
}

impl Default for TrainForm {
    fn default() -> Self {
        TrainForm {
            config: TrainConfig {
                eval_every: 50,
                probe_every: 5,
                eval_bank: 60,
                eval_queries: 30,
                ..TrainConfig::default()
            },
            folder: None,
            out: PathBuf::from("runs/app"),
            fine_tune: false,
            save_every: 50,
        }
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Running,
    Paused,
    /// Stop asked; the run saves and ends after the iteration under way.
    Stopping,
    Finished,
    Failed,
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainAction {
    PickFolder,
    PickOut,
    Start,
    /// Continue the run saved in the output folder exactly where it stopped.
    Continue,
    Pause,
    Resume,
    Stop,
    ViewTeacher,
}

/// The form; fields are locked while a run is under way. `loaded` names the model fine-tuning
/// would start from (`None`: an untrained model, nothing to fine-tune).
pub fn form(
    ui: &mut egui::Ui,
    form: &mut TrainForm,
    loaded: Option<&str>,
    editable: bool,
) -> Option<TrainAction> {
    ui.add_enabled_ui(editable, |ui| {
        let data = data_fields(ui, form);
        ui.separator();
        model_fields(ui, form, loaded);
        ui.separator();
        schedule_fields(ui, form);
        ui.separator();
        ui.heading("Output");
        let out = ui
            .horizontal(|ui| {
                ui.label(egui::RichText::new(form.out.display().to_string()).monospace());
                ui.button("Choose...")
                    .clicked()
                    .then_some(TrainAction::PickOut)
            })
            .inner;
        data.or(out)
    })
    .inner
}

/// Synthetic scenes or a folder of images.
fn data_fields(ui: &mut egui::Ui, form: &mut TrainForm) -> Option<TrainAction> {
    ui.heading("Data");
    let mut action = None;
    ui.horizontal(|ui| {
        if ui
            .radio(form.folder.is_none(), "Synthetic scenes")
            .clicked()
        {
            form.folder = None;
        }
        if ui.radio(form.folder.is_some(), "Folder...").clicked() {
            action = Some(TrainAction::PickFolder);
        }
    });
    match &form.folder {
        Some(f) => ui.label(egui::RichText::new(f.display().to_string()).weak()),
        None => ui.add(
            egui::DragValue::new(&mut form.config.synthetic.images)
                .range(8..=100_000)
                .prefix("scenes per epoch: "),
        ),
    };
    action
}

/// From scratch (an architecture) or fine-tuning the loaded model.
fn model_fields(ui: &mut egui::Ui, form: &mut TrainForm, loaded: Option<&str>) {
    ui.heading("Model");
    ui.horizontal(|ui| {
        ui.radio_value(&mut form.fine_tune, false, "From scratch");
        ui.add_enabled_ui(loaded.is_some(), |ui| {
            ui.radio_value(&mut form.fine_tune, true, "Fine-tune the loaded model")
                .on_disabled_hover_text("The loaded model is untrained: open a checkpoint first")
        });
    });
    if loaded.is_none() {
        form.fine_tune = false;
    }
    if form.fine_tune {
        ui.label(format!("starts from {}", loaded.unwrap_or_default()));
    } else {
        egui::ComboBox::from_label("Architecture")
            .selected_text(form.config.arch.clone())
            .show_ui(ui, |ui| {
                for arch in [Arch::VitNano, Arch::VitTiny, Arch::VitS16, Arch::VitS8] {
                    let name = arch.to_string();
                    ui.selectable_value(&mut form.config.arch, name.clone(), name);
                }
            });
    }
}

/// Epochs, batch, learning rate, teacher, crops, and how often to evaluate, probe and save.
fn schedule_fields(ui: &mut egui::Ui, form: &mut TrainForm) {
    ui.heading("Schedule");
    let c = &mut form.config;
    ui.add(
        egui::DragValue::new(&mut c.epochs)
            .range(1..=10_000)
            .prefix("epochs: "),
    );
    ui.add(
        egui::DragValue::new(&mut c.batch)
            .range(2..=1024)
            .prefix("batch: "),
    );
    ui.add(
        egui::DragValue::new(&mut c.lr)
            .range(1e-6..=1e-1)
            .speed(1e-5)
            .prefix("lr (per 256): "),
    );
    ui.add(
        egui::DragValue::new(&mut c.teacher_temp)
            .range(0.01..=0.2)
            .speed(1e-3)
            .prefix("teacher temp: "),
    );
    ui.add(
        egui::DragValue::new(&mut c.momentum_teacher)
            .range(0.9..=0.99999)
            .speed(1e-4)
            .prefix("teacher momentum: "),
    );
    ui.add(
        egui::DragValue::new(&mut c.augment.local_crops)
            .range(0..=10)
            .prefix("local crops: "),
    );
    ui.add(egui::DragValue::new(&mut c.eval_every).prefix("evaluate every: "))
        .on_hover_text("Iterations between k-NN / mask-IoU evaluations (0: never)");
    ui.add(egui::DragValue::new(&mut c.probe_every).prefix("probe every: "))
        .on_hover_text("Iterations between attention-probe updates (0: never)");
    ui.add(egui::DragValue::new(&mut form.save_every).prefix("save every: "));
}

/// Start / Continue saved run / Pause / Resume / Stop, and loading the teacher into the visualizer.
/// `has_saved_run`: the output folder holds a resume checkpoint.
pub fn buttons(
    ui: &mut egui::Ui,
    phase: Phase,
    has_saved_run: bool,
    has_teacher: bool,
) -> Option<TrainAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        let running = matches!(phase, Phase::Running | Phase::Paused | Phase::Stopping);
        if ui
            .add_enabled(!running, egui::Button::new("Start"))
            .on_hover_text("A new run (the output folder's files are overwritten)")
            .clicked()
        {
            action = Some(TrainAction::Start);
        }
        if ui
            .add_enabled(
                !running && has_saved_run,
                egui::Button::new("Continue saved run"),
            )
            .on_hover_text(
                "Continue the run saved in the output folder exactly where it stopped, with its saved settings",
            )
            .clicked()
        {
            action = Some(TrainAction::Continue);
        }
        if phase == Phase::Paused {
            if ui.button("Resume").clicked() {
                action = Some(TrainAction::Resume);
            }
        } else if ui
            .add_enabled(phase == Phase::Running, egui::Button::new("Pause"))
            .clicked()
        {
            action = Some(TrainAction::Pause);
        }
        if ui
            .add_enabled(
                matches!(phase, Phase::Running | Phase::Paused),
                egui::Button::new("Stop"),
            )
            .on_hover_text("Ends the run after the iteration under way and saves it")
            .clicked()
        {
            action = Some(TrainAction::Stop);
        }
        if ui
            .add_enabled(has_teacher, egui::Button::new("View this teacher"))
            .on_hover_text("Load the last saved teacher into the visualizer")
            .clicked()
        {
            action = Some(TrainAction::ViewTeacher);
        }
    });
    action
}

fn series(history: &[Metrics], value: impl Fn(&Metrics) -> Option<f64>) -> PlotPoints<'static> {
    history
        .iter()
        .filter_map(|m| value(m).map(|v| [m.step as f64, v]))
        .collect::<Vec<_>>()
        .into()
}

fn planned(values: &[f64]) -> PlotPoints<'static> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| [i as f64, *v])
        .collect::<Vec<_>>()
        .into()
}

fn chart(ui: &mut egui::Ui, title: &str, lines: Vec<Line<'static>>) {
    ui.label(egui::RichText::new(title).strong());
    Plot::new(title)
        .height(130.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |plot| {
            for line in lines {
                plot.line(line);
            }
        });
}

/// The metric charts: measured values as lines, planned schedules dashed.
pub fn charts(ui: &mut egui::Ui, plan: Option<&RunPlan>, history: &[Metrics]) {
    let dashed = LineStyle::dashed_loose();
    ui.columns(2, |cols| {
        chart(
            &mut cols[0],
            "Loss, teacher entropy and KL (nats)",
            vec![
                Line::new("loss", series(history, |m| Some(m.loss))),
                Line::new(
                    "teacher entropy",
                    series(history, |m| Some(m.teacher_entropy)),
                ),
                Line::new("KL(teacher | student)", series(history, |m| Some(m.kl))),
            ],
        );
        chart(
            &mut cols[1],
            "Images per second",
            vec![Line::new(
                "images/s",
                series(history, |m| Some(m.images_per_s)),
            )],
        );
        let mut schedule = vec![Line::new("lr", series(history, |m| Some(m.lr)))];
        if let Some(p) = plan {
            schedule.push(Line::new("lr (planned)", planned(&p.lr)).style(dashed));
        }
        chart(&mut cols[0], "Learning rate", schedule);
        let mut teacher = vec![
            Line::new("momentum", series(history, |m| Some(m.momentum))),
            Line::new(
                "teacher temp x 10",
                series(history, |m| Some(10.0 * m.teacher_temp)),
            ),
        ];
        if let Some(p) = plan {
            teacher.push(Line::new("momentum (planned)", planned(&p.momentum)).style(dashed));
            let temps: Vec<f64> = p.teacher_temp.iter().map(|t| 10.0 * t).collect();
            teacher.push(Line::new("teacher temp x 10 (planned)", planned(&temps)).style(dashed));
        }
        chart(&mut cols[1], "Teacher momentum and temperature", teacher);
    });
    chart(
        ui,
        "Evaluation of the teacher",
        vec![
            Line::new(
                "k-NN accuracy",
                series(history, |m| m.eval.map(|e| e.knn_accuracy)),
            ),
            Line::new(
                "attention-mask IoU",
                series(history, |m| m.eval.and_then(|e| e.mask_iou)),
            ),
        ],
    );
}

/// Textures of one probe: the image, then one colouring per head.
pub struct ProbeTextures {
    pub step: usize,
    colormap: Colormap,
    image: TextureHandle,
    heads: Vec<TextureHandle>,
}

impl ProbeTextures {
    /// Uploads the probe (the CPU colouring the attention tab uses headless).
    pub fn new(ctx: &egui::Context, probe: &Probe, colormap: Colormap) -> ProbeTextures {
        let maps = &probe.maps;
        let heads = (0..maps.heads)
            .map(|h| {
                let rgb = render_map(maps.head(h), maps.grid.rows, maps.grid.cols, 1, colormap);
                rgb_texture(
                    ctx,
                    format!("probe-head-{h}"),
                    &rgb,
                    TextureOptions::NEAREST,
                )
            })
            .collect();
        ProbeTextures {
            step: probe.step,
            colormap,
            image: rgb_texture(ctx, "probe-image", &probe.image, TextureOptions::LINEAR),
            heads,
        }
    }

    pub fn colormap(&self) -> Colormap {
        self.colormap
    }

    pub fn heads(&self) -> usize {
        self.heads.len()
    }

    /// One tile per head: the probe image with the head's attention over it.
    pub fn ui(&self, ui: &mut egui::Ui, opacity: f32) {
        ui.label(
            egui::RichText::new(format!(
                "Teacher attention, last block, CLS (after iteration {})",
                self.step
            ))
            .strong(),
        );
        let size = self.image.size_vec2();
        let width = 140.0;
        let tile = Vec2::new(width, width * size.y / size.x.max(1.0));
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        let alpha = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
        ui.horizontal_wrapped(|ui| {
            for (h, head) in self.heads.iter().enumerate() {
                ui.vertical(|ui| {
                    ui.label(format!("Head {h}"));
                    let (rect, response) = ui.allocate_exact_size(tile, egui::Sense::hover());
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(
                            egui::Role::Image,
                            true,
                            format!("probe head {h}"),
                        )
                    });
                    let painter = ui.painter_at(rect);
                    painter.image(self.image.id(), rect, uv, Color32::WHITE);
                    painter.image(head.id(), rect, uv, Color32::from_white_alpha(alpha));
                });
            }
        });
    }
}
