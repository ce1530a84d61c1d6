//! `DataAugmentationDINO` (DINO v1 `main_dino.py`) on `image::RgbImage`, driven by a seeded [`Rng`].
//!
//! Views, in order: global 1 = RandomResizedCrop(scale `global_scale`) -> flip / colour jitter / grayscale
//! -> Gaussian blur (p 1.0); global 2 = the same with blur p 0.1, then solarization p 0.2; `local_crops`
//! locals = RandomResizedCrop(`local_size`, `local_scale`) -> flip / jitter / grayscale -> blur p 0.5. Every
//! view is then ImageNet-normalised. The operations follow torchvision / PIL on 8-bit images; the one
//! deliberate difference is the blur, a true Gaussian (sigma = radius, edges clamped) where PIL uses three
//! box-blur passes that approximate it.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use crate::model::preprocess::normalize;
use crate::rng::Rng;

/// Sizes and scales of the multi-crop views. DINO's are 224 / 96 px and 8 locals; the defaults here are
/// for the small models this crate trains on a CPU.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    pub global_size: u32,
    pub local_size: u32,
    pub local_crops: usize,
    pub global_scale: (f64, f64),
    pub local_scale: (f64, f64),
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            global_size: 64,
            local_size: 32,
            local_crops: 4,
            global_scale: (0.4, 1.0),
            local_scale: (0.05, 0.4),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    #[error("crop sizes must be positive (global {global}, local {local})")]
    Size { global: u32, local: u32 },
    #[error("crop scale ({0}, {1}) must satisfy 0 < min <= max <= 1")]
    Scale(f64, f64),
}

impl AugmentConfig {
    pub fn validate(&self) -> Result<(), AugmentError> {
        if self.global_size == 0 || (self.local_crops > 0 && self.local_size == 0) {
            return Err(AugmentError::Size {
                global: self.global_size,
                local: self.local_size,
            });
        }
        for (lo, hi) in [self.global_scale, self.local_scale] {
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return Err(AugmentError::Scale(lo, hi));
            }
        }
        Ok(())
    }

    /// Views per image: 2 globals + the locals.
    pub fn ncrops(&self) -> usize {
        2 + self.local_crops
    }

    /// Side of view `v` (0 and 1 are the globals).
    pub fn view_size(&self, v: usize) -> u32 {
        if v < 2 {
            self.global_size
        } else {
            self.local_size
        }
    }
}

/// The default aspect-ratio range of `RandomResizedCrop`.
pub const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// `RandomResizedCrop.get_params`: `(left, top, width, height)` of the crop. Ten tries of an area in
/// `scale` times the image area and a log-uniform aspect ratio in `ratio`; then the central crop with
/// the ratio clamped into range.
pub fn resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> (u32, u32, u32, u32) {
    let (w0, h0) = (width as f64, height as f64);
    let area = w0 * h0;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1);
        let aspect = rng.range(log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w > 0.0 && w <= w0 && h > 0.0 && h <= h0 {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below((height - h + 1) as usize) as u32;
            let left = rng.below((width - w + 1) as usize) as u32;
            return (left, top, w, h);
        }
    }
    let in_ratio = w0 / h0;
    let (w, h) = if in_ratio < ratio.0 {
        (width, ((w0 / ratio.0).round() as u32).clamp(1, height))
    } else if in_ratio > ratio.1 {
        (((h0 * ratio.1).round() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// Crop then bicubic (Catmull-Rom) resize to `size x size`.
pub fn random_resized_crop(
    img: &RgbImage,
    size: u32,
    scale: (f64, f64),
    rng: &mut Rng,
) -> RgbImage {
    let (left, top, w, h) = resized_crop_box(img.width(), img.height(), scale, RATIO, rng);
    let crop = imageops::crop_imm(img, left, top, w, h).to_image();
    imageops::resize(&crop, size, size, FilterType::CatmullRom)
}

pub fn hflip(img: &RgbImage) -> RgbImage {
    imageops::flip_horizontal(img)
}

/// PIL's `L` conversion: `(19595 R + 38470 G + 7471 B + 2^15) >> 16`, i.e. 0.299 / 0.587 / 0.114.
pub fn luma(p: &Rgb<u8>) -> u8 {
    let [r, g, b] = p.0.map(u32::from);
    ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) as u8
}

/// Three-channel grayscale (`RandomGrayscale` keeps 3 channels).
pub fn grayscale(img: &RgbImage) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let l = luma(img.get_pixel(x, y));
        Rgb([l, l, l])
    })
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// PIL `Image.blend(degenerate, img, factor)` per pixel: `degenerate + factor (img - degenerate)`.
fn blend(img: &mut RgbImage, factor: f32, degenerate: impl Fn(&Rgb<u8>) -> [f32; 3]) {
    for p in img.pixels_mut() {
        let d = degenerate(p);
        for (value, d) in p.0.iter_mut().zip(d) {
            *value = to_u8(d + factor * (*value as f32 - d));
        }
    }
}

pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    blend(img, factor, |_| [0.0; 3]);
}

/// Blend with the mean gray level (PIL `ImageEnhance.Contrast`: `int(mean(L) + 0.5)`).
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let n = (img.width() as u64 * img.height() as u64).max(1);
    let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
    let mean = (sum as f64 / n as f64 + 0.5).floor() as f32;
    blend(img, factor, |_| [mean; 3]);
}

pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    blend(img, factor, |p| [luma(p) as f32; 3]);
}

fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    let h = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    [h, s, max]
}

fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Rotates the hue by `factor` turns (`factor` in `[-0.5, 0.5]`).
pub fn adjust_hue(img: &mut RgbImage, factor: f32) {
    for p in img.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(p.0.map(|c| c as f32 / 255.0));
        let rgb = hsv_to_rgb([h + factor, s, v]);
        p.0 = rgb.map(|c| to_u8(c * 255.0));
    }
}

/// `ColorJitter(brightness, contrast, saturation, hue)`: factors drawn as torchvision does, the four
/// adjustments applied in a random order.
pub fn color_jitter(img: &mut RgbImage, rng: &mut Rng, b: f64, c: f64, s: f64, h: f64) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let factor = |rng: &mut Rng, x: f64| rng.range((1.0 - x).max(0.0), 1.0 + x) as f32;
    let (fb, fc, fs, fh) = (
        factor(rng, b),
        factor(rng, c),
        factor(rng, s),
        rng.range(-h, h) as f32,
    );
    for op in order {
        match op {
            0 => adjust_brightness(img, fb),
            1 => adjust_contrast(img, fc),
            2 => adjust_saturation(img, fs),
            _ => adjust_hue(img, fh),
        }
    }
}

/// Gaussian blur with standard deviation `sigma` (separable, kernel radius `ceil(3 sigma)`, clamped edges).
pub fn gaussian_blur(img: &RgbImage, sigma: f64) -> RgbImage {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let pass = |src: &[[f32; 3]], horizontal: bool| -> Vec<[f32; 3]> {
        let mut out = vec![[0f32; 3]; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0f32; 3];
                for (k, weight) in kernel.iter().enumerate() {
                    let d = k as i64 - radius;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, w - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h - 1))
                    };
                    let s = src[(sy * w + sx) as usize];
                    for c in 0..3 {
                        acc[c] += weight * s[c];
                    }
                }
                out[(y * w + x) as usize] = acc;
            }
        }
        out
    };
    let src: Vec<[f32; 3]> = img.pixels().map(|p| p.0.map(f32::from)).collect();
    let out = pass(&pass(&src, true), false);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        Rgb(out[(y as i64 * w + x as i64) as usize].map(to_u8))
    })
}

/// PIL `ImageOps.solarize(threshold=128)`: pixels `>= 128` are inverted.
pub fn solarize(img: &mut RgbImage) {
    for p in img.pixels_mut() {
        for c in p.0.iter_mut() {
            if *c >= 128 {
                *c = 255 - *c;
            }
        }
    }
}

/// The DINO v1 multi-crop augmentation.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DataAugmentationDino {
    pub config: AugmentConfig,
}

impl DataAugmentationDino {
    pub fn new(config: AugmentConfig) -> Result<Self, AugmentError> {
        config.validate()?;
        Ok(DataAugmentationDino { config })
    }

    /// `flip_and_color_jitter`: flip p 0.5, jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2.
    fn flip_and_color_jitter(img: RgbImage, rng: &mut Rng) -> RgbImage {
        let mut img = if rng.chance(0.5) { hflip(&img) } else { img };
        if rng.uniform() <= 0.8 {
            color_jitter(&mut img, rng, 0.4, 0.4, 0.2, 0.1);
        }
        if rng.chance(0.2) {
            img = grayscale(&img);
        }
        img
    }

    /// DINO's `GaussianBlur(p)`: applied when `rand <= p`, radius ~ U(0.1, 2.0).
    fn maybe_blur(img: RgbImage, p: f64, rng: &mut Rng) -> RgbImage {
        if rng.uniform() <= p {
            let radius = rng.range(0.1, 2.0);
            gaussian_blur(&img, radius)
        } else {
            img
        }
    }

    /// The views `[g1, g2, l1, ...]` as images (before normalisation).
    pub fn views(&self, img: &RgbImage, rng: &mut Rng) -> Vec<RgbImage> {
        let c = &self.config;
        let mut out = Vec::with_capacity(c.ncrops());
        for (blur, solarize_p) in [(1.0, 0.0), (0.1, 0.2)] {
            let view = random_resized_crop(img, c.global_size, c.global_scale, rng);
            let view = Self::flip_and_color_jitter(view, rng);
            let mut view = Self::maybe_blur(view, blur, rng);
            if solarize_p > 0.0 && rng.chance(solarize_p) {
                solarize(&mut view);
            }
            out.push(view);
        }
        for _ in 0..c.local_crops {
            let view = random_resized_crop(img, c.local_size, c.local_scale, rng);
            let view = Self::flip_and_color_jitter(view, rng);
            out.push(Self::maybe_blur(view, 0.5, rng));
        }
        out
    }

    /// The views ImageNet-normalised, each `[3, size, size]` channel-major.
    pub fn apply(&self, img: &RgbImage, rng: &mut Rng) -> Vec<Vec<f32>> {
        self.views(img, rng).iter().map(normalize).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 3) as u8, (y * 5) as u8, ((x * y) % 256) as u8])
        })
    }

    #[test]
    fn solarize_inverts_from_128() {
        let mut img = RgbImage::from_raw(2, 1, vec![0, 127, 128, 200, 255, 10]).unwrap();
        solarize(&mut img);
        assert_eq!(img.into_raw(), vec![0, 127, 127, 55, 0, 10]);
    }

    #[test]
    fn grayscale_uses_itu_601_weights() {
        for rgb in [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [10, 200, 90],
            [255, 255, 255],
        ] {
            let img = grayscale(&RgbImage::from_raw(1, 1, rgb.to_vec()).unwrap());
            let expected = 0.299 * rgb[0] as f64 + 0.587 * rgb[1] as f64 + 0.114 * rgb[2] as f64;
            let got = img.get_pixel(0, 0).0;
            assert!(got[0] == got[1] && got[1] == got[2]);
            assert!(
                (got[0] as f64 - expected).abs() <= 0.51,
                "{rgb:?}: {got:?} vs {expected}"
            );
        }
    }

    #[test]
    fn flip_mirrors_columns() {
        let img = picture(5, 3);
        let f = hflip(&img);
        assert_eq!(f.get_pixel(0, 2), img.get_pixel(4, 2));
        assert_eq!(hflip(&f), img);
    }

    #[test]
    fn crop_boxes_respect_scale_and_ratio() {
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let (l, t, w, h) = resized_crop_box(100, 80, (0.05, 0.4), RATIO, &mut rng);
            assert!(l + w <= 100 && t + h <= 80 && w > 0 && h > 0);
            let area = (w * h) as f64 / 8000.0;
            assert!(area > 0.04 && area < 0.42, "{area}");
            let ratio = w as f64 / h as f64;
            assert!(ratio > 0.7 && ratio < 1.4, "{ratio}");
        }
        // Impossible areas fall back to the central crop with the ratio clamped.
        let (l, t, w, h) = resized_crop_box(400, 10, (1.0, 1.0), RATIO, &mut rng);
        assert_eq!((w, h), (13, 10));
        assert_eq!((l, t), ((400 - 13) / 2, 0));
    }

    #[test]
    fn brightness_contrast_saturation_hue_known_values() {
        let mut img = RgbImage::from_raw(2, 1, vec![100, 50, 200, 20, 40, 60]).unwrap();
        adjust_brightness(&mut img, 0.5);
        assert_eq!(img.clone().into_raw(), vec![50, 25, 100, 10, 20, 30]);
        let mut gray = RgbImage::from_raw(1, 1, vec![90, 90, 90]).unwrap();
        adjust_saturation(&mut gray, 0.0);
        adjust_contrast(&mut gray, 2.0);
        adjust_hue(&mut gray, 0.3);
        assert_eq!(gray.into_raw(), vec![90, 90, 90]);
        let mut red = RgbImage::from_raw(1, 1, vec![255, 0, 0]).unwrap();
        adjust_hue(&mut red, 1.0 / 3.0);
        assert_eq!(red.into_raw(), vec![0, 255, 0]);
    }

    #[test]
    fn blur_keeps_flat_images_and_smooths_edges() {
        let flat = RgbImage::from_pixel(9, 9, Rgb([77, 77, 77]));
        assert_eq!(gaussian_blur(&flat, 1.5), flat);
        let edge = RgbImage::from_fn(9, 1, |x, _| Rgb([if x < 4 { 0 } else { 255 }; 3]));
        let b = gaussian_blur(&edge, 1.0);
        let v: Vec<u8> = b.pixels().map(|p| p.0[0]).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
        assert!(v[3] > 0 && v[4] < 255);
    }

    #[test]
    fn views_have_the_configured_sizes_and_are_seed_deterministic() {
        let aug = DataAugmentationDino::new(AugmentConfig {
            global_size: 48,
            local_size: 24,
            local_crops: 3,
            ..AugmentConfig::default()
        })
        .unwrap();
        let img = picture(90, 70);
        let views = aug.views(&img, &mut Rng::new(11));
        let sizes: Vec<_> = views.iter().map(|v| v.dimensions()).collect();
        assert_eq!(
            sizes,
            vec![(48, 48), (48, 48), (24, 24), (24, 24), (24, 24)]
        );
        assert_eq!(views, aug.views(&img, &mut Rng::new(11)));
        assert_ne!(views, aug.views(&img, &mut Rng::new(12)));
        let normalized = aug.apply(&img, &mut Rng::new(11));
        assert_eq!(normalized[0].len(), 3 * 48 * 48);
        assert_eq!(normalized[0], normalize(&views[0]));
        assert!(
            DataAugmentationDino::new(AugmentConfig {
                local_scale: (0.5, 0.2),
                ..AugmentConfig::default()
            })
            .is_err()
        );
    }
}
