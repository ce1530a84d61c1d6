//! The checkpoint download manager (Model menu): the official DINO / DINOv2 backbones, each
//! downloaded on its own thread with progress and cancel, resumable, SHA-256 verified when a
//! hash is given (the computed hash is always shown), stored in the cache folder, then loaded.

use eframe::egui;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::notifications::AppError;
use super::tasks::{Event, TaskContext, TaskId};
use crate::model::download::{
    CACHE_ENV, DownloadError, OFFICIAL, OfficialCheckpoint, download, parse_sha256, part_path,
    recorded_hash,
};

/// One download to run.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadRequest {
    /// Catalogue id (or any label for other URLs); one download per id at a time.
    pub id: String,
    pub title: String,
    pub url: String,
    pub dest: PathBuf,
    pub expected_sha256: Option<String>,
}

impl DownloadRequest {
    /// The request for an official checkpoint stored in `dir`.
    pub fn official(entry: &OfficialCheckpoint, dir: &Path, expected: Option<String>) -> Self {
        DownloadRequest {
            id: entry.id.to_string(),
            title: entry.title.to_string(),
            url: entry.url.to_string(),
            dest: dir.join(entry.file_name()),
            expected_sha256: expected.or(entry.sha256.map(str::to_string)),
        }
    }
}

/// What the user asked for in the window.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadAction {
    Start(DownloadRequest),
    Load(PathBuf),
    Cancel(String),
}

/// A download under way, as the window shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Active {
    pub task: TaskId,
    pub fraction: Option<f32>,
    pub label: String,
}

#[derive(Default)]
pub struct Downloads {
    pub open: bool,
    /// Where checkpoints are stored; `None` when no cache folder could be found.
    pub dir: Option<PathBuf>,
    /// Expected SHA-256 typed by the user, per id.
    expected: HashMap<String, String>,
    /// Downloads under way, per id.
    pub active: HashMap<String, Active>,
    /// Last outcome per id: the computed SHA-256 (and whether it was checked), or the error.
    pub outcome: HashMap<String, Result<(String, bool), String>>,
    /// What the cache folder holds per id, read at most once a second (not every frame).
    disk: HashMap<String, (Instant, OnDisk)>,
}

/// A checkpoint's files in the cache folder.
#[derive(Clone, Debug, Default, PartialEq)]
struct OnDisk {
    /// The finished file exists.
    complete: bool,
    /// Its recorded SHA-256.
    recorded: Option<String>,
    /// Bytes of an unfinished `.part`.
    partial: Option<u64>,
}

impl OnDisk {
    fn read(dest: &Path) -> OnDisk {
        OnDisk {
            complete: dest.is_file(),
            recorded: recorded_hash(dest),
            partial: std::fs::metadata(part_path(dest)).ok().map(|m| m.len()),
        }
    }
}

impl Downloads {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Downloads {
            dir,
            ..Downloads::default()
        }
    }

    /// Records the task of a started download.
    pub fn started(&mut self, id: &str, task: TaskId) {
        self.outcome.remove(id);
        self.active.insert(
            id.to_string(),
            Active {
                task,
                fraction: None,
                label: "starting".into(),
            },
        );
    }

    /// The id of the download run by `task`.
    pub fn id_of(&self, task: TaskId) -> Option<String> {
        self.active
            .iter()
            .find(|(_, a)| a.task == task)
            .map(|(id, _)| id.clone())
    }

    pub fn progress(&mut self, task: TaskId, label: &str, fraction: Option<f32>) {
        if let Some(a) = self.active.values_mut().find(|a| a.task == task) {
            a.label = label.to_string();
            if fraction.is_some() {
                a.fraction = fraction;
            }
        }
    }

    /// A task ended (finished, failed or cancelled): no longer active.
    pub fn ended(&mut self, task: TaskId, outcome: Option<Result<(String, bool), String>>) {
        if let Some(id) = self.id_of(task) {
            self.active.remove(&id);
            self.disk.remove(&id);
            if let Some(o) = outcome {
                self.outcome.insert(id, o);
            }
        }
    }

    /// The window; returns what the user asked for.
    pub fn window(&mut self, ctx: &egui::Context) -> Option<DownloadAction> {
        let mut action = None;
        let mut open = self.open;
        egui::Window::new("Download checkpoints")
            .open(&mut open)
            .default_width(720.0)
            .collapsible(false)
            .show(ctx, |ui| action = self.contents(ui));
        self.open = open;
        action
    }

    fn contents(&mut self, ui: &mut egui::Ui) -> Option<DownloadAction> {
        let mut action = None;
        match &self.dir {
            Some(dir) => ui.label(format!("Stored in {}", dir.display())),
            None => ui.colored_label(
                egui::Color32::from_rgb(255, 140, 60),
                format!("No cache folder: set {CACHE_ENV} (or HOME / XDG_CACHE_HOME)"),
            ),
        };
        ui.label(
            egui::RichText::new(format!(
                "Official backbones from dl.fbaipublicfiles.com. Downloads resume where they stopped. \
                 No checksums are published: paste one to verify against it; the SHA-256 of every \
                 download is computed and recorded ({CACHE_ENV} overrides the folder)."
            ))
            .weak(),
        );
        ui.separator();
        let dir = self.dir.clone();
        egui::ScrollArea::vertical()
            .max_height(460.0)
            .show(ui, |ui| {
                egui::Grid::new("downloads-grid")
                    .num_columns(4)
                    .striped(true)
                    .spacing([12.0, 6.0])
                    .show(ui, |ui| {
                        for entry in &OFFICIAL {
                            if let Some(a) = self.row(ui, entry, dir.as_deref()) {
                                action = Some(a);
                            }
                            ui.end_row();
                        }
                    });
            });
        action
    }

    fn row(
        &mut self,
        ui: &mut egui::Ui,
        entry: &OfficialCheckpoint,
        dir: Option<&Path>,
    ) -> Option<DownloadAction> {
        ui.vertical(|ui| {
            ui.label(egui::RichText::new(entry.title).strong())
                .on_hover_text(entry.url);
            ui.label(egui::RichText::new(entry.note).weak());
        });
        ui.label(size_label(entry.size_mb));
        let dest = dir.map(|d| d.join(entry.file_name()));
        let on_disk = match &dest {
            Some(d) => self.on_disk(entry.id, d),
            None => OnDisk::default(),
        };
        let cancel = ui
            .vertical(|ui| {
                ui.set_min_width(260.0);
                self.state_cell(ui, entry.id, &on_disk)
            })
            .inner;
        let start = ui
            .vertical(|ui| self.actions_cell(ui, entry, dir, dest.as_deref(), &on_disk))
            .inner;
        cancel.or(start)
    }

    /// What the cache folder holds for `id`, read at most once a second.
    fn on_disk(&mut self, id: &str, dest: &Path) -> OnDisk {
        let stale = self
            .disk
            .get(id)
            .is_none_or(|(read, _)| read.elapsed() > Duration::from_secs(1));
        if stale {
            self.disk
                .insert(id.to_string(), (Instant::now(), OnDisk::read(dest)));
        }
        self.disk
            .get(id)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    }

    /// The download's progress (with Cancel), its outcome, or what the cache holds.
    fn state_cell(&self, ui: &mut egui::Ui, id: &str, on_disk: &OnDisk) -> Option<DownloadAction> {
        if let Some(active) = self.active.get(id) {
            let mut cancel = None;
            ui.horizontal(|ui| {
                match active.fraction {
                    Some(f) => ui.add(
                        egui::ProgressBar::new(f)
                            .desired_width(160.0)
                            .show_percentage(),
                    ),
                    None => ui.spinner(),
                };
                if ui.button("Cancel").clicked() {
                    cancel = Some(DownloadAction::Cancel(id.to_string()));
                }
            });
            ui.label(egui::RichText::new(&active.label).weak());
            return cancel;
        }
        match (self.outcome.get(id), &on_disk.recorded, on_disk.partial) {
            (Some(Ok((sha, verified))), _, _) => {
                ui.label(if *verified {
                    "downloaded, SHA-256 verified"
                } else {
                    "downloaded"
                });
                sha_label(ui, sha);
            }
            (Some(Err(e)), _, _) => {
                ui.colored_label(egui::Color32::from_rgb(255, 110, 110), e);
            }
            (None, Some(sha), _) => {
                ui.label("in the cache");
                sha_label(ui, sha);
            }
            (None, None, Some(bytes)) => {
                ui.label(format!("{} downloaded, can resume", size_bytes(bytes)));
            }
            (None, None, None) => {
                ui.label(egui::RichText::new("not downloaded").weak());
            }
        }
        None
    }

    /// Load, Download / Resume / Download again, and the expected SHA-256.
    fn actions_cell(
        &mut self,
        ui: &mut egui::Ui,
        entry: &OfficialCheckpoint,
        dir: Option<&Path>,
        dest: Option<&Path>,
        on_disk: &OnDisk,
    ) -> Option<DownloadAction> {
        let mut action = None;
        let busy = self.active.contains_key(entry.id);
        let have = on_disk.complete;
        if have
            && let Some(d) = dest
            && ui
                .add_enabled(!busy, egui::Button::new("Load"))
                .on_hover_text(d.display().to_string())
                .clicked()
        {
            action = Some(DownloadAction::Load(d.to_path_buf()));
        }
        let text = self.expected.entry(entry.id.to_string()).or_default();
        let valid = text.trim().is_empty() || parse_sha256(text).is_ok();
        let label = if have {
            "Download again"
        } else if on_disk.partial.is_some() {
            "Resume"
        } else {
            "Download"
        };
        if ui
            .add_enabled(!busy && valid && dir.is_some(), egui::Button::new(label))
            .on_hover_text(format!("{}\nthen load it", entry.url))
            .clicked()
            && let Some(d) = dir
        {
            let expected = Some(text.trim().to_string()).filter(|t| !t.is_empty());
            action = Some(DownloadAction::Start(DownloadRequest::official(
                entry, d, expected,
            )));
        }
        ui.add(
            egui::TextEdit::singleline(text)
                .hint_text("expected SHA-256 (optional)")
                .desired_width(200.0),
        );
        if !valid {
            ui.colored_label(
                egui::Color32::from_rgb(255, 110, 110),
                "64 hexadecimal digits",
            );
        }
        action
    }
}

fn sha_label(ui: &mut egui::Ui, sha: &str) {
    let short = format!(
        "SHA-256 {}...{}",
        &sha[..12.min(sha.len())],
        &sha[sha.len().saturating_sub(6)..]
    );
    ui.label(egui::RichText::new(short).monospace().weak())
        .on_hover_text(sha);
}

fn size_label(mb: f32) -> String {
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.0} MB")
    }
}

fn size_bytes(bytes: u64) -> String {
    size_label(bytes as f32 / 1e6)
}

/// A finished (and, when a hash was given, verified) download, sent back as an
/// [`Event::Output`].
pub struct Downloaded {
    pub task: TaskId,
    pub title: String,
    pub verified: bool,
    pub result: crate::model::download::Downloaded,
}

/// The key of a download task: its catalogue id.
pub struct DownloadTask(pub String);

/// Runs the download on a new thread; progress as [`Event::Progress`] (a few per second), the
/// outcome as [`Downloaded`] or [`Event::Failed`], then [`Event::Finished`].
pub fn spawn_download(request: DownloadRequest, task: TaskContext) {
    let thread_task = task.clone();
    let spawned = std::thread::Builder::new()
        .name("dinoscope-download".into())
        .spawn(move || {
            let task = thread_task;
            let mut last = Instant::now() - Duration::from_secs(1);
            let mut report = |p: crate::model::download::DownloadProgress| {
                if task.is_cancelled() {
                    return false;
                }
                let done = p.total.is_some_and(|t| p.received >= t);
                if done || last.elapsed() >= Duration::from_millis(100) {
                    last = Instant::now();
                    task.report(progress_label(&request.title, &p), p.fraction());
                }
                true
            };
            let outcome = download(
                &request.url,
                &request.dest,
                request.expected_sha256.as_deref(),
                &mut report,
            );
            match outcome {
                Ok(result) => task.events.output(Downloaded {
                    task: task.task,
                    title: request.title.clone(),
                    verified: request.expected_sha256.is_some(),
                    result,
                }),
                Err(DownloadError::Cancelled) => {}
                Err(e) => task.events.send(Event::Failed {
                    task: task.task,
                    error: AppError::Download(e),
                }),
            }
            task.events.send(Event::Finished { task: task.task });
        });
    if let Err(e) = spawned {
        task.events
            .not_started(task.task, "starting the download", &e);
    }
}

fn progress_label(title: &str, p: &crate::model::download::DownloadProgress) -> String {
    match p.total {
        Some(t) => format!("{title}: {} of {}", size_bytes(p.received), size_bytes(t)),
        None => format!("{title}: {}", size_bytes(p.received)),
    }
}
