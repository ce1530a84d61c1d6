//! Settings kept between sessions (a JSON file written whole or not at all) and the input-size
//! choice.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::colormap::Colormap;
use crate::analysis::sd_features::settings::MAX_SIZE;
use crate::analysis::sd_features::{FeatureSource, SdFeatureSettings, SdPreset};
use crate::model::{Facet, Resize};

/// Key under which earlier versions stored the settings (JSON) in eframe's storage; read when no
/// settings file exists yet.
pub const STORAGE_KEY: &str = "dinoscope.settings";

/// The settings file in eframe's storage folder for the app. eframe rewrites its own file in place,
/// so a crash while it saves can lose everything in it; the settings go through `atomic_file`.
pub fn settings_file() -> Option<PathBuf> {
    eframe::storage_dir("dinoscope").map(|dir| dir.join("settings.json"))
}

/// How images are resized before the model sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InputSize {
    /// Keep the size; crop to a multiple of the patch size.
    #[default]
    Original,
    /// Shorter side scaled to this many pixels.
    ShortSide(u32),
}

impl InputSize {
    pub const CHOICES: [InputSize; 5] = [
        InputSize::Original,
        InputSize::ShortSide(224),
        InputSize::ShortSide(320),
        InputSize::ShortSide(480),
        InputSize::ShortSide(640),
    ];

    pub fn resize(self) -> Resize {
        match self {
            InputSize::Original => Resize::None,
            InputSize::ShortSide(s) => Resize::ShortSide(s),
        }
    }

    pub fn label(self) -> String {
        match self {
            InputSize::Original => "original size".into(),
            InputSize::ShortSide(s) => format!("short side {s} px"),
        }
    }
}

/// Which view a tab shows: a stable id, stored in the settings (the same strings as the variant
/// names of earlier versions, so older settings still open their tab).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewTab(Cow<'static, str>);

impl ViewTab {
    pub const ATTENTION: ViewTab = ViewTab::new("Attention");
    pub const PCA: ViewTab = ViewTab::new("Pca");
    pub const COSEG: ViewTab = ViewTab::new("Coseg");
    pub const CORRESPONDENCE: ViewTab = ViewTab::new("Correspondence");
    pub const TRAINING: ViewTab = ViewTab::new("Training");
    pub const EXPLORER: ViewTab = ViewTab::new("Explorer");
    pub const NORMS: ViewTab = ViewTab::new("Norms");
    pub const COMPARE: ViewTab = ViewTab::new("Compare");

    pub const fn new(id: &'static str) -> ViewTab {
        ViewTab(Cow::Borrowed(id))
    }
}

impl Default for ViewTab {
    fn default() -> Self {
        ViewTab::ATTENTION
    }
}

/// Settings of the PCA view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PcaSettings {
    /// Every gallery image instead of the selected one.
    pub all_images: bool,
    /// One PCA over all images, so the same part gets the same colour everywhere.
    pub joint: bool,
    /// Block whose features are used; `None` = the last block.
    pub layer: Option<usize>,
    pub facet: Facet,
    /// Patch-embedding stride in pixels; `None` = the patch size (no overlap).
    pub stride: Option<usize>,
    /// Colour only the foreground (first component above the threshold).
    pub foreground: bool,
    /// Threshold on the min-max scaled first component, in [0, 1].
    pub threshold: f32,
    /// The foreground is the patches with a positive first-component score (the DINOv2 paper's
    /// rule) instead of those above the threshold.
    pub positive_score: bool,
    /// DINO, Stable Diffusion or SD-DINO's fusion of both.
    pub features: FeatureSource,
    /// The SD model and recipe of the SD sources.
    pub sd: SdSettings,
}

impl Default for PcaSettings {
    fn default() -> Self {
        PcaSettings {
            all_images: true,
            joint: true,
            layer: None,
            facet: Facet::Key,
            stride: None,
            foreground: false,
            threshold: 0.5,
            positive_score: false,
            features: FeatureSource::Dino,
            sd: SdSettings::default(),
        }
    }
}

/// Settings of the token-norms view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormSettings {
    /// Block whose output tokens are measured; `None` = the last block.
    pub block: Option<usize>,
    /// Norms above this are outliers; `None` = the suggested threshold of the image's norms.
    pub threshold: Option<f32>,
    /// Head whose register attention is shown; `None` = the mean over heads.
    pub head: Option<usize>,
    /// A second checkpoint to compare with (the same model with or without registers).
    pub second: Option<PathBuf>,
    /// Show the second checkpoint's norms instead of the loaded model's.
    pub show_second: bool,
}

/// What the side-by-side view shows of each model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareShow {
    /// The attention of \[CLS\] in each head (the DINO paper's supervised-vs-DINO figure).
    #[default]
    Attention,
    /// The first three principal components of the block's output tokens as RGB.
    Pca,
}

impl CompareShow {
    pub fn label(self) -> &'static str {
        match self {
            CompareShow::Attention => "attention",
            CompareShow::Pca => "PCA colouring",
        }
    }
}

/// Settings of the side-by-side view: the loaded model on the left, a second checkpoint on the
/// right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareSettings {
    /// The checkpoint shown next to the loaded model.
    pub second: Option<PathBuf>,
    pub show: CompareShow,
    /// Block of each side (loaded, second); `None` = its last block.
    pub blocks: [Option<usize>; 2],
    /// Head of each side; `None` = the mean over heads.
    pub heads: [Option<usize>; 2],
    /// Move both sides' block and head together where the two models have the same shape.
    pub linked: bool,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            second: None,
            show: CompareShow::Attention,
            blocks: [None; 2],
            heads: [None; 2],
            linked: true,
        }
    }
}

/// Settings of the correspondence view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorrSettings {
    /// Match against every other gallery image instead of one target.
    pub all_targets: bool,
    /// Block whose features are matched; `None` = three before the last (block 9 of 12, as
    /// dino-vit-features' correspondences).
    pub layer: Option<usize>,
    pub facet: Facet,
    /// Patch-embedding stride in pixels; `None` = the patch size.
    pub stride: Option<usize>,
    /// Log-binning descriptor (17 bins of neighbourhood context).
    pub log_bin: bool,
    /// Best-buddy pairs kept by "Auto".
    pub num_pairs: usize,
    /// Saliency above this is foreground for best buddies (dino-vit-features: 0.05).
    pub saliency_threshold: f32,
    /// Weight of a fused second source (SD's under SD+DINO); the model's descriptors get
    /// `1 - weight`.
    pub fusion_weight: f32,
    /// DINO, Stable Diffusion or SD-DINO's fusion of both.
    pub features: FeatureSource,
    /// The SD model and recipe of the SD sources.
    pub sd: SdSettings,
}

impl Default for CorrSettings {
    fn default() -> Self {
        CorrSettings {
            all_targets: false,
            layer: None,
            facet: Facet::Key,
            stride: None,
            log_bin: false,
            num_pairs: 10,
            saliency_threshold: 0.05,
            fusion_weight: 0.5,
            features: FeatureSource::Dino,
            sd: SdSettings::default(),
        }
    }
}

/// The SD model and recipe a view uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SdSettings {
    /// A diffusers SD 1.x / 2.x folder (a Hugging Face cache snapshot or any folder).
    pub folder: Option<PathBuf>,
    pub preset: SdPreset,
    /// Side of the square SD input (a multiple of 64 up to `MAX_SIZE`); `None` = the preset's
    /// (SD-DINO 960, DIFT 768).
    pub size: Option<u32>,
}

impl Default for SdSettings {
    fn default() -> Self {
        SdSettings {
            folder: None,
            preset: SdPreset::SdDino,
            size: None,
        }
    }
}

impl SdSettings {
    /// Drops an input size SD cannot take (not a multiple of 64, or above `MAX_SIZE`).
    fn sanitize(&mut self) {
        if self
            .size
            .is_some_and(|s| s == 0 || !s.is_multiple_of(64) || s > MAX_SIZE)
        {
            self.size = None;
        }
    }

    /// The model and recipe, once a folder is chosen.
    pub fn choice(&self) -> Option<SdChoice> {
        let folder = self.folder.clone()?;
        let size = self
            .size
            .unwrap_or_else(|| SdFeatureSettings::preset(self.preset).size);
        Some(SdChoice {
            folder,
            preset: self.preset,
            size,
        })
    }
}

/// One SD model under one recipe: what an image's SD features depend on besides its pixels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SdChoice {
    pub folder: PathBuf,
    pub preset: SdPreset,
    pub size: u32,
}

impl SdChoice {
    pub fn settings(&self) -> SdFeatureSettings {
        SdFeatureSettings {
            size: self.size,
            ..SdFeatureSettings::preset(self.preset)
        }
    }

    /// The recipe, e.g. "SD-DINO, 960 px".
    pub fn recipe(&self) -> String {
        format!("{}, {} px", preset_name(self.preset), self.size)
    }
}

pub fn preset_name(preset: SdPreset) -> &'static str {
    match preset {
        SdPreset::Dift => "DIFT",
        SdPreset::SdDino => "SD-DINO",
    }
}

/// Co-segmentation (common foreground) or part co-segmentation (common parts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CosegMode {
    #[default]
    Foreground,
    Parts,
}

/// What the co-segmentation view paints over each image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CosegShow {
    /// Clusters or parts in colour.
    #[default]
    Labels,
    /// The common foreground cut out on a checkerboard.
    Foreground,
}

/// Settings of the co-segmentation view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CosegSettings {
    pub mode: CosegMode,
    /// Parts asked for in part co-segmentation.
    pub num_parts: usize,
    /// Patch-embedding stride in pixels; `None` = half the patch size when it is even (the
    /// reference's 4 for 8-pixel patches), else the patch size.
    pub stride: Option<usize>,
    /// An image votes for a cluster whose mean saliency is above this (reference: 0.065).
    pub saliency_threshold: f32,
    /// Share of the images (percent) a cluster needs to be foreground (reference: 75).
    pub votes_percentage: u32,
    pub show: CosegShow,
    /// The co-segmentation's own input size (the reference's `load_size` 224 by default: at the
    /// images' original size it takes many times longer).
    pub input_size: InputSize,
}

impl Default for CosegSettings {
    fn default() -> Self {
        CosegSettings {
            mode: CosegMode::Foreground,
            num_parts: 4,
            stride: None,
            saliency_threshold: 0.065,
            votes_percentage: 75,
            show: CosegShow::Labels,
            input_size: InputSize::ShortSide(224),
        }
    }
}

/// The user's view settings and last session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Block whose attention is shown; `None` = the last block of the model.
    pub layer: Option<usize>,
    /// Share of attention mass kept by the mask outlines (DINO paper: 0.6).
    pub threshold: f32,
    pub show_masks: bool,
    pub colormap: Colormap,
    /// Opacity of the attention colours over the image.
    pub opacity: f32,
    /// Width of one head tile, in points.
    pub tile_size: f32,
    pub input_size: InputSize,
    /// Images of the last session that came from files (bundled samples are not listed).
    pub image_paths: Vec<PathBuf>,
    /// Checkpoint of the last session, if one was opened.
    pub checkpoint: Option<PathBuf>,
    pub show_model_panel: bool,
    pub debug_overlay: bool,
    /// The view shown in the central area.
    pub tab: ViewTab,
    pub pca: PcaSettings,
    pub correspondence: CorrSettings,
    pub coseg: CosegSettings,
    pub norms: NormSettings,
    pub compare: CompareSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            layer: None,
            threshold: 0.6,
            show_masks: true,
            colormap: Colormap::Viridis,
            opacity: 0.6,
            tile_size: 220.0,
            input_size: InputSize::Original,
            image_paths: Vec::new(),
            checkpoint: None,
            show_model_panel: true,
            debug_overlay: false,
            tab: ViewTab::ATTENTION,
            pca: PcaSettings::default(),
            correspondence: CorrSettings::default(),
            coseg: CosegSettings::default(),
            norms: NormSettings::default(),
            compare: CompareSettings::default(),
        }
    }
}

impl Settings {
    /// Reads the settings file, else (written by an earlier version) eframe's storage; anything
    /// unreadable falls back to the defaults.
    pub fn load(file: Option<&Path>, storage: Option<&dyn eframe::Storage>) -> Settings {
        let from_file = file.and_then(|path| std::fs::read_to_string(path).ok());
        from_file
            .or_else(|| storage.and_then(|s| s.get_string(STORAGE_KEY)))
            .and_then(|json| serde_json::from_str::<Settings>(&json).ok())
            .map(Settings::sanitized)
            .unwrap_or_default()
    }

    /// Writes the settings file, whole or not at all; the previous file stays if writing fails.
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::atomic_file::write(file, json.as_bytes())
    }

    /// Clamps values that a hand-edited or old settings file could carry.
    pub fn sanitized(mut self) -> Settings {
        let clamp = |v: f32, lo: f32, hi: f32, default: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                default
            }
        };
        self.threshold = clamp(self.threshold, 0.0, 1.0, 0.6);
        self.opacity = clamp(self.opacity, 0.0, 1.0, 0.6);
        self.tile_size = clamp(self.tile_size, 80.0, 800.0, 220.0);
        self.pca.threshold = clamp(self.pca.threshold, 0.0, 1.0, 0.5);
        if self.pca.stride == Some(0) {
            self.pca.stride = None;
        }
        self.pca.sd.sanitize();
        let corr = &mut self.correspondence;
        corr.saliency_threshold = clamp(corr.saliency_threshold, 0.0, 1.0, 0.05);
        corr.num_pairs = corr.num_pairs.clamp(1, 200);
        if corr.stride == Some(0) {
            corr.stride = None;
        }
        corr.sd.sanitize();
        let coseg = &mut self.coseg;
        coseg.saliency_threshold = clamp(coseg.saliency_threshold, 0.0, 1.0, 0.065);
        coseg.votes_percentage = coseg.votes_percentage.clamp(1, 100);
        coseg.num_parts = coseg.num_parts.clamp(1, 20);
        if coseg.stride == Some(0) {
            coseg.stride = None;
        }
        let norms = &mut self.norms;
        norms.threshold = norms.threshold.filter(|t| t.is_finite() && *t >= 0.0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_sanitize() {
        let s = Settings {
            layer: Some(2),
            threshold: 0.3,
            colormap: Colormap::Magma,
            image_paths: vec![PathBuf::from("/tmp/a.png")],
            tab: ViewTab::PCA,
            pca: PcaSettings {
                joint: false,
                facet: Facet::Token,
                stride: Some(4),
                ..PcaSettings::default()
            },
            ..Settings::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        let back: Settings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let partial: Settings = serde_json::from_str(r#"{"threshold": 7.0}"#).unwrap();
        assert_eq!(partial.tab, ViewTab::ATTENTION);
        let older: Settings = serde_json::from_str(r#"{"tab": "Correspondence"}"#).unwrap();
        assert_eq!(older.tab, ViewTab::CORRESPONDENCE);
        assert_eq!(partial.sanitized().threshold, 1.0);
        let bad: Settings =
            serde_json::from_str(r#"{"pca": {"threshold": -3.0, "stride": 0}}"#).unwrap();
        let bad = bad.sanitized();
        assert_eq!((bad.pca.threshold, bad.pca.stride), (0.0, None));
        assert!(bad.pca.joint, "missing fields take their defaults");
        let sd: Settings = serde_json::from_str(
            r#"{"correspondence": {"features": "Fused", "sd": {"folder": "/m", "size": 100}}}"#,
        )
        .unwrap();
        let sd = sd.sanitized().correspondence;
        assert_eq!(sd.features, FeatureSource::Fused);
        let choice = sd.sd.choice().unwrap();
        assert_eq!(
            (choice.preset, choice.size),
            (SdPreset::SdDino, 960),
            "a bad size falls back"
        );
    }
}
