//! The image-set explorer: a labelled folder embedded by the loaded model ([`job`]), the classes
//! read out by DINO's k-NN or logistic regression with a clickable confusion matrix and the
//! misclassified images beside their nearest training images ([`readout_page`]), retrieval with
//! patch-level explanations ([`retrieval`]) and a 2-D map of the set ([`map`]).

pub mod controls;
pub mod job;
pub mod map;
pub mod readout_page;
pub mod retrieval;
pub mod thumbnails;

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

use super::dialogs::{Dialog, Pick};
use super::state::ViewTab;
use super::tasks::{EventSender, Output};
use super::view::{AppRequest, View, ViewContext};
use super::widgets::centered;
use super::worker::{ModelInfo, ModelSource};
use crate::analysis::readout::feature_cache;
use controls::ExplorerSettings;
use job::{EmbedJob, EmbedKey, EmbeddedSet, Readout, ReadoutJob, ReadoutKey};
use thumbnails::{Thumbnail, Thumbnails};

/// The pages of the central area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Page {
    #[default]
    Readout,
    Retrieval,
    Map,
}

#[derive(Default)]
pub struct ExplorerTab {
    pub settings: ExplorerSettings,
    pub page: Page,
    set: Option<Arc<EmbeddedSet>>,
    readout: Option<Arc<Readout>>,
    /// A read-out that failed or was cancelled: not asked again until the settings change.
    readout_dropped: Option<ReadoutKey>,
    pub readout_view: readout_page::ReadoutView,
    pub retrieval: retrieval::Retrieval,
    pub map: map::MapView,
    thumbnails: Thumbnails,
    /// Sets embedded so far (thumbnails of an older one are dropped).
    sets: u64,
    dialog: Dialog<()>,
}

impl ExplorerTab {
    /// The embedded set shown.
    pub fn set(&self) -> Option<&Arc<EmbeddedSet>> {
        self.set.as_ref()
    }

    /// The read-out shown (for the current settings or, while they compute, the last one).
    pub fn readout(&self) -> Option<&Arc<Readout>> {
        self.readout.as_ref()
    }

    fn embed_key(&self, model: &ModelInfo) -> Option<EmbedKey> {
        Some(EmbedKey {
            folder: self.settings.folder.clone()?,
            side: self.settings.side,
            pooling: self.settings.pooling,
            generation: model.generation,
        })
    }

    fn readout_key(&self) -> Option<ReadoutKey> {
        let set = self.set.as_ref()?;
        let s = &self.settings;
        Some(ReadoutKey::new(
            set.key.clone(),
            s.classifier,
            s.knn,
            s.c,
            s.split,
        ))
    }

    /// Embeds the chosen folder with the loaded model (the features of images already embedded
    /// with this checkpoint and these settings come from the disk cache).
    pub fn embed(&mut self, cx: &mut ViewContext<'_>) {
        let Some(model) = cx.model else {
            return;
        };
        let Some(key) = self.embed_key(model) else {
            return;
        };
        let under_way: Vec<_> = cx.tasks.running::<EmbedKey>().map(|(id, _)| id).collect();
        for id in under_way {
            cx.tasks.cancel(id);
        }
        let weights = match &model.source {
            ModelSource::File(p) | ModelSource::Default(p) => Some(p.clone()),
            ModelSource::Untrained => None,
        };
        let job = EmbedJob {
            key: key.clone(),
            weights,
            cache_root: self
                .settings
                .keep_on_disk
                .then(feature_cache::default_root)
                .flatten(),
            batch: 32,
        };
        let label = format!("Embedding {}", key.folder.display());
        cx.worker.submit(cx.tasks, key, label, job);
    }

    /// Opens `path` in the gallery and shows it in the attention view.
    fn open_in_views(cx: &mut ViewContext<'_>, path: PathBuf) {
        cx.requests.push(AppRequest::OpenImage {
            path,
            tab: ViewTab::ATTENTION,
        });
    }

    fn page_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for (page, label) in [
                (Page::Readout, "Read-out"),
                (Page::Retrieval, "Retrieval"),
                (Page::Map, "Embedding map"),
            ] {
                ui.selectable_value(&mut self.page, page, label);
            }
        });
    }

    fn placeholder(settings: &ExplorerSettings, ui: &mut egui::Ui, cx: &ViewContext<'_>) {
        centered(ui, |ui| {
            if cx.tasks.any::<EmbedKey>() {
                ui.spinner();
                ui.label("Embedding the folder...");
            } else if settings.folder.is_none() {
                ui.label(
                    "Choose a folder of images in class sub-folders (or train/ and val/ \
                     sub-folders) on the left, then Embed.",
                );
            } else {
                ui.label("Press Embed on the left to embed the folder with the loaded model.");
            }
        });
    }
}

/// What a page draws from: the embedded set and its thumbnails.
pub struct PageContext<'a> {
    pub set: &'a EmbeddedSet,
    thumbnails: &'a mut Thumbnails,
    events: &'a EventSender,
}

impl PageContext<'_> {
    /// The class name of image `row` ("unlabelled" for none).
    pub fn class_of(&self, row: usize) -> &str {
        let images = &self.set.images;
        images
            .labels
            .get(row)
            .copied()
            .flatten()
            .and_then(|l| images.classes.get(l))
            .map_or("unlabelled", String::as_str)
    }

    pub fn file_of(&self, row: usize) -> String {
        self.set
            .images
            .paths
            .get(row)
            .map_or_else(String::new, |p| p.display().to_string())
    }

    /// Image `row` as a thumbnail `size` points wide: a click makes it the retrieval query, its
    /// context menu also opens it in the other views; hovering names its file and class.
    pub fn image(&mut self, ui: &mut egui::Ui, row: usize, size: f32) -> Option<ImageAction> {
        self.image_clicked_as(ui, row, size, ImageAction::Query(row))
    }

    /// [`Self::image`] where a click asks for `click`.
    pub fn image_clicked_as(
        &mut self,
        ui: &mut egui::Ui,
        row: usize,
        size: f32,
        click: ImageAction,
    ) -> Option<ImageAction> {
        let path = self.set.images.paths.get(row)?;
        let texture = self.thumbnails.get(ui.ctx(), self.events, row, path);
        let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::click());
        if ui.is_rect_visible(rect) {
            match &texture {
                Some(t) => {
                    let [w, h] = t.size_vec2().into();
                    let scale = size / w.max(h).max(1.0);
                    let shown =
                        egui::Rect::from_center_size(rect.center(), egui::vec2(w, h) * scale);
                    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                    ui.painter().image(t.id(), shown, uv, egui::Color32::WHITE);
                }
                None => {
                    ui.painter()
                        .rect_filled(rect, 2.0, ui.visuals().faint_bg_color);
                }
            }
            if response.hovered() {
                let stroke = egui::Stroke::new(2.0, ui.visuals().selection.stroke.color);
                ui.painter()
                    .rect_stroke(rect, 2.0, stroke, egui::StrokeKind::Inside);
            }
        }
        let mut action = None;
        let response =
            response.on_hover_text(format!("{}\n{}", self.file_of(row), self.class_of(row)));
        if response.clicked() {
            action = Some(click);
        }
        response.context_menu(|ui| {
            if ui.button("Find similar images").clicked() {
                action = Some(ImageAction::Query(row));
                ui.close();
            }
            if ui.button("Open in the other views").clicked() {
                action = Some(ImageAction::Open(row));
                ui.close();
            }
        });
        action
    }
}

/// What the pages ask for when an image is clicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageAction {
    /// Make it the retrieval query.
    Query(usize),
    /// Open it in the other views.
    Open(usize),
}

impl View for ExplorerTab {
    fn id(&self) -> ViewTab {
        ViewTab::EXPLORER
    }

    fn title(&self) -> &'static str {
        "Explorer"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let embedding = cx.tasks.any::<EmbedKey>();
        let embedded = self.set.as_deref();
        match controls::controls(ui, &mut self.settings, cx.model, embedded, embedding) {
            Some(controls::Action::ChooseFolder) => {
                let pick = Pick::Folder {
                    title: "A folder of images in class sub-folders".into(),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                    cx.notifications.error(&e);
                }
            }
            Some(controls::Action::ChooseList) => {
                let pick = Pick::File {
                    title: "A CSV list of path,label rows".into(),
                    filter: ("CSV list", &["csv"]),
                };
                if let Err(e) = self.dialog.open(ui.ctx(), pick, ()) {
                    cx.notifications.error(&e);
                }
            }
            Some(controls::Action::Embed) => self.embed(cx),
            None => {}
        }
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        self.page_bar(ui);
        ui.separator();
        let set = self.set.clone();
        let events = cx.tasks.sender();
        let current = self.readout_key();
        let computing = self
            .readout
            .as_ref()
            .is_none_or(|r| Some(&r.key) != current.as_ref());
        let thumbnails = &mut self.thumbnails;
        let mut pages = set.as_deref().map(|set| PageContext {
            set,
            thumbnails,
            events: &events,
        });
        let action = match (self.page, pages.as_mut()) {
            (Page::Map, pages) => self.map.ui(ui, pages, cx),
            (_, None) => {
                Self::placeholder(&self.settings, ui, cx);
                None
            }
            (Page::Readout, Some(pages)) if pages.set.images.classes.is_empty() => {
                ui.label("The set has no labels (no class sub-folders): retrieval and maps only.");
                None
            }
            (Page::Readout, Some(pages)) => {
                self.readout_view
                    .ui(ui, pages, self.readout.as_deref(), computing)
            }
            (Page::Retrieval, Some(pages)) => self.retrieval.ui(ui, pages, cx),
        };
        match (action, &set) {
            (Some(ImageAction::Query(row)), _) => {
                self.retrieval.query = Some(retrieval::QueryImage::Row(row));
                self.page = Page::Retrieval;
            }
            (Some(ImageAction::Open(row)), Some(set)) => {
                if let Some(path) = set.images.paths.get(row) {
                    Self::open_in_views(cx, path.clone());
                }
            }
            _ => {}
        }
    }

    /// Reads the classes out again when the read-out settings changed, and maps the set when
    /// the map is shown.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        if self.page == Page::Map {
            self.map.request(cx, self.set.as_ref());
        }
        let Some(set) = self.set.clone() else {
            return;
        };
        if self.page == Page::Retrieval {
            self.retrieval.request(cx, &set);
        }
        let Some(key) = self.readout_key() else {
            return;
        };
        if set.images.classes.is_empty() {
            return;
        }
        if self.readout.as_ref().is_some_and(|r| r.key == key)
            || self.readout_dropped.as_ref() == Some(&key)
        {
            return;
        }
        if cx.tasks.cancel_others(&key) {
            return;
        }
        let label = format!("Read-out of {} images", set.len());
        cx.worker
            .submit(cx.tasks, key.clone(), label, ReadoutJob { key, set });
    }

    fn poll(&mut self, _ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        match self.dialog.poll() {
            Some(((), Ok(paths))) => {
                if let Some(folder) = paths.into_iter().next() {
                    self.settings.folder = Some(folder);
                    self.embed(cx);
                }
            }
            Some(((), Err(e))) => cx.notifications.error(&e),
            None => {}
        }
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<Thumbnail>() {
            Ok(thumbnail) => {
                self.thumbnails.take_pending(*thumbnail);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<Arc<EmbeddedSet>>() {
            Ok(set) => {
                self.sets += 1;
                self.thumbnails.reset(self.sets);
                self.retrieval = retrieval::Retrieval::default();
                self.map = map::MapView::default();
                self.readout = None;
                self.readout_dropped = None;
                self.set = Some(*set);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<Arc<Readout>>() {
            Ok(readout) => {
                self.readout = Some(*readout);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match self.retrieval.take_output(output) {
            Ok(()) => return Ok(()),
            Err(other) => other,
        };
        self.map.take_output(output)
    }

    fn task_dropped(&mut self, key: &dyn std::any::Any) {
        if let Some(key) = key.downcast_ref::<ReadoutKey>() {
            self.readout_dropped = Some(key.clone());
        }
        self.retrieval.task_dropped(key);
        self.map.task_dropped(key);
    }

    fn model_loaded(&mut self, _info: &ModelInfo, _settings: &mut super::state::Settings) {
        // The features of the old model no longer describe what the other views show.
        self.set = None;
        self.readout = None;
        self.readout_dropped = None;
        self.retrieval = retrieval::Retrieval::default();
        self.map = map::MapView::default();
    }

    fn cached(&self) -> usize {
        usize::from(self.set.is_some()) + usize::from(self.readout.is_some())
    }
}
