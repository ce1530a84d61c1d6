//! Frames in and out: every frame source behind one trait ([`FrameSource`]: a synthetic scene, a
//! folder of frames, an animated GIF / WebP / APNG, a video file or a camera through the system
//! `ffmpeg` program), a player thread that keeps only the newest frame ([`latest`], [`player`]),
//! and recording frames to an animated GIF or an MP4 ([`record`]).
//!
//! Below `analysis`: nothing here knows a model.

pub mod animated;
pub mod ffmpeg;
pub mod folder;
pub mod latest;
pub mod player;
pub mod record;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;

pub use ffmpeg::CaptureSpec;
pub use synthetic::SyntheticScene;

/// The frame rate of sources that carry none (a folder of frames).
pub const DEFAULT_FPS: f64 = 25.0;

/// One decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Position in the source, from 0 (the player numbers frames across loops).
    pub index: u64,
    pub image: RgbImage,
    /// How long the frame is shown when played at the source's own pace.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(
        "`{program}` was not found on the PATH; it is needed {needed_for}. Install FFmpeg (Debian / \
         Ubuntu: `apt install ffmpeg`, macOS: `brew install ffmpeg`, Windows: `winget install \
         ffmpeg`), which brings `ffmpeg` and `ffprobe`. Animated GIF / WebP / PNG files, folders of \
         frames and GIF output work without it"
    )]
    ToolMissing {
        program: &'static str,
        needed_for: &'static str,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Decode { path: PathBuf, detail: String },
    #[error("{}: no frames", path.display())]
    NoFrames { path: PathBuf },
    #[error("{what}: `{program}` failed: {detail}")]
    Tool {
        program: &'static str,
        what: String,
        detail: String,
    },
    #[error("{}: cannot write: {detail}", path.display())]
    Write { path: PathBuf, detail: String },
    #[error("{}: unknown output format: use a .gif or .mp4 file name", path.display())]
    OutputFormat { path: PathBuf },
}

/// Frames one after the other, from any source.
pub trait FrameSource {
    /// The next frame; `Ok(None)` at the end.
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError>;

    /// Frames in all, when known before reading them (progress bars).
    fn frame_count(&self) -> Option<usize> {
        None
    }

    /// A camera: frames come at their own pace and never end.
    fn is_live(&self) -> bool {
        false
    }
}

/// What to open: a source described by value, so it can be stored and opened on the thread that
/// reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    Synthetic(SyntheticScene),
    /// A folder of image files, in natural name order.
    Folder(PathBuf),
    /// An animated GIF, WebP or PNG (a still image is one frame).
    Animated(PathBuf),
    /// A video file, decoded by `ffmpeg`.
    Video(PathBuf),
    Capture(CaptureSpec),
}

/// Extensions opened as animated images rather than videos.
pub const ANIMATED_EXTENSIONS: [&str; 4] = ["gif", "webp", "png", "apng"];

/// Extensions offered as videos in file dialogs (anything `ffmpeg` reads works).
pub const VIDEO_EXTENSIONS: [&str; 8] = ["mp4", "mov", "mkv", "webm", "avi", "m4v", "mpg", "ogv"];

impl SourceSpec {
    /// A folder, an animated image by its extension, else a video file.
    pub fn for_path(path: &Path) -> SourceSpec {
        let animated = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ANIMATED_EXTENSIONS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(e))
        });
        if path.is_dir() {
            SourceSpec::Folder(path.to_path_buf())
        } else if animated {
            SourceSpec::Animated(path.to_path_buf())
        } else {
            SourceSpec::Video(path.to_path_buf())
        }
    }

    pub fn open(&self) -> Result<Box<dyn FrameSource>, VideoError> {
        Ok(match self {
            SourceSpec::Synthetic(scene) => Box::new(scene.source()),
            SourceSpec::Folder(path) => Box::new(folder::FolderSource::open(path)?),
            SourceSpec::Animated(path) => Box::new(animated::AnimatedSource::open(path)?),
            SourceSpec::Video(path) => Box::new(ffmpeg::FfmpegSource::open_file(path)?),
            SourceSpec::Capture(spec) => Box::new(ffmpeg::FfmpegSource::open_capture(spec)?),
        })
    }

    /// A short name for the user.
    pub fn label(&self) -> String {
        let name = |p: &Path| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        };
        match self {
            SourceSpec::Synthetic(_) => "synthetic scene".into(),
            SourceSpec::Folder(p) | SourceSpec::Animated(p) | SourceSpec::Video(p) => name(p),
            SourceSpec::Capture(c) => format!("camera {}", c.device),
        }
    }
}

/// The duration of one frame at `fps` frames per second (the default rate when `fps` is not a
/// positive number).
pub fn frame_duration(fps: f64) -> Duration {
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        DEFAULT_FPS
    };
    Duration::from_secs_f64(1.0 / fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_open_as_folder_animation_or_video() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            SourceSpec::for_path(dir.path()),
            SourceSpec::Folder(dir.path().into())
        );
        let gif = Path::new("clip.GIF");
        assert_eq!(SourceSpec::for_path(gif), SourceSpec::Animated(gif.into()));
        let mp4 = Path::new("clip.mp4");
        assert_eq!(SourceSpec::for_path(mp4), SourceSpec::Video(mp4.into()));
    }

    #[test]
    fn frame_durations_fall_back_to_the_default_rate() {
        assert_eq!(frame_duration(10.0), Duration::from_millis(100));
        assert_eq!(frame_duration(0.0), frame_duration(DEFAULT_FPS));
        assert_eq!(frame_duration(f64::NAN), frame_duration(DEFAULT_FPS));
    }
}
