//! Recording frames to an animated GIF (encoded here, with the `image` crate's GIF encoder) or an
//! MP4 (piped to `ffmpeg`), on an encoder thread fed through a short queue. Live recording offers
//! frames and drops those the encoder is too slow for; offline recording waits for it. Frames keep
//! their timing: GIF delays follow the running time, an MP4 (constant rate, the first frame's)
//! repeats or skips frames to follow it. The file appears only once complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage, RgbImage};

use super::VideoError;
use super::ffmpeg::{Mp4Encoder, check_ffmpeg};

/// Frames waiting for the encoder, at most.
const QUEUE: usize = 8;

/// NeuQuant sampling of the GIF palette (1 best, 30 fastest; the gif crate suggests 10).
const GIF_SPEED: i32 = 10;

/// The shortest GIF delay viewers honour (shorter ones are shown at 100 ms by browsers).
const MIN_GIF_DELAY_CS: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    Gif,
    Mp4,
}

impl RecordFormat {
    /// By the file's extension.
    pub fn for_path(path: &Path) -> Result<RecordFormat, VideoError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("gif") => Ok(RecordFormat::Gif),
            Some("mp4") => Ok(RecordFormat::Mp4),
            _ => Err(VideoError::OutputFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// What a recording wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    pub path: PathBuf,
    /// Frames given to the encoder (an MP4 may hold more or fewer to keep the timing).
    pub frames: usize,
    /// `(width, height)` of every frame: the first frame's.
    pub size: (u32, u32),
    /// Frames offered while the encoder was behind, not recorded.
    pub dropped: u64,
}

type Item = (RgbImage, Duration);
type Written = Result<(usize, (u32, u32)), VideoError>;

pub struct Recording {
    path: PathBuf,
    sender: Option<SyncSender<Item>>,
    thread: Option<JoinHandle<Written>>,
    dropped: u64,
    /// Raised by [`Recording::abandon`]: the encoder stops and writes nothing.
    abandoned: Arc<AtomicBool>,
}

impl Recording {
    /// Starts an encoder thread for `path` (`.gif` or `.mp4`); MP4 needs `ffmpeg`.
    pub fn start(path: &Path) -> Result<Recording, VideoError> {
        let format = RecordFormat::for_path(path)?;
        if format == RecordFormat::Mp4 {
            check_ffmpeg("to write MP4 files")?;
        }
        let (sender, frames) = sync_channel(QUEUE);
        let target = path.to_path_buf();
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = abandoned.clone();
        let thread = std::thread::Builder::new()
            .name("dinoscope-recorder".into())
            .spawn(move || {
                let frames = frames.iter().take_while(|_| !flag.load(Ordering::Relaxed));
                match format {
                    RecordFormat::Gif => write_gif(&target, frames, &flag),
                    RecordFormat::Mp4 => write_mp4(&target, frames, &flag),
                }
            })
            .map_err(|e| VideoError::Write {
                path: path.to_path_buf(),
                detail: format!("cannot start the encoder thread: {e}"),
            })?;
        Ok(Recording {
            path: path.to_path_buf(),
            sender: Some(sender),
            thread: Some(thread),
            dropped: 0,
            abandoned,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a frame shown for `duration` unless the encoder is behind, in which case the frame
    /// is dropped (counted); `false` then.
    pub fn offer(&mut self, image: RgbImage, duration: Duration) -> bool {
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| !matches!(s.try_send((image, duration)), Err(TrySendError::Full(_))));
        if !sent {
            self.dropped += 1;
        }
        sent
    }

    /// Queues a frame, waiting for room; the encoder's error if it stopped.
    pub fn push(&mut self, image: RgbImage, duration: Duration) -> Result<(), VideoError> {
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| s.send((image, duration)).is_ok());
        if sent {
            return Ok(());
        }
        self.sender = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(self.stopped()),
        }
    }

    /// Ends the recording: the encoder writes the last frames and the file.
    pub fn finish(mut self) -> Result<RecordSummary, VideoError> {
        self.sender = None;
        let (frames, size) = self.join()?;
        Ok(RecordSummary {
            path: self.path.clone(),
            frames,
            size,
            dropped: self.dropped,
        })
    }

    /// Stops the recording without writing the file (nor leaving a partial one).
    pub fn abandon(mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
        self.sender = None;
        let _ = self.join();
    }

    fn join(&mut self) -> Written {
        let thread = self.thread.take().ok_or_else(|| self.stopped())?;
        thread.join().unwrap_or_else(|payload| {
            Err(VideoError::Write {
                path: self.path.clone(),
                detail: format!(
                    "the encoder failed: {}",
                    crate::panics::message(payload.as_ref())
                ),
            })
        })
    }

    fn stopped(&self) -> VideoError {
        VideoError::Write {
            path: self.path.clone(),
            detail: "the encoder has stopped".into(),
        }
    }
}

impl Drop for Recording {
    /// Dropped without [`Recording::finish`] (the app closing): closing the queue lets the
    /// encoder finish the file with what it was given.
    fn drop(&mut self) {
        self.sender = None;
    }
}

/// The first frame's size; later frames of another size are scaled to it.
fn fit(image: RgbImage, size: &mut Option<(u32, u32)>) -> RgbImage {
    let (w, h) = *size.get_or_insert(image.dimensions());
    if image.dimensions() == (w, h) {
        image
    } else {
        image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle)
    }
}

/// GIF delays (centiseconds) whose running sum follows the frames' running time.
#[derive(Default)]
struct GifClock {
    elapsed: Duration,
    written_cs: u64,
}

impl GifClock {
    fn delay_cs(&mut self, duration: Duration) -> u64 {
        self.elapsed += duration;
        let target = (self.elapsed.as_secs_f64() * 100.0).round() as u64;
        let delay = target.saturating_sub(self.written_cs).max(MIN_GIF_DELAY_CS);
        self.written_cs += delay;
        delay
    }
}

/// How many times each frame goes into a constant-rate video so the running time is kept.
struct RateClock {
    fps: f64,
    elapsed: Duration,
    emitted: u64,
}

impl RateClock {
    fn copies(&mut self, duration: Duration) -> u64 {
        self.elapsed += duration;
        let due = (self.elapsed.as_secs_f64() * self.fps).round() as u64;
        let copies = due
            .saturating_sub(self.emitted)
            .max(u64::from(self.emitted == 0));
        self.emitted += copies;
        copies
    }
}

fn abandoned_error() -> std::io::Error {
    std::io::Error::other("the recording was abandoned")
}

fn write_gif(path: &Path, frames: impl Iterator<Item = Item>, abandoned: &AtomicBool) -> Written {
    let mut count = 0usize;
    let mut size = None;
    let io = std::io::Error::other::<image::ImageError>;
    crate::atomic_file::write_with(path, |out| {
        let mut encoder = GifEncoder::new_with_speed(out, GIF_SPEED);
        encoder.set_repeat(Repeat::Infinite).map_err(io)?;
        let mut clock = GifClock::default();
        for (image, duration) in frames {
            let image = fit(image, &mut size);
            let delay = Delay::from_numer_denom_ms(clock.delay_cs(duration) as u32 * 10, 1);
            let rgba = DynamicImage::ImageRgb8(image).into_rgba8();
            encoder
                .encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                .map_err(io)?;
            count += 1;
        }
        if abandoned.load(Ordering::Relaxed) {
            return Err(abandoned_error());
        }
        if count == 0 {
            return Err(std::io::Error::other("no frames were recorded"));
        }
        Ok(())
    })
    .map_err(|e| VideoError::Write {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok((count, size.unwrap_or_default()))
}

fn write_mp4(path: &Path, frames: impl Iterator<Item = Item>, abandoned: &AtomicBool) -> Written {
    let mut encoder: Option<(Mp4Encoder, RateClock)> = None;
    let mut count = 0usize;
    let mut size = None;
    for (image, duration) in frames {
        let image = fit(image, &mut size);
        let (mp4, clock) = match &mut encoder {
            Some(started) => started,
            None => {
                let fps = 1.0 / duration.as_secs_f64().max(1e-3);
                let mp4 = Mp4Encoder::start(path, image.dimensions(), fps)?;
                let clock = RateClock {
                    fps,
                    elapsed: Duration::ZERO,
                    emitted: 0,
                };
                encoder.insert((mp4, clock))
            }
        };
        for _ in 0..clock.copies(duration) {
            mp4.write(&image)?;
        }
        count += 1;
    }
    if abandoned.load(Ordering::Relaxed) {
        // Dropping the encoder unfinished removes its partial file.
        return Err(VideoError::Write {
            path: path.to_path_buf(),
            detail: abandoned_error().to_string(),
        });
    }
    let Some((mp4, _)) = encoder else {
        return Err(VideoError::Write {
            path: path.to_path_buf(),
            detail: "no frames were recorded".into(),
        });
    };
    mp4.finish()?;
    Ok((count, size.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::animated::AnimatedSource;
    use crate::video::{FrameSource, SyntheticScene};

    #[test]
    fn gif_delays_follow_the_running_time() {
        let mut clock = GifClock::default();
        let delays: Vec<u64> = (0..6)
            .map(|_| clock.delay_cs(Duration::from_secs_f64(1.0 / 30.0)))
            .collect();
        assert_eq!(delays, vec![3, 4, 3, 3, 4, 3]);
        assert_eq!(clock.delay_cs(Duration::from_millis(1)), MIN_GIF_DELAY_CS);
    }

    #[test]
    fn constant_rate_video_repeats_slow_frames_and_skips_fast_ones() {
        let mut clock = RateClock {
            fps: 10.0,
            elapsed: Duration::ZERO,
            emitted: 0,
        };
        let ms = Duration::from_millis;
        let copies: Vec<u64> = [100, 300, 20, 20, 60].map(|d| clock.copies(ms(d))).into();
        assert_eq!(copies, vec![1, 3, 0, 0, 1]);
        assert_eq!(clock.emitted, 5, "5 frames for half a second at 10 fps");
    }

    #[test]
    fn a_recorded_gif_reads_back_frame_by_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.gif");
        let scene = SyntheticScene {
            width: 48,
            height: 32,
            shift: (6, 0),
            ..SyntheticScene::default()
        };
        let frames: Vec<RgbImage> = (0..5).map(|i| scene.frame(i)).collect();
        let mut recording = Recording::start(&path).unwrap();
        for frame in &frames {
            recording
                .push(frame.clone(), Duration::from_millis(40))
                .unwrap();
        }
        let summary = recording.finish().unwrap();
        assert_eq!((summary.frames, summary.size), (5, (48, 32)));
        let mut back = AnimatedSource::open(&path).unwrap();
        let mut read = 0;
        while let Some(frame) = back.next_frame().unwrap() {
            assert_eq!(frame.duration, Duration::from_millis(40));
            // Palette quantisation: each frame is close to its own original, not to the others.
            let distance = |a: &RgbImage, b: &RgbImage| {
                let sum: u64 = a
                    .as_raw()
                    .iter()
                    .zip(b.as_raw())
                    .map(|(x, y)| x.abs_diff(*y) as u64)
                    .sum();
                sum as f64 / a.as_raw().len() as f64
            };
            let own = distance(&frame.image, &frames[read]);
            assert!(own < 12.0, "frame {read}: mean error {own}");
            for (other, original) in frames.iter().enumerate().filter(|(o, _)| *o != read) {
                assert!(
                    distance(&frame.image, original) > own,
                    "frame {read} vs {other}"
                );
            }
            read += 1;
        }
        assert_eq!(read, 5);
        assert!(!crate::atomic_file::partial_path(&path).exists());
    }

    #[test]
    fn an_abandoned_recording_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.gif");
        let mut recording = Recording::start(&path).unwrap();
        recording
            .push(RgbImage::new(8, 8), Duration::from_millis(40))
            .unwrap();
        recording.abandon();
        assert!(!path.exists());
        assert!(!crate::atomic_file::partial_path(&path).exists());
    }

    #[test]
    fn output_formats_come_from_the_extension() {
        assert_eq!(
            RecordFormat::for_path(Path::new("a.GIF")).unwrap(),
            RecordFormat::Gif
        );
        assert_eq!(
            RecordFormat::for_path(Path::new("a.mp4")).unwrap(),
            RecordFormat::Mp4
        );
        assert!(Recording::start(Path::new("a.avi")).is_err());
    }
}
