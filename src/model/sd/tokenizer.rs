//! CLIP's byte-level BPE tokenizer (Radford et al. 2021) as `transformers.CLIPTokenizer` builds it
//! from a diffusers folder's `tokenizer/vocab.json` + `merges.txt`: NFC, whitespace runs to one
//! space, lower case; CLIP's word regex; GPT-2 byte units; `</w>` closing each word; BOS / EOS
//! around at most 75 tokens; padding to 77 with the folder's pad token (`<|endoftext|>` in SD 1.x,
//! `!` = id 0 in SD 2.x). The pipeline runs on Hugging Face's `tokenizers` crate, the code
//! transformers itself calls, so the ids are the same by construction rather than by imitation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Tokens the text encoder sees: SD's `tokenizer.model_max_length`.
pub const CONTEXT_LENGTH: usize = 77;
/// `<|startoftext|>` in CLIP's vocabulary.
pub const BOS: u32 = 49406;
/// `<|endoftext|>` in CLIP's vocabulary; SD 1.x also pads with it.
pub const EOS: u32 = 49407;
/// SD 1.x's pad id (`<|endoftext|>`).
pub const SD1_PAD: u32 = EOS;
/// SD 2.x's pad id (`!`, the first byte unit).
pub const SD2_PAD: u32 = 0;

const BOS_TEXT: &str = "<|startoftext|>";
const EOS_TEXT: &str = "<|endoftext|>";
/// CLIP's word pattern (openai/CLIP `simple_tokenizer.py`), as transformers passes it to `Split`.
const WORDS: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: the vocabulary has no `{token}`", path.display())]
    MissingToken { path: PathBuf, token: String },
    #[error("the CLIP tokenizer from {}: {message}", dir.display())]
    Tokenizers { dir: PathBuf, message: String },
}

/// `[BOS, EOS]` and 75 pads: the empty prompt DIFT and SD-DINO use, which needs no vocabulary.
pub fn empty_prompt_ids(pad: u32) -> Vec<u32> {
    let mut ids = vec![pad; CONTEXT_LENGTH];
    ids[0] = BOS;
    ids[1] = EOS;
    ids
}

/// A CLIP tokenizer loaded from a `tokenizer/` folder.
#[derive(Clone, Debug)]
pub struct ClipTokenizer {
    /// Boxed: the library's tokenizer is 1.5 KB inline.
    inner: Box<Tokenizer>,
    dir: PathBuf,
    bos: u32,
    eos: u32,
    pad: u32,
}

impl ClipTokenizer {
    /// Reads `vocab.json`, `merges.txt` and, when present, the special tokens of
    /// `tokenizer_config.json` / `special_tokens_map.json`.
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let vocab: HashMap<String, u32> = serde_json::from_str(&read(&vocab_path)?)
            .map_err(|e| format_error(&vocab_path, format!("not a token -> id map: {e}")))?;
        let merges = read_merges(&dir.join("merges.txt"))?;
        let specials = SpecialTokens::read(dir)?;
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| TokenizerError::MissingToken {
                    path: vocab_path.clone(),
                    token: token.into(),
                })
        };
        let pad = id(&specials.pad.content)?;
        let bos = id(&specials.bos.content)?;
        let eos = id(&specials.eos.content)?;
        id(&specials.unk.content)?;
        let library = |e: tokenizers::Error| TokenizerError::Tokenizers {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        };
        let model = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(specials.unk.content.clone())
            .fuse_unk(false)
            .build()
            .map_err(library)?;
        let mut inner = Tokenizer::new(model);
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(library)?;
        inner
            .with_normalizer(Some(Normalizers::new(vec![
                NFC.into(),
                whitespace.into(),
                Lowercase.into(),
            ])))
            .map_err(library)?;
        let words = Split::new(
            SplitPattern::Regex(WORDS.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(library)?;
        inner.with_pre_tokenizer(Some(PreTokenizers::new(vec![
            words.into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner
            .add_special_tokens(specials.added_tokens())
            .map_err(library)?;
        Ok(ClipTokenizer {
            inner: Box::new(inner),
            dir: dir.to_path_buf(),
            bos,
            eos,
            pad,
        })
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The 77 ids diffusers gives the text encoder for `prompt`
    /// (`tokenizer(prompt, padding="max_length", max_length=77, truncation=True)`): longer
    /// prompts lose their tail.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding =
            self.inner
                .encode(prompt, false)
                .map_err(|e| TokenizerError::Tokenizers {
                    dir: self.dir.clone(),
                    message: e.to_string(),
                })?;
        let words = encoding.get_ids();
        let kept = words.len().min(CONTEXT_LENGTH - 2);
        let mut ids = Vec::with_capacity(CONTEXT_LENGTH);
        ids.push(self.bos);
        ids.extend_from_slice(&words[..kept]);
        ids.push(self.eos);
        ids.resize(CONTEXT_LENGTH, self.pad);
        Ok(ids)
    }
}

/// One special token and whether it is matched in the normalised (lower-cased) text.
#[derive(Clone, Debug)]
struct Special {
    content: String,
    normalized: bool,
}

/// The special tokens transformers registers, in its order (BOS, EOS, UNK, pad): a token named
/// twice keeps its last flags, so SD 1.x's plain-string pad `<|endoftext|>` makes EOS matched on
/// the raw text only.
#[derive(Clone, Debug)]
struct SpecialTokens {
    bos: Special,
    eos: Special,
    unk: Special,
    pad: Special,
}

impl SpecialTokens {
    fn read(dir: &Path) -> Result<Self, TokenizerError> {
        let configs = ["tokenizer_config.json", "special_tokens_map.json"]
            .into_iter()
            .map(|name| dir.join(name))
            .filter(|path| path.exists())
            .map(|path| {
                let value: serde_json::Value = serde_json::from_str(&read(&path)?)
                    .map_err(|e| format_error(&path, format!("not JSON: {e}")))?;
                Ok((path, value))
            })
            .collect::<Result<Vec<_>, TokenizerError>>()?;
        let get = |key: &str, default: &str| -> Result<Special, TokenizerError> {
            for (path, config) in &configs {
                match &config[key] {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(content) => {
                        return Ok(Special {
                            content: content.clone(),
                            normalized: false,
                        });
                    }
                    value => {
                        let content = value["content"].as_str().ok_or_else(|| {
                            format_error(path, format!("`{key}` is neither a string nor a token"))
                        })?;
                        return Ok(Special {
                            content: content.into(),
                            normalized: value["normalized"].as_bool().unwrap_or(false),
                        });
                    }
                }
            }
            Ok(Special {
                content: default.into(),
                normalized: false,
            })
        };
        Ok(SpecialTokens {
            bos: get("bos_token", BOS_TEXT)?,
            eos: get("eos_token", EOS_TEXT)?,
            unk: get("unk_token", EOS_TEXT)?,
            pad: get("pad_token", EOS_TEXT)?,
        })
    }

    fn added_tokens(&self) -> Vec<AddedToken> {
        let mut tokens: Vec<&Special> = Vec::new();
        for special in [&self.bos, &self.eos, &self.unk, &self.pad] {
            tokens.retain(|t| t.content != special.content);
            tokens.push(special);
        }
        tokens
            .into_iter()
            .map(|t| AddedToken::from(t.content.clone(), true).normalized(t.normalized))
            .collect()
    }
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn format_error(path: &Path, message: String) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// `merges.txt`: a `#version` header, then one `left right` pair per line, highest priority first.
fn read_merges(path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate().peekable();
    if lines
        .peek()
        .is_some_and(|(_, line)| line.starts_with("#version"))
    {
        lines.next();
    }
    lines
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| match line.split(' ').collect::<Vec<_>>()[..] {
            [left, right] => Ok((left.to_string(), right.to_string())),
            _ => Err(format_error(
                path,
                format!("line {} is not a `left right` pair", i + 1),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_prompt_needs_no_vocabulary() {
        let sd1 = empty_prompt_ids(SD1_PAD);
        assert_eq!(sd1.len(), CONTEXT_LENGTH);
        assert_eq!(&sd1[..3], [49406, 49407, 49407]);
        let sd2 = empty_prompt_ids(SD2_PAD);
        assert_eq!(&sd2[..3], [49406, 49407, 0]);
        assert!(sd2[2..].iter().all(|&id| id == 0));
    }
}
