//! The explorer's left panel: the folder and how it is embedded, and how the classes are read out.

use std::path::PathBuf;

use eframe::egui;

use super::job::{ClassifierChoice, EmbeddedSet};
use crate::analysis::readout::embed::Pooling;
use crate::analysis::readout::knn::KnnConfig;
use crate::analysis::readout::report::SplitSettings;
use crate::app::notifications::file_label;
use crate::app::worker::ModelInfo;

/// Image sides offered: the DINOv2 article's Omniglot example (98) and the usual 224.
const SIDES: [u32; 2] = [98, 224];

#[derive(Clone, Debug, PartialEq)]
pub struct ExplorerSettings {
    /// A folder of class sub-folders, or a `.csv` list.
    pub folder: Option<PathBuf>,
    /// Images are resized to `side` x `side`.
    pub side: u32,
    pub pooling: Pooling,
    /// Keep features on disk so a folder is embedded once per checkpoint and settings.
    pub keep_on_disk: bool,
    pub classifier: ClassifierChoice,
    pub knn: KnnConfig,
    /// Logistic regression's inverse regularisation strength.
    pub c: f64,
    pub split: SplitSettings,
}

impl Default for ExplorerSettings {
    fn default() -> Self {
        ExplorerSettings {
            folder: None,
            side: 224,
            pooling: Pooling::Cls,
            keep_on_disk: true,
            classifier: ClassifierChoice::Knn,
            knn: KnnConfig::default(),
            c: 1.0,
            split: SplitSettings::default(),
        }
    }
}

pub enum Action {
    ChooseFolder,
    ChooseList,
    Embed,
}

pub fn controls(
    ui: &mut egui::Ui,
    s: &mut ExplorerSettings,
    model: Option<&ModelInfo>,
    embedded: Option<&EmbeddedSet>,
    embedding: bool,
) -> Option<Action> {
    let mut action = None;
    ui.heading("Image set");
    ui.horizontal(|ui| {
        let name = s.folder.as_deref().map_or("(no folder)".into(), file_label);
        ui.label(name).on_hover_text(
            s.folder
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string()),
        );
        if ui
            .button("Choose...")
            .on_hover_text("Images in class sub-folders, or in train/CLASS and val/CLASS")
            .clicked()
        {
            action = Some(Action::ChooseFolder);
        }
        if ui
            .button("CSV list...")
            .on_hover_text("A .csv of path,label rows (paths relative to the list)")
            .clicked()
        {
            action = Some(Action::ChooseList);
        }
    });
    egui::ComboBox::from_label("Image size")
        .selected_text(format!("{0} x {0}", s.side))
        .show_ui(ui, |ui| {
            for side in SIDES {
                ui.selectable_value(&mut s.side, side, format!("{side} x {side}"));
            }
        });
    egui::ComboBox::from_label("Features")
        .selected_text(match s.pooling {
            Pooling::Cls => "CLS",
            Pooling::ClsAvgpool => "CLS + mean patch",
        })
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut s.pooling, Pooling::Cls, "CLS")
                .on_hover_text("The final-normed CLS token (DINO's evaluation)");
            ui.selectable_value(&mut s.pooling, Pooling::ClsAvgpool, "CLS + mean patch")
                .on_hover_text(
                    "CLS concatenated with the mean patch token (DINOv2's linear evaluation)",
                );
        });
    ui.checkbox(&mut s.keep_on_disk, "Keep features on disk")
        .on_hover_text(
            "Images already embedded with this checkpoint and settings are not run again",
        );
    let can_embed = s.folder.is_some() && model.is_some() && !embedding;
    if ui
        .add_enabled(can_embed, egui::Button::new("Embed"))
        .on_hover_text("Embed every image of the folder with the loaded model")
        .clicked()
    {
        action = Some(Action::Embed);
    }
    if let Some(set) = embedded {
        let stale = set.key.side != s.side
            || set.key.pooling != s.pooling
            || Some(&set.key.folder) != s.folder.as_ref();
        ui.label(format!(
            "{} images, {} classes, {} features each; {:.1} s ({} from the disk cache)",
            set.len(),
            set.images.classes.len(),
            set.dim,
            set.elapsed.as_secs_f64(),
            set.from_cache
        ));
        if stale {
            ui.label(egui::RichText::new("Settings changed: Embed again to use them").weak());
        }
        for problem in &set.not_kept {
            ui.label(egui::RichText::new(format!("not kept on disk: {problem}")).weak());
        }
    }
    ui.separator();
    ui.heading("Read-out");
    ui.radio_value(&mut s.classifier, ClassifierChoice::Knn, "k-NN (DINO)")
        .on_hover_text("Cosine similarity, the k nearest vote with weight exp(similarity / T)");
    ui.radio_value(
        &mut s.classifier,
        ClassifierChoice::Logistic,
        "Logistic regression",
    )
    .on_hover_text("Multinomial, L2 penalty, as scikit-learn's LogisticRegression");
    match s.classifier {
        ClassifierChoice::Knn => {
            ui.add(egui::Slider::new(&mut s.knn.k, 1..=100).text("k"));
            ui.add(
                egui::Slider::new(&mut s.knn.temperature, 0.01..=1.0)
                    .logarithmic(true)
                    .text("T"),
            );
        }
        ClassifierChoice::Logistic => {
            ui.add(
                egui::Slider::new(&mut s.c, 1e-3..=1e3)
                    .logarithmic(true)
                    .text("C"),
            );
        }
    }
    let given_split = embedded.is_some_and(|set| set.images.subsets.is_some());
    ui.add_enabled_ui(!given_split, |ui| {
        ui.add(egui::Slider::new(&mut s.split.test_size, 0.05..=0.95).text("test share"));
        ui.horizontal(|ui| {
            ui.label("seed");
            ui.add(egui::DragValue::new(&mut s.split.seed));
        });
    })
    .response
    .on_disabled_hover_text("The folder's train/ and val/ sub-folders are the split");
    if ui.button("DINO's defaults").clicked() {
        s.knn = KnnConfig::default();
        s.c = 1.0;
        s.split = SplitSettings::default();
    }
    action
}
