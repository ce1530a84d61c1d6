//! Correspondence figures: side-by-side layout, the reference's circle markers and palette
//! (dino-vit-features' `correspondences.py`) and DIFT's heatmap overlay (Tsingularity/dift's click
//! demo, `demo.ipynb` with `src/utils/visualization.py`).

use image::{Rgb, RgbImage};

use crate::analysis::colormap::{Colormap, normalize_min_max};

/// matplotlib's red, yellow, blue, lime, magenta, indigo, orange, cyan, darkgreen, maroon, black,
/// white, chocolate, gray, blueviolet: `correspondences.py`'s colours for up to 15 pairs.
const PAIR_PALETTE: [[u8; 3]; 15] = [
    [255, 0, 0],
    [255, 255, 0],
    [0, 0, 255],
    [0, 255, 0],
    [255, 0, 255],
    [75, 0, 130],
    [255, 165, 0],
    [0, 255, 255],
    [0, 100, 0],
    [128, 0, 0],
    [0, 0, 0],
    [255, 255, 255],
    [210, 105, 30],
    [128, 128, 128],
    [138, 43, 226],
];

/// matplotlib's tab10, used for more than 15 pairs.
const TAB10: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];

pub const WHITE: [u8; 3] = [255, 255, 255];
pub const RED: [u8; 3] = [255, 0, 0];

/// Colour of pair `index` out of `count` (tab10 cycles past 10 colours).
pub fn pair_color(index: usize, count: usize) -> [u8; 3] {
    if count <= PAIR_PALETTE.len() {
        PAIR_PALETTE[index % PAIR_PALETTE.len()]
    } else {
        TAB10[index % TAB10.len()]
    }
}

/// `left` and `right` next to each other on white, tops aligned.
pub fn side_by_side(left: &RgbImage, right: &RgbImage) -> RgbImage {
    let mut out = RgbImage::from_pixel(
        left.width() + right.width(),
        left.height().max(right.height()),
        Rgb(WHITE),
    );
    image::imageops::replace(&mut out, left, 0, 0);
    image::imageops::replace(&mut out, right, left.width() as i64, 0);
    out
}

fn blend(pixel: &mut Rgb<u8>, color: [u8; 3], alpha: f32) {
    for (p, c) in pixel.0.iter_mut().zip(color) {
        *p = (*p as f32 * (1.0 - alpha) + c as f32 * alpha).round() as u8;
    }
}

/// Blends pixels whose distance `r` from `center` (pixel-index `(x, y)`) satisfies `inside(r)`.
fn paint(
    image: &mut RgbImage,
    center: (f64, f64),
    reach: f64,
    color: [u8; 3],
    alpha: f32,
    inside: impl Fn(f64) -> bool,
) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0, x1) = (
        (center.0 - reach).floor() as i64,
        (center.0 + reach).ceil() as i64,
    );
    let (y0, y1) = (
        (center.1 - reach).floor() as i64,
        (center.1 + reach).ceil() as i64,
    );
    for y in y0.max(0)..=y1.min(h - 1) {
        for x in x0.max(0)..=x1.min(w - 1) {
            if inside((x as f64 - center.0).hypot(y as f64 - center.1)) {
                blend(image.get_pixel_mut(x as u32, y as u32), color, alpha);
            }
        }
    }
}

/// A filled disc with a one-pixel edge, both at `alpha` (a matplotlib `Circle` patch).
pub fn circle(
    image: &mut RgbImage,
    center: (f64, f64),
    radius: f64,
    face: [u8; 3],
    edge: [u8; 3],
    alpha: f32,
) {
    paint(image, center, radius + 1.0, face, alpha, |r| {
        r < radius - 0.5
    });
    paint(image, center, radius + 1.0, edge, alpha, |r| {
        (radius - 0.5..radius + 0.5).contains(&r)
    });
}

/// The reference marker: radius 8 at alpha 0.5 and radius 1 opaque, both with a white edge.
pub fn pair_marker(image: &mut RgbImage, center: (f64, f64), color: [u8; 3]) {
    circle(image, center, 8.0, color, WHITE, 0.5);
    circle(image, center, 1.0, color, WHITE, 1.0);
}

/// A solid dot (DIFT's red scatter marker).
pub fn dot(image: &mut RgbImage, center: (f64, f64), radius: f64, color: [u8; 3]) {
    paint(image, center, radius, color, 1.0, |r| r <= radius);
}

/// `values` (`height x width` of `image`) min-max normalised, coloured and blended over the image.
pub fn overlay_heatmap(
    image: &RgbImage,
    values: &[f32],
    colormap: Colormap,
    alpha: f32,
) -> RgbImage {
    assert_eq!(
        values.len(),
        (image.width() * image.height()) as usize,
        "one value per pixel"
    );
    let normalized = normalize_min_max(values);
    let mut out = image.clone();
    for (pixel, &t) in out.pixels_mut().zip(&normalized) {
        blend(pixel, colormap.color(t), alpha);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_follows_the_reference_then_tab10() {
        assert_eq!(pair_color(0, 10), [255, 0, 0]);
        assert_eq!(pair_color(14, 15), [138, 43, 226]);
        assert_eq!(pair_color(0, 16), [0x1f, 0x77, 0xb4]);
    }

    #[test]
    fn markers_tint_only_around_the_centre() {
        let mut img = RgbImage::from_pixel(40, 20, Rgb([0, 0, 0]));
        pair_marker(&mut img, (10.0, 10.0), [255, 0, 0]);
        assert_eq!(img.get_pixel(10, 10).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(14, 10).0, [128, 0, 0]);
        assert_eq!(img.get_pixel(30, 10).0, [0, 0, 0]);
    }

    #[test]
    fn heatmap_blends_at_the_given_alpha() {
        let img = RgbImage::from_pixel(2, 1, Rgb([0, 0, 0]));
        let out = overlay_heatmap(&img, &[0.0, 1.0], Colormap::Viridis, 0.45);
        // viridis(1) = #fde725.
        assert_eq!(out.get_pixel(1, 0).0, [114, 104, 17]);
        let joined = side_by_side(&img, &out);
        assert_eq!((joined.width(), joined.height()), (4, 1));
    }
}
