//! The correspondence view (placeholder until the correspondence analysis lands).

use eframe::egui;

/// What the view will show, in place of the view itself.
pub fn placeholder(ui: &mut egui::Ui) {
    ui.vertical_centered(|ui| {
        ui.add_space(40.0);
        ui.heading("Correspondence");
        ui.add_space(8.0);
        ui.label(
            "Matches points between two images by their patch features: pick a point on the \
             source image and see how similar every patch of the target is, with the best match \
             marked; or let the app find pairs of patches that are each other's best match \
             (\"best buddies\").",
        );
        ui.add_space(8.0);
        ui.label(egui::RichText::new("This view is not available in this build yet.").weak());
    });
}
