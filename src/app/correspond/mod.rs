//! The correspondence tab of the app: descriptors per image (computed by the worker, cached here),
//! the point query on the cached descriptors when the point's patch changes (one mat-vec per
//! target on the point-query thread, no model work), best buddies as a worker job, the tab's
//! controls and its view.

use eframe::egui;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::correspond_job::{BuddiesKey, CorrImage, CorrSpec};
use super::correspond_panel::{CorrPanel, Shown};
use super::fusion_job::{FuseKey, SecondChoice};
use super::pca_job::PcaInput;
use super::pca_panel::stride_combo;
use super::point_query::{PointQueries, QueryAnswer, QueryRequest};
use super::worker::{EventSender, ImageId, Job, facet_index};
use super::{App, TaskKind, input_size_combo};
use crate::analysis::colormap::Colormap;
use crate::analysis::correspond::{BestBuddies, PointQuery, patch_at_pixel};
use crate::model::Facet;

/// Images with descriptors kept in memory.
const CORR_CACHE_CAPACITY: usize = 16;

/// What was asked last: spec, targets, source patch, the request's serial and the source's
/// descriptors (fused ones change with the weight).
type Requested = (CorrSpec, Vec<ImageId>, usize, u64, Arc<CorrImage>);

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
    pub fn query(&self) -> Option<&Arc<PointQuery>> {
        self.answer.as_ref().map(|a| &a.query)
    }

    /// The answer is the one for the last request (nothing newer is being computed).
    pub fn is_current(&self) -> bool {
        matches!(
            (&self.requested, &self.answer),
            (Some((_, _, _, serial, _)), Some(a)) if a.serial == *serial
        )
    }
}

#[derive(Default)]
pub struct CorrState {
    images: HashMap<(ImageId, CorrSpec), Arc<CorrImage>>,
    order: VecDeque<(ImageId, CorrSpec)>,
    pub skipped: HashSet<(ImageId, CorrSpec)>,
    pub point: Option<PointState>,
    buddies: HashMap<BuddiesKey, Arc<BestBuddies>>,
    pub buddies_skipped: HashSet<BuddiesKey>,
    /// Best buddies asked for (drawn once computed).
    wanted: HashSet<BuddiesKey>,
    /// The target when not matching against all other images.
    pub target: Option<ImageId>,
    pub panel: CorrPanel,
    /// Point queries asked for so far (for tests and the debug overlay).
    pub queries: u64,
    /// Compute times of the last answers, in milliseconds.
    pub query_ms: VecDeque<f32>,
    /// The point-query thread (started on the first query).
    thread: Option<PointQueries>,
    /// The second source fused with the model's descriptors, if any.
    pub fusion: Option<SecondChoice>,
    fused: HashMap<FuseKey, [Arc<CorrImage>; 2]>,
    pub fuse_skipped: HashSet<FuseKey>,
}

impl CorrState {
    pub fn insert(&mut self, spec: CorrSpec, image: Arc<CorrImage>) {
        let key = (image.id, spec);
        if self.images.insert(key, image).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CORR_CACHE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.images.remove(&old);
            }
        }
    }

    pub fn insert_fused(&mut self, key: FuseKey, images: [Arc<CorrImage>; 2]) {
        // Every weight step makes a new pair: keep the memory bounded.
        if self.fused.len() >= 4 * CORR_CACHE_CAPACITY {
            self.fused.clear();
        }
        self.fused.insert(key, images);
    }

    pub fn fused(&self, key: &FuseKey) -> Option<&[Arc<CorrImage>; 2]> {
        self.fused.get(key)
    }

    pub fn insert_buddies(&mut self, key: BuddiesKey, result: Arc<BestBuddies>) {
        self.buddies.insert(key, result);
    }

    pub fn image(&self, id: ImageId, spec: CorrSpec) -> Option<&Arc<CorrImage>> {
        self.images.get(&(id, spec))
    }

    pub fn cached(&self) -> usize {
        self.images.len() + self.buddies.len()
    }

    fn send_query(&mut self, events: EventSender, request: QueryRequest) {
        self.thread
            .get_or_insert_with(|| PointQueries::new(events))
            .send(request);
    }

    /// Takes an answer of the point-query thread (ignored when it is stale).
    pub fn answered(&mut self, answer: QueryAnswer) {
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

    /// Forgets everything (a new model).
    pub fn clear(&mut self) {
        self.images.clear();
        self.order.clear();
        self.skipped.clear();
        self.buddies.clear();
        self.buddies_skipped.clear();
        self.wanted.clear();
        self.fused.clear();
        self.fuse_skipped.clear();
        if let Some(p) = &mut self.point {
            *p = PointState::new(p.source, p.point, p.stamp);
        }
    }
}

const FACETS: [(Facet, &str); 4] = [
    (Facet::Key, "key"),
    (Facet::Query, "query"),
    (Facet::Value, "value"),
    (Facet::Token, "token (block output)"),
];

impl App {
    /// The block the correspondence tab matches: the chosen one, or three before the last.
    pub fn corr_layer(&self) -> usize {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings
            .correspondence
            .layer
            .unwrap_or(depth.saturating_sub(3))
            .min(depth - 1)
    }

    pub fn set_corr_layer(&mut self, layer: usize) {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        self.settings.correspondence.layer = Some(layer.min(depth - 1));
    }

    /// The descriptor spec the settings ask for (`None` without a model).
    pub fn corr_spec(&self) -> Option<CorrSpec> {
        let model = self.model.as_ref()?;
        let patch = model.config.patch_size.max(1);
        let c = &self.settings.correspondence;
        Some(CorrSpec {
            layer: self.corr_layer(),
            facet: facet_index(c.facet),
            stride: c
                .stride
                .filter(|s| *s > 0 && patch.is_multiple_of(*s))
                .unwrap_or(patch),
            log_bin: c.log_bin,
            input_size: self.settings.input_size,
            generation: model.generation,
        })
    }

    /// The source image: the gallery's selection.
    pub fn corr_source(&self) -> Option<ImageId> {
        self.gallery.selected
    }

    /// The target images: every other gallery image, or the chosen one (by default the next).
    pub fn corr_targets(&self) -> Vec<ImageId> {
        let Some(source) = self.corr_source() else {
            return Vec::new();
        };
        let others: Vec<ImageId> = self
            .gallery
            .entries
            .iter()
            .map(|e| e.id)
            .filter(|&id| id != source)
            .collect();
        if self.settings.correspondence.all_targets {
            return others;
        }
        let chosen = self.corr.target.filter(|t| others.contains(t));
        let next = || {
            let i = self.gallery.selected_index().unwrap_or(0);
            self.gallery
                .entries
                .iter()
                .cycle()
                .skip(i + 1)
                .take(self.gallery.entries.len())
                .map(|e| e.id)
                .find(|&id| id != source)
        };
        chosen.or_else(next).into_iter().collect()
    }

    pub fn set_corr_target(&mut self, target: ImageId) {
        self.corr.target = Some(target);
    }

    /// The point on the source and its query, once computed.
    pub fn corr_point(&self) -> Option<&PointState> {
        self.corr.point.as_ref()
    }

    /// Puts the source point at original-image pixel-index `(x, y)` (as a click does).
    pub fn set_corr_point(&mut self, point: (f64, f64)) {
        let source = self.corr_source();
        if let Some(state) = self
            .corr
            .point
            .as_mut()
            .filter(|p| Some(p.source) == source)
        {
            // Same source: a new query is asked only if the point left its patch.
            state.point = point;
        } else if let Some(source) = source {
            let stamp = self.corr.point.as_ref().map_or(0, |p| p.stamp);
            self.corr.point = Some(PointState::new(source, point, stamp));
        }
    }

    /// Descriptors of an image under the current spec, once computed.
    pub fn corr_image(&self, id: ImageId) -> Option<&Arc<CorrImage>> {
        self.corr.image(id, self.corr_spec()?)
    }

    /// The correspondence view of the last frame (tile rectangles, markers).
    pub fn corr_view(&self) -> &CorrPanel {
        &self.corr.panel
    }

    /// Point queries asked for so far.
    pub fn corr_queries(&self) -> u64 {
        self.corr.queries
    }

    /// Compute times of the last point queries (on their thread), in milliseconds.
    pub fn corr_query_ms(&self) -> Vec<f32> {
        self.corr.query_ms.iter().copied().collect()
    }

    /// The point's query is answered for the current point, targets and settings.
    pub fn corr_query_current(&self) -> bool {
        let matching = self.corr_spec().and_then(|s| self.corr_matching(s));
        self.corr.point.as_ref().is_some_and(|p| {
            p.is_current()
                && p.requested
                    .as_ref()
                    .is_some_and(|(spec, targets, _, _, source)| {
                        Some(*spec) == self.corr_spec()
                            && *targets == self.corr_targets()
                            && matching
                                .as_ref()
                                .is_some_and(|(s, _)| Arc::ptr_eq(s, source))
                    })
        })
    }

    /// The images the view shows: the matched descriptors (fused ones when a second source is
    /// chosen), or the model's own while a fusion is computed; `None` before the source's.
    pub(super) fn corr_shown_images(
        &self,
        spec: CorrSpec,
    ) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        let source = self.corr.image(self.corr_source()?, spec)?.clone();
        Some(self.corr_matching(spec).unwrap_or_else(|| {
            let targets = self
                .corr_targets()
                .iter()
                .filter_map(|&id| self.corr.image(id, spec).cloned())
                .collect();
            (source, targets)
        }))
    }

    pub(super) fn corr_input(&self, id: ImageId) -> Option<PcaInput> {
        let e = self.gallery.entries.iter().find(|e| e.id == id)?;
        Some(PcaInput {
            id,
            name: e.name.clone(),
            rgb: e.rgb.clone(),
        })
    }

    /// The best-buddy keys for the source and each target under the current settings.
    fn buddies_keys(&self) -> Vec<BuddiesKey> {
        let (Some(spec), Some(source)) = (self.corr_spec(), self.corr_source()) else {
            return Vec::new();
        };
        let c = &self.settings.correspondence;
        self.corr_targets()
            .into_iter()
            .map(|target| BuddiesKey {
                source,
                target,
                spec,
                num_pairs: c.num_pairs,
                threshold_milli: (c.saliency_threshold.clamp(0.0, 1.0) * 1000.0).round() as u16,
            })
            .collect()
    }

    /// Asks for best-buddy pairs between the source and each target ("Auto").
    pub fn find_best_buddies(&mut self) {
        for key in self.buddies_keys() {
            self.corr.buddies_skipped.remove(&key);
            self.corr.wanted.insert(key);
        }
    }

    /// Best buddies of the source with each target, as far as computed.
    pub fn current_buddies(&self) -> Vec<(ImageId, Arc<BestBuddies>)> {
        self.buddies_keys()
            .into_iter()
            .filter_map(|k| self.corr.buddies.get(&k).map(|b| (k.target, b.clone())))
            .collect()
    }

    /// Asks the worker for missing descriptors (source first) and wanted best buddies; one job
    /// at a time, so that switching images asks only for what is shown.
    pub(super) fn request_correspondence(&mut self) {
        let Some(spec) = self.corr_spec() else {
            return;
        };
        if self.tasks.values().any(|(k, _)| {
            matches!(
                k,
                TaskKind::Model
                    | TaskKind::Descriptors(..)
                    | TaskKind::Buddies(_)
                    | TaskKind::Fuse(_)
            )
        }) {
            return;
        }
        let mut needed: Vec<ImageId> = self.corr_source().into_iter().collect();
        needed.extend(self.corr_targets());
        if let Some(id) = needed.into_iter().find(|&id| {
            self.corr.image(id, spec).is_none() && !self.corr.skipped.contains(&(id, spec))
        }) && let Some(input) = self.corr_input(id)
        {
            self.submit(
                TaskKind::Descriptors(id, spec),
                format!("Descriptors of {}", input.name),
                Job::Descriptors { spec, input },
            );
            return;
        }
        if self.request_fusion(spec) {
            return;
        }
        let wanted = self.buddies_keys().into_iter().find(|k| {
            self.corr.wanted.contains(k)
                && !self.corr.buddies.contains_key(k)
                && !self.corr.buddies_skipped.contains(k)
        });
        if let Some(key) = wanted
            && let (Some(source), Some(target)) =
                (self.corr_input(key.source), self.corr_input(key.target))
        {
            self.submit(
                TaskKind::Buddies(key),
                format!("Best buddies of {} and {}", source.name, target.name),
                Job::BestBuddies {
                    key,
                    source,
                    target,
                },
            );
        }
    }

    /// Asks the point-query thread for the point's query when the point's patch, the targets or
    /// the descriptors changed.
    fn update_point_query(&mut self) {
        let Some(spec) = self.corr_spec() else {
            return;
        };
        let Some((source, targets)) = self.corr_matching(spec) else {
            return;
        };
        let Some(state) = self.corr.point.as_ref().filter(|p| p.source == source.id) else {
            return;
        };
        let ids: Vec<ImageId> = targets.iter().map(|t| t.id).collect();
        let patch = patch_at_pixel(&source.descriptors.pixels, state.point);
        let asked = state.requested.as_ref().is_some_and(|(s, t, p, _, d)| {
            *s == spec && *t == ids && *p == patch && Arc::ptr_eq(d, &source)
        });
        if asked {
            return;
        }
        let point = state.point;
        self.corr.queries += 1;
        let serial = self.corr.queries;
        if let Some(state) = &mut self.corr.point {
            state.requested = Some((spec, ids, patch, serial, source.clone()));
        }
        let events = self.worker.sender();
        self.corr.send_query(
            events,
            QueryRequest {
                serial,
                spec,
                source,
                targets,
                point,
            },
        );
    }

    pub(super) fn corr_controls(&mut self, ui: &mut egui::Ui) {
        let depth = self.model.as_ref().map_or(1, |m| m.config.depth).max(1);
        let patch = self.model.as_ref().map_or(16, |m| m.config.patch_size);
        ui.heading("Correspondence");
        ui.label(
            egui::RichText::new(
                "Source: the selected image. Click or drag on it to match the point.",
            )
            .weak(),
        );
        let others: Vec<(ImageId, String)> = self
            .gallery
            .entries
            .iter()
            .filter(|e| Some(e.id) != self.corr_source())
            .map(|e| (e.id, e.name.clone()))
            .collect();
        let targets = self.corr_targets();
        let c = &mut self.settings.correspondence;
        ui.horizontal(|ui| {
            ui.radio_value(&mut c.all_targets, false, "One target");
            ui.radio_value(&mut c.all_targets, true, "All other images");
        });
        if !c.all_targets {
            let current = targets
                .first()
                .and_then(|t| others.iter().find(|(id, _)| id == t))
                .map_or("(none)".to_string(), |(_, n)| n.clone());
            let mut chosen = None;
            egui::ComboBox::from_label("Target")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for (id, name) in &others {
                        if ui
                            .selectable_label(targets.first() == Some(id), name)
                            .clicked()
                        {
                            chosen = Some(*id);
                        }
                    }
                });
            if let Some(id) = chosen {
                self.corr.target = Some(id);
            }
        }
        let layer = self.corr_layer();
        let c = &mut self.settings.correspondence;
        let mut chosen = layer;
        ui.add_enabled(
            depth > 1,
            egui::Slider::new(&mut chosen, 0..=depth - 1).text("Block (layer)"),
        )
        .on_hover_text("Which block's features are matched (Up / Down)");
        if chosen != layer {
            c.layer = Some(chosen);
        }
        egui::ComboBox::from_label("Facet")
            .selected_text(
                FACETS
                    .iter()
                    .find(|(f, _)| *f == c.facet)
                    .map_or("key", |(_, l)| *l),
            )
            .show_ui(ui, |ui| {
                for (facet, label) in FACETS {
                    ui.selectable_value(&mut c.facet, facet, label);
                }
            });
        stride_combo(ui, &mut c.stride, patch, patch)
            .on_hover_text("A smaller stride gives denser matches (dino-vit-features: 4)");
        ui.checkbox(&mut c.log_bin, "Log-binning descriptor")
            .on_hover_text("Adds each patch's neighbourhood at two scales (17x longer descriptors; dino-vit-features' choice)");
        input_size_combo(ui, &mut self.settings.input_size);
        egui::ComboBox::from_label("Colormap")
            .selected_text(format!("{:?}", self.settings.colormap))
            .show_ui(ui, |ui| {
                for cm in Colormap::ALL {
                    ui.selectable_value(&mut self.settings.colormap, cm, format!("{cm:?}"));
                }
            });
        ui.add(egui::Slider::new(&mut self.settings.opacity, 0.0..=1.0).text("Opacity"));
        ui.add(egui::Slider::new(&mut self.settings.tile_size, 80.0..=600.0).text("Tile size"));
        ui.separator();
        self.fusion_controls(ui);
        ui.separator();
        ui.heading("Best buddies");
        let c = &mut self.settings.correspondence;
        ui.add(egui::Slider::new(&mut c.num_pairs, 1..=50).text("Pairs"));
        ui.add(
            egui::Slider::new(&mut c.saliency_threshold, 0.0..=0.5)
                .step_by(0.01)
                .text("Saliency threshold"),
        )
        .on_hover_text("Only patches whose CLS attention is above this are paired");
        ui.horizontal(|ui| {
            if ui
                .button("Auto")
                .on_hover_text(
                    "Find pairs of patches that are each other's best match (best buddies) on \
                     the salient parts, and keep a diverse few",
                )
                .clicked()
            {
                self.find_best_buddies();
            }
            if ui.button("Clear").clicked() {
                for key in self.buddies_keys() {
                    self.corr.wanted.remove(&key);
                    self.corr.buddies.remove(&key);
                }
            }
        });
        for (target, found) in self.current_buddies() {
            let name = self
                .gallery
                .entries
                .iter()
                .find(|e| e.id == target)
                .map_or("?".into(), |e| e.name.clone());
            ui.label(format!(
                "{name}: {} mutual, {} salient, {} shown",
                found.mutual,
                found.salient,
                found.pairs.len()
            ));
        }
        ui.separator();
        ui.heading("Point");
        let spec = self.corr_spec();
        match &self.corr.point {
            Some(p) => {
                ui.label(format!("source ({:.0}, {:.0}) px", p.point.0, p.point.1));
                if let Some(a) = &p.answer {
                    for (id, m) in a.targets.iter().zip(&a.query.matches) {
                        let name = spec
                            .and_then(|s| self.corr.image(*id, s))
                            .map_or("?".to_string(), |i| i.name.clone());
                        ui.label(format!(
                            "{name}: best ({:.0}, {:.0}) px, score {:.3}",
                            m.best_pixel.0, m.best_pixel.1, m.best_score
                        ));
                    }
                }
            }
            None => {
                ui.label(egui::RichText::new("(click the source image)").weak());
            }
        }
    }

    pub(super) fn corr_central(&mut self, ui: &mut egui::Ui) {
        let Some(spec) = self.corr_spec() else {
            super::centered(ui, |ui| ui.spinner());
            return;
        };
        // A point belongs to one source image.
        if self
            .corr
            .point
            .as_ref()
            .is_some_and(|p| Some(p.source) != self.corr_source())
        {
            self.corr.point = None;
        }
        self.update_point_query();
        let source = self
            .corr_source()
            .and_then(|s| self.corr.image(s, spec).cloned());
        let Some(source) = source else {
            self.corr.panel.source_rect = None;
            self.corr.panel.target_rects.clear();
            super::centered(ui, |ui| {
                let skipped = self
                    .corr_source()
                    .is_some_and(|s| self.corr.skipped.contains(&(s, spec)));
                if self.gallery.entries.is_empty() && self.tasks.is_empty() {
                    ui.label("Drop images or folders here, or use File > Open images (Ctrl+O).");
                } else if skipped {
                    if ui.button("Compute descriptors").clicked() {
                        self.corr.skipped.retain(|(_, s)| *s != spec);
                    }
                } else {
                    ui.spinner();
                }
            });
            return;
        };
        if self.corr_targets().is_empty() {
            ui.label("Add a second image to match against.");
        }
        let (source, targets) = self
            .corr_shown_images(spec)
            .unwrap_or_else(|| (source, Vec::new()));
        let buddies = self.current_buddies();
        let point = self.corr.point.clone();
        let answer = point
            .as_ref()
            .and_then(|p| p.answer.as_ref().map(|a| (a, p.stamp)))
            .filter(|(a, _)| a.spec == spec);
        let shown = Shown {
            source: &source,
            targets: targets.iter().collect(),
            point: point.as_ref().map(|p| p.point),
            query: answer.map(|(a, stamp)| (a.query.as_ref(), a.targets.as_slice(), stamp)),
            buddies: buddies.iter().map(|(id, b)| (*id, b.as_ref())).collect(),
            colormap: self.settings.colormap,
            opacity: self.settings.opacity,
            tile: self.settings.tile_size * 1.5,
        };
        let picked = egui::ScrollArea::both()
            .auto_shrink(false)
            .show(ui, |ui| self.corr.panel.ui(ui, &shown))
            .inner;
        if let Some(p) = picked {
            self.set_corr_point(p);
            // Ask right away; the answer wakes the UI when it arrives.
            self.update_point_query();
        }
    }
}
