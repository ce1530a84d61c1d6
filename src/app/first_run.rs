//! The first-run offer: while only the bundled toy model (or random weights) is loaded and no
//! official checkpoint has been downloaded, a bar under the status line offers the recommended
//! checkpoint with its size, so a lecturer goes from the first start to real attention maps in
//! one click (it is loaded as soon as it has arrived).

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui;

use super::downloads::Downloads;
use super::worker::{ModelInfo, ModelSource};
use crate::model::download::{OFFICIAL, OfficialCheckpoint, official};

/// DINO ViT-S/8: small, and its 8-px patches give the sharp maps of the DINO paper's figures.
pub const RECOMMENDED: &str = "dino_vits8";

/// How often the checkpoint folder is looked at.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstRunAction {
    Download,
    Dismiss,
}

#[derive(Default)]
pub struct FirstRun {
    dismissed: bool,
    /// When the folder was last looked at, and whether it held an official checkpoint.
    checked: Option<(Instant, bool)>,
}

/// Any official DINO / DINOv2 checkpoint in `dir` (a supervised DeiT alone does not count).
fn any_official(dir: &Path) -> bool {
    OFFICIAL
        .iter()
        .any(|c| c.self_supervised() && dir.join(c.file_name()).is_file())
}

impl FirstRun {
    /// The checkpoint to offer now, if any.
    pub fn offer(
        &mut self,
        model: Option<&ModelInfo>,
        downloads: &Downloads,
    ) -> Option<&'static OfficialCheckpoint> {
        let toy = model.is_some_and(|m| !matches!(m.source, ModelSource::File(_)));
        let dir = downloads.dir.as_deref()?;
        if self.dismissed || !toy {
            return None;
        }
        let stale = self.checked.is_none_or(|(at, _)| at.elapsed() > RECHECK);
        if stale {
            self.checked = Some((Instant::now(), any_official(dir)));
        }
        let present = self.checked.is_some_and(|(_, present)| present);
        (!present).then(|| official(RECOMMENDED)).flatten()
    }

    pub fn apply(&mut self, action: FirstRunAction) {
        if action == FirstRunAction::Dismiss {
            self.dismissed = true;
        }
    }
}

/// The offer's bar: what the toy model is, the button with the checkpoint's size, and the
/// download's progress once started.
pub fn bar(
    ui: &mut egui::Ui,
    checkpoint: &OfficialCheckpoint,
    downloads: &Downloads,
    untrained: bool,
) -> Option<FirstRunAction> {
    let mut action = None;
    ui.horizontal(|ui| {
        ui.label(if untrained {
            "Random weights: their attention is noise."
        } else {
            "The bundled model is a toy trained on synthetic scenes: on photos its attention is \
             close to noise."
        });
        match downloads.active.get(checkpoint.id) {
            Some(active) => {
                ui.label(format!(
                    "Downloading {}: {}",
                    checkpoint.title, active.label
                ));
                if let Some(fraction) = active.fraction {
                    ui.add(egui::ProgressBar::new(fraction).desired_width(160.0));
                }
            }
            None => {
                let label = format!(
                    "Download {} ({:.0} MB) and use it",
                    checkpoint.title, checkpoint.size_mb
                );
                if ui
                    .button(label)
                    .on_hover_text(format!("{}; from {}", checkpoint.note, checkpoint.url))
                    .clicked()
                {
                    action = Some(FirstRunAction::Download);
                }
            }
        }
        if ui.button("Not now").clicked() {
            action = Some(FirstRunAction::Dismiss);
        }
    });
    action
}
