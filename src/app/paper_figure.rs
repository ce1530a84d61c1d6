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
    /// thread unless the figure of `key` is shown or failed (the failure is returned once). One
    /// composition at a time: while one is under way (say a slider is dragged), the newest key
    /// waits for it to finish.
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
                Err(pending) => {
                    self.composing = Some((done, pending));
                    return Ok(());
                }
            }
        }
        let shown = self.ready.as_ref().is_some_and(|(k, _, _)| k == key);
        if !shown && self.failed.as_ref() != Some(key) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Calls `update` until nothing is under way; returns the errors it gave.
    fn settle(
        preview: &mut FigurePreview<u32>,
        ctx: &egui::Context,
        key: u32,
        compose: impl Fn() -> RgbImage + Clone + Send + 'static,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for _ in 0..2000 {
            if let Err(e) = preview.update(ctx, &key, compose.clone()) {
                errors.push(e.to_string());
            }
            if preview.composing.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        errors
    }

    #[test]
    fn figures_follow_the_key_and_a_failed_one_is_reported_once() {
        let ctx = egui::Context::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut preview = FigurePreview::default();
        let counted = |value: u8| {
            let calls = calls.clone();
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                RgbImage::from_pixel(3, 2, image::Rgb([value; 3]))
            }
        };
        assert!(settle(&mut preview, &ctx, 1, counted(10)).is_empty());
        assert_eq!(
            preview.image(&1).map(|i| i.get_pixel(0, 0).0),
            Some([10; 3])
        );
        assert!(preview.image(&2).is_none());
        // The same key again composes nothing.
        assert!(settle(&mut preview, &ctx, 1, counted(20)).is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let failing = || -> RgbImage { panic!("no pixels") };
        let errors = settle(&mut preview, &ctx, 2, failing);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("the paper figure"), "{}", errors[0]);
        assert!(
            settle(&mut preview, &ctx, 2, failing).is_empty(),
            "not retried"
        );
        assert!(
            preview.image(&1).is_some(),
            "the last figure stays on screen"
        );
        assert!(settle(&mut preview, &ctx, 3, counted(30)).is_empty());
        assert_eq!(
            preview.image(&3).map(|i| i.get_pixel(0, 0).0),
            Some([30; 3])
        );
    }
}
