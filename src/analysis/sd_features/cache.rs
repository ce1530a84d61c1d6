//! Per-image SD features kept in memory and as `<key>.safetensors` files, so reopening an image set
//! does not rerun minutes of UNet work. The key covers everything the features depend on: the
//! image's pixels, the UNet and VAE weights files (path, size, modification time), the settings
//! (prompt included) and the context embedding's text encoder. Files are written atomically; a
//! damaged or unreadable one counts as absent and is recomputed. An SD-DINO entry is about 15 MB
//! (DIFT's 12 MB), so memory keeps the last few and the folder is pruned, least recently used
//! first, to a byte budget.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use image::RgbImage;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::co_pca::SdTaps;
use super::extract::{SdDinoTaps, SdImageFeatures};
use super::image::Letterbox;
use super::settings::SdFeatureSettings;
use crate::analysis::features::FeatureMap;
use crate::model::Grid;
use crate::model::raw_tensor::{RawTensor, f32_values};
use crate::model::save::serialize_safetensors;
use crate::model::sd::prompt::WeightsIdentity;

/// Bumped when the files' meaning changes, so old files are never read as new ones.
const CACHE_FORMAT: &str = "dinoscope-sd-features-v1";
const HEADER_KEY: &str = "dinoscope_sd_features";

/// What a cached entry was computed from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeatureKey(String);

impl FeatureKey {
    /// `text` identifies the context embedding (its text encoder weights; `None` when the
    /// embedding was given rather than computed).
    pub fn new(
        image: &RgbImage,
        unet: &WeightsIdentity,
        vae: &WeightsIdentity,
        text: Option<&WeightsIdentity>,
        settings: &SdFeatureSettings,
    ) -> FeatureKey {
        let mut hash = Sha256::new();
        hash.update(CACHE_FORMAT.as_bytes());
        hash.update(image.width().to_le_bytes());
        hash.update(image.height().to_le_bytes());
        hash.update(image.as_raw());
        for identity in [Some(unet), Some(vae), text] {
            match identity {
                Some(id) => id.hash_into(&mut hash),
                None => hash.update([0xff]),
            }
        }
        hash.update(serde_json::to_vec(settings).unwrap_or_default());
        FeatureKey(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Entries kept in memory.
const MEMORY_ENTRIES: usize = 8;
/// Default size of the cache folder: about 270 SD-DINO images.
pub const DEFAULT_DISK_BUDGET: u64 = 4 << 30;

/// Cached features by key, in memory and optionally in a folder.
#[derive(Debug)]
pub struct SdFeatureCache {
    dir: Option<PathBuf>,
    memory: HashMap<FeatureKey, SdImageFeatures>,
    /// Oldest first.
    order: VecDeque<FeatureKey>,
    disk_budget: u64,
    disk_problem: Option<String>,
}

impl Default for SdFeatureCache {
    fn default() -> Self {
        SdFeatureCache {
            dir: None,
            memory: HashMap::new(),
            order: VecDeque::new(),
            disk_budget: DEFAULT_DISK_BUDGET,
            disk_problem: None,
        }
    }
}

impl SdFeatureCache {
    pub fn in_memory() -> Self {
        SdFeatureCache::default()
    }

    /// A cache that also keeps its entries in `dir` (created when first written).
    pub fn on_disk(dir: &Path) -> Self {
        SdFeatureCache {
            dir: Some(dir.to_path_buf()),
            ..SdFeatureCache::default()
        }
    }

    /// Caps the folder at `bytes` (least recently used files go first; the newest always stays).
    pub fn with_disk_budget(mut self, bytes: u64) -> Self {
        self.disk_budget = bytes;
        self
    }

    /// The last failure to write the disk cache (the features were still kept in memory).
    pub fn disk_problem(&self) -> Option<&str> {
        self.disk_problem.as_deref()
    }

    pub fn file(&self, key: &FeatureKey) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{}.safetensors", key.0)))
    }

    pub fn get(&mut self, key: &FeatureKey) -> Option<SdImageFeatures> {
        if let Some(found) = self.memory.get(key).cloned() {
            self.remember(key.clone(), found.clone());
            return Some(found);
        }
        let path = self.file(key)?;
        let bytes = std::fs::read(&path).ok()?;
        let found = decode(&bytes)?;
        // A hit makes the file recent, so pruning keeps it.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        self.remember(key.clone(), found.clone());
        Some(found)
    }

    /// Keeps `features` in memory as the most recent entry, forgetting the oldest past
    /// [`MEMORY_ENTRIES`].
    fn remember(&mut self, key: FeatureKey, features: SdImageFeatures) {
        self.order.retain(|k| k != &key);
        self.order.push_back(key.clone());
        self.memory.insert(key, features);
        while self.order.len() > MEMORY_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.memory.remove(&old);
            }
        }
    }

    /// Deletes the least recently used files until the folder fits the budget, never `keep`.
    fn prune(&self, dir: &Path, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.disk_budget {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }

    pub fn put(&mut self, key: FeatureKey, features: SdImageFeatures) {
        if let Some(path) = self.file(&key) {
            let written = encode(&features).and_then(|bytes| {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)
                    .and_then(|()| crate::atomic_file::write(&path, &bytes))
                    .map_err(|e| e.to_string())
            });
            self.disk_problem = written
                .err()
                .map(|e| format!("{}: cannot write the SD feature cache: {e}", path.display()));
            if let Some(dir) = path.parent() {
                self.prune(dir, &path);
            }
        }
        self.remember(key, features);
    }
}

#[derive(Serialize, Deserialize)]
struct MapHeader {
    name: String,
    rows: usize,
    cols: usize,
    patch: usize,
    stride: usize,
    dim: usize,
    image_size: (usize, usize),
}

#[derive(Serialize, Deserialize)]
enum Header {
    Dift {
        map: MapHeader,
        original: (u32, u32),
    },
    SdDino {
        maps: [MapHeader; 3],
        letterbox: LetterboxHeader,
    },
}

#[derive(Serialize, Deserialize)]
struct LetterboxHeader {
    canvas: u32,
    scaled: (u32, u32),
    offset: (u32, u32),
    original: (u32, u32),
}

fn map_header(name: &str, map: &FeatureMap) -> MapHeader {
    MapHeader {
        name: name.to_string(),
        rows: map.grid.rows,
        cols: map.grid.cols,
        patch: map.grid.patch,
        stride: map.grid.stride,
        dim: map.dim,
        image_size: map.image_size,
    }
}

fn encode(features: &SdImageFeatures) -> Result<Vec<u8>, String> {
    let (header, maps) = match features {
        SdImageFeatures::Dift { map, original } => (
            Header::Dift {
                map: map_header("features", map),
                original: *original,
            },
            vec![("features", map)],
        ),
        SdImageFeatures::SdDino(t) => {
            let l = &t.letterbox;
            (
                Header::SdDino {
                    maps: [
                        map_header("s5", &t.taps.s5),
                        map_header("s4", &t.taps.s4),
                        map_header("s3", &t.taps.s3),
                    ],
                    letterbox: LetterboxHeader {
                        canvas: l.canvas,
                        scaled: l.scaled,
                        offset: l.offset,
                        original: l.original,
                    },
                },
                vec![("s5", &t.taps.s5), ("s4", &t.taps.s4), ("s3", &t.taps.s3)],
            )
        }
    };
    let tensors: Vec<(String, RawTensor)> = maps
        .into_iter()
        .map(|(name, map)| {
            (
                name.to_string(),
                RawTensor {
                    shape: vec![map.grid.len(), map.dim],
                    data: map.data.clone(),
                },
            )
        })
        .collect();
    let header = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    serialize_safetensors(&tensors, HashMap::from([(HEADER_KEY.to_string(), header)]))
        .map_err(|e| e.to_string())
}

fn decode(bytes: &[u8]) -> Option<SdImageFeatures> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).ok()?;
    let header: Header =
        serde_json::from_str(metadata.metadata().as_ref()?.get(HEADER_KEY)?).ok()?;
    let file = SafeTensors::deserialize(bytes).ok()?;
    let map = |h: &MapHeader| -> Option<FeatureMap> {
        let view = file.tensor(&h.name).ok()?;
        let data = f32_values(view.data(), &format!("{:?}", view.dtype()))?;
        let grid = Grid {
            rows: h.rows,
            cols: h.cols,
            patch: h.patch,
            stride: h.stride,
        };
        (data.len() == grid.len() * h.dim).then_some(FeatureMap {
            grid,
            dim: h.dim,
            data,
            image_size: h.image_size,
        })
    };
    Some(match header {
        Header::Dift { map: h, original } => SdImageFeatures::Dift {
            map: map(&h)?,
            original,
        },
        Header::SdDino { maps, letterbox: l } => SdImageFeatures::SdDino(SdDinoTaps {
            taps: SdTaps {
                s5: map(&maps[0])?,
                s4: map(&maps[1])?,
                s3: map(&maps[2])?,
            },
            letterbox: Letterbox {
                canvas: l.canvas,
                scaled: l.scaled,
                offset: l.offset,
                original: l.original,
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rows: usize, cols: usize, dim: usize, seed: f32) -> FeatureMap {
        FeatureMap {
            grid: Grid {
                rows,
                cols,
                patch: 16,
                stride: 16,
            },
            dim,
            data: (0..rows * cols * dim)
                .map(|i| (i as f32 * seed).sin())
                .collect(),
            image_size: (cols * 16, rows * 16),
        }
    }

    fn taps() -> SdImageFeatures {
        SdImageFeatures::SdDino(SdDinoTaps {
            taps: SdTaps {
                s5: map(2, 2, 3, 0.1),
                s4: map(4, 4, 2, 0.2),
                s3: map(8, 8, 2, 0.3),
            },
            letterbox: Letterbox::new((40, 30), 128),
        })
    }

    fn same(a: &SdImageFeatures, b: &SdImageFeatures) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    fn identity(dir: &Path, name: &str, bytes: &[u8]) -> WeightsIdentity {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        WeightsIdentity::of(&path).unwrap()
    }

    #[test]
    fn entries_survive_a_new_cache_and_damaged_files_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let (unet, vae) = (
            identity(dir.path(), "u", b"unet"),
            identity(dir.path(), "v", b"vae"),
        );
        let image = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let settings = SdFeatureSettings::sd_dino();
        let key = FeatureKey::new(&image, &unet, &vae, None, &settings);
        let cache_dir = dir.path().join("cache");
        let mut cache = SdFeatureCache::on_disk(&cache_dir);
        assert!(cache.get(&key).is_none());
        cache.put(key.clone(), taps());
        assert_eq!(cache.disk_problem(), None);

        let mut reopened = SdFeatureCache::on_disk(&cache_dir);
        assert!(same(&reopened.get(&key).unwrap(), &taps()));
        let dift = SdImageFeatures::Dift {
            map: map(3, 3, 4, 0.7),
            original: (9, 7),
        };
        let dift_key = FeatureKey::new(&image, &unet, &vae, None, &SdFeatureSettings::dift());
        reopened.put(dift_key.clone(), dift.clone());
        assert!(same(
            &SdFeatureCache::on_disk(&cache_dir).get(&dift_key).unwrap(),
            &dift
        ));

        let file = reopened.file(&key).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert!(SdFeatureCache::on_disk(&cache_dir).get(&key).is_none());
    }

    #[test]
    fn the_folder_keeps_the_most_recently_used_entries_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (unet, vae) = (
            identity(dir.path(), "u", b"unet"),
            identity(dir.path(), "v", b"vae"),
        );
        let cache_dir = dir.path().join("cache");
        let key = |seed: u8| {
            let image = RgbImage::from_pixel(3, 3, image::Rgb([seed, 0, 0]));
            FeatureKey::new(&image, &unet, &vae, None, &SdFeatureSettings::sd_dino())
        };
        let mut probe = SdFeatureCache::on_disk(&cache_dir);
        probe.put(key(0), taps());
        let entry = std::fs::metadata(probe.file(&key(0)).unwrap())
            .unwrap()
            .len();
        // Room for two entries and a half.
        let mut cache = SdFeatureCache::on_disk(&cache_dir).with_disk_budget(entry * 5 / 2);
        let tick = || std::thread::sleep(std::time::Duration::from_millis(20));
        tick();
        cache.put(key(1), taps());
        tick();
        // Reading entry 0 from disk makes it recent again.
        assert!(SdFeatureCache::on_disk(&cache_dir).get(&key(0)).is_some());
        tick();
        cache.put(key(2), taps());
        let on_disk = |k: FeatureKey| cache.file(&k).unwrap().is_file();
        assert!(on_disk(key(0)) && on_disk(key(2)));
        assert!(!on_disk(key(1)), "the least recently used entry was kept");
        // Memory keeps the last few only.
        for seed in 3..20 {
            cache.put(key(seed), taps());
        }
        assert_eq!(cache.memory.len(), MEMORY_ENTRIES);
    }

    #[test]
    fn keys_change_with_pixels_weights_settings_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let (unet, vae, text) = (
            identity(dir.path(), "u", b"unet"),
            identity(dir.path(), "v", b"vae"),
            identity(dir.path(), "t", b"text"),
        );
        let image = RgbImage::from_pixel(5, 4, image::Rgb([1, 2, 3]));
        let settings = SdFeatureSettings::sd_dino();
        let base = FeatureKey::new(&image, &unet, &vae, None, &settings);
        assert_eq!(base, FeatureKey::new(&image, &unet, &vae, None, &settings));
        let mut other_image = image.clone();
        other_image.put_pixel(4, 3, image::Rgb([1, 2, 4]));
        let mut other_settings = settings.clone();
        other_settings.prompt = "a photo of a cat".into();
        let mut later_seed = settings.clone();
        later_seed.seed += 1;
        for key in [
            FeatureKey::new(&other_image, &unet, &vae, None, &settings),
            FeatureKey::new(&image, &vae, &unet, None, &settings),
            FeatureKey::new(&image, &unet, &vae, Some(&text), &settings),
            FeatureKey::new(&image, &unet, &vae, None, &other_settings),
            FeatureKey::new(&image, &unet, &vae, None, &later_seed),
        ] {
            assert_ne!(key, base);
        }
    }
}
