//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader shared by the UNet, the VAE encoder and the CLIP text encoders, and
//! the model folders (diffusers layout, Hugging Face cache, downloads).

pub mod catalog;
pub mod discover;
pub mod folder;
pub mod weights;

pub use catalog::{SD_CATALOG, SdCatalogEntry, sd_catalog_entry};
pub use discover::{FoundSdModel, HubListing, SdModelError, find_in_hub_cache, resolve_sd_model};
pub use folder::{SdFolder, SdFolderError, SdVersion};
pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
