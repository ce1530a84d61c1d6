//! The correspondence view's left panel: source and targets, the descriptors matched, the
//! second source, best buddies and the point's read-out.

use eframe::egui;

use super::{CorrespondenceTab, layer};
use crate::app::tasks::ImageId;
use crate::app::view::ViewContext;
use crate::app::widgets::{
    block_slider, colormap_combo, facet_combo, input_size_combo, stride_combo, tile_size_slider,
};

impl CorrespondenceTab {
    pub(super) fn controls_ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Correspondence");
        ui.label(
            egui::RichText::new(
                "Source: the selected image. Click or drag on it to match the point.",
            )
            .weak(),
        );
        target_controls(self, ui, cx);
        descriptor_controls(ui, cx);
        ui.separator();
        self.fusion_controls(ui, cx);
        ui.separator();
        buddies_controls(self, ui, cx);
        ui.separator();
        point_readout(self, ui, cx);
    }
}

/// One target (chosen in a combo box) or all other images.
fn target_controls(view: &mut CorrespondenceTab, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
    let shared = cx.shared();
    let source = CorrespondenceTab::source(shared);
    let others: Vec<(ImageId, String)> = shared
        .gallery
        .entries
        .iter()
        .filter(|e| Some(e.id) != source)
        .map(|e| (e.id, e.name.clone()))
        .collect();
    let targets = view.targets(shared);
    let c = &mut cx.settings.correspondence;
    ui.horizontal(|ui| {
        ui.radio_value(&mut c.all_targets, false, "One target");
        ui.radio_value(&mut c.all_targets, true, "All other images");
    });
    if c.all_targets {
        return;
    }
    let current = targets
        .first()
        .and_then(|t| others.iter().find(|(id, _)| id == t))
        .map_or("(none)".to_string(), |(_, n)| n.clone());
    egui::ComboBox::from_label("Target")
        .selected_text(current)
        .show_ui(ui, |ui| {
            for (id, name) in &others {
                if ui
                    .selectable_label(targets.first() == Some(id), name)
                    .clicked()
                {
                    view.set_target(*id);
                }
            }
        });
}

/// Block, facet, stride, log-binning, input size and the colouring.
fn descriptor_controls(ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
    let shared = cx.shared();
    let (depth, patch, block) = (shared.depth(), shared.patch_size(), layer(shared));
    let chosen = block_slider(
        ui,
        block,
        depth,
        "Which block's features are matched (Up / Down)",
    );
    let s = &mut *cx.settings;
    let c = &mut s.correspondence;
    if chosen != block {
        c.layer = Some(chosen);
    }
    facet_combo(ui, &mut c.facet);
    stride_combo(ui, &mut c.stride, patch, patch)
        .on_hover_text("A smaller stride gives denser matches (dino-vit-features: 4)");
    ui.checkbox(&mut c.log_bin, "Log-binning descriptor")
        .on_hover_text(
            "Adds each patch's neighbourhood at two scales (17x longer descriptors; \
         dino-vit-features' choice)",
        );
    input_size_combo(ui, &mut s.input_size);
    colormap_combo(ui, &mut s.colormap);
    ui.add(egui::Slider::new(&mut s.opacity, 0.0..=1.0).text("Opacity"));
    tile_size_slider(ui, &mut s.tile_size);
}

/// "Auto" best buddies, their settings and what was found.
fn buddies_controls(view: &mut CorrespondenceTab, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
    ui.heading("Best buddies");
    let c = &mut cx.settings.correspondence;
    ui.add(egui::Slider::new(&mut c.num_pairs, 1..=50).text("Pairs"));
    ui.add(
        egui::Slider::new(&mut c.saliency_threshold, 0.0..=0.5)
            .step_by(0.01)
            .text("Saliency threshold"),
    )
    .on_hover_text("Only patches whose CLS attention is above this are paired");
    let shared = cx.shared();
    ui.horizontal(|ui| {
        if ui
            .button("Auto")
            .on_hover_text(
                "Find pairs of patches that are each other's best match (best buddies) on the \
                 salient parts, and keep a diverse few",
            )
            .clicked()
        {
            view.find_best_buddies(shared);
        }
        if ui.button("Clear").clicked() {
            view.clear_buddies(shared);
        }
    });
    for (target, found) in view.current_buddies(shared) {
        let name = shared
            .gallery
            .entries
            .iter()
            .find(|e| e.id == target)
            .map_or("?".into(), |e| e.name.clone());
        ui.label(format!(
            "{name}: {} mutual, {} salient, {} shown",
            found.mutual,
            found.salient,
            found.pairs.len()
        ));
    }
}

/// The source point and each target's best match.
fn point_readout(view: &CorrespondenceTab, ui: &mut egui::Ui, cx: &ViewContext<'_>) {
    ui.heading("Point");
    let spec = view.spec(cx.shared());
    let Some(p) = view.point() else {
        ui.label(egui::RichText::new("(click the source image)").weak());
        return;
    };
    ui.label(format!("source ({:.0}, {:.0}) px", p.point.0, p.point.1));
    if let Some(a) = &p.answer {
        for (id, m) in a.targets.iter().zip(&a.query.matches) {
            let name = spec
                .and_then(|s| view.image(*id, s))
                .map_or("?".to_string(), |i| i.name.clone());
            ui.label(format!(
                "{name}: best ({:.0}, {:.0}) px, score {:.3}",
                m.best_pixel.0, m.best_pixel.1, m.best_score
            ));
        }
    }
}
