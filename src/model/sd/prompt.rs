//! Prompt embeddings (the text encoder's `last_hidden_state`, `[1, 77, D]`), computed once per
//! (text-encoder weights, prompt) and kept in memory and, optionally, in small files on disk:
//! 231 KiB for SD 1.x, 308 KiB for SD 2.x, against a 0.5-1.4 GB text encoder that then need not
//! be loaded at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use burn::tensor::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::clip_text::{ClipTextConfig, ClipTextEncoder, ClipTextError, WEIGHT_FILES};
use super::folder::{SdFolder, SdVersion};
use super::tokenizer::{ClipTokenizer, SD1_PAD, SD2_PAD, TokenizerError, empty_prompt_ids};
use super::weights::SafetensorsFile;
use crate::model::host::{HostReadError, raw_tensor};
use crate::model::save::serialize_safetensors;

/// Bumped when the cached files' meaning changes, so old files are never read as new ones.
const CACHE_FORMAT: &str = "dinoscope-sd-prompt-embedding-v1";
const TENSOR_NAME: &str = "last_hidden_state";

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: cannot read the file's size and time: {source}", path.display())]
    Identity {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Encoder(#[from] ClipTextError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt `{prompt}` needs the tokenizer (tokenizer/vocab.json and merges.txt)")]
    NoTokenizer { prompt: String },
    #[error("prompt embedding: {0}")]
    Host(#[from] HostReadError),
    #[error("{}: no text encoder, which prompt embeddings need", dir.display())]
    NoTextEncoder { dir: PathBuf },
}

/// SD-DINO's / DIFT's class prompt, `"a photo of a {category}"`.
pub fn class_prompt(category: &str) -> String {
    format!("a photo of a {}", category.trim())
}

/// Which weights a cached embedding came from: a file's path, size and modification time, so a
/// replaced file is never served the old file's embeddings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightsIdentity {
    path: PathBuf,
    size: u64,
    modified_ns: u128,
}

impl WeightsIdentity {
    pub fn of(path: &Path) -> Result<Self, PromptError> {
        let error = |source| PromptError::Identity {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(error)?;
        let modified_ns = meta
            .modified()
            .map_err(error)?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(WeightsIdentity {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            size: meta.len(),
            modified_ns,
        })
    }

    /// Feeds the identity to a cache key's hash.
    pub fn hash_into(&self, hash: &mut Sha256) {
        hash.update(self.path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(self.size.to_le_bytes());
        hash.update(self.modified_ns.to_le_bytes());
    }

    /// The cache key of `prompt` tokenised as `ids` (which also carry the tokenizer's pad token).
    fn key(&self, prompt: &str, ids: &[u32]) -> String {
        let mut hash = Sha256::new();
        hash.update(CACHE_FORMAT.as_bytes());
        self.hash_into(&mut hash);
        for id in ids {
            hash.update(id.to_le_bytes());
        }
        hash.update(prompt.as_bytes());
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Embeddings by key, in memory and optionally as `<key>.safetensors` files in a folder.
#[derive(Debug, Default)]
pub struct PromptCache {
    dir: Option<PathBuf>,
    memory: HashMap<String, Tensor<3>>,
    disk_problem: Option<String>,
}

impl PromptCache {
    pub fn in_memory() -> Self {
        PromptCache::default()
    }

    /// A cache that also keeps its embeddings in `dir` (created when first written).
    pub fn on_disk(dir: &Path) -> Self {
        PromptCache {
            dir: Some(dir.to_path_buf()),
            ..PromptCache::default()
        }
    }

    /// The last failure to write the disk cache; the embedding itself was still returned.
    pub fn disk_problem(&self) -> Option<&str> {
        self.disk_problem.as_deref()
    }

    fn file(&self, key: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{key}.safetensors")))
    }

    /// The embedding stored under `key` if memory or disk has one of shape `shape`; a damaged or
    /// mismatched file counts as absent (and is rewritten).
    fn lookup(&mut self, key: &str, shape: [usize; 3], device: &Device) -> Option<Tensor<3>> {
        if let Some(tensor) = self.memory.get(key) {
            return Some(tensor.clone());
        }
        let path = self.file(key)?;
        let tensor = SafetensorsFile::open(&path)
            .ok()?
            .tensor(TENSOR_NAME, shape, device)
            .ok()?;
        self.memory.insert(key.to_string(), tensor.clone());
        Some(tensor)
    }

    fn store(&mut self, key: &str, prompt: &str, tensor: &Tensor<3>) -> Result<(), PromptError> {
        self.memory.insert(key.to_string(), tensor.clone());
        let Some(path) = self.file(key) else {
            return Ok(());
        };
        let raw = raw_tensor(tensor.clone())?;
        let metadata = HashMap::from([("prompt".to_string(), prompt.to_string())]);
        let written = serialize_safetensors(&[(TENSOR_NAME.to_string(), raw)], metadata)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)
                    .and_then(|()| crate::atomic_file::write(&path, &bytes))
                    .map_err(|e| e.to_string())
            });
        self.disk_problem = written
            .err()
            .map(|e| format!("{}: cannot write the prompt cache: {e}", path.display()));
        Ok(())
    }
}

/// How prompts become ids: a full tokenizer, or (no `tokenizer/` vocabulary) the empty prompt only.
#[derive(Clone, Debug)]
pub enum PromptTokens {
    Tokenizer(ClipTokenizer),
    EmptyOnly { pad: u32 },
}

impl PromptTokens {
    fn ids(&self, prompt: &str) -> Result<Vec<u32>, PromptError> {
        match self {
            PromptTokens::Tokenizer(tokenizer) => Ok(tokenizer.encode(prompt)?),
            PromptTokens::EmptyOnly { pad } if prompt.is_empty() => Ok(empty_prompt_ids(*pad)),
            PromptTokens::EmptyOnly { .. } => Err(PromptError::NoTokenizer {
                prompt: prompt.into(),
            }),
        }
    }
}

/// A folder's text side: embeddings on request, with the text encoder loaded only when an
/// embedding is in neither cache, and droppable afterwards.
#[derive(Debug)]
pub struct TextConditioning {
    encoder_dir: PathBuf,
    config: ClipTextConfig,
    identity: WeightsIdentity,
    tokens: PromptTokens,
    encoder: Option<ClipTextEncoder>,
    cache: PromptCache,
    device: Device,
    encoder_runs: usize,
}

impl TextConditioning {
    /// Reads `text_encoder/config.json` and the weights file's identity; the weights themselves
    /// are read on the first embedding that is not cached.
    pub fn new(
        encoder_dir: &Path,
        tokens: PromptTokens,
        cache: PromptCache,
        device: &Device,
    ) -> Result<Self, PromptError> {
        let config = ClipTextConfig::read(&encoder_dir.join("config.json"))?;
        let weights = WEIGHT_FILES
            .iter()
            .map(|name| encoder_dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ClipTextError::NoWeights {
                dir: encoder_dir.to_path_buf(),
            })?;
        Ok(TextConditioning {
            encoder_dir: encoder_dir.to_path_buf(),
            config,
            identity: WeightsIdentity::of(&weights)?,
            tokens,
            encoder: None,
            cache,
            device: device.clone(),
            encoder_runs: 0,
        })
    }

    /// The text side of an SD folder: its tokenizer when it has one, otherwise the empty prompt
    /// only, padded as the folder's SD version pads.
    pub fn for_folder(
        folder: &SdFolder,
        cache: PromptCache,
        device: &Device,
    ) -> Result<Self, PromptError> {
        let encoder = folder
            .text_encoder
            .as_ref()
            .ok_or_else(|| PromptError::NoTextEncoder {
                dir: folder.root.join("text_encoder"),
            })?;
        let tokens = match &folder.tokenizer {
            Some(files) => {
                let dir = files.vocab.parent().unwrap_or(Path::new("."));
                PromptTokens::Tokenizer(ClipTokenizer::load(dir)?)
            }
            None => PromptTokens::EmptyOnly {
                pad: match folder.version {
                    SdVersion::V1 => SD1_PAD,
                    SdVersion::V2Base | SdVersion::V2V768 => SD2_PAD,
                },
            },
        };
        let dir = encoder.config.parent().unwrap_or(Path::new("."));
        Self::new(dir, tokens, cache, device)
    }

    /// `last_hidden_state` `[1, 77, D]` of `prompt`, from the cache when there.
    pub fn embed(&mut self, prompt: &str) -> Result<Tensor<3>, PromptError> {
        let ids = self.tokens.ids(prompt)?;
        let key = self.identity.key(prompt, &ids);
        let shape = [1, ids.len(), self.config.hidden_size];
        if let Some(tensor) = self.cache.lookup(&key, shape, &self.device) {
            return Ok(tensor);
        }
        let encoder = match self.encoder.take() {
            Some(encoder) => encoder,
            None => ClipTextEncoder::load(&self.encoder_dir, &self.device)?,
        };
        let computed = encoder.encode(&[ids]);
        self.encoder = Some(encoder);
        let tensor = computed?;
        self.encoder_runs += 1;
        self.cache.store(&key, prompt, &tensor)?;
        Ok(tensor)
    }

    /// How many embeddings the text encoder has computed (the rest came from the cache).
    pub fn encoder_runs(&self) -> usize {
        self.encoder_runs
    }

    /// Whether the text encoder's weights are in memory.
    pub fn encoder_loaded(&self) -> bool {
        self.encoder.is_some()
    }

    /// Frees the text encoder; it is loaded again only for a prompt not cached.
    pub fn release_encoder(&mut self) {
        self.encoder = None;
    }

    pub fn cache(&self) -> &PromptCache {
        &self.cache
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_prompts_follow_dift_and_sd_dino() {
        assert_eq!(class_prompt("cat"), "a photo of a cat");
        assert_eq!(class_prompt(" pottedplant \n"), "a photo of a pottedplant");
    }

    #[test]
    fn keys_change_with_the_weights_file_the_prompt_and_the_ids() {
        let identity = WeightsIdentity {
            path: "/m/model.safetensors".into(),
            size: 10,
            modified_ns: 5,
        };
        let key = identity.key("a", &[1, 2]);
        assert_eq!(key.len(), 64);
        assert_eq!(key, identity.key("a", &[1, 2]));
        assert_ne!(key, identity.key("b", &[1, 2]));
        assert_ne!(key, identity.key("a", &[1, 0]));
        let touched = WeightsIdentity {
            modified_ns: 6,
            ..identity.clone()
        };
        assert_ne!(key, touched.key("a", &[1, 2]));
    }
}
