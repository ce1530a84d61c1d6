//! The live view: frames from a camera, a video file, an animated GIF / WebP / APNG, a folder of
//! frames or a synthetic scene, each drawn with the CLS attention of a head or of the head mean,
//! the outline of the attention mass kept, or PCA colours held from the first frame.
//!
//! A player thread reads the source into a one-frame slot (the newest frame wins; frames the
//! model is too slow for are dropped and counted). One model job at a time takes the newest frame
//! on the worker thread ([`job`]); the UI thread only uploads the finished picture. A click on
//! the frame follows that point through the next frames; what is shown can be recorded to a GIF
//! or an MP4 ([`recorder`]).

pub mod job;
pub mod panel;
pub mod recorder;
pub mod stats;

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui;
use poll_promise::Promise;

use super::dialogs::{Dialog, Pick};
use super::notifications::AppError;
use super::state::ViewTab;
use super::tasks::{Output, spawn_promise, take_ready};
use super::view::{View, ViewContext};
use super::widgets::{block_slider, centered, colormap_combo, stride_combo};
use super::worker::{ModelInfo, ModelLoad};
use crate::analysis::live::{LiveAnalyzer, LiveFrame, LiveOptions, LiveView};
use crate::model::Resize;
use crate::video::player::{Player, PlayerOptions};
use crate::video::record::RecordSummary;
use crate::video::{CaptureSpec, SourceSpec, SyntheticScene, VIDEO_EXTENSIONS};
use job::{LiveJob, LiveKey, LiveOutput};
use recorder::LiveRecording;
use stats::FpsMeter;

/// Files the open dialog offers: videos (through ffmpeg) and animated images.
const OPENABLE: [&str; 12] = [
    VIDEO_EXTENSIONS[0],
    VIDEO_EXTENSIONS[1],
    VIDEO_EXTENSIONS[2],
    VIDEO_EXTENSIONS[3],
    VIDEO_EXTENSIONS[4],
    VIDEO_EXTENSIONS[5],
    VIDEO_EXTENSIONS[6],
    VIDEO_EXTENSIONS[7],
    "gif",
    "webp",
    "png",
    "apng",
];

/// Sizes (short side) the frames are analysed at: the detail-for-speed choice.
const RESOLUTIONS: [u32; 5] = [112, 160, 224, 320, 480];

/// What a file dialog of the view is for.
enum Purpose {
    Open,
    Record,
}

/// What the user asked of the analyzer while a job held it.
#[derive(Default)]
struct Commands {
    refit: bool,
    clear: bool,
    clicks: Vec<(f64, f64)>,
}

impl Commands {
    fn apply(&mut self, analyzer: &mut LiveAnalyzer) {
        if std::mem::take(&mut self.clear) {
            analyzer.clear_tracks();
        }
        if std::mem::take(&mut self.refit) {
            analyzer.refit_pca();
        }
        for point in self.clicks.drain(..) {
            analyzer.track(point);
        }
    }
}

pub struct LiveTab {
    pub options: LiveOptions,
    /// The camera "Camera" opens.
    pub camera: CaptureSpec,
    /// Files start again at their end.
    pub looping: bool,
    source: Option<SourceSpec>,
    player: Option<Player>,
    /// `None` while a job holds it.
    analyzer: Option<LiveAnalyzer>,
    commands: Commands,
    /// The newest analysed frame, until the next poll shows it.
    incoming: Option<LiveFrame>,
    failed: Option<AppError>,
    shown: Option<LiveFrame>,
    texture: Option<egui::TextureHandle>,
    meter: FpsMeter,
    recording: Option<LiveRecording>,
    saving: Option<Promise<Result<RecordSummary, AppError>>>,
    dialog: Dialog<Purpose>,
}

impl Default for LiveTab {
    fn default() -> Self {
        LiveTab {
            options: LiveOptions {
                colormap: crate::analysis::colormap::Colormap::Inferno,
                ..LiveOptions::default()
            },
            camera: CaptureSpec::default(),
            looping: true,
            source: None,
            player: None,
            analyzer: Some(LiveAnalyzer::default()),
            commands: Commands::default(),
            incoming: None,
            failed: None,
            shown: None,
            texture: None,
            meter: FpsMeter::default(),
            recording: None,
            saving: None,
            dialog: Dialog::default(),
        }
    }
}

impl LiveTab {
    pub const ID: ViewTab = ViewTab::new("Live");

    /// Plays `source` (replacing what played); `ctx` is woken for each frame.
    pub fn start(&mut self, source: SourceSpec, ctx: &egui::Context) -> Result<(), AppError> {
        self.stop();
        let options = PlayerOptions {
            paced: true,
            looping: self.looping,
        };
        let waker = ctx.clone();
        let player = Player::start(source.clone(), options, move || waker.request_repaint())
            .map_err(|e| AppError::Compute {
                what: format!("playing {}", source.label()),
                detail: e.to_string(),
            })?;
        self.player = Some(player);
        self.source = Some(source);
        self.meter.reset();
        // A new source is a new scene: colours and tracks start again.
        self.commands.refit = true;
        self.commands.clear = true;
        Ok(())
    }

    /// Stops playing; the last frame stays on screen.
    pub fn stop(&mut self) {
        if let Some(mut player) = self.player.take() {
            player.stop();
        }
    }

    /// The frame on screen.
    pub fn shown(&self) -> Option<&LiveFrame> {
        self.shown.as_ref()
    }

    /// Follows `point` (original frame pixels) from the next frame on.
    pub fn click(&mut self, point: (f64, f64)) {
        self.commands.clicks.push(point);
    }

    /// Frames the player put, and those the model was too slow for.
    pub fn frame_counts(&self) -> Option<crate::video::latest::SlotCounts> {
        self.player.as_ref().map(|p| p.counts())
    }

    pub fn fps(&self) -> Option<f64> {
        self.meter.fps()
    }

    fn options_for(&self, model: &ModelInfo) -> LiveOptions {
        let c = &model.config;
        let mut options = self.options;
        options.layer = options.layer.filter(|&b| b < c.depth);
        options.stride = options
            .stride
            .filter(|&s| s > 0 && c.patch_size.is_multiple_of(s));
        if let LiveView::Head(h) = options.view {
            options.view = LiveView::Head(h.min(c.heads.saturating_sub(1)));
        }
        options
    }

    fn stats_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(fps) = self.meter.fps() {
            parts.push(format!("{fps:.1} frames/s"));
        }
        if let Some(frame) = &self.shown {
            parts.push(format!(
                "model {:.0} ms, frame {:.0} ms",
                frame.model_time.as_secs_f64() * 1e3,
                frame.total_time.as_secs_f64() * 1e3
            ));
            if let Some(fitted) = frame.pca_fitted_on {
                parts.push(format!("PCA of frame {fitted}"));
            }
        }
        if let Some(counts) = self.frame_counts() {
            parts.push(format!(
                "{} of {} frames dropped",
                counts.dropped, counts.put
            ));
        }
        parts.join(" · ")
    }

    fn source_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Live");
        let mut start = None;
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Camera")
                .on_hover_text("The camera below, read through ffmpeg")
                .clicked()
            {
                start = Some(SourceSpec::Capture(self.camera.clone()));
            }
            if ui
                .button("Video or GIF...")
                .on_hover_text("A video file (read by ffmpeg) or an animated GIF / WebP / PNG")
                .clicked()
            {
                let pick = Pick::File {
                    title: "Play a video or an animated image".into(),
                    filter: ("Videos and animations", &OPENABLE),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, Purpose::Open) {
                    cx.notifications.error(&e);
                }
            }
            if ui
                .button("Folder...")
                .on_hover_text("A folder of frames, in name order")
                .clicked()
            {
                let pick = Pick::Folder {
                    title: "Play a folder of frames".into(),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, Purpose::Open) {
                    cx.notifications.error(&e);
                }
            }
            if ui
                .button("Synthetic")
                .on_hover_text("A textured scene sliding by 2 x 1 pixels a frame (no file needed)")
                .clicked()
            {
                start = Some(SourceSpec::Synthetic(SyntheticScene::default()));
            }
            if self.player.is_some() && ui.button("Stop").clicked() {
                self.stop();
            }
        });
        if let Some(source) = start
            && let Err(e) = self.start(source, ui.ctx())
        {
            cx.notifications.error(&e);
        }
        ui.checkbox(&mut self.looping, "Loop files");
        egui::CollapsingHeader::new("Camera").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Input");
                ui.text_edit_singleline(&mut self.camera.format)
                    .on_hover_text("ffmpeg's input format: v4l2, avfoundation, dshow");
            });
            ui.horizontal(|ui| {
                ui.label("Device");
                ui.text_edit_singleline(&mut self.camera.device);
            });
            ui.add(egui::Slider::new(&mut self.camera.fps, 1..=60).text("frames/s"));
        });
        if let Some(source) = &self.source {
            let state = if self.player.is_some() {
                "playing"
            } else {
                "stopped"
            };
            ui.label(egui::RichText::new(format!("{}: {state}", source.label())).weak());
        }
    }

    fn view_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let heads = cx.model.map_or(1, |m| m.config.heads).max(1);
        let options = &mut self.options;
        ui.separator();
        ui.radio_value(
            &mut options.view,
            LiveView::HeadMean,
            "Attention, mean of heads",
        );
        let head = match options.view {
            LiveView::Head(h) => h.min(heads - 1),
            _ => 0,
        };
        ui.horizontal(|ui| {
            ui.radio_value(&mut options.view, LiveView::Head(head), "Attention of head");
            let mut chosen = head;
            if ui
                .add(egui::DragValue::new(&mut chosen).range(0..=heads - 1))
                .changed()
            {
                options.view = LiveView::Head(chosen);
            }
        });
        ui.radio_value(
            &mut options.view,
            LiveView::Outline,
            "Attention mass outline",
        );
        ui.radio_value(&mut options.view, LiveView::Pca, "PCA colours");
        let depth = cx.shared().depth();
        let block = options.layer.unwrap_or(depth - 1).min(depth - 1);
        let chosen = block_slider(
            ui,
            block,
            depth,
            "The block analysed (its CLS attention and keys)",
        );
        if chosen != block {
            options.layer = Some(chosen);
        }
        let short = match options.resize {
            Resize::ShortSide(s) => s,
            _ => 224,
        };
        egui::ComboBox::from_label("Resolution")
            .selected_text(format!("short side {short} px"))
            .show_ui(ui, |ui| {
                for s in RESOLUTIONS {
                    ui.selectable_value(
                        &mut options.resize,
                        Resize::ShortSide(s),
                        format!("short side {s} px"),
                    );
                }
            })
            .response
            .on_hover_text("The size frames are analysed at: more detail, or more frames/s");
        let patch = cx.shared().patch_size();
        stride_combo(ui, &mut options.stride, patch, patch)
            .on_hover_text("Overlapping patches: finer maps, (patch / stride)^2 times the work");
        if options.view == LiveView::Outline {
            ui.add(egui::Slider::new(&mut options.threshold, 0.05..=1.0).text("Mass kept"));
        }
        ui.add(egui::Slider::new(&mut options.opacity, 0.0..=1.0).text("Opacity"));
        colormap_combo(ui, &mut options.colormap);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    options.view == LiveView::Pca,
                    egui::Button::new("Refit PCA"),
                )
                .on_hover_text("Fit the colours again on the next frame, then hold them")
                .clicked()
            {
                self.commands.refit = true;
            }
            if ui
                .button("Clear tracks")
                .on_hover_text("Forget the clicked points")
                .clicked()
            {
                self.commands.clear = true;
                self.commands.clicks.clear();
            }
        });
    }

    fn record_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.separator();
        match &self.recording {
            Some(recording) => {
                let label = format!("Stop recording ({} frames)", recording.frames());
                if ui.button(label).clicked() {
                    self.stop_recording(ui.ctx(), cx);
                }
            }
            None => {
                let enabled = self.saving.is_none();
                if ui
                    .add_enabled(enabled, egui::Button::new("Record..."))
                    .on_hover_text("Record what is shown to a GIF, or an MP4 (through ffmpeg)")
                    .clicked()
                {
                    let pick = Pick::Save {
                        title: "Record the live view".into(),
                        file_name: "live.gif".into(),
                        filter: ("GIF or MP4", &["gif", "mp4"]),
                    };
                    if let Err(e) = self.dialog.open(ui.ctx(), pick, Purpose::Record) {
                        cx.notifications.error(&e);
                    }
                }
            }
        }
        if self.saving.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Saving the recording");
            });
        }
    }

    /// Starts recording what is shown to `path` (`.gif` or `.mp4`).
    pub fn start_recording(&mut self, path: PathBuf) -> Result<(), AppError> {
        let recording = LiveRecording::start(&path).map_err(|e| AppError::Compute {
            what: "recording".into(),
            detail: e.to_string(),
        })?;
        self.recording = Some(recording);
        Ok(())
    }

    /// Ends the recording; the file is written on its own thread.
    pub fn stop_recording(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        let now = Instant::now();
        let work = move || {
            recording.finish(now).map_err(|e| AppError::Compute {
                what: "the recording".into(),
                detail: e.to_string(),
            })
        };
        match spawn_promise("dinoscope-record", "saving the recording", ctx, work) {
            Ok(promise) => self.saving = Some(promise),
            Err(e) => cx.notifications.error(&e),
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// A recording is being written.
    pub fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Shows the newest analysed frame: uploads it, records it.
    fn show_incoming(&mut self, ctx: &egui::Context) {
        let Some(frame) = self.incoming.take() else {
            return;
        };
        let now = Instant::now();
        let (w, h) = frame.image.dimensions();
        let image = egui::ColorImage::from_rgb([w as usize, h as usize], frame.image.as_raw());
        match &mut self.texture {
            Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
            None => {
                self.texture =
                    Some(ctx.load_texture("live-frame", image, egui::TextureOptions::LINEAR));
            }
        }
        if let Some(recording) = &mut self.recording {
            recording.shown(&frame.image, now);
        }
        self.meter.tick(now, frame.model_time);
        self.shown = Some(frame);
    }
}

impl View for LiveTab {
    fn id(&self) -> ViewTab {
        Self::ID
    }

    fn title(&self) -> &'static str {
        "Live"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        self.source_controls(ui, cx);
        self.view_controls(ui, cx);
        self.record_controls(ui, cx);
    }

    fn central(&mut self, ui: &mut egui::Ui, _cx: &mut ViewContext<'_>) {
        let (Some(texture), Some(frame)) = (&self.texture, &self.shown) else {
            centered(ui, |ui| {
                if self.player.is_some() {
                    ui.spinner();
                } else {
                    ui.label("Choose a camera, a video, an animated GIF or the synthetic scene.");
                }
            });
            return;
        };
        ui.horizontal(|ui| {
            ui.label(self.stats_text());
            if let Some(recording) = &self.recording {
                ui.colored_label(
                    egui::Color32::RED,
                    format!("REC {}", recording.path().display()),
                );
            }
        });
        if let Some(point) = panel::frame_image(ui, texture, frame) {
            self.commands.clicks.push(point);
        }
    }

    /// Hands the newest frame to the worker when no frame is under way.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        let (Some(player), Some(model)) = (&self.player, cx.model) else {
            return;
        };
        if cx.tasks.any::<ModelLoad>() || cx.tasks.any::<LiveKey>() || !player.has_frame() {
            return;
        }
        let mut analyzer = self.analyzer.take().unwrap_or_default();
        self.commands.apply(&mut analyzer);
        let job = LiveJob {
            generation: model.generation,
            frames: player.frames(),
            analyzer,
            options: self.options_for(model),
        };
        cx.worker
            .submit(cx.tasks, LiveKey, "Live: analysing a frame", job);
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let LiveOutput { analyzer, result } = *output.downcast::<LiveOutput>()?;
        self.analyzer = Some(analyzer);
        match result {
            Some(Ok(frame)) => self.incoming = Some(frame),
            Some(Err(e)) => self.failed = Some(e),
            None => {}
        }
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn std::any::Any) {
        // Cancelled (or failed): the user wants it to stop.
        if key.is::<LiveKey>() {
            self.stop();
        }
    }

    fn model_loaded(&mut self, _info: &ModelInfo, _settings: &mut super::state::Settings) {
        // Another model: another feature space.
        self.analyzer = Some(LiveAnalyzer::default());
    }

    fn poll(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        self.show_incoming(ctx);
        if let Some(e) = self.failed.take() {
            self.stop();
            cx.notifications.error(&e);
        }
        if let Some(player) = &self.player {
            if let Some(e) = player.take_error() {
                self.stop();
                cx.notifications.error(&AppError::Compute {
                    what: "the live source".into(),
                    detail: e.to_string(),
                });
            } else if player.is_finished() {
                self.stop();
            }
        }
        if let Some(result) = take_ready(&mut self.saving) {
            match result {
                Ok(summary) => cx.notifications.info(format!(
                    "Recorded {} frames to {}",
                    summary.frames,
                    summary.path.display()
                )),
                Err(e) => cx.notifications.error(&e),
            }
        }
        match self.dialog.poll() {
            Some((purpose, Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    let started = match purpose {
                        Purpose::Open => self.start(SourceSpec::for_path(&path), ctx),
                        Purpose::Record => self.start_recording(path),
                    };
                    if let Err(e) = started {
                        cx.notifications.error(&e);
                    }
                }
            }
            Some((_, Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }
}
