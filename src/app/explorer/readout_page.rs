//! The read-out page: accuracy, per-class accuracy, the confusion matrix (a cell clicked shows its
//! images) and the misclassified test images beside their nearest training images.

use eframe::egui;

use super::job::Readout;
use super::{ImageAction, PageContext};
use crate::analysis::readout::report::{Classifier, ReadoutReport};

/// Thumbnail size on this page, in points.
const THUMB: f32 = 56.0;

/// Misclassified images listed at once (the rest are counted).
const MISCLASSIFIED_SHOWN: usize = 200;

#[derive(Default)]
pub struct ReadoutView {
    /// The confusion matrix cell shown (true class, predicted class).
    pub cell: Option<(usize, usize)>,
}

/// "k-NN (k = 20, T = 0.07)" or "logistic regression (C = 1)", as the command line prints it.
pub fn classifier_label(classifier: &Classifier) -> String {
    match classifier {
        Classifier::Knn(c) => format!("k-NN (k = {}, T = {})", c.k, c.temperature),
        Classifier::Logistic(c) => format!("logistic regression (C = {})", c.c),
    }
}

/// The summary line, as `dinoscope knn` / `linear` print it.
pub fn summary(classifier: &Classifier, report: &ReadoutReport) -> String {
    format!(
        "{}: accuracy {:.4} on {} test images ({} training)",
        classifier_label(classifier),
        report.accuracy,
        report.test.len(),
        report.train.len()
    )
}

impl ReadoutView {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        pages: &mut PageContext<'_>,
        readout: Option<&Readout>,
        computing: bool,
    ) -> Option<ImageAction> {
        let Some(readout) = readout else {
            ui.spinner();
            return None;
        };
        let report = &readout.report;
        ui.horizontal(|ui| {
            ui.heading(summary(&readout.key.classifier, report));
            if computing {
                ui.spinner();
            }
        });
        if report.not_converged {
            ui.label(
                egui::RichText::new("L-BFGS stopped at its iteration limit before its tolerance")
                    .weak(),
            );
        }
        let mut action = None;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                self.confusion_matrix(ui, report);
                if let Some((label, predicted)) = self.cell {
                    action = action.or(cell_images(ui, pages, report, label, predicted));
                }
                ui.separator();
                action = action.or(misclassified(ui, pages, readout));
            });
        action
    }

    fn confusion_matrix(&mut self, ui: &mut egui::Ui, report: &ReadoutReport) {
        ui.label(
            "Confusion matrix (rows: true class, columns: predicted); click a cell for its images",
        );
        let classes = report.confusion.len();
        let largest = report
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0)
            .max(1);
        egui::Grid::new("confusion")
            .spacing([2.0, 2.0])
            .show(ui, |ui| {
                ui.label("");
                for c in 0..classes {
                    ui.label(egui::RichText::new(class_name(report, c)).small());
                }
                ui.label("accuracy");
                ui.end_row();
                for (label, row) in report.confusion.iter().enumerate() {
                    ui.label(class_name(report, label));
                    for (predicted, &count) in row.iter().enumerate() {
                        let share = count as f32 / largest as f32;
                        let base = if label == predicted {
                            egui::Color32::from_rgb(40, 140, 70)
                        } else {
                            egui::Color32::from_rgb(190, 60, 50)
                        };
                        let fill = if count == 0 {
                            ui.visuals().faint_bg_color
                        } else {
                            base.gamma_multiply(0.25 + 0.75 * share)
                        };
                        let selected = self.cell == Some((label, predicted));
                        let button = egui::Button::new(count.to_string())
                            .fill(fill)
                            .selected(selected)
                            .min_size(egui::vec2(32.0, 20.0));
                        if ui
                            .add(button)
                            .on_hover_text(format!(
                                "{count} {} images predicted {}",
                                class_name(report, label),
                                class_name(report, predicted)
                            ))
                            .clicked()
                        {
                            self.cell = (!selected).then_some((label, predicted));
                        }
                    }
                    ui.label(
                        match report.per_class_accuracy.get(label).copied().flatten() {
                            Some(a) => format!("{a:.3}"),
                            None => "no test image".into(),
                        },
                    );
                    ui.end_row();
                }
            });
    }
}

fn class_name(report: &ReadoutReport, class: usize) -> &str {
    report.classes.get(class).map_or("?", String::as_str)
}

fn cell_images(
    ui: &mut egui::Ui,
    pages: &mut PageContext<'_>,
    report: &ReadoutReport,
    label: usize,
    predicted: usize,
) -> Option<ImageAction> {
    let rows: Vec<usize> = report.cell(label, predicted).map(|p| p.row).collect();
    ui.label(format!(
        "{} {} images predicted {}",
        rows.len(),
        class_name(report, label),
        class_name(report, predicted)
    ));
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        for row in rows {
            action = action.or(pages.image(ui, row, THUMB));
        }
    });
    action
}

fn misclassified(
    ui: &mut egui::Ui,
    pages: &mut PageContext<'_>,
    readout: &Readout,
) -> Option<ImageAction> {
    let report = &readout.report;
    let wrong: Vec<_> = report.misclassified().collect();
    ui.heading(format!("Misclassified ({})", wrong.len()));
    ui.label("Each test image, then its nearest training images (cosine similarity)");
    let mut action = None;
    for p in wrong.iter().take(MISCLASSIFIED_SHOWN) {
        ui.horizontal(|ui| {
            action = action.or(pages.image(ui, p.row, THUMB));
            ui.label(format!(
                "{}\npredicted {}",
                class_name(report, p.label),
                class_name(report, p.predicted)
            ));
            ui.separator();
            for n in readout.neighbours.get(&p.row).into_iter().flatten() {
                ui.vertical(|ui| {
                    action = action.or(pages.image(ui, n.row, THUMB));
                    ui.label(
                        egui::RichText::new(format!(
                            "{} {:.2}",
                            pages.class_of(n.row),
                            n.similarity
                        ))
                        .small(),
                    );
                });
            }
        });
    }
    if wrong.len() > MISCLASSIFIED_SHOWN {
        ui.label(format!(
            "... and {} more",
            wrong.len() - MISCLASSIFIED_SHOWN
        ));
    }
    action
}
