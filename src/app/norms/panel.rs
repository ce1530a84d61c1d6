//! Drawing of the token-norms view: the image under its norm map with the outliers outlined, a
//! histogram of the norms with the threshold, and for register models the attention to each
//! register (CLS as bars, the patches as one map per register). Maps are coloured by the
//! library's `render_map`, one texture pixel per patch.

use std::sync::Arc;

use eframe::egui;
use egui::{Color32, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Vec2};
use egui_plot::{Bar, BarChart, Plot, VLine};

use super::job::NormsResult;
use crate::analysis::colormap::{Colormap, render_map};
use crate::analysis::token_norms::{Histogram, RegisterAttention, outliers};
use crate::app::attention::panel::{cell_at, cell_rect};
use crate::app::state::Settings;
use crate::app::textures::rgb_texture;
use crate::model::Grid;

/// Bins of the norm histogram.
const BINS: usize = 30;

/// The patch under the pointer and its norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormHover {
    pub row: usize,
    pub col: usize,
    pub norm: f32,
}

/// Textures of the shown result: the image, the norm map and the register maps of one head
/// choice, remade when either changes.
struct Textures {
    result: usize,
    head: Option<usize>,
    colormap: Colormap,
    image: TextureHandle,
    norms: TextureHandle,
    registers: Vec<TextureHandle>,
}

#[derive(Default)]
pub struct NormsPanel {
    textures: Option<Textures>,
    pub hover: Option<NormHover>,
    /// Screen rectangle of the norm map in the last frame (for tests and tools).
    pub map_rect: Option<Rect>,
}

fn map_texture(
    ctx: &egui::Context,
    name: String,
    values: &[f32],
    grid: Grid,
    colormap: Colormap,
) -> TextureHandle {
    let rgb = render_map(values, grid.rows, grid.cols, 1, colormap);
    // Patches are cells of flat colour: keep their edges sharp.
    rgb_texture(ctx, name, &rgb, TextureOptions::NEAREST)
}

/// The register attention of the head chosen (`None`: the mean over heads).
pub fn head_map(attn: &RegisterAttention, head: Option<usize>) -> Vec<f32> {
    match head.filter(|h| *h < attn.heads) {
        Some(h) => attn.head(h).to_vec(),
        None => attn.head_mean(),
    }
}

/// `count of total patches above threshold`, the outlier line under the map.
pub fn outlier_text(count: usize, total: usize, threshold: f32) -> String {
    format!("{count} of {total} patches above {threshold:.3}")
}

impl NormsPanel {
    fn ensure_textures(
        &mut self,
        ctx: &egui::Context,
        result: &Arc<NormsResult>,
        head: Option<usize>,
        colormap: Colormap,
    ) {
        let id = Arc::as_ptr(result) as usize;
        if self
            .textures
            .as_ref()
            .is_some_and(|t| t.result == id && t.head == head && t.colormap == colormap)
        {
            return;
        }
        let norms = &result.tokens.norms;
        let registers = match &result.tokens.registers {
            Some(attn) => {
                let map = head_map(attn, head);
                (0..attn.registers)
                    .map(|r| {
                        let values = attn.patch_map(&map, r);
                        map_texture(
                            ctx,
                            format!("norms-register-{r}"),
                            &values,
                            attn.grid,
                            colormap,
                        )
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        self.textures = Some(Textures {
            result: id,
            head,
            colormap,
            image: rgb_texture(
                ctx,
                "norms-image",
                &result.prepared.rgb,
                TextureOptions::LINEAR,
            ),
            norms: map_texture(
                ctx,
                "norms-map".into(),
                &norms.patches,
                norms.grid,
                colormap,
            ),
            registers,
        });
    }

    /// The whole view for `result` with outliers above `threshold`.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        result: &Arc<NormsResult>,
        threshold: f32,
        settings: &Settings,
    ) {
        let head = settings.norms.head;
        self.ensure_textures(ui.ctx(), result, head, settings.colormap);
        self.hover = None;
        let norms = &result.tokens.norms;
        let tile = settings.tile_size;
        let outliers = outliers(&norms.patches, threshold);
        let count = outliers.iter().filter(|o| **o).count();
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.label(egui::RichText::new(&result.name).strong());
                let rect = self.image_tile(ui, result, None, tile, settings.opacity, "norm map");
                self.map_rect = Some(rect);
                outline(ui.painter(), rect, norms.grid, result, &outliers);
                ui.label(outlier_text(count, norms.patches.len(), threshold));
                let mut line = format!("CLS norm {:.3}", norms.cls());
                if !norms.registers().is_empty() {
                    let registers: Vec<String> = norms
                        .registers()
                        .iter()
                        .map(|n| format!("{n:.3}"))
                        .collect();
                    line.push_str(&format!(", register norms {}", registers.join(", ")));
                }
                ui.label(egui::RichText::new(line).weak());
            });
            ui.add_space(12.0);
            ui.vertical(|ui| {
                ui.label(egui::RichText::new("Patch norms").strong());
                histogram(ui, &norms.patches, threshold, tile);
            });
        });
        if let Some(attn) = &result.tokens.registers {
            ui.separator();
            self.registers_ui(ui, result, attn, head, settings);
        }
    }

    /// The image with map `register` (`None`: the norms) over it; returns its screen rectangle.
    fn image_tile(
        &mut self,
        ui: &mut egui::Ui,
        result: &NormsResult,
        register: Option<usize>,
        width: f32,
        opacity: f32,
        what: &str,
    ) -> Rect {
        let prepared = &result.prepared;
        let image_size = [prepared.width(), prepared.height()];
        let aspect = image_size[1] as f32 / image_size[0].max(1) as f32;
        let (rect, response) =
            ui.allocate_exact_size(Vec2::new(width, width * aspect), Sense::hover());
        response.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Image,
                true,
                format!("{what} of {}", result.name),
            )
        });
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        if let Some(t) = &self.textures {
            let map = match register {
                Some(r) => t.registers.get(r),
                None => Some(&t.norms),
            };
            let painter = ui.painter_at(rect);
            painter.image(t.image.id(), rect, uv, Color32::WHITE);
            if let Some(map) = map {
                let alpha = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
                painter.image(map.id(), rect, uv, Color32::from_white_alpha(alpha));
            }
        }
        let norms = &result.tokens.norms;
        if register.is_none()
            && let Some(pos) = response.hover_pos()
            && let Some((row, col)) = cell_at(rect, norms.grid, image_size, pos)
        {
            let norm = norms.patches[row * norms.grid.cols + col];
            self.hover = Some(NormHover { row, col, norm });
            response
                .on_hover_text_at_pointer(format!("patch row {row}, col {col}\nnorm {norm:.3}"));
        }
        rect
    }

    fn registers_ui(
        &mut self,
        ui: &mut egui::Ui,
        result: &NormsResult,
        attn: &RegisterAttention,
        head: Option<usize>,
        settings: &Settings,
    ) {
        let map = head_map(attn, head);
        let which = match head.filter(|h| *h < attn.heads) {
            Some(h) => format!("head {h}"),
            None => format!("mean over {} heads", attn.heads),
        };
        ui.heading(format!("Attention to the registers ({which})"));
        ui.label(egui::RichText::new("CLS -> register").strong());
        for (r, &value) in RegisterAttention::cls_row(&map, attn.registers)
            .iter()
            .enumerate()
        {
            ui.add(
                egui::ProgressBar::new(value.clamp(0.0, 1.0))
                    .desired_width(settings.tile_size * 1.5)
                    .text(format!("register {r}: {value:.4}")),
            );
        }
        ui.label(
            egui::RichText::new("Patch -> register (each map scaled to its own range)").strong(),
        );
        let width = (settings.tile_size * 0.6).max(60.0);
        ui.horizontal_wrapped(|ui| {
            for r in 0..attn.registers {
                ui.vertical(|ui| {
                    ui.label(format!("register {r}"));
                    self.image_tile(
                        ui,
                        result,
                        Some(r),
                        width,
                        settings.opacity,
                        &format!("attention to register {r}"),
                    );
                });
            }
        });
    }
}

/// Outlines around the outlier patches.
fn outline(
    painter: &egui::Painter,
    rect: Rect,
    grid: Grid,
    result: &NormsResult,
    outliers: &[bool],
) {
    let size = [result.prepared.width(), result.prepared.height()];
    let stroke = Stroke::new(1.5, Color32::from_rgb(255, 40, 40));
    for (i, _) in outliers.iter().enumerate().filter(|(_, o)| **o) {
        let cell = cell_rect(rect, grid, size, i / grid.cols, i % grid.cols);
        painter.rect_stroke(cell, 0.0, stroke, egui::StrokeKind::Inside);
    }
}

fn histogram(ui: &mut egui::Ui, norms: &[f32], threshold: f32, width: f32) {
    let histogram = Histogram::of(norms, BINS);
    let bin = histogram.width as f64;
    let bars = (0..histogram.counts.len())
        .map(|b| {
            let (low, high) = histogram.bin(b);
            let x = (low as f64 + high as f64) / 2.0;
            let c = histogram.counts[b] as f64;
            let fill = if low >= threshold {
                Color32::from_rgb(230, 60, 60)
            } else {
                Color32::from_rgb(90, 140, 220)
            };
            Bar::new(x, c).width(bin).fill(fill)
        })
        .collect();
    Plot::new("norm histogram")
        .width(width * 1.4)
        .height(width * 0.8)
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .x_axis_label("L2 norm")
        .y_axis_label("patches")
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("patches", bars));
            plot.vline(VLine::new("threshold", threshold).color(Color32::from_rgb(230, 60, 60)));
        });
}
