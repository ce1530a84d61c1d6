//! Uploading RGB images as egui textures.

use std::sync::Arc;

use eframe::egui;
use egui::{TextureHandle, TextureOptions};
use image::RgbImage;

/// Uploads `rgb`; very long images exceed what the GPU takes as one texture, so those are scaled
/// down to the largest side allowed.
pub fn rgb_texture(
    ctx: &egui::Context,
    name: impl Into<String>,
    rgb: &RgbImage,
    options: TextureOptions,
) -> TextureHandle {
    let max_side = ctx.input(|i| i.max_texture_side).max(1) as u32;
    let scaled;
    let rgb = if rgb.width().max(rgb.height()) > max_side {
        let scale = max_side as f64 / rgb.width().max(rgb.height()) as f64;
        scaled = image::imageops::thumbnail(
            rgb,
            ((rgb.width() as f64 * scale) as u32).max(1),
            ((rgb.height() as f64 * scale) as u32).max(1),
        );
        &scaled
    } else {
        rgb
    };
    let image =
        egui::ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw());
    ctx.load_texture(name, image, options)
}

/// Textures made from one result, remade only when another result (another `Arc`) is shown.
pub type PerResult = Option<(usize, Vec<(TextureHandle, TextureHandle)>)>;

/// Makes `cache` hold `make(result)`'s textures unless it already holds this result's.
pub fn refresh_per_result<T>(
    cache: &mut PerResult,
    result: &Arc<T>,
    make: impl FnOnce(&T) -> Vec<(TextureHandle, TextureHandle)>,
) {
    let key = Arc::as_ptr(result) as usize;
    if cache.as_ref().is_none_or(|(k, _)| *k != key) {
        *cache = Some((key, make(result)));
    }
}
