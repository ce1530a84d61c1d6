//! Reading a diffusers model folder: `config.json` beside `diffusion_pytorch_model.safetensors`
//! (or its `.fp16` variant), with errors that name the file.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::weights::WeightsError;

/// The weights file names diffusers writes, preferred first: full precision, then the fp16 variant.
pub const WEIGHTS_FILES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
];

/// What is wrong with a `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("key `{key}`: {problem}")]
    Key { key: String, problem: String },
}

/// Why a Stable Diffusion network could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SdLoadError {
    #[error("{}: {problem}", path.display())]
    Config {
        path: PathBuf,
        problem: ConfigProblem,
    },
    #[error(
        "{}: no weights file (expected {} or {})",
        dir.display(),
        WEIGHTS_FILES[0],
        WEIGHTS_FILES[1]
    )]
    NoWeights { dir: PathBuf },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{}: {tap} is not in this UNet ({levels} up blocks)", path.display())]
    TapOutOfRange {
        path: PathBuf,
        tap: String,
        levels: usize,
    },
}

/// The weights file of a diffusers model folder.
pub fn weights_file(dir: &Path) -> Result<PathBuf, SdLoadError> {
    WEIGHTS_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| SdLoadError::NoWeights {
            dir: dir.to_path_buf(),
        })
}

/// A parsed `config.json`, read key by key with errors naming the file and the key.
pub struct ConfigJson {
    path: PathBuf,
    map: Map<String, Value>,
}

impl ConfigJson {
    pub fn read(path: &Path) -> Result<Self, SdLoadError> {
        let error = |problem| SdLoadError::Config {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = std::fs::read(path).map_err(|e| error(ConfigProblem::Io(e)))?;
        let map = serde_json::from_slice::<Map<String, Value>>(&bytes)
            .map_err(|e| error(ConfigProblem::Json(e.to_string())))?;
        Ok(ConfigJson {
            path: path.to_path_buf(),
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, problem: impl Into<String>) -> SdLoadError {
        SdLoadError::Config {
            path: self.path.clone(),
            problem: ConfigProblem::Key {
                key: key.into(),
                problem: problem.into(),
            },
        }
    }

    /// `key` as `T`; `None` when absent or `null`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SdLoadError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| self.error(key, format!("{e} (found {value})"))),
        }
    }

    /// `key` as `T`, `default` when absent.
    pub fn get_or<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, SdLoadError> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// `key` as `T`, which must be present.
    pub fn require<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, SdLoadError> {
        self.get(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    /// Refuses the file unless `key` is absent or equal to one of `allowed` (the values Stable
    /// Diffusion 1.x/2.x use); features outside them are not implemented.
    pub fn expect_one_of(&self, key: &str, allowed: &[Value]) -> Result<(), SdLoadError> {
        match self.map.get(key) {
            None => Ok(()),
            Some(value) if allowed.contains(value) => Ok(()),
            Some(value) => Err(self.error(
                key,
                format!(
                    "{value} is not supported (Stable Diffusion 1.x/2.x use {})",
                    allowed
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
        }
    }
}
