//! Figures of dino-vit-features' co-segmentation scripts (`cosegmentation.py`,
//! `part_cosegmentation.py`): the foreground cut out on a grey checkerboard, and part colours at half opacity.

use image::{GrayImage, Rgb, RgbImage};

/// Side of one checkerboard square, in pixels.
const SQUARE: u32 = 10;
/// The darker squares: grey level 0.75 (the lighter ones are white).
const DARK_GREY: u8 = 191;

/// matplotlib's named colours of the reference's part palette, in its order ("yellow" repeats
/// at the end of the reference list).
const PART_PALETTE: [[u8; 3]; 9] = [
    [255, 0, 0],   // red
    [255, 255, 0], // yellow
    [0, 0, 255],   // blue
    [0, 255, 0],   // lime
    [148, 0, 211], // darkviolet
    [255, 0, 255], // magenta
    [0, 255, 255], // cyan
    [165, 42, 42], // brown
    [255, 255, 0], // yellow
];

/// Above this many parts the reference switches to the jet colormap.
const MAX_PALETTE_PARTS: usize = 10;

/// The reference's background: 10-pixel squares, white where row and column bands have the same
/// parity, grey 0.75 elsewhere (the top-left square is white).
pub fn checkerboard(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let level = if (x / SQUARE + y / SQUARE).is_multiple_of(2) {
            255
        } else {
            DARK_GREY
        };
        Rgb([level; 3])
    })
}

/// The image where `mask` is non-zero, the checkerboard elsewhere. Pixels outside the mask's
/// extent count as background.
pub fn cutout(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let mut out = checkerboard(image.width(), image.height());
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        if mask.get_pixel_checked(x, y).is_some_and(|m| m.0[0] > 0) {
            *pixel = *image.get_pixel(x, y);
        }
    }
    out
}

/// Colour of part `part` of `num_parts`: the reference's `ListedColormap` of its palette over
/// `[0, num_parts - 1]`, or jet for more than 10 parts.
pub fn part_color(part: usize, num_parts: usize) -> [u8; 3] {
    let span = num_parts.saturating_sub(1);
    if num_parts > MAX_PALETTE_PARTS {
        return jet(part as f32 / span as f32);
    }
    let colors = num_parts.clamp(1, PART_PALETTE.len());
    // A ListedColormap of N colours picks floor(v * N) of v = part / (num_parts - 1).
    let index = (part * colors).checked_div(span).unwrap_or(0);
    PART_PALETTE[index.min(colors - 1)]
}

/// Part colours at alpha 0.5 over the image, checkerboard where there is no part (the reference's
/// part figure). `parts` is row-major at the image's resolution.
pub fn parts_overlay(image: &RgbImage, parts: &[Option<usize>], num_parts: usize) -> RgbImage {
    let mut out = checkerboard(image.width(), image.height());
    let width = image.width() as usize;
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let Some(Some(part)) = parts.get(y as usize * width + x as usize) else {
            continue;
        };
        let under = image.get_pixel(x, y).0;
        let color = part_color(*part, num_parts);
        *pixel = Rgb([0, 1, 2].map(|c| (under[c] as u16 + color[c] as u16).div_ceil(2) as u8));
    }
    out
}

/// matplotlib's `jet` (256-entry table) at `t` in [0, 1].
pub fn jet(t: f32) -> [u8; 3] {
    const RED: [(f32, f32); 5] = [
        (0.0, 0.0),
        (0.35, 0.0),
        (0.66, 1.0),
        (0.89, 1.0),
        (1.0, 0.5),
    ];
    const GREEN: [(f32, f32); 6] = [
        (0.0, 0.0),
        (0.125, 0.0),
        (0.375, 1.0),
        (0.64, 1.0),
        (0.91, 0.0),
        (1.0, 0.0),
    ];
    const BLUE: [(f32, f32); 5] = [
        (0.0, 0.5),
        (0.11, 1.0),
        (0.34, 1.0),
        (0.65, 0.0),
        (1.0, 0.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // The table entry matplotlib picks, at its own position on [0, 1].
    let x = ((t * 256.0) as usize).min(255) as f32 / 255.0;
    [
        piecewise(&RED, x),
        piecewise(&GREEN, x),
        piecewise(&BLUE, x),
    ]
    .map(|v| (v * 255.0).round() as u8)
}

fn piecewise(points: &[(f32, f32)], x: f32) -> f32 {
    points
        .windows(2)
        .find(|w| x <= w[1].0)
        .map(|w| {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        })
        .unwrap_or(points[points.len() - 1].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkerboard_has_10_pixel_squares_white_at_the_origin() {
        let board = checkerboard(30, 30);
        assert_eq!(board.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(board.get_pixel(9, 9).0, [255; 3]);
        assert_eq!(board.get_pixel(10, 0).0, [191; 3]);
        assert_eq!(board.get_pixel(0, 10).0, [191; 3]);
        assert_eq!(board.get_pixel(15, 12).0, [255; 3]);
        assert_eq!(board.get_pixel(25, 5).0, [255; 3]);
    }

    #[test]
    fn cutout_keeps_foreground_pixels_only() {
        let image = RgbImage::from_pixel(20, 20, Rgb([1, 2, 3]));
        let mask = GrayImage::from_fn(20, 20, |x, _| image::Luma([if x < 5 { 255 } else { 0 }]));
        let out = cutout(&image, &mask);
        assert_eq!(out.get_pixel(4, 0).0, [1, 2, 3]);
        assert_eq!(out.get_pixel(5, 0).0, [255; 3]);
        assert_eq!(out.get_pixel(12, 0).0, [191; 3]);
    }

    #[test]
    fn palette_follows_the_reference_order() {
        assert_eq!(part_color(0, 4), [255, 0, 0]);
        assert_eq!(part_color(1, 4), [255, 255, 0]);
        assert_eq!(part_color(2, 4), [0, 0, 255]);
        assert_eq!(part_color(3, 4), [0, 255, 0]);
        assert_eq!(part_color(7, 8), [165, 42, 42]);
        assert_eq!(part_color(0, 1), [255, 0, 0]);
        // Ten parts share the nine-colour list: the last two are both yellow.
        assert_eq!(part_color(8, 10), [255, 255, 0]);
        assert_eq!(part_color(9, 10), [255, 255, 0]);
        assert_eq!(part_color(4, 10), [148, 0, 211]);
    }

    #[test]
    fn many_parts_use_jet() {
        assert_eq!(part_color(0, 11), jet(0.0));
        assert_eq!(part_color(10, 11), jet(1.0));
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        // Mid-scale jet is green-dominated.
        let [r, g, b] = jet(0.5);
        assert!(g == 255 && r < 160 && b < 160, "{r} {g} {b}");
    }

    #[test]
    fn parts_blend_at_half_opacity_over_the_image() {
        let image = RgbImage::from_pixel(2, 1, Rgb([100, 100, 100]));
        let out = parts_overlay(&image, &[Some(2), None], 4);
        assert_eq!(out.get_pixel(0, 0).0, [50, 50, 178]);
        assert_eq!(out.get_pixel(1, 0).0, [255; 3]);
    }
}
