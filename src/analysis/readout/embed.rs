//! Embedding a labelled folder with a frozen backbone: the images found below it, their classes
//! (the first sub-folder under the root, or under `train/` and `val/` when those hold the split),
//! and one feature row per image, batched through the model.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};

use super::feature_cache::{FeatureCache, content_key};
use crate::analysis::progress::{Cancelled, Progress, report};
use crate::image_files::{FolderError, SkippedEntry, find_images};
use crate::model::VitConfig;
use crate::model::host::{HostReadError, f32_values};
use crate::model::preprocess::{ImageLoadError, Resize, load_rgb, prepare};
use crate::model::vit::Vit;

/// Which subset a file belongs to when the folder holds `train/` and `val/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subset {
    Train,
    Val,
}

/// The images of a folder with their classes, in path order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelledImages {
    pub paths: Vec<PathBuf>,
    /// Index into `classes`; `None` for files directly in the root (unlabelled).
    pub labels: Vec<Option<usize>>,
    /// Class names (sub-folder names), sorted.
    pub classes: Vec<String>,
    /// Per file, when the folder is split into `train/` and `val/`.
    pub subsets: Option<Vec<Subset>>,
    /// Entries below the root that could not be searched.
    #[serde(skip)]
    pub skipped: Vec<SkippedEntry>,
}

/// The images below `root` and their classes. Files directly in the root (or directly in
/// `train/` / `val/`) are unlabelled.
pub fn labelled_folder(root: &Path) -> Result<LabelledImages, FolderError> {
    let found = find_images(root)?;
    let split = ["train", "val"].iter().all(|s| root.join(s).is_dir());
    let mut classes: Vec<String> = Vec::new();
    let mut named = Vec::with_capacity(found.images.len());
    let mut subsets = Vec::new();
    for path in &found.images {
        let mut parts: Vec<String> = path
            .strip_prefix(root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        parts.pop(); // the file name
        if split {
            match parts.first().map(String::as_str) {
                Some("train") => subsets.push(Subset::Train),
                Some("val") => subsets.push(Subset::Val),
                // Files beside train/ and val/ belong to neither.
                _ => continue,
            }
            parts.remove(0);
        }
        let class = parts.into_iter().next();
        if let Some(c) = &class
            && !classes.contains(c)
        {
            classes.push(c.clone());
        }
        named.push((path.clone(), class));
    }
    classes.sort();
    let labels = named
        .iter()
        .map(|(_, c)| c.as_ref().and_then(|c| classes.iter().position(|k| k == c)))
        .collect();
    Ok(LabelledImages {
        paths: named.into_iter().map(|(p, _)| p).collect(),
        labels,
        classes,
        subsets: split.then_some(subsets),
        skipped: found.skipped,
    })
}

/// The feature of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The final-normed CLS token (DINO's k-NN and linear evaluation).
    Cls,
    /// The CLS token concatenated with the mean of the final-normed patch tokens (DINOv2's
    /// linear evaluation with `avgpool`).
    ClsAvgpool,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    #[error("{}: {source}", path.display())]
    Prepare {
        path: PathBuf,
        source: ImageLoadError,
    },
    #[error("reading the features back: {0}")]
    Host(#[from] HostReadError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// The settings text of [`FeatureCache::open`] for features embedded with these settings.
pub fn cache_settings(resize: Resize, pooling: Pooling, config: &VitConfig) -> String {
    format!("{resize:?} {pooling:?} {config:?}")
}

/// Feature width for `vit` and `pooling`.
pub fn feature_dim(vit: &Vit, pooling: Pooling) -> usize {
    let dim = vit.config().dim;
    match pooling {
        Pooling::Cls => dim,
        Pooling::ClsAvgpool => 2 * dim,
    }
}

/// One feature row per file (`paths.len() x feature_dim`), in order. Consecutive images that
/// prepare to the same size go through the model together, up to `batch` at a time.
pub fn embed_images(
    vit: &Vit,
    paths: &[PathBuf],
    resize: Resize,
    pooling: Pooling,
    batch: usize,
    progress: &mut Progress<'_>,
) -> Result<Vec<f32>, EmbedError> {
    let patch = vit.config().patch_size;
    let mut features = Vec::with_capacity(paths.len() * feature_dim(vit, pooling));
    let mut pending: Vec<Vec<f32>> = Vec::new();
    let mut pending_size = (0, 0);
    for (i, path) in paths.iter().enumerate() {
        report(
            progress,
            i as f32 / paths.len().max(1) as f32,
            &format!("embedding {}", path.display()),
        )?;
        let rgb = load_rgb(path)?;
        let prepared =
            prepare(&rgb, resize, patch, usize::MAX).map_err(|source| EmbedError::Prepare {
                path: path.clone(),
                source,
            })?;
        let size = (prepared.height(), prepared.width());
        if !pending.is_empty() && (size != pending_size || pending.len() >= batch.max(1)) {
            features.extend(run_batch(vit, &pending, pending_size, pooling)?);
            pending.clear();
        }
        pending_size = size;
        pending.push(prepared.normalized);
    }
    if !pending.is_empty() {
        features.extend(run_batch(vit, &pending, pending_size, pooling)?);
    }
    report(progress, 1.0, "embedded")?;
    Ok(features)
}

/// How a cached embedding went.
#[derive(Debug, Default)]
pub struct CacheUse {
    /// Images whose features came from the cache.
    pub hits: usize,
    /// Images that could not be kept in the cache, and why (their features are still returned).
    pub not_kept: Vec<String>,
}

/// [`embed_images`] through `cache`: only the images whose content has no row there go through the
/// model, and their rows are kept.
pub fn embed_images_cached(
    vit: &Vit,
    paths: &[PathBuf],
    resize: Resize,
    pooling: Pooling,
    batch: usize,
    cache: &FeatureCache,
    progress: &mut Progress<'_>,
) -> Result<(Vec<f32>, CacheUse), EmbedError> {
    let dim = feature_dim(vit, pooling);
    let mut rows: Vec<Option<Vec<f32>>> = Vec::with_capacity(paths.len());
    let mut keys = Vec::with_capacity(paths.len());
    for path in paths {
        let key = content_key(path).map_err(|source| {
            EmbedError::Image(ImageLoadError::Io {
                path: path.clone(),
                source,
            })
        })?;
        rows.push(cache.get(&key));
        keys.push(key);
    }
    let missing: Vec<usize> = (0..paths.len()).filter(|&i| rows[i].is_none()).collect();
    let mut used = CacheUse {
        hits: paths.len() - missing.len(),
        ..CacheUse::default()
    };
    let to_embed: Vec<PathBuf> = missing.iter().map(|&i| paths[i].clone()).collect();
    let computed = embed_images(vit, &to_embed, resize, pooling, batch, progress)?;
    for (&i, row) in missing.iter().zip(computed.chunks(dim.max(1))) {
        if let Err(e) = cache.put(&keys[i], row) {
            used.not_kept.push(format!("{}: {e}", paths[i].display()));
        }
        rows[i] = Some(row.to_vec());
    }
    Ok((rows.into_iter().flatten().flatten().collect(), used))
}

fn run_batch(
    vit: &Vit,
    images: &[Vec<f32>],
    (height, width): (usize, usize),
    pooling: Pooling,
) -> Result<Vec<f32>, EmbedError> {
    let data: Vec<f32> = images.concat();
    let input = Tensor::<4>::from_data(
        TensorData::new(data, [images.len(), 3, height, width]),
        &vit.device(),
    );
    let patch = vit.config().patch_size;
    let (tokens, _) = vit.forward_tokens(input, patch);
    let [b, t, d] = tokens.dims();
    let cls = tokens.clone().narrow(1, 0, 1).reshape([b, d]);
    let pooled = match pooling {
        Pooling::Cls => cls,
        Pooling::ClsAvgpool => {
            let first_patch = 1 + vit.config().registers;
            let patches = tokens.narrow(1, first_patch, t - first_patch);
            Tensor::cat(vec![cls, patches.mean_dim(1).reshape([b, d])], 1)
        }
    };
    Ok(f32_values(pooled)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::new(16, 16).save(path).unwrap();
    }

    #[test]
    fn classes_are_the_first_sub_folder_and_files_in_the_root_are_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("zebra/a.png"));
        touch(&dir.path().join("ant/deeper/b.png"));
        touch(&dir.path().join("c.png"));
        let set = labelled_folder(dir.path()).unwrap();
        assert_eq!(set.classes, ["ant", "zebra"]);
        let by_name: Vec<(String, Option<usize>)> = set
            .paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .zip(set.labels.iter().copied())
            .collect();
        assert_eq!(
            by_name,
            [
                ("b.png".to_string(), Some(0)),
                ("c.png".to_string(), None),
                ("a.png".to_string(), Some(1))
            ]
        );
        assert_eq!(set.subsets, None);
    }

    #[test]
    fn train_and_val_folders_give_the_split() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("train/cat/1.png"));
        touch(&dir.path().join("val/dog/2.png"));
        touch(&dir.path().join("readme.png"));
        let set = labelled_folder(dir.path()).unwrap();
        assert_eq!(set.classes, ["cat", "dog"]);
        assert_eq!(set.labels, [Some(0), Some(1)]);
        assert_eq!(set.subsets, Some(vec![Subset::Train, Subset::Val]));
    }
}
