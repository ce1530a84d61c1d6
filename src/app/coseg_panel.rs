//! The co-segmentation view (placeholder until the co-segmentation analysis lands).

use eframe::egui;

/// What the view will show, in place of the view itself.
pub fn placeholder(ui: &mut egui::Ui) {
    ui.vertical_centered(|ui| {
        ui.add_space(40.0);
        ui.heading("Co-segmentation");
        ui.add_space(8.0);
        ui.label(
            "Finds the objects (and their parts) that several images have in common, without \
             labels: the patch features of all images are clustered together, and the clusters \
             that are salient in every image are kept as the common foreground \
             (Amir et al., \"Deep ViT Features as Dense Visual Descriptors\").",
        );
        ui.add_space(8.0);
        ui.label(egui::RichText::new("This view is not available in this build yet.").weak());
    });
}
