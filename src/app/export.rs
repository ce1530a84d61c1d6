//! Exports of the current view: the head-mean overlay as PNG, the attention values as `.npy`,
//! the PCA colourings as PNG + `.npy` per image, and the helpers the co-segmentation and
//! correspondence exports share; exports run on their own thread ([`spawn_export`]).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::notifications::AppError;
use super::pca_job::{PcaImage, PcaResult};
use super::state::Settings;
use super::worker::{AttentionResult, Event, EventSender, TaskId};
use crate::analysis::attention::mass_mask;
use crate::analysis::colormap::{overlay_mask, render_map};
use crate::arrays::write_npy;

/// `image * (1 - opacity) + colours * opacity` (what the screen shows).
fn blend(image: &RgbImage, colours: &RgbImage, opacity: f32) -> RgbImage {
    let a = opacity.clamp(0.0, 1.0);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let p = image.get_pixel(x, y).0;
        let q = colours.get_pixel_checked(x, y).map_or(p, |c| c.0);
        image::Rgb([0, 1, 2].map(|i| (p[i] as f32 * (1.0 - a) + q[i] as f32 * a).round() as u8))
    })
}

/// The head-mean view as the screen shows it (masks, when shown, tinted and outlined in red).
pub fn head_mean_image(result: &AttentionResult, settings: &Settings) -> RgbImage {
    let maps = &result.maps;
    let grid = maps.grid;
    let mean = maps.head_mean();
    let colours = render_map(&mean, grid.rows, grid.cols, grid.stride, settings.colormap);
    let blended = blend(&result.prepared.rgb, &colours, settings.opacity);
    if settings.show_masks {
        let mask = mass_mask(&mean, settings.threshold);
        overlay_mask(&blended, &mask, grid.rows, grid.cols, [255, 0, 0])
    } else {
        blended
    }
}

pub fn export_png(
    path: &Path,
    result: &AttentionResult,
    settings: &Settings,
) -> Result<(), AppError> {
    save_png(path, &head_mean_image(result, settings))
}

/// `[heads, rows, cols]` float32.
pub fn export_npy(path: &Path, result: &AttentionResult) -> Result<(), AppError> {
    let maps = &result.maps;
    write_npy(
        path,
        &[maps.heads, maps.grid.rows, maps.grid.cols],
        &maps.values,
    )?;
    Ok(())
}

/// One image's PCA colouring as the screen shows it (model image size, background black).
pub fn export_pca_png(path: &Path, image: &PcaImage) -> Result<(), AppError> {
    save_png(path, &image.colored)
}

/// One image's PCA projections, `[rows, cols, 3]` float32 (as `dinoscope pca` writes them).
pub fn export_pca_npy(path: &Path, image: &PcaImage) -> Result<(), AppError> {
    write_npy(
        path,
        &[image.grid.rows, image.grid.cols, 3],
        &image.view.projections,
    )?;
    Ok(())
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

/// Saves a PNG, naming the file on failure.
pub fn save_png(path: &Path, image: &RgbImage) -> Result<(), AppError> {
    image.save(path).map_err(|e| AppError::Export {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Writes a JSON file (pretty-printed), naming the file on failure.
pub fn save_json(path: &Path, value: &serde_json::Value) -> Result<(), AppError> {
    let error = |detail: String| AppError::Export {
        path: path.to_path_buf(),
        detail,
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| error(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| error(e.to_string()))
}

/// `<stem>_pca.png` and `<stem>_pca.npy` for every image of the result into `dir` (created if
/// missing; images with the same name get `-2`, `-3`... appended). Returns the files written.
pub fn export_pca(dir: &Path, result: &PcaResult) -> Result<Vec<PathBuf>, AppError> {
    create_dir(dir)?;
    let stems = unique_stems(result.images.iter().map(|i| i.name.as_str()));
    let mut written = Vec::new();
    for (image, stem) in result.images.iter().zip(stems) {
        let png = dir.join(format!("{stem}_pca.png"));
        let npy = dir.join(format!("{stem}_pca.npy"));
        export_pca_png(&png, image)?;
        export_pca_npy(&npy, image)?;
        written.extend([png, npy]);
    }
    Ok(written)
}

/// Runs an export on its own thread (encoding and writing never block the UI); the files
/// written, or the error naming the file, come back as [`Event::Exported`].
pub fn spawn_export(
    task: TaskId,
    events: EventSender,
    export: impl FnOnce() -> Result<Vec<PathBuf>, AppError> + Send + 'static,
) {
    let thread_events = events.clone();
    let spawned = std::thread::Builder::new()
        .name("dinoscope-export".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(export)).unwrap_or_else(|_| {
                Err(AppError::Compute {
                    what: "the export".into(),
                    detail: "internal error".into(),
                })
            });
            thread_events.send(Event::Exported { task, result });
            thread_events.send(Event::Finished { task });
        });
    if let Err(e) = spawned {
        events.not_started(task, "starting the export", &e);
    }
}
