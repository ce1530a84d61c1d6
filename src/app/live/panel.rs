//! The central area of the live view: the newest analysed frame, scaled to fit, clickable (a
//! click starts a track), and one line of figures (rate, model time, dropped frames).

use eframe::egui;

use crate::analysis::live::LiveFrame;

/// The largest the frame is drawn, relative to its pixels.
const MAX_ZOOM: f32 = 4.0;

/// Draws `texture` of `frame` to fit the space left; returns the clicked point in the frame's
/// original pixels (pixel-index coordinates).
pub fn frame_image(
    ui: &mut egui::Ui,
    texture: &egui::TextureHandle,
    frame: &LiveFrame,
) -> Option<(f64, f64)> {
    let pixels = texture.size_vec2();
    let room = ui.available_size();
    let zoom = (room.x / pixels.x)
        .min(room.y / pixels.y)
        .clamp(0.1, MAX_ZOOM);
    let (rect, response) = ui.allocate_exact_size(pixels * zoom, egui::Sense::click());
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    ui.painter()
        .image(texture.id(), rect, uv, egui::Color32::WHITE);
    let response = response.on_hover_text("Click a point to follow it through the next frames");
    if !response.clicked() {
        return None;
    }
    let pos = response.interact_pointer_pos()?;
    let shown = (pos - rect.min) / zoom;
    Some(frame.to_original((shown.x as f64 - 0.5, shown.y as f64 - 0.5)))
}
