//! Typed errors of the app and the dismissible notifications that show them.

use eframe::egui;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::analysis::features::FeatureError;
use crate::analysis::readout::image_list::ImageSetError;
use crate::arrays::ArrayFileError;
use crate::image_files::{FolderError, SkippedEntry};
use crate::model::CheckpointError;
use crate::model::download::DownloadError;
use crate::model::preprocess::ImageLoadError;
use crate::model::sd::SdDownloadError;

/// Everything that can go wrong in the app; each message names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    #[error("{path}: {source}")]
    Prepare {
        path: String,
        #[source]
        source: ImageLoadError,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    ImageSet(#[from] ImageSetError),
    /// An entry below a folder that could not be searched.
    #[error("{0} (not searched)")]
    Skipped(SkippedEntry),
    #[error("{}: cannot write the file: {detail}", path.display())]
    Export { path: PathBuf, detail: String },
    #[error(transparent)]
    Array(#[from] ArrayFileError),
    #[error("{what} failed: {detail}")]
    Compute { what: String, detail: String },
    #[error("{what}: {source}")]
    Features {
        what: String,
        #[source]
        source: FeatureError,
    },
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    SdDownload(#[from] SdDownloadError),
    #[error("no GPU for the shared renderer: {0}")]
    Device(String),
}

impl AppError {
    /// `what` failed with `detail` (a library error or a message).
    pub fn compute(what: impl Into<String>, detail: impl std::fmt::Display) -> AppError {
        AppError::Compute {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

#[derive(Clone, Debug)]
pub struct Notification {
    pub id: u64,
    pub level: Level,
    pub text: String,
    pub created: Instant,
}

/// The list of messages in the bottom-right corner. Errors stay until dismissed; notes fade after
/// a few seconds.
#[derive(Default)]
pub struct Notifications {
    items: Vec<Notification>,
    next_id: u64,
}

const INFO_LIFETIME: Duration = Duration::from_secs(6);

impl Notifications {
    pub fn error(&mut self, error: &AppError) {
        self.push(Level::Error, error.to_string());
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.push(Level::Info, text.into());
    }

    fn push(&mut self, level: Level, text: String) {
        self.next_id += 1;
        self.items.push(Notification {
            id: self.next_id,
            level,
            text,
            created: Instant::now(),
        });
        // Keep the corner readable.
        if self.items.len() > 8 {
            self.items.remove(0);
        }
    }

    pub fn items(&self) -> &[Notification] {
        &self.items
    }

    pub fn errors(&self) -> impl Iterator<Item = &Notification> {
        self.items.iter().filter(|n| n.level == Level::Error)
    }

    pub fn dismiss(&mut self, id: u64) {
        self.items.retain(|n| n.id != id);
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn show(&mut self, ctx: &egui::Context) {
        self.items
            .retain(|n| n.level == Level::Error || n.created.elapsed() < INFO_LIFETIME);
        if self.items.is_empty() {
            return;
        }
        if self.items.iter().any(|n| n.level == Level::Info) {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        let mut dismissed = None;
        egui::Area::new(egui::Id::unique("notifications"))
            .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -110.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                ui.set_max_width(420.0);
                for n in &self.items {
                    let (fill, title) = match n.level {
                        Level::Error => (egui::Color32::from_rgb(110, 30, 30), "Error"),
                        Level::Info => (egui::Color32::from_rgb(30, 60, 90), "Note"),
                    };
                    egui::Frame::popup(ui.style()).fill(fill).show(ui, |ui| {
                        ui.horizontal(|ui| {
                            ui.label(
                                egui::RichText::new(title)
                                    .strong()
                                    .color(egui::Color32::WHITE),
                            );
                            ui.with_layout(egui::Layout::right_to_left(egui::Align::Min), |ui| {
                                if ui
                                    .small_button("Dismiss")
                                    .on_hover_text("Close this message")
                                    .clicked()
                                {
                                    dismissed = Some(n.id);
                                }
                            });
                        });
                        ui.label(egui::RichText::new(&n.text).color(egui::Color32::WHITE));
                    });
                    ui.add_space(4.0);
                }
            });
        if let Some(id) = dismissed {
            self.dismiss(id);
        }
    }
}

/// A file's name for messages and labels (the whole path when it has no name).
pub fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
