//! The image list: bundled samples, files and folders (decoded on a loader thread), thumbnails
//! and the gallery strip.

use eframe::egui;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::TextureHandle;
use egui::emath::GuiRounding as _;
use image::RgbImage;

use super::notifications::AppError;
use super::notifications::file_label;
use super::pixels::{PixelStore, WorkingCopy, decode_working_copy};
use super::tasks::{Event, ImageId, TaskContext};
use crate::image_files::find_images;

/// The sample images bundled into the binary (see `assets/images/LICENSES.md`).
pub const SAMPLES: [(&str, &[u8]); 7] = [
    (
        "chelsea.png",
        include_bytes!("../../assets/images/chelsea.png"),
    ),
    (
        "cat_amir.jpg",
        include_bytes!("../../assets/images/cat_amir.jpg"),
    ),
    (
        "guitar_cat.jpg",
        include_bytes!("../../assets/images/guitar_cat.jpg"),
    ),
    (
        "painting_cat.jpg",
        include_bytes!("../../assets/images/painting_cat.jpg"),
    ),
    ("ibex.jpg", include_bytes!("../../assets/images/ibex.jpg")),
    (
        "rocket.jpg",
        include_bytes!("../../assets/images/rocket.jpg"),
    ),
    (
        "cartoon_cat.png",
        include_bytes!("../../assets/images/cartoon_cat.png"),
    ),
];

const THUMBNAIL_SIDE: u32 = 96;
/// Height of the thumbnails in the strip, in points.
const THUMBNAIL_HEIGHT: f32 = 84.0;

/// The key of an image-loading task.
pub struct LoadImages;

/// Something to add to the gallery.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file, or a folder searched recursively for images.
    Path(PathBuf),
    /// One of the bundled [`SAMPLES`].
    Sample(&'static str, &'static [u8]),
    /// An image pasted from the clipboard (stored as `pasted-N.png`, then loaded as a file).
    Pasted(Arc<egui::ColorImage>),
}

/// An image the loader thread decoded: its thumbnail and sizes (the pixels stay in the
/// [`PixelStore`], as long as its budget allows).
pub struct DecodedImage {
    pub path: PathBuf,
    pub name: String,
    pub bundled: bool,
    /// The size jobs get it at (see [`super::pixels::WORKING_LONG_SIDE`]).
    pub size: [u32; 2],
    pub original_size: [u32; 2],
    pub thumbnail: egui::ColorImage,
}

pub struct ImageEntry {
    pub id: ImageId,
    pub name: String,
    pub path: PathBuf,
    /// A bundled sample (not remembered between sessions).
    pub bundled: bool,
    /// The size jobs get it at.
    pub size: [u32; 2],
    pub original_size: [u32; 2],
    pub thumbnail: TextureHandle,
}

#[derive(Default)]
pub struct Gallery {
    pub entries: Vec<ImageEntry>,
    pub selected: Option<ImageId>,
    /// The decoded pixels of the entries, decoded again on demand once dropped.
    pub pixels: PixelStore,
    paths: HashSet<PathBuf>,
    next_id: ImageId,
    /// Scroll the strip to the selected image on the next frame.
    reveal_selected: bool,
    /// Thumbnails drawn in the last frame (only those in view are).
    drawn: usize,
}

/// What the user did in the gallery strip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GalleryAction {
    Select(ImageId),
    MoveLeft,
    MoveRight,
    Remove,
    Add,
}

impl Gallery {
    pub fn add(&mut self, ctx: &egui::Context, image: DecodedImage) -> ImageId {
        self.next_id += 1;
        let id = self.next_id;
        let thumbnail = ctx.load_texture(
            format!("thumbnail-{id}"),
            image.thumbnail,
            egui::TextureOptions::LINEAR,
        );
        self.paths.insert(image.path.clone());
        self.entries.push(ImageEntry {
            id,
            name: image.name,
            path: image.path,
            bundled: image.bundled,
            size: image.size,
            original_size: image.original_size,
            thumbnail,
        });
        if self.selected.is_none() {
            self.selected = Some(id);
        }
        id
    }

    /// A file of this path is in the gallery.
    pub fn contains_path(&self, path: &Path) -> bool {
        self.paths.contains(path)
    }

    /// Thumbnails drawn in the last frame.
    pub fn thumbnails_drawn(&self) -> usize {
        self.drawn
    }

    pub fn index_of(&self, id: ImageId) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    pub fn selected_index(&self) -> Option<usize> {
        self.selected.and_then(|id| self.index_of(id))
    }

    pub fn selected_entry(&self) -> Option<&ImageEntry> {
        self.selected_index().map(|i| &self.entries[i])
    }

    /// Selects `id` and scrolls the strip to it.
    pub fn select(&mut self, id: ImageId) {
        self.selected = Some(id);
        self.reveal_selected = true;
    }

    /// Selects the image `delta` places away (clamped).
    pub fn step_selection(&mut self, delta: isize) {
        if self.entries.is_empty() {
            return;
        }
        let current = self.selected_index().unwrap_or(0) as isize;
        let next = (current + delta).clamp(0, self.entries.len() as isize - 1) as usize;
        self.selected = Some(self.entries[next].id);
        self.reveal_selected = true;
    }

    /// Moves the selected image `delta` places in the list.
    pub fn move_selected(&mut self, delta: isize) {
        if let Some(i) = self.selected_index() {
            let j = (i as isize + delta).clamp(0, self.entries.len() as isize - 1) as usize;
            self.entries.swap(i, j);
            self.reveal_selected = true;
        }
    }

    /// Removes the selected image and selects its neighbour.
    pub fn remove_selected(&mut self) -> Option<ImageId> {
        let i = self.selected_index()?;
        let removed = self.entries.remove(i);
        if !self.entries.iter().any(|e| e.path == removed.path) {
            self.paths.remove(&removed.path);
            self.pixels.forget(&removed.path);
        }
        self.selected = self
            .entries
            .get(i.min(self.entries.len().saturating_sub(1)))
            .map(|e| e.id);
        Some(removed.id)
    }

    /// Paths of the images that came from files, in gallery order.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .filter(|e| !e.bundled)
            .map(|e| e.path.clone())
            .collect()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) -> Option<GalleryAction> {
        let mut action = None;
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(110.0);
                if ui
                    .button("Add images...")
                    .on_hover_text("Open image files (Ctrl+O); you can also drop files or folders on the window")
                    .clicked()
                {
                    action = Some(GalleryAction::Add);
                }
                let has = self.selected_index().is_some();
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(has, egui::Button::new("<"))
                        .on_hover_text("Move the selected image left")
                        .clicked()
                    {
                        action = Some(GalleryAction::MoveLeft);
                    }
                    if ui
                        .add_enabled(has, egui::Button::new(">"))
                        .on_hover_text("Move the selected image right")
                        .clicked()
                    {
                        action = Some(GalleryAction::MoveRight);
                    }
                });
                if ui
                    .add_enabled(has, egui::Button::new("Remove"))
                    .on_hover_text("Remove the selected image from the list (Delete)")
                    .clicked()
                {
                    action = Some(GalleryAction::Remove);
                }
            });
            ui.separator();
            egui::ScrollArea::horizontal()
                .id_salt("gallery-scroll")
                .show_viewport(ui, |ui, _| {
                    if let Some(clicked) = self.strip(ui) {
                        action = Some(GalleryAction::Select(clicked));
                    }
                });
        });
        action
    }

    /// The thumbnails, one button each. The strip's full width is allocated but only the
    /// buttons in view are laid out, so a frame costs the same with 10 images or 10,000.
    fn strip(&mut self, ui: &mut egui::Ui) -> Option<ImageId> {
        let padding = ui.spacing().button_padding;
        let gap = ui.spacing().item_spacing.x;
        let height = THUMBNAIL_HEIGHT + 2.0 * padding.y;
        let widths: Vec<f32> = self
            .entries
            .iter()
            .map(|e| thumbnail_size(&e.thumbnail).x + 2.0 * padding.x)
            .collect();
        let total = widths.iter().map(|w| w + gap).sum::<f32>() - gap;
        let (strip, _) =
            ui.allocate_exact_size(egui::vec2(total.max(0.0), height), egui::Sense::hover());
        let visible = ui.clip_rect();
        let mut clicked = None;
        let mut left = strip.left();
        self.drawn = 0;
        for (entry, width) in self.entries.iter().zip(widths) {
            let rect =
                egui::Rect::from_min_size(egui::pos2(left, strip.top()), egui::vec2(width, height))
                    // Rounded as egui's layout rounds widget positions.
                    .round_ui();
            left += width + gap;
            let selected = self.selected == Some(entry.id);
            if selected && std::mem::take(&mut self.reveal_selected) {
                ui.scroll_to_rect(rect, None);
            }
            if !visible.intersects(rect) {
                continue;
            }
            self.drawn += 1;
            let image = egui::Image::new(&entry.thumbnail)
                .fit_to_exact_size(thumbnail_size(&entry.thumbnail))
                .alt_text(&entry.name);
            let response = ui
                .put(rect, egui::Button::image(image).selected(selected))
                .on_hover_ui(|ui| {
                    let [w, h] = entry.original_size;
                    ui.label(format!("{} ({w}x{h})", entry.name));
                    ui.label(if entry.bundled {
                        "bundled sample".to_string()
                    } else {
                        entry.path.display().to_string()
                    });
                });
            if selected && response.gained_focus() {
                response.scroll_to_me(None);
            }
            if response.clicked() {
                clicked = Some(entry.id);
            }
        }
        clicked
    }
}

/// A thumbnail's size in the strip: equal heights, very wide images capped.
fn thumbnail_size(thumbnail: &TextureHandle) -> egui::Vec2 {
    let size = thumbnail.size_vec2();
    let scale = (THUMBNAIL_HEIGHT / size.y.max(1.0)).min(2.0 * THUMBNAIL_HEIGHT / size.x.max(1.0));
    size * scale
}

/// The images below a folder (recursively, sorted by path); the folder or entries below it that
/// cannot be read are reported by name.
fn folder_images(folder: &Path, task: &TaskContext) -> Vec<PathBuf> {
    let failed = |error| {
        task.events.send(Event::Failed {
            task: task.task,
            error,
        })
    };
    match find_images(folder) {
        Ok(found) => {
            for skipped in found.skipped {
                failed(AppError::Skipped(skipped));
            }
            found.images
        }
        Err(e) => {
            failed(AppError::Folder(e));
            Vec::new()
        }
    }
}

/// Where the bundled samples are written so they are decoded by the same code as files.
fn sample_dir() -> PathBuf {
    std::env::temp_dir().join(format!("dinoscope-samples-{}", env!("CARGO_PKG_VERSION")))
}

fn materialize_sample(name: &str, bytes: &[u8]) -> Result<PathBuf, AppError> {
    let dir = sample_dir();
    let path = dir.join(name);
    let export = |e: std::io::Error| AppError::Export {
        path: path.clone(),
        detail: e.to_string(),
    };
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(export)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(export)?;
    std::fs::rename(&tmp, &path).map_err(export)?;
    Ok(path)
}

/// Where pasted images are stored (one folder per process, so that apps never share a name).
fn pasted_dir() -> PathBuf {
    sample_dir().join(format!("pasted-{}", std::process::id()))
}

/// Writes a pasted image as the first free `pasted-N.png` (N from 1) and returns its path.
fn store_pasted(image: &egui::ColorImage) -> Result<PathBuf, AppError> {
    let dir = pasted_dir();
    let error = |path: &Path, e: String| AppError::Export {
        path: path.to_path_buf(),
        detail: e,
    };
    std::fs::create_dir_all(&dir).map_err(|e| error(&dir, e.to_string()))?;
    let [w, h] = image.size;
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    let rgba = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .filter(|_| w > 0 && h > 0)
        .ok_or_else(|| error(&dir, format!("the pasted image ({w}x{h}) is empty")))?;
    for n in 1.. {
        let path = dir.join(format!("pasted-{n}.png"));
        // Reserve the name atomically, then write the image into it.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                let mut out = std::io::BufWriter::new(file);
                rgba.write_to(&mut out, image::ImageFormat::Png)
                    .map_err(|e| error(&path, e.to_string()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(error(&path, e.to_string())),
        }
    }
    Err(error(&dir, "no free file name".into()))
}

/// The gallery's record of the file at `path` and its working copy.
fn decode(path: &Path, name: String, bundled: bool) -> Result<(DecodedImage, RgbImage), AppError> {
    let WorkingCopy { rgb, original_size } = decode_working_copy(path)?;
    // Longest side 2 x THUMBNAIL_SIDE (sharp on high-DPI screens), aspect ratio kept.
    let (w, h) = (rgb.width().max(1) as f64, rgb.height().max(1) as f64);
    let scale = (2.0 * THUMBNAIL_SIDE as f64 / w.max(h)).min(1.0);
    let thumbnail = image::imageops::thumbnail(
        &rgb,
        ((w * scale).round() as u32).max(1),
        ((h * scale).round() as u32).max(1),
    );
    let thumbnail = egui::ColorImage::from_rgb(
        [thumbnail.width() as usize, thumbnail.height() as usize],
        thumbnail.as_raw(),
    );
    let decoded = DecodedImage {
        path: path.to_path_buf(),
        name,
        bundled,
        size: [rgb.width(), rgb.height()],
        original_size,
        thumbnail,
    };
    Ok((decoded, rgb))
}

/// Decodes `sources` on a new thread; each image arrives as an [`Event::Output`] of a
/// [`DecodedImage`], each failure as [`Event::Failed`] (the others still load), then
/// [`Event::Finished`].
pub fn spawn_loader(sources: Vec<Source>, pixels: PixelStore, task: TaskContext) {
    let thread_task = task.clone();
    let spawned = std::thread::Builder::new()
        .name("dinoscope-loader".into())
        .spawn(move || {
            let files = collect_files(sources, &thread_task);
            decode_files(files, &pixels, &thread_task);
            thread_task.events.send(Event::Finished {
                task: thread_task.task,
            });
        });
    if let Err(e) = spawned {
        task.events
            .not_started(task.task, "starting the image loader", &e);
    }
}

/// The files to decode (and whether each is a bundled sample): folders searched, samples and
/// pasted images written to files.
fn collect_files(sources: Vec<Source>, task: &TaskContext) -> Vec<(PathBuf, bool)> {
    let failed = |error| {
        task.events.send(Event::Failed {
            task: task.task,
            error,
        })
    };
    let mut files = Vec::new();
    for source in sources {
        match source {
            Source::Path(path) if path.is_dir() => {
                let found = folder_images(&path, task);
                if found.is_empty() {
                    task.events.send(Event::Note(format!(
                        "{}: no images found in this folder",
                        path.display()
                    )));
                }
                files.extend(found.into_iter().map(|p| (p, false)));
            }
            Source::Path(path) => files.push((path, false)),
            Source::Sample(name, bytes) => match materialize_sample(name, bytes) {
                Ok(path) => files.push((path, true)),
                Err(error) => failed(error),
            },
            Source::Pasted(image) => match store_pasted(&image) {
                Ok(path) => files.push((path, false)),
                Err(error) => failed(error),
            },
        }
    }
    files
}

fn decode_files(files: Vec<(PathBuf, bool)>, pixels: &PixelStore, task: &TaskContext) {
    let n = files.len();
    for (i, (path, bundled)) in files.into_iter().enumerate() {
        if task.is_cancelled() {
            break;
        }
        let name = file_label(&path);
        task.report(
            format!("Decoding {name} ({}/{n})", i + 1),
            Some(i as f32 / n.max(1) as f32),
        );
        let decoded = std::panic::catch_unwind(|| decode(&path, name.clone(), bundled))
            .unwrap_or_else(|_| {
                Err(AppError::Compute {
                    what: format!("decoding {}", path.display()),
                    detail: "the decoder crashed".into(),
                })
            });
        if task.is_cancelled() {
            break;
        }
        match decoded {
            Ok((image, rgb)) => {
                // The first job on the image will likely want it: kept while the budget allows.
                pixels.keep(&path, Arc::new(rgb));
                task.events.output(image);
            }
            Err(error) => task.events.send(Event::Failed {
                task: task.task,
                error,
            }),
        }
    }
}
