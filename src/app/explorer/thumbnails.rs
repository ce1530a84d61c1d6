//! Thumbnails of an embedded set's images, decoded on a thread of their own only when drawn, and
//! kept as a bounded number of textures (a 10,000-image set never holds 10,000 textures).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Sender, channel};

use eframe::egui;

use crate::app::cache::BoundedCache;
use crate::app::tasks::EventSender;
use crate::model::preprocess::load_rgb;

/// Longest side of a thumbnail, in pixels.
const SIDE: u32 = 64;

/// Thumbnail textures kept.
const KEPT: usize = 1024;

/// A decoded thumbnail (`None`: the file could not be read), for the set `set`.
pub struct Thumbnail {
    pub set: u64,
    pub row: usize,
    pub image: Option<egui::ColorImage>,
}

#[derive(Default)]
pub struct Thumbnails {
    /// Which set the textures belong to; thumbnails of another come back and are dropped.
    set: u64,
    textures: Option<BoundedCache<usize, Option<egui::TextureHandle>>>,
    asked: HashSet<usize>,
    /// Decoded, not yet uploaded (textures are made while drawing, where the context is).
    pending: Vec<Thumbnail>,
    requests: Option<Sender<(u64, usize, PathBuf)>>,
}

impl Thumbnails {
    /// Forgets the textures: thumbnails are now of the set `set`.
    pub fn reset(&mut self, set: u64) {
        self.set = set;
        self.textures = None;
        self.asked.clear();
        self.pending.clear();
    }

    /// The thumbnail of image `row` (at `path`), asked for when missing; `None` until decoded.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        events: &EventSender,
        row: usize,
        path: &std::path::Path,
    ) -> Option<egui::TextureHandle> {
        for thumbnail in std::mem::take(&mut self.pending) {
            self.upload(ctx, thumbnail);
        }
        let textures = self
            .textures
            .get_or_insert_with(|| BoundedCache::with_capacity(KEPT));
        if let Some(texture) = textures.get_recent(&row) {
            return texture.clone();
        }
        if self.asked.insert(row) {
            let sent = self
                .requests
                .as_ref()
                .is_some_and(|tx| tx.send((self.set, row, path.to_path_buf())).is_ok());
            if !sent {
                self.requests = spawn_decoder(events.clone());
                if let Some(tx) = &self.requests {
                    let _ = tx.send((self.set, row, path.to_path_buf()));
                }
            }
        }
        None
    }

    /// Takes a decoded thumbnail (uploaded when next drawn).
    pub fn take_pending(&mut self, thumbnail: Thumbnail) {
        if thumbnail.set == self.set {
            self.pending.push(thumbnail);
        }
    }

    fn upload(&mut self, ctx: &egui::Context, thumbnail: Thumbnail) {
        let texture = thumbnail.image.map(|image| {
            let name = format!("explorer-{}-{}", thumbnail.set, thumbnail.row);
            ctx.load_texture(name, image, egui::TextureOptions::LINEAR)
        });
        self.asked.remove(&thumbnail.row);
        self.textures
            .get_or_insert_with(|| BoundedCache::with_capacity(KEPT))
            .insert(thumbnail.row, texture);
    }
}

/// The decoding thread; `None` when it cannot start (thumbnails then stay blank).
fn spawn_decoder(events: EventSender) -> Option<Sender<(u64, usize, PathBuf)>> {
    let (tx, rx) = channel::<(u64, usize, PathBuf)>();
    std::thread::Builder::new()
        .name("dinoscope-thumbnails".into())
        .spawn(move || {
            while let Ok((set, row, path)) = rx.recv() {
                let image = load_rgb(&path).ok().map(|rgb| {
                    let small = image::imageops::thumbnail(
                        &rgb,
                        (rgb.width() * SIDE / rgb.width().max(rgb.height())).max(1),
                        (rgb.height() * SIDE / rgb.width().max(rgb.height())).max(1),
                    );
                    egui::ColorImage::from_rgb(
                        [small.width() as usize, small.height() as usize],
                        small.as_raw(),
                    )
                });
                events.output(Thumbnail { set, row, image });
            }
        })
        .ok()?;
    Some(tx)
}
