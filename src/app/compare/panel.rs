//! One side of the side-by-side view: a large tile with the chosen head (or the head mean, or
//! the PCA colours) over the image the model saw, mass-kept outlines, and a strip of every head
//! to pick from. Colours are made once per result and colormap, outlines once per threshold.

use std::sync::Arc;

use eframe::egui;
use egui::{Color32, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};

use super::job::{SideMaps, SideResult};
use crate::analysis::attention::mass_mask;
use crate::analysis::colormap::{Colormap, render_map};
use crate::app::attention::panel::{cell_at, outline_shapes};
use crate::app::state::Settings;
use crate::app::textures::rgb_texture;
use crate::model::Grid;

/// Width of a head in the strip under the large tile, in points.
const STRIP_TILE: f32 = 64.0;

/// What the pointer is over on one side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SideHover {
    pub row: usize,
    pub col: usize,
    /// The attention value there (attention views only).
    pub value: Option<f32>,
}

/// Maps of one result as textures: per head then the head mean (attention), or one (PCA).
struct Colours {
    result: usize,
    colormap: Colormap,
    textures: Vec<TextureHandle>,
}

struct Outlines {
    result: usize,
    threshold: f32,
    /// Per head then the head mean.
    masks: Vec<Vec<bool>>,
}

#[derive(Default)]
pub struct SidePanel {
    image: Option<(usize, TextureHandle)>,
    colours: Option<Colours>,
    outlines: Option<Outlines>,
    /// The head mean of the result shown.
    mean: Option<(usize, Arc<Vec<f32>>)>,
    pub hover: Option<SideHover>,
    /// Screen rectangle of the large tile in the last frame (for tests).
    pub tile_rect: Option<Rect>,
}

fn id_of(result: &Arc<SideResult>) -> usize {
    Arc::as_ptr(result) as usize
}

fn patch_texture(ctx: &egui::Context, name: &str, grid: Grid, rgb: &[u8]) -> Option<TextureHandle> {
    (rgb.len() == grid.len() * 3).then(|| {
        ctx.load_texture(
            name,
            egui::ColorImage::from_rgb([grid.cols, grid.rows], rgb),
            TextureOptions::NEAREST,
        )
    })
}

impl SidePanel {
    fn head_mean(&mut self, result: &Arc<SideResult>) -> Option<Arc<Vec<f32>>> {
        let SideMaps::Attention(maps) = &result.maps else {
            return None;
        };
        match &self.mean {
            Some((id, mean)) if *id == id_of(result) => Some(mean.clone()),
            _ => {
                let mean = Arc::new(maps.head_mean());
                self.mean = Some((id_of(result), mean.clone()));
                Some(mean)
            }
        }
    }

    fn ensure(&mut self, ctx: &egui::Context, result: &Arc<SideResult>, settings: &Settings) {
        let id = id_of(result);
        if self.image.as_ref().is_none_or(|(i, _)| *i != id) {
            let texture = rgb_texture(
                ctx,
                "compare-input",
                &result.prepared.rgb,
                TextureOptions::LINEAR,
            );
            self.image = Some((id, texture));
        }
        let mean = self.head_mean(result);
        let fresh =
            matches!(&self.colours, Some(c) if c.result == id && c.colormap == settings.colormap);
        if !fresh {
            let textures = match (&result.maps, &mean) {
                (SideMaps::Attention(maps), Some(mean)) => (0..maps.heads)
                    .map(|h| maps.head(h))
                    .chain(std::iter::once(mean.as_slice()))
                    .filter_map(|values| {
                        let g = maps.grid;
                        let rgb = render_map(values, g.rows, g.cols, 1, settings.colormap);
                        patch_texture(ctx, "compare-attention", g, rgb.as_raw())
                    })
                    .collect(),
                (SideMaps::Pca { grid, colors }, _) => {
                    let rgb: Vec<u8> = colors.iter().flatten().copied().collect();
                    patch_texture(ctx, "compare-pca", *grid, &rgb)
                        .into_iter()
                        .collect()
                }
                _ => Vec::new(),
            };
            self.colours = Some(Colours {
                result: id,
                colormap: settings.colormap,
                textures,
            });
        }
        let outlined = matches!(&self.outlines, Some(o) if o.result == id && o.threshold == settings.threshold);
        if settings.show_masks
            && !outlined
            && let (SideMaps::Attention(maps), Some(mean)) = (&result.maps, &mean)
        {
            let masks = (0..maps.heads)
                .map(|h| mass_mask(maps.head(h), settings.threshold))
                .chain(std::iter::once(mass_mask(mean, settings.threshold)))
                .collect();
            self.outlines = Some(Outlines {
                result: id,
                threshold: settings.threshold,
                masks,
            });
        }
    }

    /// Draws the side at `width`; returns the head clicked in the strip (`Some(None)`: the
    /// mean).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        result: &Arc<SideResult>,
        head: Option<usize>,
        settings: &Settings,
        width: f32,
    ) -> Option<Option<usize>> {
        self.ensure(ui.ctx(), result, settings);
        self.hover = None;
        let size = [result.prepared.width(), result.prepared.height()];
        let aspect = size[1] as f32 / size[0].max(1) as f32;
        let (rect, response) =
            ui.allocate_exact_size(Vec2::new(width, width * aspect), Sense::hover());
        self.tile_rect = Some(rect);
        let heads = match &result.maps {
            SideMaps::Attention(maps) => maps.heads,
            SideMaps::Pca { .. } => 0,
        };
        // The mean is the last map; a head the other model has but this one lacks shows it.
        let index = head.filter(|&h| h < heads).unwrap_or(heads);
        self.paint(ui, rect, result, index, settings, size);
        let grid = result.maps.grid();
        if let Some(pos) = response.hover_pos()
            && let Some((row, col)) = cell_at(rect, grid, size, pos)
        {
            let value = match &result.maps {
                SideMaps::Attention(maps) => match index.checked_sub(heads) {
                    Some(_) => self
                        .head_mean(result)
                        .and_then(|m| m.get(row * grid.cols + col).copied()),
                    None => maps.head(index).get(row * grid.cols + col).copied(),
                },
                SideMaps::Pca { .. } => None,
            };
            self.hover = Some(SideHover { row, col, value });
        }
        if heads == 0 {
            return None;
        }
        let mut picked = None;
        ui.horizontal_wrapped(|ui| {
            for i in 0..=heads {
                let w = STRIP_TILE;
                let (rect, response) =
                    ui.allocate_exact_size(Vec2::new(w, w * aspect), Sense::click());
                let label = if i == heads {
                    "head mean".to_string()
                } else {
                    format!("head {i}")
                };
                response
                    .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
                self.paint(ui, rect, result, i, settings, size);
                if i == index {
                    ui.painter().rect_stroke(
                        rect,
                        0.0,
                        egui::Stroke::new(2.0, ui.visuals().selection.stroke.color),
                        egui::StrokeKind::Outside,
                    );
                }
                if response.on_hover_text(&label).clicked() {
                    picked = Some((i < heads).then_some(i));
                }
            }
        });
        picked
    }

    /// Map `index` (heads, then the mean; the PCA colours) over the image in `rect`.
    fn paint(
        &self,
        ui: &egui::Ui,
        rect: Rect,
        result: &SideResult,
        index: usize,
        settings: &Settings,
        size: [usize; 2],
    ) {
        let painter = ui.painter_at(rect);
        let full = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        if let Some((_, texture)) = &self.image {
            painter.image(texture.id(), rect, full, Color32::WHITE);
        }
        let pca = matches!(result.maps, SideMaps::Pca { .. });
        let texture = self
            .colours
            .as_ref()
            .and_then(|c| c.textures.get(if pca { 0 } else { index }));
        if let Some(texture) = texture {
            let alpha = (settings.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
            painter.image(texture.id(), rect, full, Color32::from_white_alpha(alpha));
        }
        if settings.show_masks
            && !pca
            && let Some(mask) = self.outlines.as_ref().and_then(|o| o.masks.get(index))
        {
            painter.extend(outline_shapes(mask, result.maps.grid(), rect, size));
        }
    }
}
