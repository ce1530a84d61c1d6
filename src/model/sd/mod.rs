//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader, the UNet and the VAE encoder.

pub mod attention;
pub mod layers;
pub mod load;
pub mod unet;
pub mod vae;
pub mod weights;

pub use load::{ConfigProblem, SdLoadError};
pub use unet::{LoadedUpBlock, Unet, UnetConfig, UnetInputError, UnetTap, UnetTrace};
pub use vae::{Posterior, VaeConfig, VaeEncoder};
pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
