//! Frame timing and the debug overlay (F12) that shows it.

use eframe::egui;
use std::time::Instant;

/// UI build time and frame interval, smoothed over the last frames.
#[derive(Default)]
pub struct FrameTimer {
    /// UI build time of the last frame, unsmoothed.
    pub last_ui_ms: f32,
    pub ui_ms: f32,
    pub frame_ms: f32,
    last: Option<Instant>,
}

/// An exponential moving average that starts at the first value.
fn smooth(average: f32, value: f32) -> f32 {
    if average == 0.0 {
        value
    } else {
        0.9 * average + 0.1 * value
    }
}

impl FrameTimer {
    /// A frame whose UI was built from `started` until now.
    pub fn record(&mut self, started: Instant) {
        let ui_ms = started.elapsed().as_secs_f32() * 1e3;
        self.last_ui_ms = ui_ms;
        self.ui_ms = smooth(self.ui_ms, ui_ms);
        if let Some(last) = self.last {
            let dt = started.duration_since(last).as_secs_f32() * 1e3;
            self.frame_ms = smooth(self.frame_ms, dt);
        }
        self.last = Some(started);
    }

    /// The overlay in the top right corner: frame times, results cached, tasks under way.
    pub fn overlay(&self, ctx: &egui::Context, cached: usize, tasks: usize) {
        egui::Area::new(egui::Id::unique("debug-overlay"))
            .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-8.0, 60.0))
            .order(egui::Order::Foreground)
            .interactable(false)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.monospace(format!("ui build  {:6.2} ms", self.ui_ms));
                    ui.monospace(format!("frame     {:6.2} ms", self.frame_ms));
                    ui.monospace(format!("cached    {cached:6} views"));
                    ui.monospace(format!("tasks     {tasks:6}"));
                });
            });
    }
}
