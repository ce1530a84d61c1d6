//! Finding SD models: every diffusers SD snapshot in the Hugging Face cache, and what the user
//! names (`--sd`): a folder, a hub id `org/name` (its cached snapshot) or a catalogue id (`sd15`).

use std::path::{Path, PathBuf};

use crate::model::download::hub::{cached_repo, cached_repos, is_repo_id, size_on_disk};

use super::catalog::{SD_CATALOG, sd_catalog_entry};
use super::folder::{SdFolder, SdFolderError};

/// An SD model found on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundSdModel {
    /// The hub id (`org/name`) of a cached model, else the folder.
    pub id: String,
    /// The snapshot's commit, for a cached model.
    pub revision: Option<String>,
    /// The snapshot `refs/main` names (always true for a plain folder).
    pub current: bool,
    pub folder: SdFolder,
    /// Bytes on disk (links followed, shared blobs counted once).
    pub bytes: u64,
}

impl FoundSdModel {
    /// A folder given directly.
    pub fn open_dir(dir: &Path) -> Result<FoundSdModel, SdFolderError> {
        let folder = SdFolder::open(dir)?;
        Ok(FoundSdModel {
            id: dir.display().to_string(),
            revision: None,
            current: true,
            bytes: size_on_disk(dir),
            folder,
        })
    }
}

/// What the hub cache holds of SD.
#[derive(Debug, Default)]
pub struct HubListing {
    pub models: Vec<FoundSdModel>,
    /// Snapshots that look like diffusers pipelines but are no usable SD 1.x / 2.x (SDXL, an
    /// unfinished download, …): `org/name@commit` and why.
    pub problems: Vec<(String, SdFolderError)>,
}

/// Every snapshot in the hub cache `cache` that is an SD diffusers folder (repositories of other
/// kinds are skipped silently).
pub fn find_in_hub_cache(cache: &Path) -> HubListing {
    let mut listing = HubListing::default();
    for repo in cached_repos(cache) {
        for snapshot in &repo.snapshots {
            let dir = &snapshot.dir;
            let pipeline = dir.join("model_index.json").is_file() || dir.join("unet").is_dir();
            if !pipeline {
                continue;
            }
            match SdFolder::open(dir) {
                Ok(folder) => listing.models.push(FoundSdModel {
                    id: repo.repo_id.clone(),
                    revision: Some(snapshot.revision.clone()),
                    current: snapshot.current,
                    bytes: size_on_disk(dir),
                    folder,
                }),
                Err(e) => listing
                    .problems
                    .push((format!("{}@{}", repo.repo_id, snapshot.revision), e)),
            }
        }
    }
    listing
}

#[derive(Debug, thiserror::Error)]
pub enum SdModelError {
    #[error(transparent)]
    Folder(#[from] SdFolderError),
    #[error("{repo_id} is not in the Hugging Face cache ({}); {hint}", cache.display())]
    NotCached {
        repo_id: String,
        cache: PathBuf,
        hint: String,
    },
    #[error("{repo_id}: no Hugging Face cache folder (set HF_HUB_CACHE, HF_HOME or HOME)")]
    NoCache { repo_id: String },
}

/// The model `spec` names: an existing folder, else a catalogue id (`sd15`) or hub id
/// (`stable-diffusion-v1-5/stable-diffusion-v1-5`) looked up in the hub cache `hub_cache` (its
/// Where SD prompt embeddings and features are cached: `$DINOSCOPE_SD_CACHE`, else
/// `$XDG_CACHE_HOME/dinoscope/sd`, else `~/.cache/dinoscope/sd`; `None` when none is set.
pub fn sd_cache_dir() -> Option<PathBuf> {
    sd_cache_dir_from(|name| std::env::var_os(name))
}

/// [`sd_cache_dir`] with the environment given as a function (for tests).
pub fn sd_cache_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("DINOSCOPE_SD_CACHE") {
        return Some(dir);
    }
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("dinoscope").join("sd"));
    }
    set("HOME").map(|home| home.join(".cache").join("dinoscope").join("sd"))
}

/// `refs/main` snapshot, else the first snapshot that opens).
pub fn resolve_sd_model(
    spec: &str,
    hub_cache: Option<&Path>,
) -> Result<FoundSdModel, SdModelError> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(FoundSdModel::open_dir(path)?);
    }
    let entry = sd_catalog_entry(spec);
    let repo_id = match entry {
        Some(e) => e.repo_id,
        None if is_repo_id(spec) => spec,
        None => return Err(SdFolderError::Missing { path: path.into() }.into()),
    };
    let Some(cache) = hub_cache else {
        return Err(SdModelError::NoCache {
            repo_id: repo_id.to_string(),
        });
    };
    let Some(repo) = cached_repo(cache, repo_id) else {
        let hint = match entry {
            Some(e) => format!("download it with `dinoscope download {}`", e.id),
            None => {
                let ids: Vec<&str> = SD_CATALOG.iter().map(|e| e.id).collect();
                format!(
                    "download it (e.g. `hf download {repo_id}`), give its diffusers folder, or \
                     use a catalogue model: `dinoscope download {}`",
                    ids.join(" | ")
                )
            }
        };
        return Err(SdModelError::NotCached {
            repo_id: repo_id.to_string(),
            cache: cache.to_path_buf(),
            hint,
        });
    };
    let mut first_error = None;
    let ordered = repo.current().into_iter().chain(repo.snapshots.iter());
    for snapshot in ordered {
        match SdFolder::open(&snapshot.dir) {
            Ok(folder) => {
                return Ok(FoundSdModel {
                    id: repo.repo_id.clone(),
                    revision: Some(snapshot.revision.clone()),
                    current: snapshot.current,
                    bytes: size_on_disk(&snapshot.dir),
                    folder,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // `cached_repo` only returns repositories with a snapshot, so there is an error to give.
    Err(first_error
        .map(SdModelError::from)
        .unwrap_or(SdModelError::NotCached {
            repo_id: repo_id.to_string(),
            cache: cache.to_path_buf(),
            hint: "its snapshots folder is empty".into(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_cache_dir_follows_the_environment() {
        let env = |pairs: &'static [(&str, &str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = env(&[
            ("DINOSCOPE_SD_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(sd_cache_dir_from(all), Some(PathBuf::from("/c")));
        let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            sd_cache_dir_from(xdg),
            Some(PathBuf::from("/x/dinoscope/sd"))
        );
        let relative = env(&[("XDG_CACHE_HOME", "x"), ("HOME", "/h")]);
        assert_eq!(
            sd_cache_dir_from(relative),
            Some(PathBuf::from("/h/.cache/dinoscope/sd"))
        );
        assert_eq!(sd_cache_dir_from(env(&[])), None);
    }
}
