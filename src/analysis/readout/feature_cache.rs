//! Features kept on disk per (model, settings, image content), so that a large folder is embedded
//! once: one file of `dim` little-endian `f32`s per image, named by the SHA-256 of the image file,
//! in a folder named by the SHA-256 of the checkpoint file and the feature settings.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::atomic_file;

pub struct FeatureCache {
    dir: PathBuf,
    dim: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file's bytes, hex.
pub fn content_key(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The default folder of the cache, shared by the command line and the app:
/// `$XDG_CACHE_HOME/dinoscope/features`, else `~/.cache/dinoscope/features`.
pub fn default_root() -> Option<PathBuf> {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    set("XDG_CACHE_HOME")
        .or_else(|| set("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("dinoscope").join("features"))
}

impl FeatureCache {
    /// The cache under `root` for features of width `dim` made by the checkpoint `weights` with
    /// `settings` (any text that changes when the features would).
    pub fn open(root: &Path, weights: &Path, settings: &str, dim: usize) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        hasher.update(content_key(weights)?.as_bytes());
        hasher.update(settings.as_bytes());
        hasher.update(dim.to_le_bytes());
        let dir = root.join(&hex(&hasher.finalize())[..32]);
        std::fs::create_dir_all(&dir)?;
        Ok(FeatureCache { dir, dim })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.f32"))
    }

    /// The row kept for `key`; a missing, short or unreadable file is a miss.
    pub fn get(&self, key: &str) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.file(key)).ok()?;
        (bytes.len() == self.dim * 4).then(|| {
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }

    /// Keeps `row` for `key` (written whole or not at all).
    pub fn put(&self, key: &str, row: &[f32]) -> std::io::Result<()> {
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        atomic_file::write(&self.file(key), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_and_other_settings_or_weights_do_not_share_them() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("w.bin");
        std::fs::write(&weights, b"weights").unwrap();
        let cache = FeatureCache::open(dir.path(), &weights, "224x224 cls", 3).unwrap();
        cache.put("abc", &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(cache.get("abc"), Some(vec![1.0, -2.5, 3.25]));
        assert_eq!(cache.get("missing"), None);
        let other = FeatureCache::open(dir.path(), &weights, "98x98 cls", 3).unwrap();
        assert_eq!(other.get("abc"), None);
        std::fs::write(&weights, b"other weights").unwrap();
        let retrained = FeatureCache::open(dir.path(), &weights, "224x224 cls", 3).unwrap();
        assert_eq!(retrained.get("abc"), None);
        // A truncated file is a miss, not a short row.
        std::fs::write(cache.dir().join("abc.f32"), [0u8; 5]).unwrap();
        assert_eq!(cache.get("abc"), None);
    }
}
