//! Recording what the live view shows: each shown frame lasts until the next one is shown, so a
//! frame is handed to the encoder when its successor arrives (or when recording stops). The
//! encoder runs on its own thread; frames it is too slow for are dropped, never queued.

use std::path::Path;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::video::VideoError;
use crate::video::record::{RecordSummary, Recording};

/// How long the last frame lasts when recording stops right after it.
const MIN_LAST: Duration = Duration::from_millis(40);

pub struct LiveRecording {
    recording: Recording,
    /// The frame on screen, since when.
    held: Option<(RgbImage, Instant)>,
    frames: usize,
}

impl LiveRecording {
    pub fn start(path: &Path) -> Result<LiveRecording, VideoError> {
        Ok(LiveRecording {
            recording: Recording::start(path)?,
            held: None,
            frames: 0,
        })
    }

    pub fn path(&self) -> &Path {
        self.recording.path()
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// `image` is shown from `at` on.
    pub fn shown(&mut self, image: &RgbImage, at: Instant) {
        if let Some((previous, since)) = self.held.replace((image.clone(), at)) {
            self.offer(previous, at.duration_since(since));
        }
    }

    fn offer(&mut self, image: RgbImage, duration: Duration) {
        if self.recording.offer(image, duration) {
            self.frames += 1;
        }
    }

    /// Ends the recording at `at` (blocks until the encoder has written the file: run it off the
    /// UI thread).
    pub fn finish(mut self, at: Instant) -> Result<RecordSummary, VideoError> {
        if let Some((last, since)) = self.held.take() {
            self.offer(last, at.duration_since(since).max(MIN_LAST));
        }
        self.recording.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_lasts_until_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.gif");
        let mut recording = LiveRecording::start(&path).unwrap();
        let start = Instant::now();
        let ms = Duration::from_millis;
        for (i, t) in [0u64, 100, 300].into_iter().enumerate() {
            recording.shown(
                &RgbImage::from_pixel(8, 8, image::Rgb([80 * i as u8; 3])),
                start + ms(t),
            );
        }
        assert_eq!(recording.frames(), 2);
        let summary = recording.finish(start + ms(310)).unwrap();
        assert_eq!(summary.frames, 3);
        let mut back = crate::video::animated::AnimatedSource::open(&path).unwrap();
        let durations: Vec<Duration> =
            std::iter::from_fn(|| crate::video::FrameSource::next_frame(&mut back).unwrap())
                .map(|f| f.duration)
                .collect();
        assert_eq!(durations, vec![ms(100), ms(200), ms(40)]);
    }
}
