//! Dense Stable Diffusion features as DIFT (Tang et al., NeurIPS 2023; Tsingularity/dift) and
//! SD-DINO (Zhang et al., NeurIPS 2023; Junyi42/sd-dino) compute them.

pub mod cache;
pub mod co_pca;
pub mod descriptors;
pub mod estimate;
pub mod extract;
pub mod image;
pub mod session;
pub mod settings;
pub mod windows;

pub use co_pca::{CoPcaError, SD_DINO_PCA_DIMS, SdTaps, co_pca};
pub use descriptors::{
    DescriptorError, FeatureSource, Placed, Placement, SD_DINO_DINO_SIZE, SD_SALIENCY_SIDE,
    dino_placed, fuse_placed, fuse_set, saliency_input, sd_descriptors,
};
pub use estimate::{SdCost, estimate, matmul_gflops};
pub use extract::SdImageFeatures;
pub use image::{Letterbox, squash, to_signed_unit};
pub use session::{SdCaches, SdSession, SdSessionError};
pub use settings::{PosteriorChoice, SdFeatureSettings, SdPreset, SdSettingsError};
pub use windows::{OverlapMean, Windows};
