//! The side-by-side view: the loaded model on the left and a second checkpoint on the right, on
//! the same image — the attention of \[CLS\] in each head (the DINO paper's figure of supervised
//! against self-supervised attention, Caron et al. 2021, Fig. 3) or the PCA colouring of a
//! block's tokens. Block and head move together where the two models have the same shape and
//! are chosen per side where not. Results are computed by the worker ([`job`]), which keeps the
//! second model, and cached per side, image, block and input size.

pub mod job;
pub mod panel;

use std::any::Any;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;

use super::cache::BoundedCache;
use super::dialogs::{Dialog, Pick};
use super::downloads::DownloadTask;
use super::notifications::file_label;
use super::state::{CompareShow, Settings, ViewTab};
use super::tasks::Output;
use super::view::{AppRequest, Shared, View, ViewContext};
use super::widgets::{
    add_images_hint, centered, colormap_combo, input_size_combo, tile_size_slider,
};
use super::worker::{ModelInfo, ModelLoad};
use crate::model::VitConfig;
use crate::model::download::{OFFICIAL, OfficialCheckpoint, official};
use job::{SecondInfo, SecondLoad, SecondLoadJob, SideJob, SideKey, SideOutput, SideResult, Which};
use panel::SidePanel;

/// Results kept in memory (both sides).
const CACHE_CAPACITY: usize = 64;

/// How often the checkpoint folder is looked at for official checkpoints to offer.
const RESCAN: Duration = Duration::from_secs(2);

/// The supervised model offered for "supervised vs DINO" in one click.
const SUPERVISED: &str = "deit_s16";

/// The two sides: the loaded model, the second checkpoint.
pub const SIDES: [&str; 2] = ["loaded model", "second model"];

pub struct CompareTab {
    cache: BoundedCache<SideKey, Arc<SideResult>>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    skipped: HashSet<SideKey>,
    /// What each side shows (an older result of the same image while the next one computes).
    shown: [Option<(SideKey, Arc<SideResult>)>; 2],
    /// The second checkpoint's shape, once loaded.
    second: Option<SecondInfo>,
    /// Second checkpoints that could not be loaded (not retried until picked again).
    failed: HashSet<PathBuf>,
    dialog: Dialog<()>,
    /// Official checkpoints in the checkpoint folder, and when it was looked at.
    local: (Option<Instant>, Vec<(&'static OfficialCheckpoint, PathBuf)>),
    pub panels: [SidePanel; 2],
}

impl Default for CompareTab {
    fn default() -> Self {
        CompareTab {
            cache: BoundedCache::with_capacity(CACHE_CAPACITY),
            skipped: HashSet::new(),
            shown: [None, None],
            second: None,
            failed: HashSet::new(),
            dialog: Dialog::default(),
            local: (None, Vec::new()),
            panels: [SidePanel::default(), SidePanel::default()],
        }
    }
}

/// Blocks and heads of the two models, and whether each choice is shared between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shapes {
    /// `(blocks, heads)` per side; `None` for a second model not loaded (yet).
    pub sides: [Option<(usize, usize)>; 2],
    pub blocks_linked: bool,
    pub heads_linked: bool,
}

impl Shapes {
    fn of(model: Option<&VitConfig>, second: Option<&VitConfig>, linked: bool) -> Shapes {
        let shape = |c: &VitConfig| (c.depth.max(1), c.heads.max(1));
        let sides = [model.map(shape), second.map(shape)];
        let same = |f: fn((usize, usize)) -> usize| {
            linked && matches!(sides, [Some(a), Some(b)] if f(a) == f(b))
        };
        Shapes {
            sides,
            blocks_linked: same(|s| s.0),
            heads_linked: same(|s| s.1),
        }
    }

    /// The block side `side` shows under `settings` (its last when none is chosen).
    pub fn block(&self, side: usize, settings: &Settings) -> Option<usize> {
        let (depth, _) = self.sides[side]?;
        let from = if self.blocks_linked { 0 } else { side };
        Some(
            settings.compare.blocks[from]
                .unwrap_or(depth - 1)
                .min(depth - 1),
        )
    }

    /// The head side `side` shows (`None`: the mean over heads).
    pub fn head(&self, side: usize, settings: &Settings) -> Option<usize> {
        let (_, heads) = self.sides[side]?;
        let from = if self.heads_linked { 0 } else { side };
        settings.compare.heads[from].filter(|&h| h < heads)
    }
}

impl CompareTab {
    /// The second checkpoint's shape, when the one loaded is the one chosen.
    fn second_config(&self, settings: &Settings) -> Option<&VitConfig> {
        let chosen = settings.compare.second.as_ref()?;
        self.second
            .as_ref()
            .filter(|s| &s.path == chosen)
            .map(|s| &s.config)
    }

    pub fn shapes(&self, shared: Shared<'_>) -> Shapes {
        Shapes::of(
            shared.model.map(|m| &m.config),
            self.second_config(shared.settings),
            shared.settings.compare.linked,
        )
    }

    /// The key of what side `side` should show now.
    pub fn side_key(&self, side: usize, shared: Shared<'_>) -> Option<SideKey> {
        let settings = shared.settings;
        let which = match side {
            0 => Which::Loaded,
            _ => Which::Second(settings.compare.second.clone()?),
        };
        Some(SideKey {
            which,
            image: shared.gallery.selected?,
            block: self.shapes(shared).block(side, settings)?,
            input_size: settings.input_size,
            show: settings.compare.show,
            generation: shared.model?.generation,
        })
    }

    /// The result on side `side`, with its key.
    pub fn shown(&self, side: usize) -> Option<&(SideKey, Arc<SideResult>)> {
        self.shown.get(side)?.as_ref()
    }

    /// The official checkpoints already in the checkpoint folder (looked up every few seconds).
    fn local_checkpoints(
        &mut self,
        dir: Option<&Path>,
    ) -> &[(&'static OfficialCheckpoint, PathBuf)] {
        if self.local.0.is_none_or(|at| at.elapsed() > RESCAN) {
            let found = dir
                .map(|dir| {
                    OFFICIAL
                        .iter()
                        .map(|c| (c, dir.join(c.file_name())))
                        .filter(|(_, path)| path.is_file())
                        .collect()
                })
                .unwrap_or_default();
            self.local = (Some(Instant::now()), found);
        }
        &self.local.1
    }

    fn choose_second(&mut self, settings: &mut Settings, path: PathBuf) {
        self.failed.remove(&path);
        settings.compare.blocks[1] = None;
        settings.compare.heads[1] = None;
        settings.compare.second = Some(path);
    }

    fn second_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Second model");
        match &cx.settings.compare.second {
            Some(path) => {
                ui.label(egui::RichText::new(file_label(path)).strong());
                match self.second_config(cx.settings) {
                    Some(config) => ui.label(config.describe()),
                    None if self.failed.contains(path) => ui
                        .label(egui::RichText::new("could not be loaded (see the message)").weak()),
                    None => ui.label(egui::RichText::new("loading...").weak()),
                };
            }
            None => {
                ui.label(
                    egui::RichText::new(
                        "Pick a checkpoint to show next to the loaded model, e.g. a supervised \
                         ViT next to DINO.",
                    )
                    .weak(),
                );
            }
        }
        ui.horizontal(|ui| {
            if ui
                .button("Checkpoint...")
                .on_hover_text("A second model (.pth / .safetensors): DINO, DINOv2, or a supervised timm / DeiT ViT")
                .clicked()
            {
                let pick = Pick::File {
                    title: "Show a second checkpoint side by side".into(),
                    filter: ("Checkpoints", &["pth", "pt", "safetensors"]),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                    cx.notifications.error(&e);
                }
            }
            if cx.settings.compare.second.is_some() && ui.button("None").clicked() {
                cx.settings.compare.second = None;
            }
        });
        let local: Vec<_> = self.local_checkpoints(cx.checkpoint_dir).to_vec();
        let supervised = official(SUPERVISED).filter(|_| cx.checkpoint_dir.is_some());
        if let Some(entry) = supervised
            && !local.iter().any(|(c, _)| c.id == SUPERVISED)
        {
            let downloading = cx
                .tasks
                .running::<DownloadTask>()
                .any(|(_, t)| t.0 == SUPERVISED);
            let button = egui::Button::new(format!(
                "Download {} ({:.0} MB) and show it here",
                entry.title, entry.size_mb
            ));
            if ui
                .add_enabled(!downloading, button)
                .on_hover_text(
                    "Supervised on ImageNet labels: next to a DINO model it shows the DINO \
                     paper's point, that only the self-supervised heads outline the objects",
                )
                .clicked()
            {
                cx.requests.push(AppRequest::DownloadSecond(SUPERVISED));
            }
        }
        if !local.is_empty() {
            let current = cx.settings.compare.second.clone();
            let mut picked = None;
            egui::ComboBox::from_label("Downloaded")
                .selected_text(
                    local
                        .iter()
                        .find(|(_, p)| Some(p) == current.as_ref())
                        .map_or("choose...", |(c, _)| c.title),
                )
                .show_ui(ui, |ui| {
                    for (c, path) in &local {
                        if ui
                            .selectable_label(Some(path) == current.as_ref(), c.title)
                            .on_hover_text(c.note)
                            .clicked()
                        {
                            picked = Some(path.clone());
                        }
                    }
                });
            if let Some(path) = picked {
                self.choose_second(cx.settings, path);
            }
        }
    }

    /// Block and head choices: one for both sides where the shapes allow, one per side where
    /// not.
    fn block_and_head_controls(&self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let shapes = self.shapes(cx.shared());
        let attention = cx.settings.compare.show == CompareShow::Attention;
        ui.checkbox(&mut cx.settings.compare.linked, "Link block and head")
            .on_hover_text(
                "Move both sides together where the two models have as many blocks / heads",
            );
        for (side, shape) in shapes.sides.into_iter().enumerate() {
            let Some((depth, heads)) = shape else {
                continue;
            };
            let (block_shared, head_shared) = (shapes.blocks_linked, shapes.heads_linked);
            if side == 1 && block_shared && (head_shared || !attention) {
                continue;
            }
            let whose = if side == 0 && block_shared {
                "both models".to_string()
            } else {
                SIDES[side].to_string()
            };
            ui.label(egui::RichText::new(whose).strong());
            if side == 0 || !block_shared {
                let mut block = shapes.block(side, cx.settings).unwrap_or(0);
                let slider = egui::Slider::new(&mut block, 0..=depth - 1).text("Block");
                if ui.add_enabled(depth > 1, slider).changed() {
                    cx.settings.compare.blocks[side] = Some(block);
                }
            }
            if attention && (side == 0 || !head_shared) {
                let head = shapes.head(side, cx.settings);
                let mut chosen = head;
                egui::ComboBox::from_id_salt(("compare-head", side))
                    .selected_text(match head {
                        Some(h) => format!("head {h}"),
                        None => "head mean".into(),
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut chosen, None, "head mean");
                        for h in 0..heads {
                            ui.selectable_value(&mut chosen, Some(h), format!("head {h}"));
                        }
                    });
                if chosen != head {
                    cx.settings.compare.heads[side] = chosen;
                }
            }
        }
        if cx.settings.compare.linked
            && let [Some(a), Some(b)] = shapes.sides
            && a != b
        {
            ui.label(
                egui::RichText::new(format!(
                    "The models differ ({} / {} blocks, {} / {} heads): what differs is chosen per side.",
                    a.0, b.0, a.1, b.1
                ))
                .weak(),
            );
        }
    }

    /// One side's column: its model, the result (or a spinner) and the head strip.
    fn side_ui(&mut self, ui: &mut egui::Ui, side: usize, cx: &mut ViewContext<'_>) {
        let key = self.side_key(side, cx.shared());
        if let Some(k) = &key
            && let Some(r) = self.cache.get(k)
        {
            self.shown[side] = Some((k.clone(), r.clone()));
        }
        let title = match side {
            0 => cx.model.map_or("(no model)".into(), |m| m.file_name()),
            _ => cx
                .settings
                .compare
                .second
                .as_deref()
                .map_or("(no second model)".into(), file_label),
        };
        let config = match side {
            0 => cx.model.map(|m| &m.config),
            _ => self.second_config(cx.settings),
        };
        ui.heading(title);
        ui.label(egui::RichText::new(config.map_or(String::new(), |c| c.describe())).weak());
        // An older result of the same image and model stays while the next one computes.
        let shown = self.shown[side].clone().filter(|(k, _)| {
            key.as_ref().is_some_and(|c| {
                c.image == k.image
                    && c.which == k.which
                    && c.generation == k.generation
                    && c.show == k.show
            })
        });
        let Some((shown_key, result)) = shown else {
            self.panels[side].hover = None;
            self.panels[side].tile_rect = None;
            if side == 1 && cx.settings.compare.second.is_none() {
                ui.label(egui::RichText::new("Choose a second model in the left panel.").weak());
            } else if let Some(k) = key.as_ref().filter(|k| self.skipped.contains(k)) {
                if ui.button("Compute").clicked() {
                    self.skipped.remove(k);
                }
            } else if !self.failed_second(side, cx.settings) {
                ui.spinner();
            }
            return;
        };
        ui.horizontal(|ui| {
            ui.label(format!(
                "block {}, {} ms",
                shown_key.block,
                result.elapsed.as_millis()
            ));
            if Some(&shown_key) != key.as_ref() {
                ui.spinner();
            }
        });
        let head = self.shapes(cx.shared()).head(side, cx.settings);
        let width = ui.available_width().min(cx.settings.tile_size * 1.5);
        if let Some(picked) = self.panels[side].ui(ui, &result, head, cx.settings, width) {
            let linked = self.shapes(cx.shared()).heads_linked;
            cx.settings.compare.heads[if linked { 0 } else { side }] = picked;
        }
        if let Some(h) = self.panels[side].hover {
            let value = h.value.map_or(String::new(), |v| format!(": {v:.5}"));
            ui.label(format!("patch row {}, col {}{value}", h.row, h.col));
        }
    }

    fn failed_second(&self, side: usize, settings: &Settings) -> bool {
        side == 1
            && settings
                .compare
                .second
                .as_ref()
                .is_some_and(|p| self.failed.contains(p))
    }
}

impl View for CompareTab {
    fn id(&self) -> ViewTab {
        ViewTab::COMPARE
    }

    fn title(&self) -> &'static str {
        "Side by side"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Side by side");
        let show = &mut cx.settings.compare.show;
        ui.horizontal(|ui| {
            ui.radio_value(show, CompareShow::Attention, "Attention")
                .on_hover_text("The attention of [CLS] in each head");
            ui.radio_value(show, CompareShow::Pca, "PCA").on_hover_text(
                "The block's output tokens, first three principal components as RGB (per model)",
            );
        });
        ui.separator();
        self.second_controls(ui, cx);
        ui.separator();
        self.block_and_head_controls(ui, cx);
        ui.separator();
        let s = &mut *cx.settings;
        if s.compare.show == CompareShow::Attention {
            ui.checkbox(&mut s.show_masks, "Mass-kept outlines");
            ui.add_enabled(
                s.show_masks,
                egui::Slider::new(&mut s.threshold, 0.05..=1.0)
                    .step_by(0.05)
                    .text("Mass kept"),
            )
            .on_hover_text(
                "Outline the fewest patches that hold this share of the attention (DINO: 0.6)",
            );
            colormap_combo(ui, &mut s.colormap);
        }
        ui.add(egui::Slider::new(&mut s.opacity, 0.0..=1.0).text("Opacity"));
        tile_size_slider(ui, &mut s.tile_size);
        input_size_combo(ui, &mut s.input_size);
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        if cx.gallery.selected.is_none() || cx.model.is_none() {
            centered(ui, |ui| {
                if cx.is_empty() {
                    add_images_hint(ui);
                } else {
                    ui.spinner();
                }
            });
            return;
        }
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.columns(2, |columns| {
                    for (side, column) in columns.iter_mut().enumerate() {
                        self.side_ui(column, side, cx);
                    }
                });
            });
    }

    /// Loads the chosen second checkpoint to learn its shape, then asks for each side's result
    /// that is neither cached nor under way, one at a time.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        if cx.tasks.any::<ModelLoad>() || cx.tasks.any::<SecondLoad>() {
            return;
        }
        let Some(model) = cx.model else {
            return;
        };
        if let Some(path) = cx.settings.compare.second.clone()
            && self.second_config(cx.settings).is_none()
            && !self.failed.contains(&path)
        {
            let label = format!("Loading {}", file_label(&path));
            let job = SecondLoadJob {
                path: path.clone(),
                generation: model.generation,
            };
            cx.worker.submit(cx.tasks, SecondLoad(path), label, job);
            return;
        }
        if cx.tasks.any::<SideKey>() {
            return;
        }
        for (side, whose) in SIDES.into_iter().enumerate() {
            let Some(key) = self.side_key(side, cx.shared()) else {
                continue;
            };
            if self.cache.contains_key(&key) || self.skipped.contains(&key) {
                continue;
            }
            let Some(input) = cx.shared().input(key.image) else {
                return;
            };
            let label = format!("{} of {} ({whose})", key.show.label(), input.name);
            let job = SideJob {
                key: key.clone(),
                input,
            };
            cx.worker.submit(cx.tasks, key, label, job);
            return;
        }
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<SideOutput>() {
            Ok(side) => {
                let SideOutput { key, result } = *side;
                self.cache.insert(key, result);
                return Ok(());
            }
            Err(output) => output,
        };
        let info = *output.downcast::<SecondInfo>()?;
        self.second = Some(info);
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<SideKey>() {
            self.skipped.insert(key.clone());
        } else if let Some(SecondLoad(path)) = key.downcast_ref::<SecondLoad>() {
            self.failed.insert(path.clone());
        }
    }

    fn model_loaded(&mut self, info: &ModelInfo, settings: &mut Settings) {
        self.cache.clear();
        self.skipped.clear();
        self.shown = [None, None];
        let compare = &mut settings.compare;
        if compare.blocks[0].is_some_and(|b| b >= info.config.depth) {
            compare.blocks[0] = None;
        }
        if compare.heads[0].is_some_and(|h| h >= info.config.heads) {
            compare.heads[0] = None;
        }
    }

    fn poll(&mut self, _ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        match self.dialog.poll() {
            Some((_, Ok(paths))) => {
                if let Some(path) = paths.into_iter().next() {
                    self.choose_second(cx.settings, path);
                }
            }
            Some((_, Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }

    fn step_block(&mut self, step: isize, cx: &mut ViewContext<'_>) {
        let shapes = self.shapes(cx.shared());
        let Some(block) = shapes.block(0, cx.settings) else {
            return;
        };
        let depth = shapes.sides[0].map_or(1, |s| s.0);
        cx.settings.compare.blocks[0] = Some(block.saturating_add_signed(step).min(depth - 1));
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }
}
