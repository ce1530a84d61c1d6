//! The correspondence view: descriptors per image (computed by the worker, [`job`], cached
//! here), the point query on the cached descriptors when the point's patch changes (one mat-vec
//! per target on the point-query thread, [`point_query`], no model work), best buddies and
//! fusion with a second source ([`fusion`]) as worker jobs.

mod controls;
pub mod export;
pub mod fusion;
pub mod fusion_job;
pub mod job;
pub mod panel;
pub mod point_query;
pub mod sd;
pub mod sd_job;

use eframe::egui;
use std::any::Any;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::dialogs::{Dialog, Pick};
use super::state::{Settings, ViewTab};
use super::tasks::{EventSender, ImageId, Output};
use super::view::{ExportItem, ExportJob, Shared, View, ViewContext};
use super::widgets::{add_images_hint, centered};
use super::worker::{ModelInfo, ModelLoad};
use crate::analysis::correspond::{BestBuddies, patch_at_pixel};
use export::{CorrExport, ShownQuery};
use fusion_job::{FuseKey, FusedOutput, SecondChoice};
use job::{
    BuddiesJob, BuddiesKey, BuddiesOf, BuddiesOutput, CorrImage, CorrSpec, DescriptorsJob,
    DescriptorsKey, DescriptorsOutput,
};
use panel::{CorrPanel, Shown};
use point_query::{PointQueries, QueryAnswer, QueryRequest};

/// Images with descriptors kept in memory.
const CACHE_CAPACITY: usize = 16;

/// What the point's query was last asked with.
#[derive(Clone, Debug)]
struct Requested {
    spec: CorrSpec,
    targets: Vec<ImageId>,
    /// The source patch under the point.
    patch: usize,
    serial: u64,
    /// The source's descriptors (fused ones change with the weight).
    source: Arc<CorrImage>,
}

/// The point on the source and its query.
#[derive(Clone, Debug)]
pub struct PointState {
    pub source: ImageId,
    /// Original-image pixel-index coordinates `(x, y)`.
    pub point: (f64, f64),
    requested: Option<Requested>,
    /// The newest answer (for an earlier point while the next one is computed).
    pub answer: Option<QueryAnswer>,
    /// Counts up with every answer (the view re-colours only then).
    pub stamp: u64,
}

impl PointState {
    fn new(source: ImageId, point: (f64, f64), stamp: u64) -> Self {
        PointState {
            source,
            point,
            requested: None,
            answer: None,
            stamp,
        }
    }

    /// The newest query answered.
    pub fn query(&self) -> Option<&Arc<crate::analysis::correspond::PointQuery>> {
        self.answer.as_ref().map(|a| &a.query)
    }

    /// The answer is the one for the last request (nothing newer is being computed).
    pub fn is_current(&self) -> bool {
        matches!(
            (&self.requested, &self.answer),
            (Some(r), Some(a)) if a.serial == r.serial
        )
    }
}

/// Where a fusion's second source is picked.
#[derive(Clone, Copy, Debug)]
enum SecondPick {
    Checkpoint,
    Folder,
}

pub struct CorrespondenceTab {
    images: BoundedCache<DescriptorsKey, Arc<CorrImage>>,
    skipped: HashSet<DescriptorsKey>,
    point: Option<PointState>,
    buddies: BoundedCache<BuddiesKey, Arc<BestBuddies>>,
    buddies_skipped: HashSet<BuddiesKey>,
    /// Best buddies asked for (drawn once computed).
    wanted: HashSet<BuddiesKey>,
    /// The target when not matching against all other images.
    target: Option<ImageId>,
    pub panel: CorrPanel,
    /// Point queries asked for so far (for tests and the debug overlay).
    queries: u64,
    /// Compute times of the last answers, in milliseconds.
    query_ms: VecDeque<f32>,
    /// The point-query thread (started on the first query).
    thread: Option<PointQueries>,
    /// The second source fused with the model's descriptors, if any.
    fusion: Option<SecondChoice>,
    /// Every weight step makes a new pair: a bounded number is kept.
    fused: BoundedCache<FuseKey, [Arc<CorrImage>; 2]>,
    fuse_skipped: HashSet<FuseKey>,
    dialog: Dialog<SecondPick>,
    /// Stable Diffusion sources (SD, SD+DINO).
    pub sd: sd::SdSources,
}

impl Default for CorrespondenceTab {
    fn default() -> Self {
        CorrespondenceTab {
            images: BoundedCache::with_capacity(CACHE_CAPACITY),
            skipped: HashSet::new(),
            point: None,
            buddies: BoundedCache::with_capacity(4 * CACHE_CAPACITY),
            buddies_skipped: HashSet::new(),
            wanted: HashSet::new(),
            target: None,
            panel: CorrPanel::default(),
            queries: 0,
            query_ms: VecDeque::new(),
            thread: None,
            fusion: None,
            fused: BoundedCache::with_capacity(4 * CACHE_CAPACITY),
            fuse_skipped: HashSet::new(),
            dialog: Dialog::default(),
            sd: sd::SdSources::default(),
        }
    }
}

/// The block matched: the chosen one, or three before the last.
pub fn layer(shared: Shared<'_>) -> usize {
    shared.block(shared.settings.correspondence.layer, 2)
}

impl CorrespondenceTab {
    /// The descriptor spec the settings ask for (`None` without a model).
    pub fn spec(&self, shared: Shared<'_>) -> Option<CorrSpec> {
        let model = shared.model?;
        let patch = shared.patch_size();
        let c = &shared.settings.correspondence;
        Some(CorrSpec {
            layer: layer(shared),
            facet: c.facet,
            stride: c
                .stride
                .filter(|s| *s > 0 && patch.is_multiple_of(*s))
                .unwrap_or(patch),
            log_bin: c.log_bin,
            input_size: shared.settings.input_size,
            generation: model.generation,
        })
    }

    /// The source image: the gallery's selection.
    pub fn source(shared: Shared<'_>) -> Option<ImageId> {
        shared.gallery.selected
    }

    /// The target images: every other gallery image, or the chosen one (by default the next).
    pub fn targets(&self, shared: Shared<'_>) -> Vec<ImageId> {
        let Some(source) = Self::source(shared) else {
            return Vec::new();
        };
        let gallery = shared.gallery;
        let others: Vec<ImageId> = gallery
            .entries
            .iter()
            .map(|e| e.id)
            .filter(|&id| id != source)
            .collect();
        if shared.settings.correspondence.all_targets {
            return others;
        }
        let chosen = self.target.filter(|t| others.contains(t));
        let next = || {
            let i = gallery.selected_index().unwrap_or(0);
            gallery
                .entries
                .iter()
                .cycle()
                .skip(i + 1)
                .take(gallery.entries.len())
                .map(|e| e.id)
                .find(|&id| id != source)
        };
        chosen.or_else(next).into_iter().collect()
    }

    pub fn set_target(&mut self, target: ImageId) {
        self.target = Some(target);
    }

    /// The point on the source and its query, once computed.
    pub fn point(&self) -> Option<&PointState> {
        self.point.as_ref()
    }

    /// Puts the source point at original-image pixel-index `(x, y)` (as a click does).
    pub fn set_point(&mut self, shared: Shared<'_>, point: (f64, f64)) {
        let source = Self::source(shared);
        if let Some(state) = self.point.as_mut().filter(|p| Some(p.source) == source) {
            // Same source: a new query is asked only if the point left its patch.
            state.point = point;
        } else if let Some(source) = source {
            let stamp = self.point.as_ref().map_or(0, |p| p.stamp);
            self.point = Some(PointState::new(source, point, stamp));
        }
    }

    /// Descriptors of an image under `spec`, once computed.
    pub fn image(&self, image: ImageId, spec: CorrSpec) -> Option<&Arc<CorrImage>> {
        self.images.get(&DescriptorsKey { image, spec })
    }

    /// Point queries asked for so far.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Compute times of the last point queries (on their thread), in milliseconds.
    pub fn query_ms(&self) -> Vec<f32> {
        self.query_ms.iter().copied().collect()
    }

    /// The point's query is answered for the current point, targets and settings.
    pub fn query_current(&self, shared: Shared<'_>) -> bool {
        let spec = self.spec(shared);
        let matching = spec.and_then(|s| self.matching(shared, s));
        self.point.as_ref().is_some_and(|p| {
            p.is_current()
                && p.requested.as_ref().is_some_and(|r| {
                    Some(r.spec) == spec
                        && r.targets == self.targets(shared)
                        && matching
                            .as_ref()
                            .is_some_and(|(s, _)| Arc::ptr_eq(s, &r.source))
                })
        })
    }

    /// The images the view shows: the matched descriptors (fused ones when a second source is
    /// chosen), or the model's own while a fusion is computed; `None` before the source's.
    pub fn shown_images(
        &self,
        shared: Shared<'_>,
        spec: CorrSpec,
    ) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        let own = self.own_images(shared, spec)?;
        Some(self.matching(shared, spec).unwrap_or(own))
    }

    /// The model's own descriptors of the source and the targets computed so far.
    fn own_images(
        &self,
        shared: Shared<'_>,
        spec: CorrSpec,
    ) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        let source = self.image(Self::source(shared)?, spec)?.clone();
        let targets = self
            .targets(shared)
            .iter()
            .filter_map(|&id| self.image(id, spec).cloned())
            .collect();
        Some((source, targets))
    }

    /// The best-buddy keys for the source and each target under the current settings.
    fn buddies_keys(&self, shared: Shared<'_>) -> Vec<BuddiesKey> {
        let (Some(spec), Some(source)) = (self.spec(shared), Self::source(shared)) else {
            return Vec::new();
        };
        let c = &shared.settings.correspondence;
        let of = self
            .sd_set_key(shared)
            .map_or(BuddiesOf::Model, BuddiesOf::Sd);
        self.targets(shared)
            .into_iter()
            .map(|target| BuddiesKey {
                source,
                target,
                spec,
                num_pairs: c.num_pairs,
                threshold_milli: (c.saliency_threshold.clamp(0.0, 1.0) * 1000.0).round() as u16,
                of: of.clone(),
            })
            .collect()
    }

    /// Asks for best-buddy pairs between the source and each target ("Auto").
    pub fn find_best_buddies(&mut self, shared: Shared<'_>) {
        for key in self.buddies_keys(shared) {
            self.buddies_skipped.remove(&key);
            self.wanted.insert(key);
        }
    }

    fn clear_buddies(&mut self, shared: Shared<'_>) {
        for key in self.buddies_keys(shared) {
            self.wanted.remove(&key);
            self.buddies.remove(&key);
        }
    }

    /// Best buddies of the source with each target, as far as computed.
    pub fn current_buddies(&self, shared: Shared<'_>) -> Vec<(ImageId, Arc<BestBuddies>)> {
        self.buddies_keys(shared)
            .into_iter()
            .filter_map(|k| self.buddies.get(&k).map(|b| (k.target, b.clone())))
            .collect()
    }

    /// Asks the worker for the first missing descriptors (source first); returns whether a
    /// job was submitted.
    fn request_descriptors(&mut self, cx: &mut ViewContext<'_>, spec: CorrSpec) -> bool {
        let shared = cx.shared();
        let mut needed: Vec<ImageId> = Self::source(shared).into_iter().collect();
        needed.extend(self.targets(shared));
        let missing = needed
            .into_iter()
            .map(|image| DescriptorsKey { image, spec });
        let Some((key, input)) = missing
            .filter(|k| !self.images.contains_key(k) && !self.skipped.contains(k))
            .find_map(|k| Some((k, shared.input(k.image)?)))
        else {
            return false;
        };
        let label = format!("Descriptors of {}", input.name);
        cx.worker
            .submit(cx.tasks, key, label, DescriptorsJob { spec, input });
        true
    }

    /// Asks the worker for the first wanted best buddies not computed yet.
    fn request_buddies(&mut self, cx: &mut ViewContext<'_>) {
        let shared = cx.shared();
        let wanted = self.buddies_keys(shared).into_iter().find(|k| {
            self.wanted.contains(k)
                && !self.buddies.contains_key(k)
                && !self.buddies_skipped.contains(k)
        });
        let Some(key) = wanted else {
            return;
        };
        // Under SD sources the pairs are found with the set's descriptors, once computed.
        let described = match &key.of {
            BuddiesOf::Model => None,
            BuddiesOf::Sd(set) => {
                let Some(images) = self.sd.set(set) else {
                    return;
                };
                let find = |id: ImageId| images.iter().find(|i| i.id == id).cloned();
                let (Some(source), Some(target)) = (find(key.source), find(key.target)) else {
                    return;
                };
                Some([source, target])
            }
        };
        if let (Some(source), Some(target)) = (shared.input(key.source), shared.input(key.target)) {
            let label = format!("Best buddies of {} and {}", source.name, target.name);
            let job = BuddiesJob {
                key: key.clone(),
                source,
                target,
                described,
            };
            cx.worker.submit(cx.tasks, key, label, job);
        }
    }

    /// Asks the point-query thread for the point's query when the point's patch, the targets or
    /// the descriptors changed.
    fn update_point_query(&mut self, shared: Shared<'_>, events: EventSender) {
        let Some(spec) = self.spec(shared) else {
            return;
        };
        let Some((source, targets)) = self.matching(shared, spec) else {
            return;
        };
        let Some(state) = self.point.as_ref().filter(|p| p.source == source.id) else {
            return;
        };
        let ids: Vec<ImageId> = targets.iter().map(|t| t.id).collect();
        let patch = patch_at_pixel(&source.descriptors.pixels, state.point);
        let asked = state.requested.as_ref().is_some_and(|r| {
            r.spec == spec
                && r.targets == ids
                && r.patch == patch
                && Arc::ptr_eq(&r.source, &source)
        });
        if asked {
            return;
        }
        let point = state.point;
        self.queries += 1;
        let serial = self.queries;
        if let Some(state) = &mut self.point {
            state.requested = Some(Requested {
                spec,
                targets: ids,
                patch,
                serial,
                source: source.clone(),
            });
        }
        self.thread
            .get_or_insert_with(|| PointQueries::new(events))
            .send(QueryRequest {
                serial,
                spec,
                source,
                targets,
                point,
            });
    }

    /// Takes an answer of the point-query thread (ignored when it is stale).
    fn answered(&mut self, answer: QueryAnswer) {
        let Some(state) = &mut self.point else {
            return;
        };
        let newer = state
            .answer
            .as_ref()
            .is_none_or(|a| answer.serial > a.serial);
        if answer.source == state.source && newer {
            self.query_ms.push_back(answer.elapsed.as_secs_f32() * 1e3);
            while self.query_ms.len() > 256 {
                self.query_ms.pop_front();
            }
            state.answer = Some(answer);
            state.stamp += 1;
        }
    }

    /// What the view shows now (`None` before the source's descriptors).
    pub fn export_view(&self, shared: Shared<'_>) -> Option<CorrExport> {
        let spec = self.spec(shared)?;
        let (source, targets) = self.shown_images(shared, spec)?;
        let query = self
            .point()
            .and_then(|p| p.answer.as_ref())
            .filter(|a| a.spec == spec && a.source == source.id)
            .map(|a| ShownQuery {
                point: a.point,
                query: a.query.clone(),
                targets: a.targets.clone(),
            });
        Some(CorrExport {
            spec,
            source,
            targets,
            query,
            buddies: self.current_buddies(shared),
            colormap: shared.settings.colormap,
            opacity: shared.settings.opacity,
        })
    }

    /// The empty view before the source's descriptors: a hint, a spinner or a retry button.
    fn placeholder(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>, spec: CorrSpec) {
        self.panel.source_rect = None;
        self.panel.target_rects.clear();
        let skipped = Self::source(cx.shared())
            .is_some_and(|image| self.skipped.contains(&DescriptorsKey { image, spec }));
        centered(ui, |ui| {
            if cx.is_empty() {
                add_images_hint(ui);
            } else if skipped {
                if ui.button("Compute descriptors").clicked() {
                    self.skipped.retain(|k| k.spec != spec);
                }
            } else {
                ui.spinner();
            }
        });
    }

    /// Draws the source and targets; a click or drag on the source moves the point.
    fn draw(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>, spec: CorrSpec) {
        let shared = cx.shared();
        let Some((source, targets)) = self.shown_images(shared, spec) else {
            return;
        };
        let buddies = self.current_buddies(shared);
        let point = self.point.clone();
        let answer = point
            .as_ref()
            .and_then(|p| p.answer.as_ref().map(|a| (a, p.stamp)))
            .filter(|(a, _)| a.spec == spec);
        let settings = &shared.settings;
        let shown = Shown {
            source: &source,
            targets: targets.iter().collect(),
            point: point.as_ref().map(|p| p.point),
            query: answer.map(|(a, stamp)| (a.query.as_ref(), a.targets.as_slice(), stamp)),
            buddies: buddies.iter().map(|(id, b)| (*id, b.as_ref())).collect(),
            colormap: settings.colormap,
            opacity: settings.opacity,
            tile: settings.tile_size * 1.5,
        };
        let picked = egui::ScrollArea::both()
            .auto_shrink(false)
            .show(ui, |ui| self.panel.ui(ui, &shown))
            .inner;
        if let Some(p) = picked {
            self.set_point(shared, p);
            // Ask right away; the answer wakes the UI when it arrives.
            self.update_point_query(shared, cx.tasks.sender());
        }
    }
}

impl View for CorrespondenceTab {
    fn id(&self) -> ViewTab {
        ViewTab::CORRESPONDENCE
    }

    fn title(&self) -> &'static str {
        "Correspondence"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        self.controls_ui(ui, cx);
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let shared = cx.shared();
        let Some(spec) = self.spec(shared) else {
            centered(ui, |ui| ui.spinner());
            return;
        };
        // A point belongs to one source image.
        if self
            .point
            .as_ref()
            .is_some_and(|p| Some(p.source) != Self::source(shared))
        {
            self.point = None;
        }
        self.update_point_query(shared, cx.tasks.sender());
        if self.own_images(shared, spec).is_none() {
            self.placeholder(ui, cx, spec);
            return;
        }
        if self.targets(shared).is_empty() {
            ui.label("Add a second image to match against.");
        }
        self.draw(ui, cx, spec);
    }

    /// Asks the worker for missing descriptors (source first), fused pairs and wanted best
    /// buddies; one job at a time, so that switching images asks only for what is shown.
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        let Some(spec) = self.spec(cx.shared()) else {
            return;
        };
        let tasks = &cx.tasks;
        if tasks.any::<ModelLoad>()
            || tasks.any::<DescriptorsKey>()
            || tasks.any::<BuddiesKey>()
            || tasks.any::<FuseKey>()
            || sd::SdSources::busy(tasks)
        {
            return;
        }
        if self.request_descriptors(cx, spec)
            || self.request_sd(cx)
            || self.request_fusion(cx, spec)
        {
            return;
        }
        self.request_buddies(cx);
    }

    fn poll(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        self.take_picked_source(cx);
        self.poll_sd(ctx, cx);
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match output.downcast::<DescriptorsOutput>() {
            Ok(o) => {
                let key = DescriptorsKey {
                    image: o.image.id,
                    spec: o.spec,
                };
                self.images.insert(key, o.image);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<BuddiesOutput>() {
            Ok(o) => {
                self.buddies.insert(o.key, o.result);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match output.downcast::<FusedOutput>() {
            Ok(o) => {
                self.fused.insert(o.key, o.images);
                return Ok(());
            }
            Err(other) => other,
        };
        let output = match self.sd.take_output(output) {
            Ok(()) => return Ok(()),
            Err(other) => other,
        };
        let answer = output.downcast::<QueryAnswer>()?;
        self.answered(*answer);
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<DescriptorsKey>() {
            self.skipped.insert(*key);
        } else if let Some(key) = key.downcast_ref::<BuddiesKey>() {
            self.buddies_skipped.insert(key.clone());
        } else if let Some(key) = key.downcast_ref::<FuseKey>() {
            self.fuse_skipped.insert(key.clone());
        } else {
            self.sd.task_dropped(key);
        }
    }

    fn model_loaded(&mut self, info: &ModelInfo, settings: &mut Settings) {
        self.images.clear();
        self.skipped.clear();
        self.buddies.clear();
        self.buddies_skipped.clear();
        self.wanted.clear();
        self.fused.clear();
        self.fuse_skipped.clear();
        self.sd.model_loaded();
        if let Some(p) = &mut self.point {
            *p = PointState::new(p.source, p.point, p.stamp);
        }
        let c = &mut settings.correspondence;
        if c.layer.is_some_and(|l| l >= info.config.depth) {
            c.layer = None;
        }
    }

    fn step_block(&mut self, step: isize, cx: &mut ViewContext<'_>) {
        let depth = cx.shared().depth();
        let block = layer(cx.shared()).saturating_add_signed(step);
        cx.settings.correspondence.layer = Some(block.min(depth - 1));
    }

    fn exports(&self, shared: Shared<'_>) -> Vec<ExportItem> {
        vec![ExportItem {
            id: "correspondence",
            label: "Export correspondence (PNG + JSON + .npy)...",
            hover: "correspondence.png, correspondence.json and <target>_similarity.npy",
            available: self.export_view(shared).is_some(),
            pick: Pick::Folder {
                title: "Export the correspondence view (PNG, JSON, heatmaps) to a folder".into(),
            },
        }]
    }

    fn export(&self, _id: &str, dir: PathBuf, shared: Shared<'_>) -> Option<ExportJob> {
        let shown = self.export_view(shared)?;
        Some(Box::new(move || {
            export::export_correspondence(&dir, &shown)
        }))
    }

    fn cached(&self) -> usize {
        self.images.len() + self.buddies.len()
    }
}
