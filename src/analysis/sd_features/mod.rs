//! Dense Stable Diffusion features as DIFT (Tang et al., NeurIPS 2023; Tsingularity/dift) and
//! SD-DINO (Zhang et al., NeurIPS 2023; Junyi42/sd-dino) compute them.

pub mod co_pca;
pub mod extract;
pub mod image;
pub mod settings;
pub mod windows;

pub use co_pca::{CoPcaError, SD_DINO_PCA_DIMS, SdTaps, co_pca};
pub use image::{Letterbox, squash, to_signed_unit};
pub use settings::{PosteriorChoice, SdFeatureSettings, SdPreset, SdSettingsError};
pub use windows::{OverlapMean, Windows};
