//! The PCA view: each image beside its PCA colouring (three principal components of the patch
//! features as RGB), the explained variance, and the projections under the pointer; plus the
//! view's controls.
//!
//! Colours are computed and painted by the worker; this module only uploads them as textures
//! (once per result) and draws.

use eframe::egui;
use std::sync::Arc;

use egui::{Color32, Pos2, Rect, Sense, Stroke, TextureOptions, Vec2};

use super::job::{PcaImage, PcaResult};
use crate::analysis::sd_features::FeatureSource;
use crate::app::state::PcaSettings;
use crate::app::tasks::ImageId;
use crate::app::textures::{PerResult, refresh_per_result, rgb_texture};
use crate::app::widgets::{block_slider, facet_combo, stride_combo};
use crate::model::VitConfig;

/// The patch under the pointer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcaHover {
    pub image: ImageId,
    pub row: usize,
    pub col: usize,
    /// Projections on the three components (zero for background patches).
    pub projection: [f32; 3],
    pub foreground: bool,
}

/// Screen rectangles of one image's two tiles (for tests and tools).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcaTiles {
    pub image: ImageId,
    pub input: Rect,
    pub colours: Rect,
}

#[derive(Default)]
pub struct PcaPanel {
    /// Input and colour textures of the shown result (keyed by its address).
    textures: PerResult,
    pub hover: Option<PcaHover>,
    pub tiles: Vec<PcaTiles>,
}

/// Explained variance as `PC1 35.1%, PC2 9.8%, PC3 6.0%`.
pub fn explained_text(explained: [f32; 3]) -> String {
    format!(
        "PC1 {:.1}%, PC2 {:.1}%, PC3 {:.1}%",
        100.0 * explained[0],
        100.0 * explained[1],
        100.0 * explained[2]
    )
}

impl PcaPanel {
    fn ensure_textures(&mut self, ctx: &egui::Context, result: &Arc<PcaResult>) {
        refresh_per_result(&mut self.textures, result, |result| {
            result
                .images
                .iter()
                .enumerate()
                .map(|(i, image)| {
                    (
                        rgb_texture(
                            ctx,
                            format!("pca-input-{i}"),
                            &image.picture,
                            TextureOptions::LINEAR,
                        ),
                        // Patches are blocks of flat colour: keep their edges sharp.
                        rgb_texture(
                            ctx,
                            format!("pca-colours-{i}"),
                            &image.colored,
                            TextureOptions::NEAREST,
                        ),
                    )
                })
                .collect()
        });
    }

    /// Shows every image of the result beside its colouring, tiles `tile` points wide; `joint`
    /// when the result is one fit over all images.
    pub fn ui(&mut self, ui: &mut egui::Ui, result: &Arc<PcaResult>, joint: bool, tile: f32) {
        self.ensure_textures(ui.ctx(), result);
        self.hover = None;
        self.tiles.clear();
        let joint = joint && result.images.len() > 1;
        if joint && let Some(first) = result.images.first() {
            ui.label(format!(
                "Joint fit over {} images - explained variance {}",
                result.images.len(),
                explained_text(first.view.explained)
            ));
        }
        let spacing = 10.0;
        let pair = 2.0 * tile + spacing;
        let per_row = (((ui.available_width() + 2.0 * spacing) / (pair + 2.0 * spacing)) as usize)
            .clamp(1, result.images.len().max(1));
        for (row, chunk) in result.images.chunks(per_row).enumerate() {
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(spacing);
                for (j, image) in chunk.iter().enumerate() {
                    let index = row * per_row + j;
                    ui.vertical(|ui| self.image_pair(ui, index, image, tile, !joint));
                    ui.add_space(spacing);
                }
            });
            ui.add_space(spacing);
        }
    }

    fn image_pair(
        &mut self,
        ui: &mut egui::Ui,
        index: usize,
        image: &PcaImage,
        width: f32,
        show_variance: bool,
    ) {
        ui.label(egui::RichText::new(&image.name).strong());
        let (w, h) = image.picture.dimensions();
        let size = Vec2::new(width, width * h as f32 / w.max(1) as f32);
        let mut rects = [Rect::NOTHING; 2];
        ui.horizontal_top(|ui| {
            for (k, rect) in rects.iter_mut().enumerate() {
                let (r, response) = ui.allocate_exact_size(size, Sense::hover());
                let what = if k == 0 { "image" } else { "PCA colours" };
                response.widget_info(|| {
                    egui::WidgetInfo::labeled(
                        egui::Role::Image,
                        true,
                        format!("{what} of {}", image.name),
                    )
                });
                *rect = r;
                if let Some(pos) = response.hover_pos() {
                    self.hover = hover_at(image, r, pos);
                }
            }
        });
        let [input, colours] = rects;
        self.tiles.push(PcaTiles {
            image: image.id,
            input,
            colours,
        });
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        if let Some((_, textures)) = &self.textures
            && let Some((tex_input, tex_colours)) = textures.get(index)
        {
            ui.painter()
                .image(tex_input.id(), input, uv, Color32::WHITE);
            ui.painter()
                .image(tex_colours.id(), colours, uv, Color32::WHITE);
        }
        if let Some(h) = self.hover.filter(|h| h.image == image.id) {
            let index = h.row * image.grid.cols + h.col;
            for rect in [input, colours] {
                ui.painter().rect_stroke(
                    patch_rect(image, rect, index),
                    0.0,
                    Stroke::new(1.5, Color32::from_rgb(255, 220, 0)),
                    egui::StrokeKind::Outside,
                );
            }
        }
        let fg = image.view.foreground.iter().filter(|f| **f).count();
        let mut line = format!(
            "{}x{} patches (stride {} px)",
            image.grid.rows, image.grid.cols, image.grid.stride
        );
        if fg < image.view.foreground.len() {
            line.push_str(&format!(", {fg} foreground"));
        }
        ui.label(egui::RichText::new(line).weak());
        if show_variance {
            ui.label(
                egui::RichText::new(format!(
                    "explained {}",
                    explained_text(image.view.explained)
                ))
                .weak(),
            );
        }
    }
}

/// Screen rectangle of patch `index` (its full `patch x patch` footprint) on a tile.
pub fn patch_rect(image: &PcaImage, rect: Rect, index: usize) -> Rect {
    let map = &image.pixels;
    let (cx, cy) = map.patch_center(index);
    let half = image.grid.patch as f64 / 2.0;
    let (hx, hy) = (half / map.scale.0, half / map.scale.1);
    let (w, h) = image.picture.dimensions();
    let sx = rect.width() / w.max(1) as f32;
    let sy = rect.height() / h.max(1) as f32;
    Rect::from_min_max(
        rect.min + Vec2::new((cx - hx) as f32 * sx, (cy - hy) as f32 * sy),
        rect.min + Vec2::new((cx + hx) as f32 * sx, (cy + hy) as f32 * sy),
    )
    .intersect(rect)
}

/// The patch under a point of a tile (the one whose centre is nearest, as the colours are painted).
pub fn hover_at(image: &PcaImage, rect: Rect, pos: Pos2) -> Option<PcaHover> {
    if !rect.contains(pos) || image.grid.is_empty() {
        return None;
    }
    let (w, h) = image.picture.dimensions();
    let x = (pos.x - rect.min.x) / rect.width() * w as f32;
    let y = (pos.y - rect.min.y) / rect.height() * h as f32;
    let index = image.pixels.patch_at(x as f64, y as f64);
    let p = image.view.projections.get(index * 3..index * 3 + 3)?;
    Some(PcaHover {
        image: image.id,
        row: index / image.grid.cols,
        col: index % image.grid.cols,
        projection: [p[0], p[1], p[2]],
        foreground: image.view.foreground.get(index).copied().unwrap_or(false),
    })
}

/// The PCA controls; `images` is the gallery size. Edits `pca` in place.
pub fn controls(
    ui: &mut egui::Ui,
    pca: &mut PcaSettings,
    config: Option<&VitConfig>,
    images: usize,
    layer: usize,
) {
    let depth = config.map_or(1, |c| c.depth).max(1);
    let patch = config.map_or(16, |c| c.patch_size);
    ui.horizontal(|ui| {
        ui.radio_value(&mut pca.all_images, false, "Selected image");
        ui.radio_value(&mut pca.all_images, true, format!("All images ({images})"));
    });
    ui.add_enabled(
        pca.all_images,
        egui::Checkbox::new(&mut pca.joint, "Joint fit"),
    )
    .on_hover_text(
        "One PCA over all images' patches, so the same part gets the same colour in every image; \
         off: one PCA per image",
    );
    if pca.features != FeatureSource::Sd {
        let hover = if pca.features == FeatureSource::Fused {
            "Which block's output tokens are fused with SD's (Up / Down)"
        } else {
            "Which block's features (Up / Down)"
        };
        let chosen = block_slider(ui, layer, depth, hover);
        if chosen != layer {
            pca.layer = Some(chosen);
        }
    }
    if pca.features == FeatureSource::Dino {
        facet_combo(ui, &mut pca.facet).on_hover_text("Which features of the block: its attention keys (the usual choice), queries, values or output tokens");
        stride_combo(ui, &mut pca.stride, patch, patch).on_hover_text(
            "Step between patches: a smaller stride gives a finer map (overlapping patches) but \
             costs more; large images are scaled down to keep the token count",
        );
    }
    ui.checkbox(&mut pca.foreground, "Foreground only")
        .on_hover_text("Colour only the patches whose first component is above the threshold (the rest black); the colour PCA is fitted on them");
    ui.add_enabled(
        pca.foreground,
        egui::Checkbox::new(&mut pca.positive_score, "Positive PC1 score"),
    )
    .on_hover_text(
        "The DINOv2 paper's rule: the foreground is the patches with a positive first-component \
         score, instead of those above the threshold",
    );
    ui.add_enabled(
        pca.foreground && !pca.positive_score,
        egui::Slider::new(&mut pca.threshold, 0.0..=1.0)
            .step_by(0.05)
            .text("Threshold"),
    );
}

/// The read-out of the patch under the pointer.
pub fn hover_ui(ui: &mut egui::Ui, hover: Option<PcaHover>) {
    ui.heading("Under the pointer");
    match hover {
        Some(h) => {
            ui.label(format!("patch row {}, col {}", h.row, h.col));
            if h.foreground {
                ui.label(format!(
                    "PC1 {:.3}, PC2 {:.3}, PC3 {:.3}",
                    h.projection[0], h.projection[1], h.projection[2]
                ));
            } else {
                ui.label("background");
            }
        }
        None => {
            ui.label(egui::RichText::new("(hover an image)").weak());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explained_variance_reads_in_percent() {
        assert_eq!(
            explained_text([0.5, 0.25, 0.125]),
            "PC1 50.0%, PC2 25.0%, PC3 12.5%"
        );
    }
}
