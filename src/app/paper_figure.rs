//! A view's composed paper figure (`analysis::figure_presets`): composed on its own thread
//! whenever what it shows changes, then drawn as one image fitted to the width. Exports compose
//! their own copy on the export thread.

use std::sync::Arc;

use eframe::egui;
use egui::{Color32, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};
use image::RgbImage;
use poll_promise::Promise;

use super::notifications::AppError;
use super::tasks::spawn_promise;
use super::textures::rgb_texture;

type Composed = Result<Arc<RgbImage>, AppError>;

/// The figure of key `K` on screen, the one being composed, and the last that failed.
pub struct FigurePreview<K> {
    composing: Option<(K, Promise<Composed>)>,
    ready: Option<(K, Arc<RgbImage>, TextureHandle)>,
    failed: Option<K>,
}

impl<K> Default for FigurePreview<K> {
    fn default() -> Self {
        FigurePreview {
            composing: None,
            ready: None,
            failed: None,
        }
    }
}

impl<K: Clone + PartialEq + Send + 'static> FigurePreview<K> {
    /// Makes the figure follow `key`: takes a finished composition, and starts `compose` on a
    /// thread unless the figure of `key` is shown, being composed, or failed (the failure is
    /// returned once).
    pub fn update(
        &mut self,
        ctx: &egui::Context,
        key: &K,
        compose: impl FnOnce() -> RgbImage + Send + 'static,
    ) -> Result<(), AppError> {
        if let Some((done, promise)) = self.composing.take() {
            match promise.try_take() {
                Ok(Ok(image)) => {
                    let texture = rgb_texture(ctx, "paper-figure", &image, TextureOptions::LINEAR);
                    self.ready = Some((done, image, texture));
                }
                Ok(Err(e)) => {
                    self.failed = Some(done);
                    return Err(e);
                }
                Err(pending) => self.composing = Some((done, pending)),
            }
        }
        let shown = self.ready.as_ref().is_some_and(|(k, _, _)| k == key);
        let under_way = self.composing.as_ref().is_some_and(|(k, _)| k == key);
        if !shown && !under_way && self.failed.as_ref() != Some(key) {
            let promise = spawn_promise("dinoscope-figure", "the paper figure", ctx, move || {
                Ok(Arc::new(compose()))
            })?;
            self.composing = Some((key.clone(), promise));
        }
        Ok(())
    }

    /// The figure of `key`, once composed.
    pub fn image(&self, key: &K) -> Option<&Arc<RgbImage>> {
        self.ready
            .as_ref()
            .filter(|(k, _, _)| k == key)
            .map(|(_, image, _)| image)
    }

    /// Draws the last figure composed (a spinner before the first), at most its pixel size and
    /// no wider than the space left; `label` names it for screen readers.
    pub fn ui(&self, ui: &mut egui::Ui, label: &str) {
        let Some((_, image, texture)) = &self.ready else {
            ui.spinner();
            return;
        };
        let (w, h) = (image.width().max(1) as f32, image.height() as f32);
        let width = w.min(ui.available_width().max(40.0));
        let (rect, response) =
            ui.allocate_exact_size(Vec2::new(width, width * h / w), Sense::hover());
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, label));
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        ui.painter().image(texture.id(), rect, uv, Color32::WHITE);
        if self.composing.is_some() {
            ui.spinner();
        }
    }
}
