//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader, the UNet and the VAE encoder; the text side (tokenizer, text
//! encoder, cached prompt embeddings) and the noise schedule; the model folders (diffusers layout,
//! Hugging Face cache, downloads).

pub mod attention;
pub mod catalog;
pub mod clip_text;
pub mod discover;
pub mod folder;
pub mod group_norm;
pub mod layers;
pub mod load;
pub mod prompt;
pub mod schedule;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use catalog::{SD_CATALOG, SdCatalogEntry, SdDownloadError, sd_catalog_entry};
pub use clip_text::{ClipTextConfig, ClipTextEncoder, ClipTextError};
pub use discover::{
    FoundSdModel, HubListing, SdModelError, find_in_hub_cache, resolve_sd_model, sd_cache_dir,
};
pub use folder::{SdFolder, SdFolderError, SdVersion};
pub use load::{ConfigProblem, SdLoadError};
pub use prompt::{
    PromptCache, PromptError, PromptTokens, TextConditioning, WeightsIdentity, class_prompt,
};
pub use schedule::{NoiseSchedule, ScheduleError};
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use unet::{LoadedUpBlock, Unet, UnetConfig, UnetInputError, UnetTap, UnetTrace};
pub use vae::{Posterior, VaeConfig, VaeEncoder};
pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
