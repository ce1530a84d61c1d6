//! The attention view's "Paper figure" preset: DINO's attention figure (the chosen heads of the
//! last block's \[CLS\] attention, each kept at 60 % of its mass, in its own colour over the
//! image; `analysis::figure_presets`), shown in place of the tiles and exported as one PNG.

use eframe::egui;
use image::RgbImage;

use super::job::{AttentionResult, AttnKey};
use crate::analysis::figure_presets::{DINO_MASS, dino_attention_figure};
use crate::app::paper_figure::FigurePreview;
use crate::app::state::Settings;

/// The export id of the figure.
pub const EXPORT_ID: &str = "figure";

/// What the figure shows; it is composed again when this changes.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureKey {
    pub result: AttnKey,
    pub heads: Vec<usize>,
    /// The mass kept, as its bits.
    keep: u32,
}

pub struct AttentionFigure {
    /// Heads in the figure, ascending.
    pub heads: Vec<usize>,
    pub preview: FigurePreview<FigureKey>,
}

impl AttentionFigure {
    /// Every one of `heads` heads in the figure.
    pub fn with_heads(heads: usize) -> Self {
        AttentionFigure {
            heads: (0..heads).collect(),
            preview: FigurePreview::default(),
        }
    }

    pub fn key(&self, result: AttnKey, keep: f32) -> FigureKey {
        FigureKey {
            result,
            heads: self.heads.clone(),
            keep: keep.to_bits(),
        }
    }

    /// One checkbox per head of the model.
    pub fn head_controls(&mut self, ui: &mut egui::Ui, heads: usize) {
        ui.label("Heads in the figure");
        ui.horizontal_wrapped(|ui| {
            for h in 0..heads {
                let mut shown = self.heads.contains(&h);
                if ui.checkbox(&mut shown, format!("Head {h}")).changed() {
                    self.heads.retain(|&k| k != h);
                    if shown {
                        self.heads.push(h);
                        self.heads.sort_unstable();
                    }
                }
            }
        });
    }
}

/// The preset's options: the last block, masks shown at DINO's 0.6 of the mass (the view's query
/// goes back to \[CLS\] too).
pub fn apply_preset(settings: &mut Settings) {
    settings.layer = None;
    settings.threshold = DINO_MASS;
    settings.show_masks = true;
}

/// The figure of `result`: the image as the script shows it beside the heads' masks.
pub fn compose(result: &AttentionResult, heads: &[usize], keep: f32) -> RgbImage {
    dino_attention_figure(&result.prepared.rgb, &result.maps, heads, keep)
}
