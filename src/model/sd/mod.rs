//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader shared by the UNet, the VAE encoder and the CLIP text encoders; the
//! text side (tokenizer, text encoder, cached prompt embeddings) and the noise schedule; the model
//! folders (diffusers layout, Hugging Face cache, downloads).

pub mod catalog;
pub mod clip_text;
pub mod discover;
pub mod folder;
pub mod prompt;
pub mod schedule;
pub mod tokenizer;
pub mod weights;

pub use catalog::{SD_CATALOG, SdCatalogEntry, sd_catalog_entry};
pub use clip_text::{ClipTextConfig, ClipTextEncoder, ClipTextError};
pub use discover::{FoundSdModel, HubListing, SdModelError, find_in_hub_cache, resolve_sd_model};
pub use folder::{SdFolder, SdFolderError, SdVersion};
pub use prompt::{
    PromptCache, PromptError, PromptTokens, TextConditioning, WeightsIdentity, class_prompt,
};
pub use schedule::{NoiseSchedule, ScheduleError};
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
