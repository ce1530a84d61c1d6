//! The co-segmentation view: each image with its clusters or parts in colour (or its common
//! foreground cut out), the legend of labels, and the label under the pointer.
//!
//! The overlays are rendered by the worker; this module uploads them once per result and draws.

use eframe::egui;
use std::sync::Arc;

use egui::{Color32, Pos2, Rect, Sense, TextureOptions, Vec2};

use super::job::{CosegImage, CosegResult, RefineSettings};
use crate::analysis::coords::PixelMap;
use crate::analysis::overlay::part_color;
use crate::app::state::{CosegMode, CosegShow};
use crate::app::tasks::ImageId;
use crate::app::textures::{PerResult, refresh_per_result, rgb_texture};

/// The label under the pointer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosegHover {
    pub image: ImageId,
    pub row: usize,
    pub col: usize,
    /// Cluster or part; `None` for background parts.
    pub label: Option<usize>,
    pub foreground: bool,
}

#[derive(Default)]
pub struct CosegPanel {
    /// Overlay and cutout textures of the shown result (keyed by its address).
    textures: PerResult,
    pub hover: Option<CosegHover>,
    /// Screen rectangles of the image tiles of the last frame, for tests and tools.
    pub tiles: Vec<(ImageId, Rect)>,
}

/// Colour of label `label` of `labels` (the library's part palette).
pub fn label_colour(label: usize, labels: usize) -> Color32 {
    let [r, g, b] = part_color(label, labels.max(1));
    Color32::from_rgb(r, g, b)
}

/// Name of a label in the legend.
pub fn label_name(mode: CosegMode, label: usize) -> String {
    match mode {
        CosegMode::Foreground => format!("cluster {label}"),
        CosegMode::Parts => format!("part {label}"),
    }
}

/// The "Refine edges" checkbox: pixel-level refinement after the patch-level result.
pub fn refine_edges_checkbox(ui: &mut egui::Ui, refine: &mut bool, mode: CosegMode) {
    let how = match mode {
        CosegMode::Foreground => "GrabCut on each foreground mask (5 iterations)",
        CosegMode::Parts => "a dense CRF on each image's part labels (10 iterations)",
    };
    ui.checkbox(refine, "Refine edges").on_hover_text(format!(
        "Follow the image's edges at pixel level: {how}, as the reference"
    ));
}

/// The refinement's parameters (collapsed by default), for the mode shown.
pub fn refine_settings(ui: &mut egui::Ui, refine: &mut RefineSettings, mode: CosegMode) {
    egui::CollapsingHeader::new("Refinement settings")
        .id_salt("coseg-refine-settings")
        .show(ui, |ui| {
            let tenths = |ui: &mut egui::Ui,
                          value: &mut u16,
                          range: std::ops::RangeInclusive<f32>,
                          text: &str,
                          hover: &str| {
                let mut v = *value as f32 / 10.0;
                if ui
                    .add(egui::Slider::new(&mut v, range).step_by(0.1).text(text))
                    .on_hover_text(hover)
                    .changed()
                {
                    *value = (v * 10.0).round() as u16;
                }
            };
            match mode {
                CosegMode::Foreground => {
                    ui.add(
                        egui::Slider::new(&mut refine.grabcut_iterations, 1..=20)
                            .text("GrabCut iterations"),
                    )
                    .on_hover_text("OpenCV's iterCount (the reference: 5)");
                }
                CosegMode::Parts => {
                    ui.add(
                        egui::Slider::new(&mut refine.crf_iterations, 1..=30)
                            .text("CRF iterations"),
                    )
                    .on_hover_text("Mean-field iterations (the reference: 10)");
                    tenths(
                        ui,
                        &mut refine.gaussian_sxy_tenths,
                        0.5..=20.0,
                        "Gaussian sxy",
                        "Spatial width of the smoothness kernel, pixels (3)",
                    );
                    tenths(
                        ui,
                        &mut refine.gaussian_compat_tenths,
                        0.0..=100.0,
                        "Gaussian weight",
                        "Potts weight of the smoothness kernel (50)",
                    );
                    tenths(
                        ui,
                        &mut refine.bilateral_sxy_tenths,
                        0.5..=50.0,
                        "Bilateral sxy",
                        "Spatial width of the appearance kernel, pixels (5)",
                    );
                    tenths(
                        ui,
                        &mut refine.bilateral_srgb_tenths,
                        0.5..=50.0,
                        "Bilateral srgb",
                        "Colour width of the appearance kernel (13)",
                    );
                    tenths(
                        ui,
                        &mut refine.bilateral_compat_tenths,
                        0.0..=100.0,
                        "Bilateral weight",
                        "Potts weight of the appearance kernel (15)",
                    );
                }
            }
            if ui
                .button("Reference defaults")
                .on_hover_text("dino-vit-features' values")
                .clicked()
            {
                *refine = RefineSettings::default();
            }
        });
}

impl CosegPanel {
    fn ensure_textures(&mut self, ctx: &egui::Context, result: &Arc<CosegResult>) {
        refresh_per_result(&mut self.textures, result, |result| {
            result
                .images
                .iter()
                .enumerate()
                .map(|(i, image)| {
                    (
                        rgb_texture(
                            ctx,
                            format!("coseg-overlay-{i}"),
                            &image.overlay,
                            TextureOptions::LINEAR,
                        ),
                        rgb_texture(
                            ctx,
                            format!("coseg-cutout-{i}"),
                            &image.cutout,
                            TextureOptions::LINEAR,
                        ),
                    )
                })
                .collect()
        });
    }

    /// The legend: one swatch per cluster or part, foreground clusters marked.
    pub fn legend(ui: &mut egui::Ui, result: &CosegResult, voters: usize) {
        ui.horizontal_wrapped(|ui| {
            for entry in &result.legend {
                let (rect, response) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
                ui.painter()
                    .rect_filled(rect, 2.0, label_colour(entry.label, result.labels));
                let mut text = label_name(result.mode, entry.label);
                if result.mode == CosegMode::Foreground {
                    text.push_str(if entry.foreground {
                        " (foreground)"
                    } else {
                        " (background)"
                    });
                }
                let label = ui.label(text);
                let detail = match entry.votes {
                    Some(v) => format!(
                        "{} patches; voted foreground by {v} of {voters} images ({} needed)",
                        entry.patches, result.needed
                    ),
                    None => format!("{} patches", entry.patches),
                };
                response.union(label).on_hover_text(detail);
                ui.add_space(8.0);
            }
        });
    }

    /// Shows every image with its overlay.
    pub fn ui(&mut self, ui: &mut egui::Ui, result: &Arc<CosegResult>, show: CosegShow, tile: f32) {
        self.ensure_textures(ui.ctx(), result);
        self.hover = None;
        self.tiles.clear();
        let spacing = 10.0;
        let per_row = (((ui.available_width() + spacing) / (tile + spacing)) as usize).max(1);
        for (row, chunk) in result.images.chunks(per_row).enumerate() {
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(spacing);
                for (j, image) in chunk.iter().enumerate() {
                    let index = row * per_row + j;
                    ui.vertical(|ui| self.tile(ui, index, image, result, show, tile));
                }
            });
            ui.add_space(spacing);
        }
    }

    fn tile(
        &mut self,
        ui: &mut egui::Ui,
        index: usize,
        image: &CosegImage,
        result: &CosegResult,
        show: CosegShow,
        width: f32,
    ) {
        let mut title = image.name.clone();
        if image.outlier {
            title.push_str(" (outlier)");
        }
        ui.label(egui::RichText::new(title).strong());
        let (w, h) = (image.prepared.width(), image.prepared.height());
        let size = Vec2::new(width, width * h as f32 / w.max(1) as f32);
        let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
        response.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Image,
                true,
                format!("co-segmentation of {}", image.name),
            )
        });
        self.tiles.push((image.id, rect));
        if let Some((_, textures)) = &self.textures
            && let Some((overlay, cutout)) = textures.get(index)
        {
            let texture = match show {
                CosegShow::Labels => overlay,
                CosegShow::Foreground => cutout,
            };
            let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
            ui.painter().image(texture.id(), rect, uv, Color32::WHITE);
        }
        if let Some(pos) = response.hover_pos()
            && let Some(hover) = hover_at(image, rect, pos)
        {
            self.hover = Some(hover);
            let text = match hover.label {
                Some(l) => label_name(result.mode, l),
                None => "background".to_string(),
            };
            response.on_hover_text_at_pointer(format!(
                "patch row {}, col {}: {text}{}",
                hover.row,
                hover.col,
                if hover.foreground { ", foreground" } else { "" }
            ));
        }
        let fg = image.foreground.iter().filter(|f| **f).count();
        ui.label(
            egui::RichText::new(format!(
                "{}x{} patches, {:.0}% foreground",
                image.grid.rows,
                image.grid.cols,
                100.0 * fg as f32 / image.foreground.len().max(1) as f32
            ))
            .weak(),
        );
    }
}

/// The patch under a point of a tile and its label.
pub fn hover_at(image: &CosegImage, rect: Rect, pos: Pos2) -> Option<CosegHover> {
    if !rect.contains(pos) || image.grid.is_empty() {
        return None;
    }
    let pixels = PixelMap::new(image.grid, &image.prepared);
    let x = (pos.x - rect.min.x) / rect.width() * image.prepared.width() as f32;
    let y = (pos.y - rect.min.y) / rect.height() * image.prepared.height() as f32;
    let index = pixels.patch_at_model(x as f64, y as f64);
    Some(CosegHover {
        image: image.id,
        row: index / image.grid.cols,
        col: index % image.grid.cols,
        label: image.labels.get(index).copied().flatten(),
        foreground: image.foreground.get(index).copied().unwrap_or(false),
    })
}
