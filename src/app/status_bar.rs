//! The status bar: the model on the left; while work runs, a spinner, the task, its progress and
//! Cancel on the right. Every part gets a width measured up front, and the two texts are cut
//! short (with an ellipsis) to fit, so nothing overlaps at any window width.

use eframe::egui;

use super::model_panel;
use super::tasks::Tasks;
use super::worker::ModelInfo;

/// Width of the progress bar, in points, when the window is wide enough.
const PROGRESS_WIDTH: f32 = 120.0;

/// Draws the bar; returns whether Cancel was clicked.
pub fn status_bar(ui: &mut egui::Ui, model: Option<&ModelInfo>, tasks: &Tasks) -> bool {
    let model_text = model_text(model);
    let Some(task) = tasks.first() else {
        ui.horizontal(|ui| ui.add(egui::Label::new(model_text).truncate()));
        return false;
    };
    let more = match tasks.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let task_text = egui::WidgetText::from(format!("{}{more}", task.label));
    let parts = Parts::measure(ui, &model_text, &task_text, task.fraction.is_some());
    let mut cancel = false;
    ui.horizontal(|ui| {
        fixed(ui, parts.model, |ui| {
            ui.add(egui::Label::new(model_text).truncate());
        });
        ui.add_space(parts.gap);
        fixed(ui, parts.spinner, |ui| {
            ui.spinner();
        });
        fixed(ui, parts.task, |ui| {
            ui.add(egui::Label::new(task_text).truncate());
        });
        if let Some(f) = task.fraction.filter(|_| parts.progress > 0.0) {
            ui.add(egui::ProgressBar::new(f).desired_width(parts.progress));
        }
        cancel = ui
            .button("Cancel")
            .on_hover_text("Stop the work under way")
            .clicked();
    });
    cancel
}

/// The model's label: orange and strong for random weights.
fn model_text(model: Option<&ModelInfo>) -> egui::WidgetText {
    let label = model_panel::short_label(model);
    if model.is_some_and(|m| m.is_untrained()) {
        egui::RichText::new(label)
            .strong()
            .color(egui::Color32::from_rgb(255, 140, 60))
            .into()
    } else {
        label.into()
    }
}

/// The widths of the bar's parts, in points.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Parts {
    model: f32,
    gap: f32,
    spinner: f32,
    task: f32,
    progress: f32,
}

impl Parts {
    fn measure(
        ui: &egui::Ui,
        model: &egui::WidgetText,
        task: &egui::WidgetText,
        progress: bool,
    ) -> Parts {
        let text_width = |t: &egui::WidgetText| {
            t.clone()
                .into_galley(
                    ui,
                    Some(egui::TextWrapMode::Extend),
                    f32::INFINITY,
                    egui::TextStyle::Body,
                )
                .size()
                .x
        };
        let button = egui::WidgetText::from("Cancel");
        let cancel = text_width(&button) + 2.0 * ui.spacing().button_padding.x;
        Parts::layout(
            ui.available_width(),
            ui.spacing().item_spacing.x,
            ui.spacing().interact_size.y,
            [text_width(model), text_width(task), cancel],
            progress,
        )
    }

    /// Splits `width`: Cancel and the spinner keep their size, the progress bar shrinks first,
    /// then the two texts share what is left (each its natural width when it fits, else half).
    fn layout(
        width: f32,
        spacing: f32,
        spinner: f32,
        [model, task, cancel]: [f32; 3],
        progress: bool,
    ) -> Parts {
        let gaps = spacing * if progress { 5.0 } else { 4.0 };
        let fixed = cancel + spinner + gaps;
        let progress = if progress {
            PROGRESS_WIDTH.min((width - fixed) / 4.0).max(0.0)
        } else {
            0.0
        };
        let free = (width - fixed - progress).max(0.0);
        let (model, task) = if model + task <= free {
            (model, task)
        } else if model <= free / 2.0 {
            (model, free - model)
        } else if task <= free / 2.0 {
            (free - task, task)
        } else {
            (free / 2.0, free / 2.0)
        };
        Parts {
            model,
            gap: (free - model - task).max(0.0),
            spinner,
            task,
            progress,
        }
    }
}

/// `add` in a box of exactly `width` points.
fn fixed(ui: &mut egui::Ui, width: f32, add: impl FnOnce(&mut egui::Ui)) {
    let size = egui::vec2(width, ui.spacing().interact_size.y);
    ui.allocate_ui_with_layout(
        size,
        egui::Layout::left_to_right(egui::Align::Center),
        |ui| {
            ui.set_width(width);
            add(ui);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(p: Parts, spacing: f32, cancel: f32) -> f32 {
        let gaps = if p.progress > 0.0 { 5.0 } else { 4.0 };
        p.model + p.gap + p.spinner + p.task + p.progress + cancel + gaps * spacing
    }

    #[test]
    fn the_parts_fill_the_width_and_never_more() {
        for width in [120.0, 300.0, 640.0, 1400.0] {
            for (model, task) in [(80.0, 60.0), (400.0, 700.0), (30.0, 900.0), (900.0, 20.0)] {
                let p = Parts::layout(width, 8.0, 18.0, [model, task, 50.0], true);
                assert!(p.model <= model && p.task <= task, "{p:?}");
                assert!(p.model >= 0.0 && p.task >= 0.0 && p.gap >= 0.0, "{p:?}");
                let used = total(p, 8.0, 50.0);
                assert!(
                    used <= width.max(50.0 + 18.0 + 40.0) + 1e-3,
                    "{width}: {used} {p:?}"
                );
            }
        }
    }

    #[test]
    fn short_texts_keep_their_width() {
        let p = Parts::layout(1000.0, 8.0, 18.0, [200.0, 300.0, 50.0], true);
        assert_eq!(
            (p.model, p.task, p.progress),
            (200.0, 300.0, PROGRESS_WIDTH)
        );
    }
}
