//! Training data: an image folder or the synthetic scenes, turned into multi-crop batches for
//! [`crate::train::TrainStep::step`].
//!
//! Batches are a pure function of `(seed, iteration)`: the epoch's order is a permutation seeded by the
//! epoch, each sample's augmentation stream by `(iteration, slot)`. A resumed run therefore sees exactly
//! the batches an uninterrupted one would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use super::augment::DataAugmentationDino;
use super::synthetic::SyntheticScenes;
use crate::image_files::{FolderError, IMAGE_EXTENSIONS, SkippedEntry, find_images};
use crate::model::preprocess::{ImageLoadError, load_rgb};
use crate::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Dir(#[from] FolderError),
    #[error("{}: no images found (extensions: {})", path.display(), IMAGE_EXTENSIONS.join(", "))]
    Empty { path: PathBuf },
    #[error("the data set has {images} images, fewer than one batch of {batch}")]
    TooSmall { images: usize, batch: usize },
    #[error("no readable image left to fill a batch ({skipped} unreadable images skipped)")]
    NoReadableImages { skipped: usize },
}

/// A folder of images, searched recursively. When the folder has sub-folders, each image's first-level
/// sub-folder is its class (sorted names, for evaluation only); images at the top level have none.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Files, sorted, with their class index.
    pub items: Vec<(PathBuf, Option<usize>)>,
    /// Class names (first-level sub-folders holding images), sorted.
    pub classes: Vec<String>,
    /// Entries below the root that could not be searched (reported, not fatal).
    pub skipped: Vec<SkippedEntry>,
}

impl ImageFolder {
    pub fn scan(root: &Path) -> Result<ImageFolder, DataError> {
        let found = find_images(root)?;
        let files = found.images;
        if files.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
            });
        }
        let class_of = |path: &Path| -> Option<String> {
            let rel = path.strip_prefix(root).ok()?;
            let mut parts = rel.components();
            let first = parts.next()?;
            parts.next()?; // a file directly in `root` has no class
            Some(first.as_os_str().to_string_lossy().into_owned())
        };
        let classes: Vec<String> = files
            .iter()
            .filter_map(|f| class_of(f))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let items = files
            .into_iter()
            .map(|f| {
                let label = class_of(&f).and_then(|c| classes.iter().position(|x| *x == c));
                (f, label)
            })
            .collect();
        Ok(ImageFolder {
            root: root.to_path_buf(),
            items,
            classes,
            skipped: found.skipped,
        })
    }
}

/// Where the training images come from.
#[derive(Clone, Debug)]
pub enum Dataset {
    Folder(ImageFolder),
    Synthetic(SyntheticScenes),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Dataset::Folder(f) => f.items.len(),
            Dataset::Synthetic(s) => s.config.images,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `index` and its class when known.
    pub fn get(&self, index: usize) -> Result<(RgbImage, Option<usize>), ImageLoadError> {
        match self {
            Dataset::Folder(f) => {
                let (path, label) = f.items.get(index).ok_or_else(|| ImageLoadError::Decode {
                    path: f.root.clone(),
                    detail: format!("no image {index} ({} in the folder)", f.items.len()),
                })?;
                load_rgb(path).map(|img| (img, *label))
            }
            Dataset::Synthetic(s) => {
                let scene = s.scene(index as u64);
                Ok((scene.image, Some(scene.label)))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Dataset::Folder(f) => {
                let mut text = format!(
                    "{} images in {} ({} classes)",
                    f.items.len(),
                    f.root.display(),
                    f.classes.len()
                );
                for entry in &f.skipped {
                    text.push_str(&format!("\nnot searched: {entry}"));
                }
                text
            }
            Dataset::Synthetic(s) => format!(
                "{} synthetic {}x{} scenes, {} shape classes",
                s.config.images,
                s.config.size,
                s.config.size,
                s.classes()
            ),
        }
    }
}

/// One iteration's input: per view, the batch's normalised pixels `[B, 3, s, s]` (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub views: Vec<Vec<f32>>,
    pub sizes: Vec<usize>,
    pub batch: usize,
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
    pub labels: Vec<Option<usize>>,
}

impl Batch {
    /// The crops `[g1, g2, l1, ...]` as tensors on `device`.
    pub fn to_tensors(&self, device: &Device) -> Vec<Tensor<4>> {
        self.views
            .iter()
            .zip(&self.sizes)
            .map(|(data, &s)| {
                Tensor::from_data(TensorData::new(data.clone(), [self.batch, 3, s, s]), device)
            })
            .collect()
    }
}

const ORDER_STREAM: u64 = 0x0DE5;
const AUGMENT_STREAM: u64 = 0xA067;

/// Makes the batches of a run (`drop_last`, as DINO's loader).
#[derive(Debug)]
pub struct BatchLoader {
    pub dataset: Dataset,
    pub augment: DataAugmentationDino,
    pub batch: usize,
    pub seed: u64,
    /// Indices found unreadable so far (each reported once).
    bad: Mutex<BTreeSet<usize>>,
}

impl BatchLoader {
    pub fn new(
        dataset: Dataset,
        augment: DataAugmentationDino,
        batch: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if batch == 0 || dataset.len() < batch {
            return Err(DataError::TooSmall {
                images: dataset.len(),
                batch,
            });
        }
        Ok(BatchLoader {
            dataset,
            augment,
            batch,
            seed,
            bad: Mutex::new(BTreeSet::new()),
        })
    }

    /// Iterations per epoch.
    pub fn niter_per_ep(&self) -> usize {
        self.dataset.len() / self.batch
    }

    /// Number of images found unreadable so far.
    pub fn skipped(&self) -> usize {
        self.bad.lock().map_or(0, |b| b.len())
    }

    fn mark_bad(&self, index: usize, error: &ImageLoadError) {
        if let Ok(mut bad) = self.bad.lock()
            && bad.insert(index)
        {
            eprintln!("warning: skipping unreadable image: {error}");
        }
    }

    fn is_bad(&self, index: usize) -> bool {
        self.bad.lock().is_ok_and(|b| b.contains(&index))
    }

    /// The batch of global iteration `it`. Unreadable images are replaced by the next readable ones of
    /// the epoch's order (wrapping), so the batch stays full.
    pub fn batch(&self, it: usize) -> Result<Batch, DataError> {
        let len = self.dataset.len();
        let niter = self.niter_per_ep().max(1);
        let (epoch, pos) = (it / niter, it % niter);
        let mut order: Vec<usize> = (0..len).collect();
        Rng::derive(self.seed, &[ORDER_STREAM, epoch as u64]).shuffle(&mut order);
        let mut chosen: Vec<(usize, RgbImage, Option<usize>)> = Vec::with_capacity(self.batch);
        let mut cursor = pos * self.batch;
        let mut tried = 0;
        while chosen.len() < self.batch {
            let want = self.batch - chosen.len();
            let candidates: Vec<usize> = (0..want)
                .map(|k| order[(cursor + k) % len])
                .filter(|&i| !self.is_bad(i))
                .collect();
            cursor += want;
            tried += want;
            let loaded: Vec<_> = candidates
                .par_iter()
                .map(|&i| (i, self.dataset.get(i)))
                .collect();
            for (i, result) in loaded {
                match result {
                    Ok((img, label)) if img.width() > 0 && img.height() > 0 => {
                        chosen.push((i, img, label))
                    }
                    Ok(_) => self.mark_bad(
                        i,
                        &ImageLoadError::TooSmall {
                            width: 0,
                            height: 0,
                            patch: 1,
                        },
                    ),
                    Err(e) => self.mark_bad(i, &e),
                }
            }
            if tried >= len + self.batch && chosen.len() < self.batch {
                return Err(DataError::NoReadableImages {
                    skipped: self.skipped(),
                });
            }
        }
        let views: Vec<Vec<Vec<f32>>> = chosen
            .par_iter()
            .enumerate()
            .map(|(slot, (_, img, _))| {
                let mut rng = Rng::derive(self.seed, &[AUGMENT_STREAM, it as u64, slot as u64]);
                self.augment.apply(img, &mut rng)
            })
            .collect();
        let config = &self.augment.config;
        let ncrops = config.ncrops();
        let sizes: Vec<usize> = (0..ncrops).map(|v| config.view_size(v) as usize).collect();
        let views = (0..ncrops)
            .map(|v| views.iter().flat_map(|s| s[v].iter().copied()).collect())
            .collect();
        Ok(Batch {
            views,
            sizes,
            batch: self.batch,
            indices: chosen.iter().map(|c| c.0).collect(),
            labels: chosen.iter().map(|c| c.2).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::augment::AugmentConfig;
    use crate::train::synthetic::SyntheticConfig;

    fn small_augment() -> DataAugmentationDino {
        DataAugmentationDino::new(AugmentConfig {
            global_size: 16,
            local_size: 8,
            local_crops: 2,
            ..AugmentConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn folders_are_scanned_recursively_with_classes_and_bad_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (sub, name) in [("cats", "a.png"), ("cats/deep", "b.PNG"), ("dogs", "c.png")] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            RgbImage::from_pixel(20, 12, image::Rgb([9, 80, 200]))
                .save(root.join(sub).join(name))
                .unwrap();
        }
        std::fs::write(root.join("dogs/broken.jpg"), b"not a jpeg").unwrap();
        std::fs::write(root.join("notes.txt"), b"ignored").unwrap();
        let folder = ImageFolder::scan(root).unwrap();
        assert_eq!(folder.classes, vec!["cats", "dogs"]);
        assert_eq!(folder.items.len(), 4);
        let labels: Vec<_> = folder.items.iter().map(|i| i.1).collect();
        assert_eq!(labels, vec![Some(0), Some(0), Some(1), Some(1)]);

        let broken = folder
            .items
            .iter()
            .position(|(p, _)| p.ends_with("broken.jpg"))
            .unwrap();
        let loader = BatchLoader::new(Dataset::Folder(folder), small_augment(), 3, 1).unwrap();
        assert_eq!(loader.niter_per_ep(), 1);
        for it in 0..4 {
            let batch = loader.batch(it).unwrap();
            assert_eq!(batch.indices.len(), 3);
            assert!(
                !batch.indices.contains(&broken),
                "the broken file is never used"
            );
        }
        assert_eq!(loader.skipped(), 1);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageFolder::scan(empty.path()),
            Err(DataError::Empty { .. })
        ));
        assert!(matches!(
            ImageFolder::scan(&empty.path().join("missing")),
            Err(DataError::Dir(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_entries_are_reported_and_loops_add_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("cats")).unwrap();
        RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(root.join("cats/a.png"))
            .unwrap();
        std::os::unix::fs::symlink(root, root.join("cats/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("cats/gone.png")).unwrap();
        let folder = ImageFolder::scan(root).unwrap();
        assert_eq!(folder.items.len(), 1, "{:?}", folder.items);
        assert_eq!(folder.skipped.len(), 1);
        let text = Dataset::Folder(folder).describe();
        assert!(
            text.contains(&format!(
                "not searched: {}",
                root.join("cats/gone.png").display()
            )),
            "{text}"
        );
    }

    #[test]
    fn only_unreadable_images_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("{i}.png")), b"garbage").unwrap();
        }
        let folder = ImageFolder::scan(dir.path()).unwrap();
        let loader = BatchLoader::new(Dataset::Folder(folder), small_augment(), 2, 0).unwrap();
        assert!(matches!(
            loader.batch(0),
            Err(DataError::NoReadableImages { skipped: 3 })
        ));
    }

    #[test]
    fn synthetic_batches_are_deterministic_and_shaped() {
        let scenes = SyntheticScenes::new(
            SyntheticConfig {
                size: 24,
                images: 10,
                ..Default::default()
            },
            3,
        );
        let loader = BatchLoader::new(Dataset::Synthetic(scenes), small_augment(), 4, 7).unwrap();
        assert_eq!(loader.niter_per_ep(), 2);
        let a = loader.batch(1).unwrap();
        assert_eq!(a, loader.batch(1).unwrap());
        assert_eq!(a.sizes, vec![16, 16, 8, 8]);
        assert_eq!(a.views[0].len(), 4 * 3 * 16 * 16);
        assert_eq!(a.views[3].len(), 4 * 3 * 8 * 8);
        let b = loader.batch(0).unwrap();
        assert!(
            a.indices.iter().all(|i| !b.indices.contains(i)),
            "one epoch has no repeats"
        );
        let tensors = a.to_tensors(&Device::flex());
        assert_eq!(tensors[2].dims(), [4, 3, 8, 8]);
        assert!(matches!(
            BatchLoader::new(loader.dataset.clone(), small_augment(), 11, 0),
            Err(DataError::TooSmall { .. })
        ));
    }
}
