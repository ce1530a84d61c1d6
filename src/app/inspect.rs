//! What tests and tools read and drive of the app without a pointer: each view's state through
//! the view, and the actions its buttons take.

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;

use super::App;
use super::attention::job::{AttentionResult, AttnKey};
use super::attention::panel::AttentionPanel;
use super::attention::{self, AttentionTab};
use super::correspond::fusion_job::SecondChoice;
use super::correspond::job::{CorrImage, CorrSpec};
use super::correspond::panel::CorrPanel;
use super::correspond::{self, CorrespondenceTab, PointState};
use super::coseg::CosegTab;
use super::coseg::job::{CosegKey, CosegResult};
use super::coseg::panel::CosegPanel;
use super::downloads::Downloads;
use super::gallery::Gallery;
use super::notifications::Notifications;
use super::pca::job::{PcaKey, PcaResult};
use super::pca::panel::PcaPanel;
use super::pca::{self, PcaTab};
use super::state::{Settings, ViewTab};
use super::tasks::ImageId;
use super::train::TrainingTab;
use super::view::View;
use super::worker::ModelInfo;
use crate::analysis::attention::Query;
use crate::analysis::correspond::BestBuddies;

impl App {
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    pub fn gallery(&self) -> &Gallery {
        &self.gallery
    }

    pub fn notifications(&self) -> &Notifications {
        &self.notifications
    }

    pub fn model(&self) -> Option<&ModelInfo> {
        self.model.as_ref()
    }

    pub fn downloads(&self) -> &Downloads {
        &self.downloads
    }

    /// The Hugging Face cache SD models are listed from and downloaded into, and the hub they come
    /// from (as `HF_HUB_CACHE` and `HF_ENDPOINT` set them, but for this app alone).
    pub fn set_sd_hub(&mut self, cache: Option<PathBuf>, endpoint: String) {
        self.sd_hub.set(cache, endpoint);
    }

    /// The view shown in the central area.
    pub fn tab(&self) -> ViewTab {
        self.settings.tab.clone()
    }

    pub fn set_tab(&mut self, tab: ViewTab) {
        self.settings.tab = tab;
    }

    /// Selects a gallery image, as a click on its thumbnail does, and scrolls the strip to it.
    pub fn select_image(&mut self, id: ImageId) {
        self.gallery.select(id);
    }

    /// No model load, analysis, image decoding, download or export under way.
    /// Presentation mode (F11) is on.
    pub fn is_presenting(&self) -> bool {
        self.presentation.is_some()
    }

    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    /// What each task under way reports doing (the status bar's text).
    pub fn task_labels(&self) -> Vec<String> {
        self.tasks.labels().map(str::to_string).collect()
    }

    /// Smoothed UI build time and frame interval of the last frames, in milliseconds (the debug
    /// overlay's numbers).
    pub fn frame_times(&self) -> (f32, f32) {
        (self.frame.ui_ms, self.frame.frame_ms)
    }

    /// UI build time of the last frame alone, in milliseconds.
    pub fn last_ui_ms(&self) -> f32 {
        self.frame.last_ui_ms
    }

    /// Adds a view after the built-in ones (its tab, its digit key, its controls).
    pub fn add_view(&mut self, view: Box<dyn View>) {
        self.views.push(view);
    }

    /// The view of type `T`.
    pub fn view_of<T: View>(&self) -> Option<&T> {
        self.views.get::<T>()
    }

    pub fn view_mut_of<T: View>(&mut self) -> Option<&mut T> {
        self.views.get_mut::<T>()
    }

    /// A built-in view ([`super::views::all`] registers every one, so it is there).
    fn builtin<T: View>(&self) -> &T {
        self.views
            .get::<T>()
            .expect("views::all registers every built-in view")
    }

    fn builtin_mut<T: View>(&mut self) -> &mut T {
        self.views
            .get_mut::<T>()
            .expect("views::all registers every built-in view")
    }

    fn attention(&self) -> &AttentionTab {
        self.builtin()
    }

    fn pca(&self) -> &PcaTab {
        self.builtin()
    }

    fn coseg(&self) -> &CosegTab {
        self.builtin()
    }

    fn corr(&self) -> &CorrespondenceTab {
        self.builtin()
    }

    // ----- attention -----

    /// The attention view's drawing of the last frame (tile rectangles, hover).
    pub fn view(&self) -> &AttentionPanel {
        &self.attention().panel
    }

    pub fn query(&self) -> Query {
        self.attention().query()
    }

    pub fn set_query(&mut self, query: Query) {
        self.builtin_mut::<AttentionTab>().set_query(query);
    }

    /// The block the attention view shows: the chosen one, or the last block of the model.
    pub fn layer(&self) -> usize {
        attention::layer(self.shared())
    }

    pub fn set_layer(&mut self, layer: usize) {
        let depth = self.shared().depth();
        attention::set_layer(&mut self.settings, depth, layer);
    }

    pub fn current_key(&self) -> Option<AttnKey> {
        self.attention().current_key(self.shared())
    }

    pub fn current_result(&self) -> Option<&Arc<AttentionResult>> {
        self.attention().current_result(self.shared())
    }

    /// The attention view shows its paper figure (its preset was chosen).
    pub fn shows_attention_figure(&self) -> bool {
        self.attention().shows_figure()
    }

    /// The heads of the attention view's paper figure.
    pub fn attention_figure_heads(&self) -> Vec<usize> {
        let heads = self.model().map_or(0, |m| m.config.heads);
        self.attention().figure_heads(heads)
    }

    /// The attention view's paper figure of the current settings, once composed.
    pub fn attention_figure(&self) -> Option<&Arc<RgbImage>> {
        self.attention().figure_image(self.shared())
    }

    /// Writes the attention view's paper figure to `path`, off the UI thread (as its button does
    /// once the dialog has picked the file).
    pub fn export_attention_figure_to(&mut self, path: PathBuf) {
        self.export_to(&ViewTab::ATTENTION, attention::figure::EXPORT_ID, path);
    }

    // ----- PCA -----

    pub fn pca_layer(&self) -> usize {
        pca::layer(self.shared())
    }

    pub fn current_pca_key(&self) -> Option<PcaKey> {
        self.pca().current_key(self.shared())
    }

    pub fn current_pca_result(&self) -> Option<&Arc<PcaResult>> {
        self.pca().current_result(self.shared())
    }

    pub fn pca_view(&self) -> &PcaPanel {
        &self.pca().panel
    }

    /// The PCA view shows its paper figure (its preset was chosen).
    pub fn shows_pca_figure(&self) -> bool {
        self.pca().shows_figure()
    }

    /// The PCA view's paper figure of the current settings, once composed.
    pub fn pca_figure(&self) -> Option<&Arc<RgbImage>> {
        self.pca().figure_image(self.shared())
    }

    /// Writes the PCA view's paper figure to `path`, off the UI thread.
    pub fn export_pca_figure_to(&mut self, path: PathBuf) {
        self.export_to(&ViewTab::PCA, pca::figure::EXPORT_ID, path);
    }

    // ----- co-segmentation -----

    pub fn current_coseg_key(&self) -> Option<CosegKey> {
        self.coseg().current_key(self.shared())
    }

    pub fn current_coseg_result(&self) -> Option<&Arc<CosegResult>> {
        self.coseg().current_result(self.shared())
    }

    pub fn coseg_view(&self) -> &CosegPanel {
        &self.coseg().panel
    }

    pub fn set_coseg_included(&mut self, image: ImageId, included: bool) {
        self.builtin_mut::<CosegTab>().set_included(image, included);
    }

    /// Starts the co-segmentation of the checked images (the "Run" button).
    pub fn run_coseg(&mut self) {
        self.with_view::<CosegTab>(|coseg, cx| coseg.run(cx));
    }

    /// Writes the co-segmentation view shown (images, labels, legend) into `dir`, off the UI
    /// thread.
    pub fn export_coseg_to(&mut self, dir: PathBuf) {
        self.export_to(&ViewTab::COSEG, "coseg", dir);
    }

    // ----- correspondence -----

    pub fn corr_layer(&self) -> usize {
        correspond::layer(self.shared())
    }

    pub fn corr_spec(&self) -> Option<CorrSpec> {
        self.corr().spec(self.shared())
    }

    pub fn corr_source(&self) -> Option<ImageId> {
        CorrespondenceTab::source(self.shared())
    }

    pub fn corr_targets(&self) -> Vec<ImageId> {
        self.corr().targets(self.shared())
    }

    pub fn set_corr_target(&mut self, target: ImageId) {
        self.builtin_mut::<CorrespondenceTab>().set_target(target);
    }

    pub fn corr_point(&self) -> Option<&PointState> {
        self.corr().point()
    }

    /// Puts the source point at original-image pixel-index `(x, y)` (as a click does).
    pub fn set_corr_point(&mut self, point: (f64, f64)) {
        let (shared, views) = self.shared_and_views();
        if let Some(c) = views.get_mut::<CorrespondenceTab>() {
            c.set_point(shared, point);
        }
    }

    /// Descriptors of an image under the current spec, once computed.
    pub fn corr_image(&self, id: ImageId) -> Option<&Arc<CorrImage>> {
        let corr = self.corr();
        corr.image(id, corr.spec(self.shared())?)
    }

    pub fn corr_view(&self) -> &CorrPanel {
        &self.corr().panel
    }

    pub fn corr_queries(&self) -> u64 {
        self.corr().queries()
    }

    pub fn corr_query_ms(&self) -> Vec<f32> {
        self.corr().query_ms()
    }

    pub fn corr_query_current(&self) -> bool {
        self.corr().query_current(self.shared())
    }

    pub fn corr_matching(&self, spec: CorrSpec) -> Option<(Arc<CorrImage>, Vec<Arc<CorrImage>>)> {
        self.corr().matching(self.shared(), spec)
    }

    pub fn set_corr_fusion(&mut self, second: Option<SecondChoice>) {
        self.builtin_mut::<CorrespondenceTab>().set_fusion(second);
    }

    /// Presses Run for the chosen SD model and recipe (SD or SD+DINO sources).
    pub fn run_corr_sd(&mut self) {
        let (shared, views) = self.shared_and_views();
        if let Some(c) = views.get_mut::<CorrespondenceTab>() {
            c.run_sd(shared);
        }
    }

    /// Where the correspondence view's SD session caches features (`None`: memory only).
    pub fn set_corr_sd_cache(&mut self, dir: Option<PathBuf>) {
        self.builtin_mut::<CorrespondenceTab>()
            .sd
            .set_cache_dir(dir);
    }

    /// Images whose SD features the networks computed so far (cache hits not counted).
    pub fn corr_sd_computed(&self) -> u64 {
        self.corr().sd.computed()
    }

    /// Presses Run in the PCA view for the chosen SD model and recipe (SD or SD+DINO).
    pub fn run_pca_sd(&mut self) {
        let (shared, views) = self.shared_and_views();
        if let Some(p) = views.get_mut::<PcaTab>() {
            p.run_sd(shared);
        }
    }

    /// Where the PCA view's SD session caches features (`None`: memory only).
    pub fn set_pca_sd_cache(&mut self, dir: Option<PathBuf>) {
        self.builtin_mut::<PcaTab>().sd.set_cache_dir(dir);
    }

    /// Images whose SD features the PCA view had the networks compute (cache hits not counted).
    pub fn pca_sd_computed(&self) -> u64 {
        self.pca().sd.computed()
    }

    /// Asks for best-buddy pairs between the source and each target ("Auto").
    pub fn find_best_buddies(&mut self) {
        let (shared, views) = self.shared_and_views();
        if let Some(c) = views.get_mut::<CorrespondenceTab>() {
            c.find_best_buddies(shared);
        }
    }

    pub fn current_buddies(&self) -> Vec<(ImageId, Arc<BestBuddies>)> {
        self.corr().current_buddies(self.shared())
    }

    /// Writes the correspondence view shown (image, report, heatmaps) into `dir`, off the UI
    /// thread.
    pub fn export_correspondence_to(&mut self, dir: PathBuf) {
        self.export_to(&ViewTab::CORRESPONDENCE, "correspondence", dir);
    }

    // ----- training -----

    pub fn training(&self) -> &TrainingTab {
        self.builtin()
    }

    pub fn training_mut(&mut self) -> &mut TrainingTab {
        self.builtin_mut()
    }
}
