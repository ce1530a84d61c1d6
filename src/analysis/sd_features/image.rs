//! How each method feeds an image to Stable Diffusion: DIFT squashes it to a square (PIL's default
//! bicubic `resize`, Tsingularity/dift `extract_dift.py`); SD-DINO letterboxes it (Lanczos, aspect
//! kept, centred on black; Junyi42/sd-dino `utils_correspondence.resize`). Both then map 8-bit
//! values to `[-1, 1]`.

use image::RgbImage;
use image::imageops::FilterType;

/// Where a letterboxed image lies on its square canvas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub canvas: u32,
    /// `(width, height)` of the resized image on the canvas.
    pub scaled: (u32, u32),
    /// Its top-left corner on the canvas.
    pub offset: (u32, u32),
    /// `(width, height)` of the original image.
    pub original: (u32, u32),
}

impl Letterbox {
    /// The longer side becomes `canvas`, the other `round(canvas * short / long)` (NumPy's
    /// `around`: halves to even), centred with the remainder split floor-first.
    pub fn new((width, height): (u32, u32), canvas: u32) -> Letterbox {
        let scale = |short: u32, long: u32| {
            ((canvas as f64 * short as f64 / long.max(1) as f64).round_ties_even() as u32).max(1)
        };
        let scaled = if height <= width {
            (canvas, scale(height, width))
        } else {
            (scale(width, height), canvas)
        };
        Letterbox {
            canvas,
            scaled,
            offset: ((canvas - scaled.0) / 2, (canvas - scaled.1) / 2),
            original: (width, height),
        }
    }

    /// The image resized (Lanczos) and pasted on a black square canvas.
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        let resized = if image.dimensions() == self.scaled {
            image.clone()
        } else {
            image::imageops::resize(image, self.scaled.0, self.scaled.1, FilterType::Lanczos3)
        };
        let mut canvas = RgbImage::new(self.canvas, self.canvas);
        image::imageops::replace(
            &mut canvas,
            &resized,
            self.offset.0 as i64,
            self.offset.1 as i64,
        );
        canvas
    }

    /// A point of the original image on the canvas.
    pub fn to_canvas(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let (sx, sy) = self.scales();
        (x * sx + self.offset.0 as f64, y * sy + self.offset.1 as f64)
    }

    /// A canvas point in the original image (outside it where the canvas is padding).
    pub fn to_original(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let (sx, sy) = self.scales();
        (
            (x - self.offset.0 as f64) / sx,
            (y - self.offset.1 as f64) / sy,
        )
    }

    fn scales(&self) -> (f64, f64) {
        (
            self.scaled.0 as f64 / self.original.0.max(1) as f64,
            self.scaled.1 as f64 / self.original.1.max(1) as f64,
        )
    }
}

/// DIFT's input: the image resized to `width x height` without keeping its aspect ratio, with
/// Catmull-Rom, the cubic PIL's bicubic filter uses.
pub fn squash(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    image::imageops::resize(image, width, height, FilterType::CatmullRom)
}

/// `[3, h, w]` values `(v / 255 - 0.5) * 2`, as both references compute them.
pub fn to_signed_unit(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel[c] as f32 / 255.0 - 0.5) * 2.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landscape_and_portrait_images_are_centred_as_sd_dino_pastes_them() {
        let wide = Letterbox::new((640, 480), 960);
        assert_eq!((wide.scaled, wide.offset), ((960, 720), (0, 120)));
        let tall = Letterbox::new((300, 500), 840);
        assert_eq!((tall.scaled, tall.offset), ((504, 840), (168, 0)));
        // 10 * 1 / 4 = 2.5 rounds to the even 2, as numpy.around does; the odd remainder goes after.
        let half = Letterbox::new((4, 1), 10);
        assert_eq!((half.scaled, half.offset), ((10, 2), (0, 4)));
    }

    #[test]
    fn points_map_to_the_canvas_and_back() {
        let letterbox = Letterbox::new((640, 480), 960);
        let p = letterbox.to_canvas((320.0, 0.0));
        assert_eq!(p, (480.0, 120.0));
        assert_eq!(letterbox.to_original(p), (320.0, 0.0));
    }

    #[test]
    fn the_canvas_is_black_outside_the_image() {
        let image = RgbImage::from_pixel(40, 20, image::Rgb([200, 100, 50]));
        let canvas = Letterbox::new((40, 20), 64).apply(&image);
        assert_eq!(canvas.dimensions(), (64, 64));
        assert_eq!(canvas.get_pixel(10, 5).0, [0, 0, 0]);
        assert_eq!(canvas.get_pixel(32, 32).0, [200, 100, 50]);
    }

    #[test]
    fn pixels_become_signed_unit_values_channel_first() {
        let image = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb([0, 255, if x == 0 { 51 } else { 102 }])
        });
        let values = to_signed_unit(&image);
        let expected = [-1.0, -1.0, 1.0, 1.0, -0.6, -0.2];
        assert!(
            values
                .iter()
                .zip(expected)
                .all(|(v, e)| (v - e).abs() < 1e-6),
            "{values:?}"
        );
    }
}
