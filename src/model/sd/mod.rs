//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader shared by the UNet, the VAE encoder and the CLIP text encoders.

pub mod weights;

pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
