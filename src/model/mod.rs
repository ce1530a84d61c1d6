//! The ViT backbones: configurations, checkpoints, preprocessing and compute devices.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod download;
pub mod host;
pub mod input_norm;
pub mod kernels;
pub mod load;
pub mod pos_embed;
pub mod preprocess;
pub mod pth_writer;
pub mod raw_tensor;
pub mod reduce;
pub mod save;
pub mod sd;
pub mod vit;

pub use backend::{ComputeDevice, DeviceChoice};
pub use checkpoint::{CheckpointError, CheckpointProblem};
pub use config::{Arch, Family, VitConfig};
pub use input_norm::InputNorm;
pub use load::{LoadOptions, LoadedModel, load_model};
pub use preprocess::{PreparedImage, Resize};
pub use vit::{Facet, Grid, LayerOutputs, Vit};
