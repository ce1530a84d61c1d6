//! Scalar maps to colours (matplotlib's perceptual colormaps) and nearest-neighbour upsampling.

use image::{Rgb, RgbImage};

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Colormap {
    #[default]
    Viridis,
    Inferno,
    Magma,
    Plasma,
    Turbo,
    Gray,
}

impl Colormap {
    pub const ALL: [Colormap; 6] = [
        Colormap::Viridis,
        Colormap::Inferno,
        Colormap::Magma,
        Colormap::Plasma,
        Colormap::Turbo,
        Colormap::Gray,
    ];

    /// Colour of `t` in `[0, 1]` (clamped).
    pub fn color(self, t: f32) -> [u8; 3] {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0) as f64
        } else {
            0.0
        };
        let gradient = match self {
            Colormap::Viridis => colorous::VIRIDIS,
            Colormap::Inferno => colorous::INFERNO,
            Colormap::Magma => colorous::MAGMA,
            Colormap::Plasma => colorous::PLASMA,
            Colormap::Turbo => colorous::TURBO,
            Colormap::Gray => colorous::GREYS,
        };
        let c = if self == Colormap::Gray {
            gradient.eval_continuous(1.0 - t)
        } else {
            gradient.eval_continuous(t)
        };
        [c.r, c.g, c.b]
    }

    /// 256-entry RGBA lookup table (for GPU shaders).
    pub fn lut(self) -> Vec<[u8; 4]> {
        (0..256)
            .map(|i| {
                let [r, g, b] = self.color(i as f32 / 255.0);
                [r, g, b, 255]
            })
            .collect()
    }
}

/// Min-max scaling to `[0, 1]` (constant maps become 0).
pub fn normalize_min_max(values: &[f32]) -> Vec<f32> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    values
        .iter()
        .map(|&v| if range > 0.0 { (v - lo) / range } else { 0.0 })
        .collect()
}

/// A `rows x cols` map, min-max scaled, coloured and upsampled by `scale` (pixel replication).
pub fn render_map(
    values: &[f32],
    rows: usize,
    cols: usize,
    scale: usize,
    colormap: Colormap,
) -> RgbImage {
    let normalized = normalize_min_max(values);
    RgbImage::from_fn((cols * scale) as u32, (rows * scale) as u32, |x, y| {
        let i = (y as usize / scale) * cols + x as usize / scale;
        Rgb(colormap.color(normalized[i]))
    })
}

/// Overlays a boolean patch mask on an image: masked pixels tinted with `color`, plus outlines.
pub fn overlay_mask(
    image: &RgbImage,
    mask: &[bool],
    rows: usize,
    cols: usize,
    color: [u8; 3],
) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let at = |x: usize, y: usize| {
        mask[(y * rows / h).min(rows - 1) * cols + (x * cols / w).min(cols - 1)]
    };
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (xu, yu) = (x as usize, y as usize);
        let inside = at(xu, yu);
        let edge = inside
            && [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)]
                .iter()
                .any(|(dx, dy)| {
                    let (nx, ny) = (xu as i64 + dx, yu as i64 + dy);
                    nx < 0
                        || ny < 0
                        || nx >= w as i64
                        || ny >= h as i64
                        || !at(nx as usize, ny as usize)
                });
        let p = image.get_pixel(x, y).0;
        if edge {
            Rgb(color)
        } else if inside {
            Rgb([0, 1, 2].map(|c| (p[c] as f32 * 0.5 + color[c] as f32 * 0.5) as u8))
        } else {
            Rgb(p)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_match_matplotlib() {
        // matplotlib: viridis(0) = #440154, viridis(1) = #fde725.
        assert_eq!(Colormap::Viridis.color(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(Colormap::Viridis.color(1.0), [0xfd, 0xe7, 0x25]);
    }

    #[test]
    fn min_max_handles_constant_maps() {
        assert_eq!(normalize_min_max(&[2.0, 2.0]), vec![0.0, 0.0]);
        assert_eq!(normalize_min_max(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    }

    #[test]
    fn render_replicates_pixels() {
        let img = render_map(&[0.0, 1.0], 1, 2, 3, Colormap::Gray);
        assert_eq!((img.width(), img.height()), (6, 3));
        assert_eq!(img.get_pixel(0, 0), img.get_pixel(2, 2));
        assert_ne!(img.get_pixel(2, 0), img.get_pixel(3, 0));
    }
}
