//! Retrieval: the images of the set nearest to a query image (cosine similarity of the embedded
//! features, ranked), and for a query and one result, the patch-level explanation: the mutual
//! nearest neighbours among their patch descriptors drawn as lines, and each patch's best match
//! score as a heatmap (Amir et al. 2021, "Deep ViT Features as Dense Visual Descriptors").

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use image::RgbImage;

use super::job::{EmbedKey, EmbeddedSet};
use super::{ImageAction, PageContext};
use crate::analysis::colormap::{Colormap, render_map};
use crate::analysis::coords::PixelMap;
use crate::analysis::features::{DescriptorSpec, extract};
use crate::analysis::match_explain::{MatchExplanation, explain_match};
use crate::analysis::readout::embed::{EmbedError, embed_images};
use crate::analysis::readout::knn::{Neighbour, nearest};
use crate::analysis::similarity::{Score, ScoringRows};
use crate::app::notifications::{AppError, file_label};
use crate::app::tasks::{Output, TaskContext};
use crate::app::textures::rgb_texture;
use crate::app::view::ViewContext;
use crate::app::worker::{ModelJob, WorkerState};
use crate::model::preprocess::{load_rgb, prepare};
use crate::model::{Facet, Resize};

/// Results ranked for a query.
const RESULTS: usize = 24;

/// Matched patch pairs drawn, strongest first.
const LINES: usize = 40;

/// The smallest side patch descriptors are computed at, so that 98-px embeddings still get a
/// readable grid.
const EXPLAIN_SIDE: u32 = 224;

#[derive(Clone, Debug, PartialEq)]
pub struct ExplainKey {
    pub embed: EmbedKey,
    pub query: PathBuf,
    pub result: PathBuf,
}

/// The image whose neighbours are shown.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryImage {
    /// An image of the set.
    Row(usize),
    /// An image from outside the set (the gallery's selected one, e.g. one dropped on the
    /// window), embedded with the set's settings.
    Outside(Arc<OutsideImage>),
}

#[derive(Debug, PartialEq)]
pub struct OutsideImage {
    pub embed: EmbedKey,
    pub path: PathBuf,
    pub features: Vec<f32>,
}

/// One image of an explained pair, as the model saw it.
pub struct ExplainedImage {
    pub rgb: RgbImage,
    pub pixels: PixelMap,
    /// Each patch's best match score in the other image, coloured.
    pub heatmap: RgbImage,
}

pub struct Explanation {
    pub key: ExplainKey,
    pub images: [ExplainedImage; 2],
    pub matches: MatchExplanation,
}

#[derive(Default)]
pub struct Retrieval {
    pub query: Option<QueryImage>,
    ranked: Option<(QueryImage, Vec<Neighbour>)>,
    /// The result explained (a row of the set).
    pub pair: Option<usize>,
    explanation: Option<Arc<Explanation>>,
    textures: Option<(ExplainKey, [egui::TextureHandle; 4])>,
    dropped: Option<ExplainKey>,
    pub heatmap: bool,
}

impl Retrieval {
    /// The query, when it belongs to `set`.
    fn query_in(&self, set: &EmbeddedSet) -> Option<QueryImage> {
        self.query.clone().filter(|q| match q {
            QueryImage::Row(row) => *row < set.len(),
            QueryImage::Outside(image) => image.embed == set.key,
        })
    }

    fn query_path(&self, set: &EmbeddedSet) -> Option<PathBuf> {
        match self.query_in(set)? {
            QueryImage::Row(row) => set.images.paths.get(row).cloned(),
            QueryImage::Outside(image) => Some(image.path.clone()),
        }
    }

    /// The ranked results of the query (computed when the query changes).
    pub fn ranked(&mut self, set: &EmbeddedSet) -> &[Neighbour] {
        let Some(query) = self.query_in(set) else {
            return &[];
        };
        if self.ranked.as_ref().is_none_or(|(q, _)| *q != query) {
            let found = match &query {
                QueryImage::Row(row) => set.nearest_to(*row, RESULTS),
                QueryImage::Outside(image) => {
                    nearest(&set.features, &image.features, set.dim, RESULTS)
                        .into_iter()
                        .flatten()
                        .collect()
                }
            };
            self.ranked = Some((query, found));
        }
        self.ranked.as_ref().map_or(&[], |(_, r)| r.as_slice())
    }

    pub fn explanation(&self) -> Option<&Arc<Explanation>> {
        self.explanation.as_ref()
    }

    fn key(&self, set: &EmbeddedSet) -> Option<ExplainKey> {
        Some(ExplainKey {
            embed: set.key.clone(),
            query: self.query_path(set)?,
            result: set.images.paths.get(self.pair?)?.clone(),
        })
    }

    /// Asks for the explanation of the pair shown unless it is there, under way or was dropped.
    pub fn request(&mut self, cx: &mut ViewContext<'_>, set: &EmbeddedSet) {
        let Some(key) = self.key(set) else {
            return;
        };
        if self.explanation.as_ref().is_some_and(|e| e.key == key)
            || self.dropped.as_ref() == Some(&key)
        {
            return;
        }
        if cx.tasks.cancel_others(&key) {
            return;
        }
        let paths = [key.query.clone(), key.result.clone()];
        let side = set.key.side.max(EXPLAIN_SIDE);
        let job = ExplainJob {
            key: key.clone(),
            paths,
            side,
        };
        cx.worker
            .submit(cx.tasks, key, "Matching the patches of two images", job);
    }

    /// Embeds `path` (from outside the set) with the set's settings, to be the query.
    pub fn query_outside(&mut self, cx: &mut ViewContext<'_>, set: &EmbeddedSet, path: PathBuf) {
        let job = OutsideJob {
            embed: set.key.clone(),
            path,
        };
        let label = format!("Embedding {}", file_label(&job.path));
        cx.worker.submit(cx.tasks, job.embed.clone(), label, job);
    }

    pub fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<Arc<OutsideImage>>() {
            Ok(image) => {
                self.query = Some(QueryImage::Outside(*image));
                self.pair = None;
                return Ok(());
            }
            Err(other) => other,
        };
        let explanation = output.downcast::<Arc<Explanation>>()?;
        self.explanation = Some(*explanation);
        Ok(())
    }

    pub fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<ExplainKey>() {
            self.dropped = Some(key.clone());
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        pages: &mut PageContext<'_>,
        cx: &mut ViewContext<'_>,
    ) -> Option<ImageAction> {
        let set = pages.set;
        let selected = cx.gallery.selected_entry().map(|e| e.path.clone());
        if let Some(path) = selected
            && ui
                .button(format!("Find images like {}", file_label(&path)))
                .on_hover_text("The gallery's selected image (drop one on the window to add it)")
                .clicked()
        {
            self.query_outside(cx, set, path);
        }
        let Some(query) = self.query_in(set) else {
            ui.label(
                "Click any image in the read-out (or right-click one in the map) to find the images \
                 nearest to it.",
            );
            return None;
        };
        let mut action = None;
        let ranked = self.ranked(set).to_vec();
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.horizontal(|ui| match &query {
                    QueryImage::Row(row) => {
                        action = action.or(pages.image(ui, *row, 96.0));
                        ui.vertical(|ui| {
                            ui.heading(format!("Nearest to {}", pages.file_of(*row)));
                            ui.label(format!("class {}", pages.class_of(*row)));
                            if ui.button("Open in the other views").clicked() {
                                action = Some(ImageAction::Open(*row));
                            }
                        });
                    }
                    QueryImage::Outside(image) => {
                        ui.heading(format!(
                            "Nearest to {} (from the gallery)",
                            image.path.display()
                        ));
                    }
                });
                ui.label("Ranked by cosine similarity; click a result to see which patches match");
                ui.horizontal_wrapped(|ui| {
                    for (rank, n) in ranked.iter().enumerate() {
                        ui.vertical(|ui| {
                            match pages.image(ui, n.row, 72.0) {
                                Some(ImageAction::Query(row)) => self.pair = Some(row),
                                other => action = action.or(other),
                            }
                            let text = format!(
                                "{}. {:.3}\n{}",
                                rank + 1,
                                n.similarity,
                                pages.class_of(n.row)
                            );
                            let mut label = egui::RichText::new(text).small();
                            if self.pair == Some(n.row) {
                                label = label.strong();
                            }
                            ui.label(label);
                        });
                    }
                });
                ui.separator();
                self.explanation_ui(ui, cx, set);
            });
        action
    }

    fn explanation_ui(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>, set: &EmbeddedSet) {
        let Some(key) = self.key(set) else {
            return;
        };
        if self.dropped.as_ref() == Some(&key) {
            if ui.button("Match the patches").clicked() {
                self.dropped = None;
            }
            return;
        }
        let Some(explanation) = self.explanation.clone().filter(|e| e.key == key) else {
            if cx.tasks.any::<ExplainKey>() {
                ui.spinner();
            }
            return;
        };
        let m = &explanation.matches;
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} mutual nearest patch pairs, mean similarity {:.3}; the {} strongest drawn",
                m.pairs.len(),
                m.mean_similarity,
                m.pairs.len().min(LINES)
            ));
            ui.checkbox(&mut self.heatmap, "best-match heatmap");
        });
        let textures = self.textures(ui.ctx(), &explanation);
        draw_pair(ui, &explanation, &textures, self.heatmap);
    }

    fn textures(&mut self, ctx: &egui::Context, e: &Explanation) -> [egui::TextureHandle; 4] {
        if let Some((key, textures)) = &self.textures
            && *key == e.key
        {
            return textures.clone();
        }
        let options = egui::TextureOptions::LINEAR;
        let nearest = egui::TextureOptions::NEAREST;
        let textures = [
            rgb_texture(ctx, "explain-query", &e.images[0].rgb, options),
            rgb_texture(ctx, "explain-result", &e.images[1].rgb, options),
            rgb_texture(ctx, "explain-query-heat", &e.images[0].heatmap, nearest),
            rgb_texture(ctx, "explain-result-heat", &e.images[1].heatmap, nearest),
        ];
        self.textures = Some((e.key.clone(), textures.clone()));
        textures
    }
}

/// The two images side by side (each with its heatmap when asked) and the matched pairs as lines.
fn draw_pair(
    ui: &mut egui::Ui,
    e: &Explanation,
    textures: &[egui::TextureHandle; 4],
    heatmap: bool,
) {
    let width = (ui.available_width() - 16.0).max(200.0) / 2.0;
    let scale_of = |img: &RgbImage| width / img.width().max(1) as f32;
    let height = e
        .images
        .iter()
        .map(|i| i.rgb.height() as f32 * scale_of(&i.rgb))
        .fold(0.0, f32::max);
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(2.0 * width + 16.0, height), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    let origins = [rect.min, rect.min + egui::vec2(width + 16.0, 0.0)];
    for (side, image) in e.images.iter().enumerate() {
        let scale = scale_of(&image.rgb);
        let size = egui::vec2(image.rgb.width() as f32, image.rgb.height() as f32) * scale;
        let shown = egui::Rect::from_min_size(origins[side], size);
        painter.image(textures[side].id(), shown, uv, egui::Color32::WHITE);
        if heatmap {
            let tint = egui::Color32::from_white_alpha(170);
            painter.image(textures[2 + side].id(), shown, uv, tint);
        }
    }
    let at = |side: usize, patch: usize| {
        let image = &e.images[side];
        let (x, y) = image.pixels.patch_center_model(patch);
        origins[side] + egui::vec2(x as f32, y as f32) * scale_of(&image.rgb)
    };
    for pair in e.matches.pairs.iter().take(LINES) {
        let [r, g, b] = Colormap::Viridis.color(pair.similarity.clamp(0.0, 1.0));
        let color = egui::Color32::from_rgb(r, g, b);
        let (a, b) = (at(0, pair.query), at(1, pair.result));
        painter.line_segment([a, b], egui::Stroke::new(1.5, color));
        painter.circle_filled(a, 3.0, color);
        painter.circle_filled(b, 3.0, color);
    }
}

pub struct ExplainJob {
    pub key: ExplainKey,
    pub paths: [PathBuf; 2],
    pub side: u32,
}

impl ModelJob for ExplainJob {
    fn generation(&self) -> u64 {
        self.key.embed.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let ExplainJob { key, paths, side } = *self;
        let vit = state.vit().ok_or_else(|| AppError::Compute {
            what: "matching the patches".into(),
            detail: "no model is loaded".into(),
        })?;
        let patch = vit.config().patch_size;
        // The last block's keys: the facet Amir et al. match with.
        let spec = DescriptorSpec {
            layer: vit.config().depth - 1,
            facet: Facet::Key,
            stride: None,
            log_bin: false,
        };
        let mut prepared = Vec::with_capacity(2);
        let mut maps = Vec::with_capacity(2);
        for path in &paths {
            if task.is_cancelled() {
                return Ok(None);
            }
            let rgb = load_rgb(path)?;
            let resize = Resize::Exact {
                width: side,
                height: side,
            };
            let image =
                prepare(&rgb, resize, patch, usize::MAX).map_err(|source| AppError::Prepare {
                    path: path.display().to_string(),
                    source,
                })?;
            let map = extract(vit, &image, spec).map_err(|source| AppError::Features {
                what: path.display().to_string(),
                source,
            })?;
            prepared.push(image);
            maps.push(map);
        }
        let [query_rows, result_rows] =
            [&maps[0], &maps[1]].map(|m| ScoringRows::from_map(m, Score::Cosine));
        let matches = explain_match(&query_rows, &result_rows).map_err(|e| AppError::Compute {
            what: "matching the patches".into(),
            detail: e.to_string(),
        })?;
        let heat = [matches.query_best.clone(), matches.result_best.clone()];
        let mut images = prepared
            .into_iter()
            .zip(&maps)
            .zip(heat)
            .map(|((image, map), best)| {
                let grid = map.grid;
                ExplainedImage {
                    pixels: PixelMap::new(grid, &image),
                    heatmap: render_map(&best, grid.rows, grid.cols, 1, Colormap::Inferno),
                    rgb: image.rgb,
                }
            });
        let (Some(query), Some(result)) = (images.next(), images.next()) else {
            return Ok(None);
        };
        Ok(Some(Box::new(Arc::new(Explanation {
            key,
            images: [query, result],
            matches,
        }))))
    }
}

/// Embeds one image from outside the set as the set was embedded.
pub struct OutsideJob {
    pub embed: EmbedKey,
    pub path: PathBuf,
}

impl ModelJob for OutsideJob {
    fn generation(&self) -> u64 {
        self.embed.generation
    }

    fn run(
        self: Box<Self>,
        state: &mut WorkerState,
        task: &TaskContext,
    ) -> Result<Option<Output>, AppError> {
        let OutsideJob { embed, path } = *self;
        let failed = |detail: String| AppError::Compute {
            what: format!("embedding {}", path.display()),
            detail,
        };
        let vit = state
            .vit()
            .ok_or_else(|| failed("no model is loaded".into()))?;
        let mut progress = |_: f32, _: &str| !task.is_cancelled();
        let features = match embed_images(
            vit,
            std::slice::from_ref(&path),
            embed.resize(),
            embed.pooling,
            1,
            &mut progress,
        ) {
            Ok(features) => features,
            Err(EmbedError::Cancelled(_)) => return Ok(None),
            Err(e) => return Err(failed(e.to_string())),
        };
        Ok(Some(Box::new(Arc::new(OutsideImage {
            embed,
            path,
            features,
        }))))
    }
}
