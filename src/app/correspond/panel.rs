//! The correspondence view: the source image (click or drag a point on it) beside each target,
//! where the similarity of every patch to the point's patch is coloured over the image and the
//! best match is marked; best-buddy pairs are drawn as coloured lines between the images.
//!
//! Scores come from the library's point query (run by the tab when the point's patch changes);
//! this module draws them: a patch-resolution texture per target (re-uploaded only when the
//! scores change), markers and lines as shapes.

use eframe::egui;
use std::collections::HashMap;
use std::sync::Arc;

use egui::{Color32, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Vec2};

use super::job::CorrImage;
use crate::analysis::colormap::{Colormap, render_map};
use crate::analysis::correspond::{BestBuddies, PointMatch, PointQuery};
use crate::app::tasks::ImageId;
use crate::app::textures::rgb_texture;
use crate::model::PreparedImage;

/// Screen position of an original-image pixel-index point `(x, y)` on a tile showing `image`.
pub fn to_screen(rect: Rect, image: &CorrImage, (x, y): (f64, f64)) -> Pos2 {
    let (mx, my) = image.descriptors.pixels.to_model((x + 0.5, y + 0.5));
    let (w, h) = size_of(&image.prepared);
    rect.min
        + Vec2::new(
            (mx / w) as f32 * rect.width(),
            (my / h) as f32 * rect.height(),
        )
}

/// The original-image pixel-index point `(x, y)` under a screen position of a tile.
pub fn from_screen(rect: Rect, image: &CorrImage, pos: Pos2) -> (f64, f64) {
    let (w, h) = size_of(&image.prepared);
    let mx = ((pos.x - rect.min.x) / rect.width()) as f64 * w;
    let my = ((pos.y - rect.min.y) / rect.height()) as f64 * h;
    let (x, y) = image.descriptors.pixels.to_original((mx, my));
    (x - 0.5, y - 0.5)
}

fn size_of(prepared: &PreparedImage) -> (f64, f64) {
    (
        prepared.width().max(1) as f64,
        prepared.height().max(1) as f64,
    )
}

/// Screen rectangle covered by the score texture: one stride-sized cell around each patch
/// centre, so texel centres sit exactly on the patch centres.
fn heatmap_rect(rect: Rect, image: &CorrImage) -> Rect {
    let grid = image.descriptors.grid();
    let (w, h) = size_of(&image.prepared);
    let (half, s) = (grid.patch as f64 / 2.0, grid.stride as f64);
    let x0 = half - s / 2.0;
    let y0 = half - s / 2.0;
    let x1 = (grid.cols as f64 - 1.0) * s + half + s / 2.0;
    let y1 = (grid.rows as f64 - 1.0) * s + half + s / 2.0;
    let at = |x: f64, y: f64| {
        rect.min
            + Vec2::new(
                (x / w) as f32 * rect.width(),
                (y / h) as f32 * rect.height(),
            )
    };
    Rect::from_min_max(at(x0, y0), at(x1, y1))
}

/// Colour of best-buddy pair `i` of `n` (evenly spaced hues).
pub fn pair_colour(i: usize, n: usize) -> Color32 {
    let hue = i as f32 / n.max(1) as f32;
    egui::ecolor::Hsva::new(hue, 0.9, 1.0, 1.0).into()
}

/// What the view shows this frame.
pub struct Shown<'a> {
    pub source: &'a Arc<CorrImage>,
    /// Targets whose descriptors are ready.
    pub targets: Vec<&'a Arc<CorrImage>>,
    /// The source point (original pixel-index coordinates).
    pub point: Option<(f64, f64)>,
    /// The newest answered query with the targets of its matches (in order); the stamp changes
    /// whenever the scores do.
    pub query: Option<(&'a PointQuery, &'a [ImageId], u64)>,
    /// Best buddies per target.
    pub buddies: Vec<(ImageId, &'a BestBuddies)>,
    pub colormap: Colormap,
    pub opacity: f32,
    pub tile: f32,
}

#[derive(Default)]
pub struct CorrPanel {
    /// Image textures per gallery image (keyed by the prepared image's address).
    images: HashMap<ImageId, (usize, TextureHandle)>,
    /// Score textures per target, with the stamp and colormap they show.
    heatmaps: HashMap<ImageId, (u64, Colormap, TextureHandle)>,
    /// Screen rectangles of the last frame, for tests and tools.
    pub source_rect: Option<(ImageId, Rect)>,
    pub target_rects: Vec<(ImageId, Rect)>,
    /// Best-match markers of the last frame: target and screen position.
    pub markers: Vec<(ImageId, Pos2)>,
}

impl CorrPanel {
    fn image_texture(&mut self, ctx: &egui::Context, image: &CorrImage) -> egui::TextureId {
        let key = Arc::as_ptr(&image.prepared) as usize;
        if self.images.get(&image.id).is_none_or(|(k, _)| *k != key) {
            let texture = rgb_texture(
                ctx,
                format!("corr-image-{}", image.id),
                &image.prepared.rgb,
                TextureOptions::LINEAR,
            );
            self.images.insert(image.id, (key, texture));
        }
        self.images
            .get(&image.id)
            .map_or(egui::TextureId::default(), |(_, t)| t.id())
    }

    fn heatmap_texture(
        &mut self,
        ctx: &egui::Context,
        target: ImageId,
        found: &PointMatch,
        stamp: u64,
        colormap: Colormap,
    ) -> egui::TextureId {
        let fresh = self
            .heatmaps
            .get(&target)
            .is_some_and(|(s, c, _)| *s == stamp && *c == colormap);
        if !fresh {
            let g = found.grid;
            let rgb = render_map(&found.scores, g.rows, g.cols, 1, colormap);
            let colour = egui::ColorImage::from_rgb([g.cols, g.rows], rgb.as_raw());
            match self.heatmaps.get_mut(&target) {
                Some((s, c, texture)) => {
                    texture.set(colour, TextureOptions::LINEAR);
                    (*s, *c) = (stamp, colormap);
                }
                None => {
                    let texture = ctx.load_texture(
                        format!("corr-heatmap-{target}"),
                        colour,
                        TextureOptions::LINEAR,
                    );
                    self.heatmaps.insert(target, (stamp, colormap, texture));
                }
            }
        }
        self.heatmaps
            .get(&target)
            .map_or(egui::TextureId::default(), |(_, _, t)| t.id())
    }

    /// Draws the view; returns the new source point when the user clicked or dragged on it.
    pub fn ui(&mut self, ui: &mut egui::Ui, shown: &Shown<'_>) -> Option<(f64, f64)> {
        self.target_rects.clear();
        self.markers.clear();
        let (rects, picked) = self.tiles(ui, shown);
        let painter = ui.painter().clone();
        let source_rect = rect_of(&rects, shown.source.id);
        self.source_rect = source_rect.map(|r| (shown.source.id, r));
        if let Some(source_rect) = source_rect {
            self.paint_scores(ui.ctx(), &painter, shown, &rects, source_rect);
            if let Some(point) = shown.point {
                crosshair(&painter, to_screen(source_rect, shown.source, point));
            }
            paint_buddies(&painter, shown, &rects, source_rect);
        }
        self.target_rects = rects
            .into_iter()
            .filter(|(id, _)| *id != shown.source.id)
            .collect();
        picked
    }

    /// The source and the targets in rows of tiles; their screen rectangles, and the point the
    /// user clicked or dragged to on the source.
    fn tiles(&mut self, ui: &mut egui::Ui, shown: &Shown<'_>) -> (TileRects, Option<(f64, f64)>) {
        let spacing = 12.0;
        let mut all: Vec<&Arc<CorrImage>> = vec![shown.source];
        all.extend(shown.targets.iter().copied());
        let per_row = (((ui.available_width() + spacing) / (shown.tile + spacing)) as usize).max(1);
        let mut rects: Vec<(ImageId, Rect)> = Vec::new();
        let mut picked = None;
        for (row, chunk) in all.chunks(per_row).enumerate() {
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(spacing);
                for (j, image) in chunk.iter().enumerate() {
                    let is_source = row == 0 && j == 0;
                    let (rect, clicked) = ui
                        .vertical(|ui| self.tile(ui, image, shown.tile, is_source))
                        .inner;
                    picked = picked.or(clicked);
                    rects.push((image.id, rect));
                }
            });
            ui.add_space(spacing);
        }
        (rects, picked)
    }

    /// One image under its title; for the source, the point clicked or dragged to.
    fn tile(
        &mut self,
        ui: &mut egui::Ui,
        image: &CorrImage,
        tile: f32,
        is_source: bool,
    ) -> (Rect, Option<(f64, f64)>) {
        let (role, sense) = if is_source {
            ("Source", Sense::click_and_drag())
        } else {
            ("Target", Sense::hover())
        };
        ui.label(egui::RichText::new(format!("{role}: {}", image.name)).strong());
        let (w, h) = size_of(&image.prepared);
        let size = Vec2::new(tile, tile * (h / w) as f32);
        let (rect, response) = ui.allocate_exact_size(size, sense);
        let accessible = format!("correspondence {} {}", role.to_lowercase(), image.name);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &accessible));
        let texture = self.image_texture(ui.ctx(), image);
        ui.painter().image(texture, rect, FULL_UV, Color32::WHITE);
        let mut picked = None;
        if is_source {
            if (response.clicked() || response.dragged())
                && let Some(pos) = response.interact_pointer_pos()
                && rect.contains(pos)
            {
                picked = Some(from_screen(rect, image, pos));
            }
            response.on_hover_text_at_pointer("click or drag: match this point in the targets");
        }
        (rect, picked)
    }

    /// The query patch on the source; the scores over each target with its best match marked.
    fn paint_scores(
        &mut self,
        ctx: &egui::Context,
        painter: &egui::Painter,
        shown: &Shown<'_>,
        rects: &[(ImageId, Rect)],
        source_rect: Rect,
    ) {
        let Some((query, ids, stamp)) = shown.query else {
            return;
        };
        let centre = shown
            .source
            .descriptors
            .pixels
            .patch_center(query.source_patch);
        painter.rect_stroke(
            patch_outline(source_rect, shown.source, centre),
            0.0,
            Stroke::new(1.5, Color32::WHITE),
            egui::StrokeKind::Outside,
        );
        let alpha = (shown.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
        for (id, found) in ids.iter().zip(&query.matches) {
            let (Some(target), Some(rect)) = (
                shown.targets.iter().find(|t| t.id == *id),
                rect_of(rects, *id),
            ) else {
                continue;
            };
            let texture = self.heatmap_texture(ctx, target.id, found, stamp, shown.colormap);
            painter.with_clip_rect(rect).image(
                texture,
                heatmap_rect(rect, target),
                FULL_UV,
                Color32::from_white_alpha(alpha),
            );
            let best = to_screen(rect, target, found.best_pixel);
            marker(painter, best);
            self.markers.push((target.id, best));
        }
    }
}

/// Each image's screen rectangle.
type TileRects = Vec<(ImageId, Rect)>;

/// The whole texture.
const FULL_UV: Rect = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));

fn rect_of(rects: &[(ImageId, Rect)], id: ImageId) -> Option<Rect> {
    rects.iter().find(|(i, _)| *i == id).map(|(_, r)| *r)
}

/// Best-buddy pairs as lines from the source to each target.
fn paint_buddies(
    painter: &egui::Painter,
    shown: &Shown<'_>,
    rects: &[(ImageId, Rect)],
    source_rect: Rect,
) {
    for (target_id, buddies) in &shown.buddies {
        let (Some(target), Some(b_rect)) = (
            shown.targets.iter().find(|t| t.id == *target_id),
            rect_of(rects, *target_id),
        ) else {
            continue;
        };
        let n = buddies.pairs.len();
        for (i, pair) in buddies.pairs.iter().enumerate() {
            let colour = pair_colour(i, n);
            let a = to_screen(source_rect, shown.source, pair.pixel_a);
            let b = to_screen(b_rect, target, pair.pixel_b);
            painter.line_segment([a, b], Stroke::new(1.5, colour));
            for p in [a, b] {
                painter.circle(p, 4.0, colour, Stroke::new(1.0, Color32::BLACK));
            }
        }
    }
}

/// Screen rectangle of the stride cell around a patch centre (original pixel coordinates).
fn patch_outline(rect: Rect, image: &CorrImage, (cx, cy): (f64, f64)) -> Rect {
    let grid = image.descriptors.grid();
    let (sx, sy) = image.descriptors.pixels.scale;
    let half_x = grid.stride as f64 / 2.0 / sx;
    let half_y = grid.stride as f64 / 2.0 / sy;
    let a = to_screen(rect, image, (cx - half_x - 0.5, cy - half_y - 0.5));
    let b = to_screen(rect, image, (cx + half_x - 0.5, cy + half_y - 0.5));
    Rect::from_min_max(a, b)
}

fn crosshair(painter: &egui::Painter, at: Pos2) {
    for (stroke, r) in [
        (Stroke::new(3.0, Color32::BLACK), 8.0),
        (Stroke::new(1.5, Color32::WHITE), 7.0),
    ] {
        painter.line_segment([at - Vec2::X * r, at + Vec2::X * r], stroke);
        painter.line_segment([at - Vec2::Y * r, at + Vec2::Y * r], stroke);
    }
}

fn marker(painter: &egui::Painter, at: Pos2) {
    painter.circle_stroke(at, 7.0, Stroke::new(3.0, Color32::BLACK));
    painter.circle_stroke(at, 7.0, Stroke::new(1.5, Color32::from_rgb(255, 60, 60)));
    painter.circle_filled(at, 2.0, Color32::from_rgb(255, 60, 60));
}
