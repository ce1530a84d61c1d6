//! The menu bar. It changes the settings it shows in place and returns what else was asked for;
//! the app carries that out.

use eframe::egui;

use super::state::{Settings, ViewTab};
use super::view::ExportItem;

/// What the menus asked for.
pub enum MenuAction {
    OpenImages,
    OpenFolder,
    /// Export `item` of the view `view`.
    Export(ViewTab, ExportItem),
    OpenCheckpoint,
    Downloads,
    DefaultModel,
    Help,
    About,
}

/// What the menus list besides the settings.
pub struct MenuContent<'a> {
    /// Each view's id, title and exports, in tab order.
    pub views: Vec<(ViewTab, &'static str, Vec<ExportItem>)>,
    /// The view shown.
    pub shown: &'a ViewTab,
}

pub fn menu_bar(
    ui: &mut egui::Ui,
    settings: &mut Settings,
    content: MenuContent<'_>,
) -> Option<MenuAction> {
    let mut action = None;
    let tabs: Vec<(ViewTab, &'static str)> = content
        .views
        .iter()
        .map(|(id, title, _)| (id.clone(), *title))
        .collect();
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| action = file_menu(ui, content));
        ui.menu_button("Model", |ui| {
            if ui
                .button("Open checkpoint (.pth, .safetensors)...")
                .clicked()
            {
                action = Some(MenuAction::OpenCheckpoint);
            }
            if ui.button("Download official checkpoints...").clicked() {
                action = Some(MenuAction::Downloads);
            }
            if ui.button("Back to the default model").clicked() {
                action = Some(MenuAction::DefaultModel);
            }
            ui.checkbox(&mut settings.show_model_panel, "Show model info");
        });
        ui.menu_button("View", |ui| view_menu(ui, settings, &tabs));
        ui.menu_button("Help", |ui| {
            if ui.button("Help (H)").clicked() {
                action = Some(MenuAction::Help);
            }
            if ui.button("About").clicked() {
                action = Some(MenuAction::About);
            }
        });
    });
    action
}

fn file_menu(ui: &mut egui::Ui, content: MenuContent<'_>) -> Option<MenuAction> {
    let mut action = None;
    if ui.button("Open images...  (Ctrl+O)").clicked() {
        action = Some(MenuAction::OpenImages);
    }
    if ui.button("Open folder...").clicked() {
        action = Some(MenuAction::OpenFolder);
    }
    ui.separator();
    let MenuContent { views, shown } = content;
    let shown_first = views
        .iter()
        .find(|(id, _, _)| id == shown)
        .and_then(|(id, _, items)| {
            let first = items.first().filter(|i| i.available)?;
            Some((id.clone(), first.clone()))
        });
    if ui
        .add_enabled(
            shown_first.is_some(),
            egui::Button::new("Export the view shown...  (Ctrl+E)"),
        )
        .clicked()
        && let Some((id, item)) = shown_first
    {
        action = Some(MenuAction::Export(id, item));
    }
    for (id, _, items) in views {
        for item in items {
            if ui
                .add_enabled(item.available, egui::Button::new(item.label))
                .on_hover_text(item.hover)
                .clicked()
            {
                action = Some(MenuAction::Export(id.clone(), item));
            }
        }
    }
    ui.separator();
    if ui.button("Quit").clicked() {
        ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
    }
    action
}

fn view_menu(ui: &mut egui::Ui, settings: &mut Settings, tabs: &[(ViewTab, &'static str)]) {
    for (i, (tab, title)) in tabs.iter().enumerate() {
        ui.radio_value(
            &mut settings.tab,
            tab.clone(),
            format!("{title}  ({})", i + 1),
        );
    }
    ui.separator();
    ui.checkbox(&mut settings.show_masks, "Mass-mask outlines");
    ui.checkbox(&mut settings.debug_overlay, "Debug overlay (F12)");
}
