//! What every view's exports share: unique file names, folders, PNG and JSON files written whole
//! or not at all, whose errors name the file, and [`Exports`], which writes each on its own thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use eframe::egui;
use image::RgbImage;
use poll_promise::Promise;

use super::notifications::AppError;
use super::tasks::{TaskId, Tasks, spawn_promise};
use super::view::{ExportJob, Written};
use crate::atomic_file;

/// The key of an export task.
pub struct ExportTask;

/// Exports being written, each on its own thread (encoding and writing never block the UI).
#[derive(Default)]
pub struct Exports {
    running: Vec<(TaskId, Promise<Written>)>,
}

impl Exports {
    /// Starts `job` as a task shown in the status bar.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        tasks: &mut Tasks,
        job: ExportJob,
    ) -> Result<(), AppError> {
        let promise = spawn_promise("dinoscope-export", "the export", ctx, job)?;
        let task = tasks.start(ExportTask, "Exporting", None);
        self.running.push((task.task, promise));
        Ok(())
    }

    /// The exports that ended since the last call: the files written, or the error naming the
    /// file. Their tasks end.
    pub fn finished(&mut self, tasks: &mut Tasks) -> Vec<Written> {
        let mut done = Vec::new();
        let mut running = Vec::new();
        for (task, promise) in self.running.drain(..) {
            match promise.try_take() {
                Ok(result) => {
                    tasks.finished(task);
                    done.push(result);
                }
                Err(promise) => running.push((task, promise)),
            }
        }
        self.running = running;
        done
    }
}

/// What the notification says of an export that worked.
pub fn saved_message(files: &[PathBuf]) -> String {
    match files {
        [one] => format!("Saved {}", one.display()),
        _ => format!(
            "Saved {} files to {}",
            files.len(),
            files
                .first()
                .and_then(|f| f.parent())
                .map_or(String::new(), |d| d.display().to_string())
        ),
    }
}

/// A file-name stem per image name, unique within one export (`-2`, `-3`... appended to repeats).
pub fn unique_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let base = Path::new(name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let mut stem = base.clone();
            let mut n = 1;
            while !used.insert(stem.clone()) {
                n += 1;
                stem = format!("{base}-{n}");
            }
            stem
        })
        .collect()
}

/// Creates the export folder (and its parents).
pub fn create_dir(dir: &Path) -> Result<(), AppError> {
    std::fs::create_dir_all(dir).map_err(|e| AppError::Export {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Saves a PNG whole or not at all (see [`atomic_file`]), naming the file on failure.
pub fn save_png(path: &Path, image: &RgbImage) -> Result<(), AppError> {
    atomic_file::write_with(path, |out| {
        image
            .write_to(out, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .map_err(|e| AppError::Export {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Writes a JSON file (pretty-printed) whole or not at all, naming the file on failure.
pub fn save_json(path: &Path, value: &serde_json::Value) -> Result<(), AppError> {
    let error = |detail: String| AppError::Export {
        path: path.to_path_buf(),
        detail,
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| error(e.to_string()))?;
    atomic_file::write(path, text.as_bytes()).map_err(|e| error(e.to_string()))
}
