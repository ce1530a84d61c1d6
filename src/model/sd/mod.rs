//! Stable Diffusion's networks for dense features (DIFT, Tang et al. 2023; SD-DINO, Zhang et al.
//! 2023): the weights reader shared by the UNet, the VAE encoder and the CLIP text encoders; the
//! text side (tokenizer, text encoder, cached prompt embeddings) and the noise schedule.

pub mod clip_text;
pub mod prompt;
pub mod schedule;
pub mod tokenizer;
pub mod weights;

pub use clip_text::{ClipTextConfig, ClipTextEncoder, ClipTextError};
pub use prompt::{
    PromptCache, PromptError, PromptTokens, TextConditioning, WeightsIdentity, class_prompt,
};
pub use schedule::{NoiseSchedule, ScheduleError};
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use weights::{SafetensorsFile, WeightsError, WeightsProblem};
