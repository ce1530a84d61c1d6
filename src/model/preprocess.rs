//! Image decoding and the DINO input pipeline: resize, crop to the patch grid, ImageNet normalisation.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, imageops::FilterType};

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest image side accepted from a file (decoders refuse anything larger before allocating).
pub const MAX_DECODE_SIDE: u32 = 16_384;
/// Default cap on patches per image; larger inputs are downscaled (a note says so).
pub const DEFAULT_MAX_PATCHES: usize = 12_000;

#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable image ({detail})", path.display())]
    Decode { path: PathBuf, detail: String },
    #[error("{}: image is too large ({detail}); the limit is {MAX_DECODE_SIDE} pixels per side", path.display())]
    TooLarge { path: PathBuf, detail: String },
    #[error("image of {width}x{height} is smaller than one {patch}-pixel patch")]
    TooSmall {
        width: u32,
        height: u32,
        patch: usize,
    },
}

/// How an image is resized before patching (`--resize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resize {
    /// Keep the size; crop (top-left) to a multiple of the patch size.
    #[default]
    None,
    /// Scale so the shorter side has this many pixels, keeping the aspect ratio.
    ShortSide(u32),
    /// Scale to exactly this size.
    Exact { width: u32, height: u32 },
}

impl FromStr for Resize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid resize `{s}`: use `none`, a short side like `480`, or `WxH` like `640x480`"
            )
        };
        let positive = |v: &str| v.trim().parse::<u32>().ok().filter(|&v| v > 0);
        if s.eq_ignore_ascii_case("none") {
            return Ok(Resize::None);
        }
        if let Some((w, h)) = s.split_once(['x', 'X']) {
            return Ok(Resize::Exact {
                width: positive(w).ok_or_else(bad)?,
                height: positive(h).ok_or_else(bad)?,
            });
        }
        positive(s).map(Resize::ShortSide).ok_or_else(bad)
    }
}

/// An image ready for the model: the pixels actually seen (after resize and crop) and the tensor.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    pub rgb: RgbImage,
    /// `[3, H, W]` normalised, channel-major.
    pub normalized: Vec<f32>,
    /// Set when the image had to be downscaled to stay under the patch budget.
    pub note: Option<String>,
    /// `(width, height)` of the decoded image before any resize.
    pub original_size: (u32, u32),
    /// `(width, height)` after resizing, before the crop to the patch grid: pixel `x` of the
    /// original maps to `x * resized.0 / original.0` here (the crop keeps the top-left corner).
    pub resized_size: (u32, u32),
}

impl PreparedImage {
    pub fn width(&self) -> usize {
        self.rgb.width() as usize
    }

    pub fn height(&self) -> usize {
        self.rgb.height() as usize
    }

    /// `[1, 3, H, W]` on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.normalized.clone(), [1, 3, self.height(), self.width()]),
            device,
        )
    }
}

/// Decodes an image file (any supported format, EXIF orientation applied) to 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let io = |source| ImageLoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let decode = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => ImageLoadError::TooLarge {
            path: path.to_path_buf(),
            detail: l.to_string(),
        },
        image::ImageError::IoError(e) => io(e),
        other => ImageLoadError::Decode {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    };
    let mut reader = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode)?;
    let orientation = decoder.orientation().map_err(decode)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode)?;
    image.apply_orientation(orientation);
    Ok(flatten_to_rgb(image))
}

/// RGB conversion; transparent pixels are composited on white so cut-outs keep their shape.
pub fn flatten_to_rgb(image: DynamicImage) -> RgbImage {
    // `into_*` moves the decoded buffer where it already has the layout (no second copy of a
    // large image).
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = a as u32;
        let blend = |c: u8| ((c as u32 * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

/// Resizes, crops to the patch grid and normalises an image.
///
/// With [`Resize::None`] and sides already multiples of `patch`, the pixels are used untouched.
pub fn prepare(
    image: &RgbImage,
    resize: Resize,
    patch: usize,
    max_patches: usize,
) -> Result<PreparedImage, ImageLoadError> {
    let (w, h) = (image.width(), image.height());
    let (tw, th, note) = resized_size(w, h, resize, patch, max_patches);
    let cw = tw - tw % patch as u32;
    let ch = th - th % patch as u32;
    if cw == 0 || ch == 0 {
        return Err(ImageLoadError::TooSmall {
            width: tw,
            height: th,
            patch,
        });
    }
    let resized = if (tw, th) == (w, h) {
        image.clone()
    } else {
        image::imageops::resize(image, tw, th, FilterType::Lanczos3)
    };
    let rgb = if (cw, ch) == (tw, th) {
        resized
    } else {
        image::imageops::crop_imm(&resized, 0, 0, cw, ch).to_image()
    };
    Ok(PreparedImage {
        normalized: normalize(&rgb),
        rgb,
        note,
        original_size: (w, h),
        resized_size: (tw, th),
    })
}

/// The size [`prepare`] resizes a `w x h` image to (before cropping to the patch grid), and the
/// note it adds when the patch budget forces a smaller size.
pub fn resized_size(
    w: u32,
    h: u32,
    resize: Resize,
    patch: usize,
    max_patches: usize,
) -> (u32, u32, Option<String>) {
    let (mut tw, mut th) = match resize {
        Resize::None => (w, h),
        Resize::ShortSide(s) => {
            let short = w.min(h) as f64;
            let scale = s as f64 / short;
            (
                (w as f64 * scale).round() as u32,
                (h as f64 * scale).round() as u32,
            )
        }
        Resize::Exact { width, height } => (width, height),
    };
    let mut note = None;
    let patches = (tw as usize / patch) * (th as usize / patch);
    if patches > max_patches {
        let scale = (max_patches as f64 / patches as f64).sqrt();
        let (nw, nh) = ((tw as f64 * scale) as u32, (th as f64 * scale) as u32);
        note = Some(format!(
            "image downscaled from {tw}x{th} to {nw}x{nh} to stay under {max_patches} patches"
        ));
        (tw, th) = (nw, nh);
    }
    (tw, th, note)
}

/// `(x / 255 - mean) / std` per channel, laid out `[3, H, W]` (torchvision's ToTensor + Normalize).
pub fn normalize(rgb: &RgbImage) -> Vec<f32> {
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel.0[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    #[test]
    fn resize_parses_all_forms() {
        assert_eq!("none".parse(), Ok(Resize::None));
        assert_eq!("480".parse(), Ok(Resize::ShortSide(480)));
        assert_eq!(
            "640x480".parse(),
            Ok(Resize::Exact {
                width: 640,
                height: 480
            })
        );
        assert!("0".parse::<Resize>().is_err());
        assert!("big".parse::<Resize>().is_err());
    }

    #[test]
    fn none_keeps_pixels_when_sides_are_multiples_of_the_patch() {
        let img = gradient(48, 32);
        let p = prepare(&img, Resize::None, 16, DEFAULT_MAX_PATCHES).unwrap();
        assert_eq!(p.rgb, img);
        assert!(p.note.is_none());
    }

    #[test]
    fn none_crops_top_left_to_the_patch_grid() {
        let img = gradient(50, 37);
        let p = prepare(&img, Resize::None, 16, DEFAULT_MAX_PATCHES).unwrap();
        assert_eq!((p.width(), p.height()), (48, 32));
        assert_eq!(p.rgb.get_pixel(47, 31), img.get_pixel(47, 31));
    }

    #[test]
    fn short_side_keeps_the_aspect_ratio() {
        let p = prepare(
            &gradient(300, 200),
            Resize::ShortSide(100),
            10,
            DEFAULT_MAX_PATCHES,
        )
        .unwrap();
        assert_eq!((p.width(), p.height()), (150, 100));
    }

    #[test]
    fn huge_inputs_are_downscaled_with_a_note() {
        let p = prepare(&gradient(800, 800), Resize::None, 8, 2_500).unwrap();
        assert!(p.width() * p.height() / 64 <= 2_500);
        assert!(p.note.unwrap().contains("downscaled"));
    }

    #[test]
    fn too_small_is_an_error() {
        let err = prepare(&gradient(7, 30), Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap_err();
        assert!(err.to_string().contains("smaller than one 8-pixel patch"));
    }

    #[test]
    fn normalisation_matches_torchvision() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let n = normalize(&img);
        assert!((n[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((n[1] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((n[2] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }

    #[test]
    fn transparent_pixels_become_white() {
        let rgba = image::RgbaImage::from_pixel(2, 2, image::Rgba([10, 20, 30, 0]));
        let rgb = flatten_to_rgb(DynamicImage::ImageRgba8(rgba));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
    }
}
