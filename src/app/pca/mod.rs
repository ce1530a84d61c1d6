//! The PCA view: the patch features of a block (or Stable Diffusion's, alone or fused with the
//! block's) reduced to three principal components, shown as RGB beside each image. The colouring
//! is computed by the worker ([`job`], [`sd_job`]); a colouring for stale settings is cancelled,
//! results are cached per settings.

pub mod export;
pub mod figure;
pub mod job;
pub mod panel;
pub mod sd_job;

use eframe::egui;
use std::any::Any;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::BoundedCache;
use super::dialogs::Pick;
use super::gallery::ImageEntry;
use super::paper_figure::FigurePreview;
use super::sd_images::{SdImages, SdWanted, source_row};
use super::sd_model::PickerContext;
use super::state::{Settings, ViewTab};
use super::tasks::Output;
use super::view::{AppRequest, ExportItem, ExportJob, Shared, View, ViewContext};
use super::widgets::{add_images_hint, centered, input_size_combo, tile_size_slider};
use super::worker::{ImageInput, ModelInfo, ModelLoad};
use crate::analysis::sd_features::FeatureSource;
use image::RgbImage;
use job::{Foreground, PcaFeatures, PcaJob, PcaKey, PcaOutput, PcaResult};
use panel::PcaPanel;
use sd_job::PcaSdJob;

/// PCA results kept in memory.
const CACHE_CAPACITY: usize = 16;

/// Results, what failed or was cancelled, what is on screen, and the drawing.
pub struct PcaTab {
    cache: BoundedCache<PcaKey, Arc<PcaResult>>,
    /// Keys whose computation failed or was cancelled: not retried until asked.
    skipped: HashSet<PcaKey>,
    /// What is on screen (may be an older result while the next one computes).
    shown: Option<(PcaKey, Arc<PcaResult>)>,
    pub panel: PcaPanel,
    /// The DINOv2 paper figure, shown instead of the image pairs once its preset is chosen.
    figure: Option<FigurePreview<PcaKey>>,
    /// Stable Diffusion features of the images (SD and SD+DINO).
    pub sd: SdImages,
}

impl Default for PcaTab {
    fn default() -> Self {
        PcaTab {
            cache: BoundedCache::with_capacity(CACHE_CAPACITY),
            skipped: HashSet::new(),
            shown: None,
            panel: PcaPanel::default(),
            figure: None,
            sd: SdImages::new(ViewTab::PCA),
        }
    }
}

/// The block the PCA uses: the chosen one, or the last block of the model.
pub fn layer(shared: Shared<'_>) -> usize {
    shared.block(shared.settings.pca.layer, 0)
}

/// The gallery entries the PCA shows: all of them, or the selected one.
fn entries(shared: Shared<'_>) -> Vec<&ImageEntry> {
    let gallery = shared.gallery;
    if shared.settings.pca.all_images {
        gallery.entries.iter().collect()
    } else {
        gallery.selected_entry().into_iter().collect()
    }
}

fn images(shared: Shared<'_>) -> Vec<ImageInput> {
    entries(shared)
        .into_iter()
        .map(|e| shared.input_of(e))
        .collect()
}

impl PcaTab {
    /// The key of the colouring the settings ask for (`None` without a model or images).
    pub fn current_key(&self, shared: Shared<'_>) -> Option<PcaKey> {
        let model = shared.model?;
        let images: Vec<_> = entries(shared).iter().map(|e| e.id).collect();
        if images.is_empty() {
            return None;
        }
        let patch = shared.patch_size();
        let pca = &shared.settings.pca;
        let features = match pca.features {
            FeatureSource::Dino => PcaFeatures::Dino {
                facet: pca.facet,
                stride: pca
                    .stride
                    .filter(|s| *s > 0 && patch.is_multiple_of(*s))
                    .unwrap_or(patch),
                input_size: shared.settings.input_size,
            },
            source => PcaFeatures::Sd {
                choice: pca.sd.choice()?,
                fused: source == FeatureSource::Fused,
            },
        };
        Some(PcaKey {
            joint: pca.joint && images.len() > 1,
            images,
            layer: layer(shared),
            features,
            foreground: pca.foreground.then(|| {
                if pca.positive_score {
                    Foreground::PositiveScore
                } else {
                    Foreground::Milli((pca.threshold.clamp(0.0, 1.0) * 1000.0).round() as u16)
                }
            }),
            generation: model.generation,
        })
    }

    /// What the SD features are needed of, under SD or SD+DINO.
    fn sd_wanted(&self, shared: Shared<'_>) -> Option<SdWanted> {
        let key = self.current_key(shared)?;
        let PcaFeatures::Sd { choice, fused } = key.features else {
            return None;
        };
        Some(SdWanted {
            choice,
            dino_layer: fused.then_some(key.layer),
            images: key.images,
            generation: key.generation,
        })
    }

    /// Starts computing the SD features of the images shown (the Run button).
    pub fn run_sd(&mut self, shared: Shared<'_>) {
        if let Some(wanted) = self.sd_wanted(shared) {
            self.sd.start(&wanted);
        }
    }

    /// The colouring for the current settings, once computed.
    pub fn current_result(&self, shared: Shared<'_>) -> Option<&Arc<PcaResult>> {
        self.current_key(shared).and_then(|k| self.cache.get(&k))
    }

    fn computed_in(&self, ui: &mut egui::Ui) {
        if let Some((_, result)) = &self.shown {
            ui.separator();
            ui.label(format!(
                "computed in {:.0} ms",
                result.elapsed.as_secs_f64() * 1e3
            ));
            for image in &result.images {
                if let Some(note) = &image.note {
                    ui.label(egui::RichText::new(format!("{}: {note}", image.name)).weak());
                }
            }
        }
    }

    /// The heading: block, facet, stride, and a spinner while newer settings compute.
    fn heading(&mut self, ui: &mut egui::Ui, shown: &PcaKey, key: Option<&PcaKey>) {
        ui.horizontal(|ui| {
            ui.heading("PCA of the patch features");
            let features = match &shown.features {
                PcaFeatures::Dino { facet, stride, .. } => {
                    format!("block {}, {facet:?}, stride {stride} px", shown.layer)
                }
                PcaFeatures::Sd {
                    choice,
                    fused: false,
                } => format!("Stable Diffusion ({})", choice.recipe()),
                PcaFeatures::Sd {
                    choice,
                    fused: true,
                } => format!(
                    "Stable Diffusion ({}) + DINO block {}",
                    choice.recipe(),
                    shown.layer
                ),
            };
            ui.label(format!(
                "{features}{}",
                match shown.foreground {
                    Some(Foreground::Milli(m)) =>
                        format!(", foreground above {:.2}", m as f32 / 1000.0),
                    Some(Foreground::PositiveScore) => ", foreground: positive PC1 score".into(),
                    None => String::new(),
                }
            ));
            if Some(shown) != key {
                ui.spinner();
                if let Some(k) = key.filter(|k| self.skipped.contains(k))
                    && ui
                        .button("Compute")
                        .on_hover_text("Compute this view")
                        .clicked()
                {
                    self.skipped.remove(k);
                }
            }
        });
    }

    /// Whether the paper figure is shown instead of the image pairs.
    pub fn shows_figure(&self) -> bool {
        self.figure.is_some()
    }

    /// The paper figure of the current settings, once composed.
    pub fn figure_image(&self, shared: Shared<'_>) -> Option<&Arc<RgbImage>> {
        self.figure.as_ref()?.image(&self.current_key(shared)?)
    }

    /// The "Paper figure" preset and, once chosen, its export and way back.
    fn figure_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("Figure of the paper");
        if ui
            .add(egui::Button::new("Paper figure").selected(self.figure.is_some()))
            .on_hover_text(
                "DINOv2's PCA figure: every image over its colouring, the background removed by \
                 the sign of the first component, one colour PCA on the foreground patches of \
                 all images (the last block's output tokens)",
            )
            .clicked()
        {
            figure::apply_preset(&mut cx.settings.pca);
            self.figure.get_or_insert_with(FigurePreview::default);
        }
        if self.figure.is_none() {
            return;
        }
        let available = self.current_result(cx.shared()).is_some();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(available, egui::Button::new("Export figure (PNG)..."))
                .clicked()
            {
                cx.requests.push(AppRequest::Export {
                    tab: ViewTab::PCA,
                    id: figure::EXPORT_ID,
                });
            }
            if ui
                .button("Back to the pairs")
                .on_hover_text("Show each image beside its colouring again")
                .clicked()
            {
                self.figure = None;
            }
        });
    }

    /// Why nothing is computing under SD or SD+DINO: no model chosen yet, or Run not pressed.
    fn sd_waiting(&self, shared: Shared<'_>) -> Option<&'static str> {
        if shared.settings.pca.features == FeatureSource::Dino {
            return None;
        }
        match self.sd_wanted(shared) {
            None => Some("Choose a Stable Diffusion model in the panel"),
            Some(w) if self.sd.running() != Some(&w.choice) && self.sd.ready(&w).is_none() => {
                Some("Press Run in the panel to compute the Stable Diffusion features")
            }
            Some(_) => None,
        }
    }

    /// The feature source, and under SD the model, recipe, estimate and Run.
    fn source_controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.label("Features coloured:");
        source_row(
            ui,
            &mut cx.settings.pca.features,
            "SD-DINO: SD's features fused with this model's tokens of the chosen block, the image \
             placed the same way (sd-dino's PCA figure)",
        );
        if cx.settings.pca.features == FeatureSource::Dino {
            return;
        }
        let (settings, picker) = PickerContext::split(cx);
        self.sd.picker_ui(ui, &mut settings.pca.sd, picker);
        let wanted = self.sd_wanted(cx.shared());
        self.sd.status_ui(ui, wanted.as_ref());
        ui.separator();
    }

    /// Asks for the SD features the current key needs, then their colouring; returns whether a
    /// job was submitted.
    fn request_sd(&mut self, cx: &mut ViewContext<'_>, key: &PcaKey) -> bool {
        let Some(wanted) = self.sd_wanted(cx.shared()) else {
            return false;
        };
        if self.sd.request(cx, &wanted) {
            return true;
        }
        let Some(ready) = self.sd.ready(&wanted) else {
            return false;
        };
        let Some(inputs) = wanted
            .images
            .iter()
            .map(|&image| cx.shared().input(image))
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        let label = format!("PCA of the SD features of {} images", inputs.len());
        let job = PcaSdJob {
            key: key.clone(),
            sd: ready.sd,
            dino: ready.dino,
            inputs,
        };
        cx.worker.submit(cx.tasks, key.clone(), label, job);
        true
    }

    fn placeholder(&mut self, ui: &mut egui::Ui, cx: &ViewContext<'_>, key: Option<&PcaKey>) {
        self.panel.hover = None;
        self.panel.tiles.clear();
        centered(ui, |ui| {
            if cx.is_empty() {
                add_images_hint(ui);
            } else if let Some(k) = key.filter(|k| self.skipped.contains(k)) {
                if ui.button("Compute PCA").clicked() {
                    self.skipped.remove(k);
                }
            } else if let Some(text) = self.sd_waiting(cx.shared()) {
                ui.label(text);
            } else {
                ui.spinner();
            }
        });
    }
}

impl View for PcaTab {
    fn id(&self) -> ViewTab {
        ViewTab::PCA
    }

    fn title(&self) -> &'static str {
        "PCA"
    }

    fn controls(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        ui.heading("PCA");
        self.source_controls(ui, cx);
        let block = layer(cx.shared());
        let images = cx.gallery.entries.len();
        let config = cx.model.map(|m| &m.config);
        panel::controls(ui, &mut cx.settings.pca, config, images, block);
        if cx.settings.pca.features == FeatureSource::Dino {
            input_size_combo(ui, &mut cx.settings.input_size);
        }
        tile_size_slider(ui, &mut cx.settings.tile_size);
        ui.separator();
        self.figure_controls(ui, cx);
        ui.separator();
        panel::hover_ui(ui, self.panel.hover);
        self.computed_in(ui);
    }

    fn central(&mut self, ui: &mut egui::Ui, cx: &mut ViewContext<'_>) {
        let key = self.current_key(cx.shared());
        if let Some(k) = &key
            && let Some(r) = self.cache.get(k)
        {
            self.shown = Some((k.clone(), r.clone()));
        }
        // Keep an older result of the same model on screen while the next one computes.
        let shown = self
            .shown
            .clone()
            .filter(|(k, _)| key.as_ref().is_some_and(|c| c.generation == k.generation));
        let Some((shown_key, result)) = shown else {
            self.placeholder(ui, cx, key.as_ref());
            return;
        };
        self.heading(ui, &shown_key, key.as_ref());
        if let Some(preview) = &mut self.figure {
            let composed = preview.update(ui.ctx(), &shown_key, move || figure::compose(&result));
            if let Err(e) = composed {
                cx.notifications.error(&e);
            }
            self.panel.hover = None;
            self.panel.tiles.clear();
            egui::ScrollArea::vertical()
                .auto_shrink(false)
                .show(ui, |ui| preview.ui(ui, "DINOv2 paper figure"));
            return;
        }
        let tile = cx.settings.tile_size;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| self.panel.ui(ui, &result, shown_key.joint, tile));
    }

    /// Asks the worker for the current colouring when it is neither cached nor under way; a
    /// colouring under way for other settings is cancelled (its features stay cached).
    fn request(&mut self, cx: &mut ViewContext<'_>) {
        let Some(key) = self.current_key(cx.shared()) else {
            return;
        };
        if self.cache.contains_key(&key) || self.skipped.contains(&key) {
            return;
        }
        if cx.tasks.any::<ModelLoad>() || SdImages::busy(cx.tasks) {
            return;
        }
        if cx.tasks.cancel_others(&key) {
            return;
        }
        if matches!(key.features, PcaFeatures::Sd { .. }) {
            self.request_sd(cx, &key);
            return;
        }
        let inputs = images(cx.shared());
        let label = match inputs.as_slice() {
            [one] => format!("PCA of {}", one.name),
            many => format!("PCA of {} images", many.len()),
        };
        let job = PcaJob {
            key: key.clone(),
            inputs,
        };
        cx.worker.submit(cx.tasks, key, label, job);
    }

    fn poll(&mut self, ctx: &egui::Context, cx: &mut ViewContext<'_>) {
        if cx.settings.pca.features != FeatureSource::Dino {
            let (settings, picker) = PickerContext::split(cx);
            self.sd.poll(ctx, &mut settings.pca.sd, picker);
        }
    }

    fn take_output(&mut self, output: Output) -> Result<(), Output> {
        let output = match self.sd.take_output(output) {
            Ok(()) => return Ok(()),
            Err(other) => other,
        };
        let PcaOutput { key, result } = *output.downcast::<PcaOutput>()?;
        self.cache.insert(key, result);
        Ok(())
    }

    fn task_dropped(&mut self, key: &dyn Any) {
        if let Some(key) = key.downcast_ref::<PcaKey>() {
            self.skipped.insert(key.clone());
        } else {
            self.sd.task_dropped(key);
        }
    }

    fn model_loaded(&mut self, info: &ModelInfo, settings: &mut Settings) {
        self.cache.clear();
        self.skipped.clear();
        self.shown = None;
        self.sd.model_loaded();
        if settings.pca.layer.is_some_and(|l| l >= info.config.depth) {
            settings.pca.layer = None;
        }
    }

    fn step_block(&mut self, step: isize, cx: &mut ViewContext<'_>) {
        let depth = cx.shared().depth();
        let block = layer(cx.shared()).saturating_add_signed(step);
        cx.settings.pca.layer = Some(block.min(depth - 1));
    }

    fn exports(&self, shared: Shared<'_>) -> Vec<ExportItem> {
        let available = self.current_result(shared).is_some();
        vec![
            ExportItem {
                id: "pca",
                label: "Export PCA colourings (PNG + .npy)...",
                hover: "The PCA tab's images: <name>_pca.png and <name>_pca.npy each",
                available,
                pick: Pick::Folder {
                    title: "Export the PCA colourings (PNG + .npy per image) to a folder".into(),
                },
            },
            ExportItem {
                id: figure::EXPORT_ID,
                label: "Export paper figure (PNG)...",
                hover: "DINOv2's PCA figure: the images in a row over their colourings",
                available,
                pick: Pick::Save {
                    title: "Export the paper figure".into(),
                    file_name: "pca-figure.png".into(),
                    filter: ("PNG", &["png"]),
                },
            },
        ]
    }

    fn export(&self, id: &str, path: PathBuf, shared: Shared<'_>) -> Option<ExportJob> {
        let result = self.current_result(shared)?.clone();
        if id == figure::EXPORT_ID {
            return Some(Box::new(move || {
                export::export_figure(&path, &result).map(|()| vec![path])
            }));
        }
        Some(Box::new(move || export::export_pca(&path, &result)))
    }

    fn cached(&self) -> usize {
        self.cache.len()
    }
}
