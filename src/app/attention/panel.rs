//! The attention view's drawing: one tile per head plus the head mean, each the input image with its
//! attention coloured over it, mass-mask outlines, hover read-out and click-to-query.
//!
//! With the wgpu renderer, each map is uploaded once and coloured by the WGSL shader
//! ([`super::patch_overlay`]): colormap and opacity are uniforms. Without it (headless tests), maps
//! are coloured once per result and colormap into patch-resolution textures. Outlines are line
//! shapes, so moving any slider costs no model work.

use eframe::egui;
use std::sync::Arc;

use egui::{Color32, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Vec2};

use super::job::{AttentionResult, AttnKey};
use super::patch_overlay::{self, OverlayStyle, PatchMap};
use crate::analysis::attention::{Query, mass_mask};
use crate::analysis::colormap::{Colormap, render_map};
use crate::app::state::Settings;
use crate::app::textures::rgb_texture;
use crate::model::Grid;

/// Colours of one result under one colormap.
struct Rendered {
    key: AttnKey,
    colormap: Colormap,
    /// Per head, then the head mean last.
    textures: Vec<TextureHandle>,
}

/// Mass masks of one result under one threshold.
struct Masks {
    key: AttnKey,
    threshold: f32,
    /// Per head, then the head mean last.
    masks: Vec<Vec<bool>>,
}

/// The patch under the pointer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hover {
    /// `None` for the head mean.
    pub head: Option<usize>,
    pub row: usize,
    pub col: usize,
    pub value: f32,
}

#[derive(Default)]
pub struct AttentionPanel {
    rendered: Option<Rendered>,
    masks: Option<Masks>,
    image: Option<(usize, TextureHandle)>,
    /// Head mean of the shown result.
    mean: Option<(AttnKey, Arc<Vec<f32>>)>,
    pub hover: Option<Hover>,
    /// Screen rectangles of the tiles of the last frame (head `None` = mean), for tests and tools.
    pub tile_rects: Vec<(Option<usize>, Rect)>,
    /// Colour on the GPU (set when the WGSL overlay renderer is installed).
    pub gpu: bool,
}

/// A stable id for map `index` of the result `key` (the GPU keeps uploads under it).
fn map_id(key: AttnKey, index: usize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (key, index).hash(&mut hasher);
    hasher.finish()
}

/// Grid cell under a point of a tile showing the whole prepared image.
pub fn cell_at(
    rect: Rect,
    grid: Grid,
    image_size: [usize; 2],
    pos: Pos2,
) -> Option<(usize, usize)> {
    if !rect.contains(pos) || grid.is_empty() {
        return None;
    }
    // Pixel of the prepared image, then the patch whose stride cell holds it.
    let x = (pos.x - rect.min.x) / rect.width() * image_size[0] as f32;
    let y = (pos.y - rect.min.y) / rect.height() * image_size[1] as f32;
    let col = (x.max(0.0) as usize / grid.stride).min(grid.cols - 1);
    let row = (y.max(0.0) as usize / grid.stride).min(grid.rows - 1);
    Some((row, col))
}

/// Screen rectangle of a grid cell.
pub fn cell_rect(rect: Rect, grid: Grid, image_size: [usize; 2], row: usize, col: usize) -> Rect {
    let sx = rect.width() / image_size[0].max(1) as f32;
    let sy = rect.height() / image_size[1].max(1) as f32;
    let s = grid.stride as f32;
    Rect::from_min_size(
        rect.min + Vec2::new(col as f32 * s * sx, row as f32 * s * sy),
        Vec2::new(s * sx, s * sy),
    )
}

fn color_image(values: &[f32], grid: Grid, colormap: Colormap) -> egui::ColorImage {
    let rgb = render_map(values, grid.rows, grid.cols, 1, colormap);
    egui::ColorImage::from_rgb([grid.cols, grid.rows], rgb.as_raw())
}

impl AttentionPanel {
    pub fn mean(&mut self, key: AttnKey, result: &AttentionResult) -> Arc<Vec<f32>> {
        match &self.mean {
            Some((k, m)) if *k == key => m.clone(),
            _ => {
                let m = Arc::new(result.maps.head_mean());
                self.mean = Some((key, m.clone()));
                m
            }
        }
    }

    fn ensure_textures(
        &mut self,
        ctx: &egui::Context,
        key: AttnKey,
        result: &AttentionResult,
        settings: &Settings,
    ) {
        let maps = &result.maps;
        let fresh = self.gpu
            || matches!(&self.rendered, Some(r) if r.key == key && r.colormap == settings.colormap);
        if !fresh {
            let mean = self.mean(key, result);
            let mut textures: Vec<TextureHandle> = (0..maps.heads)
                .map(|h| {
                    ctx.load_texture(
                        format!("attention-head-{h}"),
                        color_image(maps.head(h), maps.grid, settings.colormap),
                        TextureOptions::NEAREST,
                    )
                })
                .collect();
            textures.push(ctx.load_texture(
                "attention-mean",
                color_image(&mean, maps.grid, settings.colormap),
                TextureOptions::NEAREST,
            ));
            self.rendered = Some(Rendered {
                key,
                colormap: settings.colormap,
                textures,
            });
        }
        let masks_fresh =
            matches!(&self.masks, Some(m) if m.key == key && m.threshold == settings.threshold);
        if settings.show_masks && !masks_fresh {
            let mean = self.mean(key, result);
            let mut masks: Vec<Vec<bool>> = (0..maps.heads)
                .map(|h| mass_mask(maps.head(h), settings.threshold))
                .collect();
            masks.push(mass_mask(&mean, settings.threshold));
            self.masks = Some(Masks {
                key,
                threshold: settings.threshold,
                masks,
            });
        }
        let image_id = Arc::as_ptr(&result.prepared) as usize;
        if self.image.as_ref().is_none_or(|(id, _)| *id != image_id) {
            let texture = rgb_texture(
                ctx,
                "attention-input",
                &result.prepared.rgb,
                TextureOptions::LINEAR,
            );
            self.image = Some((image_id, texture));
        }
    }

    /// Shows the tiles; returns the patch the user clicked, if any.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        key: AttnKey,
        result: &AttentionResult,
        settings: &Settings,
        query: Query,
    ) -> Option<(usize, usize)> {
        self.ensure_textures(ui.ctx(), key, result, settings);
        self.hover = None;
        self.tile_rects.clear();
        let heads = result.maps.heads;
        let mut clicked = None;
        // Rows of tiles that fit the width; the mean tile comes first and is larger.
        let spacing = 10.0;
        let available = ui.available_width().max(80.0);
        let width_of = |head: Option<usize>| {
            let w = if head.is_none() {
                settings.tile_size * 1.5
            } else {
                settings.tile_size
            };
            w.min(available)
        };
        let mut rows: Vec<Vec<Option<usize>>> = Vec::new();
        let mut used = f32::INFINITY;
        for head in std::iter::once(None).chain((0..heads).map(Some)) {
            let w = width_of(head);
            if used + spacing + w > available {
                rows.push(Vec::new());
                used = -spacing;
            }
            used += spacing + w;
            if let Some(row) = rows.last_mut() {
                row.push(head);
            }
        }
        for row in rows {
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(spacing);
                for head in row {
                    let tile = Tile {
                        head,
                        width: width_of(head),
                    };
                    if let Some(cell) = self.tile(ui, tile, key, result, settings, query) {
                        clicked = Some(cell);
                    }
                }
            });
            ui.add_space(spacing);
        }
        clicked
    }

    /// One tile: the input image, its attention colours, mask outlines, query and hover marks.
    fn tile(
        &mut self,
        ui: &mut egui::Ui,
        tile: Tile,
        key: AttnKey,
        result: &AttentionResult,
        settings: &Settings,
        query: Query,
    ) -> Option<(usize, usize)> {
        let Tile { head, width } = tile;
        let maps = &result.maps;
        let mean = self.mean(key, result);
        let values: &[f32] = match head {
            Some(h) => maps.head(h),
            None => &mean,
        };
        let index = head.unwrap_or(maps.heads);
        let image_size = [result.prepared.width(), result.prepared.height()];
        let aspect = image_size[1] as f32 / image_size[0].max(1) as f32;
        let grid = maps.grid;
        ui.vertical(|ui| {
            let label = match head {
                Some(h) => format!("Head {h}"),
                None => "Head mean".to_string(),
            };
            ui.label(egui::RichText::new(label).strong());
            let (rect, response) =
                ui.allocate_exact_size(Vec2::new(width, width * aspect), Sense::click());
            let accessible = match head {
                Some(h) => format!("attention head {h}"),
                None => "attention head mean".to_string(),
            };
            response
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &accessible));
            self.tile_rects.push((head, rect));
            let painter = ui.painter_at(rect);
            let full_uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
            if let Some((_, texture)) = &self.image {
                painter.image(texture.id(), rect, full_uv, Color32::WHITE);
            }
            self.paint_colours(&painter, rect, (key, index), values, grid, settings);
            if settings.show_masks
                && let Some(masks) = &self.masks
                && let Some(mask) = masks.masks.get(index)
            {
                painter.extend(outline_shapes(mask, grid, rect, image_size));
            }
            if let Query::Patch { row, col } = query {
                query_mark(&painter, cell_rect(rect, grid, image_size, row, col));
            }
            if let Some(pos) = response.hover_pos()
                && let Some((row, col)) = cell_at(rect, grid, image_size, pos)
            {
                hover_mark(&painter, cell_rect(rect, grid, image_size, row, col));
                let value = values.get(row * grid.cols + col).copied().unwrap_or(0.0);
                self.hover = Some(Hover {
                    head,
                    row,
                    col,
                    value,
                });
            }
            let clicked = if response.clicked()
                && let Some(pos) = response.interact_pointer_pos()
            {
                cell_at(rect, grid, image_size, pos)
            } else {
                None
            };
            if let Some(h) = self.hover.filter(|h| h.head == head) {
                response.on_hover_text_at_pointer(format!(
                    "patch row {}, col {}\nattention {:.5}\nclick: show this patch's attention",
                    h.row, h.col, h.value
                ));
            }
            clicked
        })
        .inner
    }

    /// The attention colours of map `index` of `key` over the tile: on the GPU when the WGSL
    /// renderer is installed, else the textures coloured on the CPU.
    fn paint_colours(
        &self,
        painter: &egui::Painter,
        rect: Rect,
        (key, index): (AttnKey, usize),
        values: &[f32],
        grid: Grid,
        settings: &Settings,
    ) {
        let full_uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        if self.gpu {
            let (low, high) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let map = PatchMap {
                id: map_id(key, index),
                rows: grid.rows,
                cols: grid.cols,
                values: Arc::new(values.to_vec()),
            };
            let style = OverlayStyle {
                colormap: settings.colormap,
                low,
                high,
                opacity: settings.opacity,
                cutoff: None,
            };
            patch_overlay::paint(painter, rect, map, style);
        } else if let Some(rendered) = &self.rendered
            && let Some(texture) = rendered.textures.get(index)
        {
            let alpha = (settings.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
            painter.image(
                texture.id(),
                rect,
                full_uv,
                Color32::from_white_alpha(alpha),
            );
        }
    }
}

/// The outline of the patch under the pointer.
fn hover_mark(painter: &egui::Painter, cell: Rect) {
    painter.rect_stroke(
        cell,
        0.0,
        Stroke::new(1.5, Color32::from_rgb(255, 220, 0)),
        egui::StrokeKind::Outside,
    );
}

/// The outline of the query patch.
fn query_mark(painter: &egui::Painter, cell: Rect) {
    painter.rect_stroke(
        cell.expand(1.0),
        0.0,
        Stroke::new(2.0, Color32::WHITE),
        egui::StrokeKind::Outside,
    );
    painter.rect_stroke(
        cell,
        0.0,
        Stroke::new(1.0, Color32::BLACK),
        egui::StrokeKind::Outside,
    );
}

#[derive(Clone, Copy)]
struct Tile {
    /// `None` for the head mean.
    head: Option<usize>,
    width: f32,
}

/// Red outlines around the masked cells (edges between a masked cell and an unmasked one or the
/// border).
pub fn outline_shapes(
    mask: &[bool],
    grid: Grid,
    rect: Rect,
    image_size: [usize; 2],
) -> Vec<egui::Shape> {
    let stroke = Stroke::new(1.5, Color32::from_rgb(255, 40, 40));
    let at = |r: isize, c: isize| {
        r >= 0
            && c >= 0
            && (r as usize) < grid.rows
            && (c as usize) < grid.cols
            && mask
                .get(r as usize * grid.cols + c as usize)
                .copied()
                .unwrap_or(false)
    };
    let mut shapes = Vec::new();
    for r in 0..grid.rows {
        for c in 0..grid.cols {
            if !at(r as isize, c as isize) {
                continue;
            }
            let cell = cell_rect(rect, grid, image_size, r, c);
            let (ri, ci) = (r as isize, c as isize);
            if !at(ri - 1, ci) {
                shapes.push(egui::Shape::line_segment(
                    [cell.left_top(), cell.right_top()],
                    stroke,
                ));
            }
            if !at(ri + 1, ci) {
                shapes.push(egui::Shape::line_segment(
                    [cell.left_bottom(), cell.right_bottom()],
                    stroke,
                ));
            }
            if !at(ri, ci - 1) {
                shapes.push(egui::Shape::line_segment(
                    [cell.left_top(), cell.left_bottom()],
                    stroke,
                ));
            }
            if !at(ri, ci + 1) {
                shapes.push(egui::Shape::line_segment(
                    [cell.right_top(), cell.right_bottom()],
                    stroke,
                ));
            }
        }
    }
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_map_back_to_their_rectangles() {
        let grid = Grid {
            rows: 3,
            cols: 4,
            patch: 8,
            stride: 8,
        };
        let rect = Rect::from_min_size(Pos2::new(10.0, 20.0), Vec2::new(64.0, 48.0));
        for r in 0..3 {
            for c in 0..4 {
                let cell = cell_rect(rect, grid, [32, 24], r, c);
                assert_eq!(cell_at(rect, grid, [32, 24], cell.center()), Some((r, c)));
            }
        }
        assert_eq!(cell_at(rect, grid, [32, 24], Pos2::new(0.0, 0.0)), None);
    }
}
