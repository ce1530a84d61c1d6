//! The model info panel and the banner that flags an untrained model.

use super::worker::{ModelInfo, ModelSource};
use eframe::egui;

/// Text of the banner shown while the model has random weights.
pub const UNTRAINED_LABEL: &str =
    "untrained ViT-nano (random weights) - open a checkpoint in the Model menu";

/// Status-bar text for the bundled model (its card: `weights/README.md`).
pub const DEFAULT_LABEL: &str = "bundled default model (a toy ViT-nano trained by dinoscope on synthetic shapes; \
     open an official checkpoint for real photos)";

/// One-line model label for the status bar.
pub fn short_label(model: Option<&ModelInfo>) -> String {
    match model {
        None => "loading model...".into(),
        Some(m) if m.is_untrained() => UNTRAINED_LABEL.into(),
        Some(
            m @ ModelInfo {
                source: ModelSource::Default(_),
                ..
            },
        ) => format!("{DEFAULT_LABEL} - {}", m.config.describe()),
        Some(m) => format!("{} - {}", m.file_name(), m.config.describe()),
    }
}

pub fn ui(ui: &mut egui::Ui, model: Option<&ModelInfo>, backend: Option<&str>) {
    ui.heading("Model");
    let Some(m) = model else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("loading...");
        });
        return;
    };
    if m.is_untrained() {
        ui.colored_label(egui::Color32::from_rgb(255, 140, 60), UNTRAINED_LABEL);
        ui.add_space(4.0);
    }
    let c = &m.config;
    let row = |ui: &mut egui::Ui, name: &str, value: String| {
        ui.horizontal_wrapped(|ui| {
            ui.label(egui::RichText::new(format!("{name}:")).strong());
            ui.label(value);
        });
    };
    row(ui, "Architecture", c.describe());
    row(
        ui,
        "Parameters",
        format!("{:.2} M", c.param_count() as f64 / 1e6),
    );
    row(ui, "Patch size", format!("{} px", c.patch_size));
    row(
        ui,
        "Blocks / heads",
        format!("{} / {} (head dim {})", c.depth, c.heads, c.head_dim()),
    );
    if c.registers > 0 {
        row(ui, "Registers", c.registers.to_string());
    }
    row(
        ui,
        "File",
        match &m.source {
            ModelSource::Untrained => m.file_name(),
            ModelSource::Default(p) | ModelSource::File(p) => p.display().to_string(),
        },
    );
    if m.ignored > 0 {
        row(
            ui,
            "Ignored tensors",
            format!("{} (heads, optimizer state...)", m.ignored),
        );
    }
    row(
        ui,
        "Loaded in",
        format!("{:.0} ms", m.load_time.as_secs_f64() * 1e3),
    );
    row(
        ui,
        "Backend",
        backend.unwrap_or("(choosing...)").to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;
    use std::time::Duration;

    fn info(source: ModelSource) -> ModelInfo {
        ModelInfo {
            config: Arch::VitNano.config(),
            source,
            ignored: 0,
            generation: 0,
            load_time: Duration::ZERO,
        }
    }

    #[test]
    fn the_status_label_says_which_kind_of_model_is_loaded() {
        assert_eq!(short_label(None), "loading model...");
        assert_eq!(
            short_label(Some(&info(ModelSource::Untrained))),
            UNTRAINED_LABEL
        );
        let bundled = short_label(Some(&info(ModelSource::Default(
            "w/default.safetensors".into(),
        ))));
        assert!(bundled.starts_with(DEFAULT_LABEL), "{bundled}");
        let opened = short_label(Some(&info(ModelSource::File("/x/dino.pth".into()))));
        assert!(opened.starts_with("dino.pth - "), "{opened}");
    }
}
