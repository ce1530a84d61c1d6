//! The frame's keyboard shortcuts, dropped files and pasted images, read into one [`Input`] the
//! app then acts on.

use eframe::egui;
use egui::{Key, Modifiers};
use std::path::PathBuf;

use super::gallery::Source;

/// The digit keys that select the tabs, in tab order (0 is the tenth).
const TAB_KEYS: [Key; 10] = [
    Key::Num1,
    Key::Num2,
    Key::Num3,
    Key::Num4,
    Key::Num5,
    Key::Num6,
    Key::Num7,
    Key::Num8,
    Key::Num9,
    Key::Num0,
];

#[derive(Default)]
pub struct Input {
    /// Ctrl+O.
    pub open_images: bool,
    /// Ctrl+E: export the view shown.
    pub export: bool,
    /// F12.
    pub toggle_debug: bool,
    /// F11: presentation mode.
    pub toggle_presentation: bool,
    /// A digit key: the tab at this index.
    pub tab: Option<usize>,
    /// Left / Right: the gallery selection moves.
    pub select: isize,
    /// Up / Down: the block of the view shown moves.
    pub block: isize,
    /// H or F1.
    pub toggle_help: bool,
    /// Escape or C: back to the \[CLS\] query.
    pub cls: bool,
    /// Delete: remove the selected image.
    pub remove: bool,
    /// Files are dragged over the window.
    pub files_hovered: bool,
    /// Dropped files and pasted images.
    pub added: Vec<Source>,
}

impl Input {
    pub fn read(ctx: &egui::Context) -> Input {
        let mut input = Input {
            open_images: ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::O)),
            export: ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::E)),
            toggle_debug: ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::F12)),
            toggle_presentation: ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::F11)),
            ..Input::default()
        };
        input.read_files(ctx);
        // Plain keys only when no widget (e.g. a focused slider) takes them.
        if ctx.memory(|m| m.focused().is_none()) {
            input.read_plain_keys(ctx);
        }
        input
    }

    fn read_plain_keys(&mut self, ctx: &egui::Context) {
        let pressed = |key: Key| ctx.input_mut(|i| i.consume_key(Modifiers::NONE, key));
        self.tab = TAB_KEYS.iter().position(|&k| pressed(k));
        self.select = step(pressed(Key::ArrowRight), pressed(Key::ArrowLeft));
        self.block = step(pressed(Key::ArrowUp), pressed(Key::ArrowDown));
        self.toggle_help = pressed(Key::H) || pressed(Key::F1);
        self.cls = pressed(Key::Escape) || pressed(Key::C);
        self.remove = pressed(Key::Delete);
    }

    fn read_files(&mut self, ctx: &egui::Context) {
        let (hovered, dropped, pasted) = ctx.input(|i| {
            let dropped: Vec<PathBuf> = i
                .raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect();
            let pasted: Vec<Source> = i
                .events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::PasteImage(image) => Some(Source::Pasted(image.clone())),
                    _ => None,
                })
                .collect();
            (!i.raw.hovered_files.is_empty(), dropped, pasted)
        });
        self.files_hovered = hovered;
        self.added = dropped
            .into_iter()
            .map(Source::Path)
            .chain(pasted)
            .collect();
    }
}

fn step(up: bool, down: bool) -> isize {
    isize::from(up) - isize::from(down)
}

/// The veil shown while files are dragged over the window.
pub fn drop_overlay(ctx: &egui::Context) {
    let rect = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop-overlay"),
    ));
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop images or folders to add them",
        egui::FontId::proportional(24.0),
        egui::Color32::WHITE,
    );
}
