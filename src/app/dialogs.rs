//! Native file dialogs: each runs on its own thread (a dialog blocks the thread that opens it) and
//! comes back as a promise; one at a time per owner.

use std::path::PathBuf;

use eframe::egui;
use poll_promise::Promise;

use super::notifications::AppError;
use super::tasks::{spawn_promise, take_ready};

/// What a dialog asks for.
#[derive(Clone, Debug)]
pub enum Pick {
    /// Files to open, filtered by extension (`filter`: a name and its extensions).
    Files {
        title: String,
        filter: (&'static str, &'static [&'static str]),
    },
    /// One file to open.
    File {
        title: String,
        filter: (&'static str, &'static [&'static str]),
    },
    Folder {
        title: String,
    },
    /// A file to write, with a suggested name.
    Save {
        title: String,
        file_name: String,
        filter: (&'static str, &'static [&'static str]),
    },
}

impl Pick {
    /// Shows the dialog (blocks until it closes); no path when it was cancelled.
    fn show(self) -> Vec<PathBuf> {
        match self {
            Pick::Files { title, filter } => rfd::FileDialog::new()
                .set_title(title)
                .add_filter(filter.0, filter.1)
                .pick_files()
                .unwrap_or_default(),
            Pick::File { title, filter } => rfd::FileDialog::new()
                .set_title(title)
                .add_filter(filter.0, filter.1)
                .pick_file()
                .into_iter()
                .collect(),
            Pick::Folder { title } => rfd::FileDialog::new()
                .set_title(title)
                .pick_folder()
                .into_iter()
                .collect(),
            Pick::Save {
                title,
                file_name,
                filter,
            } => rfd::FileDialog::new()
                .set_title(title)
                .set_file_name(file_name)
                .add_filter(filter.0, filter.1)
                .save_file()
                .into_iter()
                .collect(),
        }
    }
}

/// The paths picked (none when cancelled), or why the dialog could not open.
pub type Picked = Result<Vec<PathBuf>, AppError>;

/// An owner's dialog; `P` says what the answer is for.
pub struct Dialog<P> {
    open: Option<(P, Promise<Picked>)>,
}

impl<P> Default for Dialog<P> {
    fn default() -> Self {
        Dialog { open: None }
    }
}

impl<P> Dialog<P> {
    /// Opens `pick` for `purpose`, unless a dialog of this owner is open already.
    pub fn open(&mut self, ctx: &egui::Context, pick: Pick, purpose: P) -> Result<(), AppError> {
        if self.open.is_some() {
            return Ok(());
        }
        let promise = spawn_promise("dinoscope-dialog", "the file dialog", ctx, move || {
            Ok(pick.show())
        })?;
        self.open = Some((purpose, promise));
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Once the dialog has closed: what it was for and the paths picked (none when cancelled).
    pub fn poll(&mut self) -> Option<(P, Picked)> {
        let (purpose, promise) = self.open.take()?;
        let mut slot = Some(promise);
        match take_ready(&mut slot) {
            Some(paths) => Some((purpose, paths)),
            None => {
                self.open = slot.map(|promise| (purpose, promise));
                None
            }
        }
    }
}
