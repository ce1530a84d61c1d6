//! A folder of frames: its image files in natural name order (`frame-2` before `frame-10`, where
//! a plain sort puts `frame-10000` before `frame-1001`), decoded one at a time.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::{DEFAULT_FPS, Frame, FrameSource, VideoError, frame_duration};
use crate::image_files::find_images;
use crate::model::preprocess::load_rgb;

pub struct FolderSource {
    files: Vec<PathBuf>,
    next: usize,
}

impl FolderSource {
    pub fn open(dir: &Path) -> Result<FolderSource, VideoError> {
        let found = find_images(dir).map_err(|e| VideoError::Io {
            path: e.path,
            source: e.source,
        })?;
        let mut files = found.images;
        if files.is_empty() {
            return Err(VideoError::NoFrames {
                path: dir.to_path_buf(),
            });
        }
        files.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        Ok(FolderSource { files, next: 0 })
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let image = load_rgb(path).map_err(|e| VideoError::Decode {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let index = self.next as u64;
        self.next += 1;
        Ok(Some(Frame {
            index,
            image,
            duration: frame_duration(DEFAULT_FPS),
        }))
    }

    fn frame_count(&self) -> Option<usize> {
        Some(self.files.len())
    }
}

/// Compares names with runs of digits taken as numbers (leading zeros ignored, then the shorter
/// run first so the order is total).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let (ta, tb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
                let order = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| da.len().cmp(&db.len()));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_by_value() {
        let mut names = vec![
            "frame-10000.png",
            "frame-1001.png",
            "frame-2.png",
            "frame-02.png",
            "frame-10.png",
            "a.png",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            vec![
                "a.png",
                "frame-2.png",
                "frame-02.png",
                "frame-10.png",
                "frame-1001.png",
                "frame-10000.png"
            ]
        );
    }

    #[test]
    fn frames_of_a_folder_come_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for i in [10u8, 2, 1] {
            image::RgbImage::from_pixel(8, 8, image::Rgb([i, 0, 0]))
                .save(dir.path().join(format!("f{i}.png")))
                .unwrap();
        }
        let mut source = FolderSource::open(dir.path()).unwrap();
        assert_eq!(source.frame_count(), Some(3));
        let reds: Vec<u8> = std::iter::from_fn(|| source.next_frame().unwrap())
            .map(|f| f.image.get_pixel(0, 0).0[0])
            .collect();
        assert_eq!(reds, vec![1, 2, 10]);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            FolderSource::open(empty.path()),
            Err(VideoError::NoFrames { .. })
        ));
    }
}
