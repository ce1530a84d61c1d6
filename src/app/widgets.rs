//! Controls and layout helpers the views share.

use eframe::egui;

use super::state::InputSize;
use crate::analysis::colormap::Colormap;
use crate::model::Facet;

/// Content centred in the remaining space at its natural size (a message, a spinner or a
/// button of an empty view).
pub fn centered<R>(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
    ui.vertical_centered(|ui| {
        ui.add_space((ui.available_height() / 2.0 - 16.0).max(0.0));
        add(ui)
    })
    .inner
}

/// What an empty view says.
pub fn add_images_hint(ui: &mut egui::Ui) {
    ui.label("Drop images or folders here, or use File > Open images (Ctrl+O).");
}

/// How the image is resized before the model sees it (shared by the views).
pub fn input_size_combo(ui: &mut egui::Ui, input_size: &mut InputSize) {
    egui::ComboBox::from_label("Input size")
        .selected_text(input_size.label())
        .show_ui(ui, |ui| {
            for s in InputSize::CHOICES {
                ui.selectable_value(input_size, s, s.label());
            }
        })
        .response
        .on_hover_text("How the image is resized before the model sees it");
}

/// The slider of a view's block (`Up / Down` in the hover text); returns the block chosen.
pub fn block_slider(ui: &mut egui::Ui, block: usize, depth: usize, hover: &str) -> usize {
    let mut chosen = block;
    ui.add_enabled(
        depth > 1,
        egui::Slider::new(&mut chosen, 0..=depth.max(1) - 1).text("Block (layer)"),
    )
    .on_hover_text(hover);
    chosen
}

/// The tile-size slider the image views share.
pub fn tile_size_slider(ui: &mut egui::Ui, tile_size: &mut f32) {
    ui.add(egui::Slider::new(tile_size, 80.0..=600.0).text("Tile size"));
}

/// The colormap choice the attention and correspondence views share.
pub fn colormap_combo(ui: &mut egui::Ui, colormap: &mut Colormap) {
    egui::ComboBox::from_label("Colormap")
        .selected_text(format!("{colormap:?}"))
        .show_ui(ui, |ui| {
            for c in Colormap::ALL {
                ui.selectable_value(colormap, c, format!("{c:?}"));
            }
        });
}

/// The stride combo box: `stride` is `None` for `default`, the strides offered divide `patch`.
pub fn stride_combo(
    ui: &mut egui::Ui,
    stride: &mut Option<usize>,
    patch: usize,
    default: usize,
) -> egui::Response {
    let shown = stride
        .filter(|s| patch.is_multiple_of(*s))
        .unwrap_or(default);
    egui::ComboBox::from_label("Stride")
        .selected_text(format!("{shown} px"))
        .show_ui(ui, |ui| {
            for s in stride_choices(patch) {
                let label = if s == patch {
                    format!("{s} px (no overlap)")
                } else {
                    format!("{s} px")
                };
                if ui.selectable_label(s == shown, label).clicked() {
                    *stride = (s != default).then_some(s);
                }
            }
        })
        .response
}

/// Strides the model allows: the divisors of its patch size, largest first.
pub fn stride_choices(patch: usize) -> Vec<usize> {
    (1..=patch.max(1))
        .rev()
        .filter(|s| patch.is_multiple_of(*s))
        .collect()
}

/// The facets of a block, as the combo boxes name them.
const FACETS: [(Facet, &str); 4] = [
    (Facet::Key, "key"),
    (Facet::Query, "query"),
    (Facet::Value, "value"),
    (Facet::Token, "token (block output)"),
];

/// The facet choice of the feature views.
pub fn facet_combo(ui: &mut egui::Ui, facet: &mut Facet) -> egui::Response {
    let shown = FACETS
        .iter()
        .find(|(f, _)| f == facet)
        .map_or("key", |(_, l)| l);
    egui::ComboBox::from_label("Facet")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            for (f, label) in FACETS {
                ui.selectable_value(facet, f, label);
            }
        })
        .response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_divide_the_patch() {
        assert_eq!(stride_choices(8), vec![8, 4, 2, 1]);
        assert_eq!(stride_choices(14), vec![14, 7, 2, 1]);
        assert_eq!(stride_choices(16), vec![16, 8, 4, 2, 1]);
    }
}
