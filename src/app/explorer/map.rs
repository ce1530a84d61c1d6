//! The embedding map: the set's image features, or the patch descriptors of the gallery's images
//! (the t-SNE of part descriptors in Amir et al. 2021), laid out in 2-D by PCA or exact t-SNE on
//! the model thread. Images are drawn as thumbnails or points coloured by class, patches as points
//! coloured by image; hover names the file, a click opens the image in the other views (an image's
//! context menu also makes it the retrieval query).

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;

use super::job::{EmbedKey, EmbeddedSet};
use super::{ImageAction, PageContext};
use crate::analysis::embedding_map::{self, MAX_EXACT_POINTS, TsneConfig, TsneError};
use crate::analysis::progress::Cancelled;
use crate::app::notifications::AppError;
use crate::app::state::{InputSize, ViewTab};
use crate::app::tasks::{ImageId, Output, TaskContext};
use crate::app::view::{AppRequest, ViewContext};
use crate::app::worker::{FeatureKey, ImageInput, ModelJob, WorkerState};
use crate::model::Facet;

/// Thumbnails are drawn at the points of maps with at most this many images.
const THUMBNAILS_UP_TO: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapMethod {
    Pca,
    Tsne,
}

/// What the points are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapSubject {
    /// The embedded set's images.
    Images,
    /// The patches of the gallery's images (the last block's keys).
    Patches,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MapSource {
    Set(EmbedKey),
    Patches {
        images: Vec<ImageId>,
        input_size: InputSize,
        generation: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MapKey {
    pub source: MapSource,
    pub method: MapMethod,
}

/// Which image and patch each point of a patch map is.
#[derive(Debug)]
pub struct PatchPoints {
    pub names: Vec<String>,
    pub paths: Vec<PathBuf>,
    /// Per point: (image, row, column).
    pub at: Vec<(usize, usize, usize)>,
    /// Every `step`-th patch is mapped (exact t-SNE is quadratic in the points).
    pub step: usize,
}

#[derive(Debug)]
pub struct MapResult {
    pub key: MapKey,
    pub points: Vec<[f32; 2]>,
    pub patches: Option<PatchPoints>,
    pub elapsed: Duration,
}

pub struct MapView {
    pub method: MapMethod,
    pub subject: MapSubject,
    pub thumbnails: bool,
    pub result: Option<Arc<MapResult>>,
    dropped: Option<MapKey>,
}

impl Default for MapView {
    fn default() -> Self {
        MapView {
            method: MapMethod::Pca,
            subject: MapSubject::Images,
            thumbnails: true,
            result: None,
            dropped: None,
        }
    }
}

/// A colour per class or image (Tableau 10, repeated beyond ten); grey for unlabelled.
fn category_color(category: Option<usize>) -> egui::Color32 {
    match category {
        Some(l) => {
            let c = colorous::TABLEAU10[l % colorous::TABLEAU10.len()];
            egui::Color32::from_rgb(c.r, c.g, c.b)
        }
        None => egui::Color32::GRAY,
    }
}

/// scikit-learn refuses a perplexity of the point count or more: small maps get a third of it.
fn tsne_config(points: usize) -> TsneConfig {
    let default = TsneConfig::default();
    TsneConfig {
        perplexity: default
            .perplexity
            .min((points.saturating_sub(1) as f64 / 3.0).max(1.0)),
        ..default
    }
}

impl MapView {
    fn key(&self, set: Option<&EmbeddedSet>, cx: &ViewContext<'_>) -> Option<MapKey> {
        let source = match self.subject {
            MapSubject::Images => MapSource::Set(set?.key.clone()),
            MapSubject::Patches => {
                let images: Vec<ImageId> = cx.gallery.entries.iter().map(|e| e.id).collect();
                if images.is_empty() {
                    return None;
                }
                MapSource::Patches {
                    images,
                    input_size: cx.settings.input_size,
                    generation: cx.model?.generation,
                }
            }
        };
        Some(MapKey {
            source,
            method: self.method,
        })
    }

    /// Asks for the map the settings choose unless it is there, under way or was dropped.
    pub fn request(&mut self, cx: &mut ViewContext<'_>, set: Option<&Arc<EmbeddedSet>>) {
        let Some(key) = self.key(set.map(|s| s.as_ref()), cx) else {
            return;
        };
        if self.result.as_ref().is_some_and(|r| r.key == key) || self.dropped.as_ref() == Some(&key)
        {
            return;
        }
        if cx.tasks.cancel_others(&key) {
            return;
        }
        let data = match (&key.source, set) {
            (MapSource::Set(_), Some(set)) => MapData::Set(set.clone()),
            (MapSource::Patches { .. }, _) => MapData::Patches(
                cx.gallery
                    .entries
                    .iter()
                    .map(|e| cx.shared().input_of(e))
                    .collect(),
            ),
            (MapSource::Set(_), None) => return,
        };
        let label = match key.method {
            MapMethod::Pca => "PCA map",
            MapMethod::Tsne => "t-SNE map",
        };
        let job = MapJob {
            key: key.clone(),
            data,
        };
        cx.worker.submit(cx.tasks, key, label, job);
    }

    pub fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let result = output.downcast::<Arc<MapResult>>()?;
        self.result = Some(*result);
        Ok(())
    }

    pub fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<MapKey>() {
            self.dropped = Some(key.clone());
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        pages: Option<&mut PageContext<'_>>,
        cx: &mut ViewContext<'_>,
    ) -> Option<ImageAction> {
        let set = pages.as_ref().map(|p| p.set);
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.subject, MapSubject::Images, "Images of the set");
            ui.selectable_value(
                &mut self.subject,
                MapSubject::Patches,
                "Patches of the gallery images",
            )
            .on_hover_text("The last block's keys of every patch of every gallery image");
            ui.separator();
            ui.selectable_value(&mut self.method, MapMethod::Pca, "PCA");
            ui.selectable_value(&mut self.method, MapMethod::Tsne, "t-SNE")
                .on_hover_text(format!(
                    "Exact t-SNE as scikit-learn's (method='exact', init='pca'), for at most \
                     {MAX_EXACT_POINTS} points: patch maps are subsampled to that, larger image \
                     sets are mapped by PCA"
                ));
            if self.subject == MapSubject::Images {
                ui.checkbox(&mut self.thumbnails, "thumbnails")
                    .on_hover_text(format!("for maps of up to {THUMBNAILS_UP_TO} images"));
            }
            if let Some(r) = &self.result {
                ui.label(format!("computed in {:.1} s", r.elapsed.as_secs_f64()));
                if let Some(p) = r.patches.as_ref().filter(|p| p.step > 1) {
                    ui.label(format!("every {}th patch", p.step));
                }
            }
        });
        let Some(key) = self.key(set, cx) else {
            ui.label(match self.subject {
                MapSubject::Images => "Embed a folder to map its images.",
                MapSubject::Patches => "Add images to the gallery to map their patches.",
            });
            return None;
        };
        if self.dropped.as_ref() == Some(&key) && ui.button("Compute the map").clicked() {
            self.dropped = None;
        }
        if self.result.as_ref().is_none_or(|r| r.key != key) && cx.tasks.any::<MapKey>() {
            ui.spinner();
        }
        let result = self.result.clone().filter(|r| r.key == key)?;
        match (&result.patches, pages) {
            (Some(patches), _) => {
                if let Some(path) = draw_patches(ui, &result, patches) {
                    cx.requests.push(AppRequest::OpenImage {
                        path,
                        tab: ViewTab::ATTENTION,
                    });
                }
                None
            }
            (None, Some(pages)) => self.draw_images(ui, pages, &result),
            (None, None) => None,
        }
    }

    fn draw_images(
        &mut self,
        ui: &mut egui::Ui,
        pages: &mut PageContext<'_>,
        result: &MapResult,
    ) -> Option<ImageAction> {
        let set = pages.set;
        let (rect, response) = ui.allocate_exact_size(ui.available_size(), egui::Sense::click());
        let to_screen = screen_transform(&result.points, rect);
        let painter = ui.painter_at(rect);
        let thumbnails = self.thumbnails && result.points.len() <= THUMBNAILS_UP_TO;
        let mut action = None;
        for (row, p) in result.points.iter().enumerate() {
            let at = to_screen(p);
            let color = category_color(set.images.labels.get(row).copied().flatten());
            if thumbnails {
                let thumb = egui::Rect::from_center_size(at, egui::vec2(28.0, 28.0));
                let mut child = ui.new_child(egui::UiBuilder::new().max_rect(thumb));
                action = action.or(pages.image_clicked_as(
                    &mut child,
                    row,
                    28.0,
                    ImageAction::Open(row),
                ));
                painter.rect_stroke(
                    thumb,
                    2.0,
                    egui::Stroke::new(2.0, color),
                    egui::StrokeKind::Outside,
                );
            } else {
                painter.circle_filled(at, 3.5, color);
            }
        }
        if thumbnails {
            return action;
        }
        let hovered = response
            .hover_pos()
            .and_then(|pointer| nearest_point(&result.points, &to_screen, pointer));
        if let Some(row) = hovered {
            painter.circle_stroke(
                to_screen(&result.points[row]),
                6.0,
                egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
            );
            let text = format!("{}\n{}", pages.file_of(row), pages.class_of(row));
            let response = response.on_hover_ui_at_pointer(|ui| {
                ui.label(text);
                pages.image(ui, row, 96.0);
            });
            if response.clicked() {
                action = Some(ImageAction::Open(row));
            }
        }
        action
    }
}

/// Maps the points' bounding box onto `rect` (y up).
fn screen_transform(points: &[[f32; 2]], rect: egui::Rect) -> impl Fn(&[f32; 2]) -> egui::Pos2 {
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for p in points {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let inner = rect.shrink(24.0);
    move |p: &[f32; 2]| {
        let f = |a: usize| (p[a] - lo[a]) / (hi[a] - lo[a]).max(1e-12);
        egui::pos2(
            inner.left() + f(0) * inner.width(),
            inner.bottom() - f(1) * inner.height(),
        )
    }
}

/// The point within 8 points of `pointer`, nearest first.
fn nearest_point(
    points: &[[f32; 2]],
    to_screen: &impl Fn(&[f32; 2]) -> egui::Pos2,
    pointer: egui::Pos2,
) -> Option<usize> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| (i, to_screen(p).distance(pointer)))
        .filter(|(_, d)| *d < 8.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Draws a patch map; returns the image file of a clicked patch.
fn draw_patches(ui: &mut egui::Ui, result: &MapResult, patches: &PatchPoints) -> Option<PathBuf> {
    let (rect, response) = ui.allocate_exact_size(ui.available_size(), egui::Sense::click());
    let to_screen = screen_transform(&result.points, rect);
    let painter = ui.painter_at(rect);
    for (p, &(image, _, _)) in result.points.iter().zip(&patches.at) {
        painter.circle_filled(to_screen(p), 2.5, category_color(Some(image)));
    }
    let mut legend = rect.left_top() + egui::vec2(8.0, 8.0);
    for (i, name) in patches.names.iter().enumerate() {
        painter.circle_filled(legend + egui::vec2(5.0, 7.0), 4.0, category_color(Some(i)));
        painter.text(
            legend + egui::vec2(14.0, 0.0),
            egui::Align2::LEFT_TOP,
            name,
            egui::FontId::proportional(12.0),
            ui.visuals().text_color(),
        );
        legend.y += 16.0;
    }
    let hovered = response
        .hover_pos()
        .and_then(|pointer| nearest_point(&result.points, &to_screen, pointer))?;
    let (image, row, col) = patches.at[hovered];
    let name = patches.names.get(image).cloned().unwrap_or_default();
    let response =
        response.on_hover_text_at_pointer(format!("{name}, patch row {row}, column {col}"));
    response
        .clicked()
        .then(|| patches.paths.get(image).cloned())
        .flatten()
}

enum MapData {
    Set(Arc<EmbeddedSet>),
    Patches(Vec<ImageInput>),
}

pub struct MapJob {
    key: MapKey,
    data: MapData,
}

impl ModelJob for MapJob {
    fn generation(&self) -> u64 {
        match &self.key.source {
            MapSource::Set(embed) => embed.generation,
            MapSource::Patches { generation, .. } => *generation,
        }
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let start = Instant::now();
        let MapJob { key, data } = *self;
        let (features, dim, patches) = match data {
            MapData::Set(set) => (set.features.clone(), set.dim, None),
            MapData::Patches(inputs) => {
                let Some(gathered) = gather_patches(state, &key, &inputs, task)? else {
                    return Ok(None);
                };
                gathered
            }
        };
        let points = match key.method {
            MapMethod::Pca => {
                task.progress("PCA map".into());
                embedding_map::pca_2d(&features, dim)
            }
            MapMethod::Tsne => {
                let mut progress = |done: f32, what: &str| {
                    task.report(format!("t-SNE: {what}"), Some(done));
                    !task.is_cancelled()
                };
                let n = features.len() / dim.max(1);
                if n > MAX_EXACT_POINTS {
                    return Err(AppError::Compute {
                        what: "the t-SNE map".into(),
                        detail: format!(
                            "exact t-SNE maps at most {MAX_EXACT_POINTS} images, the set has {n}; \
                             use PCA"
                        ),
                    });
                }
                match embedding_map::tsne(&features, dim, &tsne_config(n), &mut progress) {
                    Ok(t) => t.embedding,
                    Err(TsneError::Cancelled(Cancelled)) => return Ok(None),
                    Err(e) => {
                        return Err(AppError::Compute {
                            what: "the t-SNE map".into(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        };
        Ok(Some(Box::new(Arc::new(MapResult {
            key,
            points,
            patches,
            elapsed: start.elapsed(),
        }))))
    }
}

type Gathered = (Vec<f32>, usize, Option<PatchPoints>);

/// Every `step`-th patch descriptor of the gallery's images (the last block's keys), at most
/// [`MAX_EXACT_POINTS`] of them; `None` when cancelled.
fn gather_patches(
    state: &mut WorkerState,
    key: &MapKey,
    inputs: &[ImageInput],
    task: &TaskContext,
) -> Result<Option<Gathered>, AppError> {
    let MapSource::Patches { input_size, .. } = key.source else {
        return Ok(None);
    };
    let Some(config) = state.config().cloned() else {
        return Err(AppError::Compute {
            what: "the patch map".into(),
            detail: "no model is loaded".into(),
        });
    };
    let mut maps = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        if task.is_cancelled() {
            return Ok(None);
        }
        task.report(
            format!("Features of {}", input.name),
            Some(i as f32 / inputs.len() as f32),
        );
        let feature_key = FeatureKey {
            image: input.id,
            layer: config.depth - 1,
            facet: Facet::Key,
            stride: config.patch_size,
            log_bin: false,
            input_size,
        };
        maps.push(state.features(feature_key, input)?.1);
    }
    let total: usize = maps.iter().map(|m| m.len()).sum();
    let step = total.div_ceil(MAX_EXACT_POINTS).max(1);
    let dim = maps.first().map_or(0, |m| m.dim);
    let mut features = Vec::new();
    let mut at = Vec::new();
    let mut index = 0;
    for (image, map) in maps.iter().enumerate() {
        for patch in 0..map.len() {
            if index % step == 0 {
                features.extend_from_slice(map.descriptor(patch));
                at.push((image, patch / map.grid.cols, patch % map.grid.cols));
            }
            index += 1;
        }
    }
    let patches = PatchPoints {
        names: inputs.iter().map(|i| i.name.clone()).collect(),
        paths: inputs.iter().map(|i| i.path.clone()).collect(),
        at,
        step,
    };
    Ok(Some((features, dim, Some(patches))))
}
