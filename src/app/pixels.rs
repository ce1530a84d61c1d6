//! The pixels of gallery images: decoded when a job needs them (on the job's thread), kept in one
//! cache bounded in bytes, and capped at a working size, so that a gallery of thousands of images
//! or one of 16,000 x 12,000 pixels holds a bounded amount of memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use image::RgbImage;

use super::cache::BoundedCache;
use super::notifications::AppError;
use crate::model::preprocess::load_rgb;

/// The longest side an image is kept at. Every input size the views offer is far smaller (the
/// patch budget caps the model's input at about 1,500 pixels a side), so a larger original only
/// costs memory and resizing time.
pub const WORKING_LONG_SIDE: u32 = 4096;

/// The bytes of decoded images kept between jobs (the newest is kept however large it is).
pub const DECODED_BUDGET: usize = 256 << 20;

/// An image decoded at its working size.
pub struct WorkingCopy {
    pub rgb: RgbImage,
    /// The size of the file's image, before the working-size cap.
    pub original_size: [u32; 2],
}

/// Decodes `path` and shrinks it to [`WORKING_LONG_SIDE`] if larger (area averaging, which
/// antialiases the way a reduction by several times needs).
pub fn decode_working_copy(path: &Path) -> Result<WorkingCopy, AppError> {
    let rgb = load_rgb(path)?;
    let original_size = [rgb.width(), rgb.height()];
    let [w, h] = working_size(original_size);
    let rgb = if [w, h] == original_size {
        rgb
    } else {
        image::imageops::thumbnail(&rgb, w, h)
    };
    Ok(WorkingCopy { rgb, original_size })
}

/// The size an image of `size` is kept at: the same aspect ratio, the long side at most
/// [`WORKING_LONG_SIDE`].
pub fn working_size([w, h]: [u32; 2]) -> [u32; 2] {
    let long = w.max(h);
    if long <= WORKING_LONG_SIDE {
        return [w, h];
    }
    let scale = |side: u32| {
        ((side as u64 * WORKING_LONG_SIDE as u64 + long as u64 / 2) / long as u64).max(1) as u32
    };
    [scale(w), scale(h)]
}

fn bytes_of(image: &Arc<RgbImage>) -> usize {
    image.as_raw().len()
}

/// The decoded images of the gallery, shared by the loader, the views' jobs and the worker.
#[derive(Clone)]
pub struct PixelStore {
    decoded: Arc<Mutex<BoundedCache<PathBuf, Arc<RgbImage>>>>,
}

impl Default for PixelStore {
    fn default() -> Self {
        Self::with_budget(DECODED_BUDGET)
    }
}

impl PixelStore {
    pub fn with_budget(bytes: usize) -> Self {
        PixelStore {
            decoded: Arc::new(Mutex::new(BoundedCache::with_budget(bytes, bytes_of))),
        }
    }

    fn cache(&self) -> MutexGuard<'_, BoundedCache<PathBuf, Arc<RgbImage>>> {
        // The cache holds no invariant a panicking holder could break half-way.
        self.decoded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The working copy of `path`, decoded now (outside the lock) if it is not kept.
    pub fn get(&self, path: &Path) -> Result<Arc<RgbImage>, AppError> {
        if let Some(found) = self.cache().get_recent(&path.to_path_buf()) {
            return Ok(found.clone());
        }
        let decoded = Arc::new(decode_working_copy(path)?.rgb);
        self.keep(path, decoded.clone());
        Ok(decoded)
    }

    pub fn keep(&self, path: &Path, rgb: Arc<RgbImage>) {
        self.cache().insert(path.to_path_buf(), rgb);
    }

    pub fn forget(&self, path: &Path) {
        self.cache().remove(&path.to_path_buf());
    }

    /// Bytes of decoded pixels kept now.
    pub fn bytes(&self) -> usize {
        self.cache().used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_size_keeps_the_aspect_ratio_and_caps_the_long_side() {
        assert_eq!(working_size([640, 480]), [640, 480]);
        assert_eq!(working_size([4096, 10]), [4096, 10]);
        assert_eq!(working_size([16_000, 12_000]), [4096, 3072]);
        assert_eq!(working_size([3, 20_000]), [1, 4096]);
    }

    #[test]
    fn decoded_images_are_kept_within_the_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let one = RgbImage::new(40, 30).as_raw().len();
        let store = PixelStore::with_budget(2 * one);
        for i in 0..5 {
            let path = dir.path().join(format!("{i}.png"));
            RgbImage::new(40, 30).save(&path).unwrap();
            assert_eq!(store.get(&path).unwrap().dimensions(), (40, 30));
            assert!(store.bytes() <= 2 * one, "{} bytes kept", store.bytes());
        }
        store.forget(&dir.path().join("4.png"));
        assert_eq!(store.bytes(), one);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let store = PixelStore::default();
        let missing = Path::new("/nonexistent/gone.png");
        let error = store.get(missing).unwrap_err().to_string();
        assert!(error.contains("gone.png"), "{error}");
    }
}
