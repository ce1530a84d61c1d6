//! Animated images decoded by the `image` crate: GIF, WebP and APNG frames (composited to full
//! frames by the decoder, transparency flattened on white as for still images), each with its own
//! delay. A still PNG or WebP is a one-frame animation.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, ImageFormat};

use super::{DEFAULT_FPS, Frame, FrameSource, VideoError, frame_duration};
use crate::model::preprocess::{flatten_to_rgb, load_rgb};

/// Delays shorter than this are shown at this length (browsers treat 0 and 10 ms GIF delays as
/// 100 ms; a zero delay here would make a paced player spin).
const MIN_DELAY: Duration = Duration::from_millis(20);

enum Frames {
    Animation(image::Frames<'static>),
    /// A still image, not yet returned.
    Still(Option<image::RgbImage>),
}

pub struct AnimatedSource {
    path: PathBuf,
    frames: Frames,
    next: u64,
}

impl AnimatedSource {
    pub fn open(path: &Path) -> Result<AnimatedSource, VideoError> {
        let decode = |e: image::ImageError| VideoError::Decode {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let io = |source| VideoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let format = image::ImageReader::open(path)
            .map_err(io)?
            .with_guessed_format()
            .map_err(io)?
            .format();
        let reader = || File::open(path).map(BufReader::new).map_err(io);
        let frames = match format {
            Some(ImageFormat::Gif) => {
                Frames::Animation(GifDecoder::new(reader()?).map_err(decode)?.into_frames())
            }
            Some(ImageFormat::Png) => {
                let decoder = PngDecoder::new(reader()?).map_err(decode)?;
                if decoder.is_apng().map_err(decode)? {
                    Frames::Animation(decoder.apng().map_err(decode)?.into_frames())
                } else {
                    Frames::Still(Some(flatten_to_rgb(
                        DynamicImage::from_decoder(decoder).map_err(decode)?,
                    )))
                }
            }
            Some(ImageFormat::WebP) => {
                let decoder = WebPDecoder::new(reader()?).map_err(decode)?;
                if decoder.has_animation() {
                    Frames::Animation(decoder.into_frames())
                } else {
                    Frames::Still(Some(flatten_to_rgb(
                        DynamicImage::from_decoder(decoder).map_err(decode)?,
                    )))
                }
            }
            _ => Frames::Still(Some(load_rgb(path).map_err(|e| VideoError::Decode {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?)),
        };
        Ok(AnimatedSource {
            path: path.to_path_buf(),
            frames,
            next: 0,
        })
    }
}

impl FrameSource for AnimatedSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        let (image, duration) = match &mut self.frames {
            Frames::Still(image) => match image.take() {
                Some(image) => (image, frame_duration(DEFAULT_FPS)),
                None => return Ok(None),
            },
            Frames::Animation(frames) => match frames.next() {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(VideoError::Decode {
                        path: self.path.clone(),
                        detail: format!("frame {}: {e}", self.next),
                    });
                }
                Some(Ok(frame)) => {
                    let (numerator, denominator) = frame.delay().numer_denom_ms();
                    let ms = numerator as f64 / denominator.max(1) as f64;
                    let duration = Duration::from_secs_f64(ms / 1e3).max(MIN_DELAY);
                    let rgba = DynamicImage::ImageRgba8(frame.into_buffer());
                    (flatten_to_rgb(rgba), duration)
                }
            },
        };
        let index = self.next;
        self.next += 1;
        Ok(Some(Frame {
            index,
            image,
            duration,
        }))
    }
}
