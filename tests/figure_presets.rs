//! The DINO paper-figure preset against facebookresearch/dino's `visualize_attention.py`
//! (tests/fixtures/dino_figure.safetensors, written by tools/make_figure_fixtures.py): each head's
//! 60 % mass mask, the script's display image and `display_instances`' colour blend, exactly.

mod common;

use dinoscope::analysis::attention::AttentionMaps;
use dinoscope::analysis::figure_presets::{
    DINO_MASS, GAP, contour, dino_attention_figure, dino_overlay, head_colors, head_masks,
    script_display_image,
};
use dinoscope::model::Grid;
use image::RgbImage;

const ROWS: usize = 5;
const COLS: usize = 7;
const PATCH: usize = 4;

fn rgb(shape: &[usize], data: &[f32]) -> RgbImage {
    assert_eq!(shape, [ROWS * PATCH, COLS * PATCH, 3]);
    let bytes = data.iter().map(|&v| v as u8).collect();
    RgbImage::from_raw((COLS * PATCH) as u32, (ROWS * PATCH) as u32, bytes).unwrap()
}

struct Fixture {
    image: RgbImage,
    maps: AttentionMaps,
    masks: Vec<Vec<bool>>,
    display: RgbImage,
    overlay: RgbImage,
}

fn fixture() -> Fixture {
    let t = common::read_expected("dino_figure.safetensors");
    let (shape, values) = t["attention"].clone();
    let heads = shape[0];
    let (_, masks) = &t["masks"];
    Fixture {
        image: rgb(&t["image"].0, &t["image"].1),
        maps: AttentionMaps {
            heads,
            grid: Grid {
                rows: ROWS,
                cols: COLS,
                patch: PATCH,
                stride: PATCH,
            },
            values,
        },
        masks: masks
            .chunks_exact(ROWS * COLS)
            .map(|m| m.iter().map(|&v| v == 1.0).collect())
            .collect(),
        display: rgb(&t["display"].0, &t["display"].1),
        overlay: rgb(&t["overlay"].0, &t["overlay"].1),
    }
}

#[test]
fn every_heads_mask_is_the_scripts() {
    let f = fixture();
    let heads: Vec<usize> = (0..f.maps.heads).collect();
    let masks = head_masks(&f.maps, &heads, DINO_MASS);
    assert_eq!(masks.len(), 4);
    for (head, (ours, theirs)) in masks.iter().zip(&f.masks).enumerate() {
        assert_eq!((ours.rows, ours.cols), (ROWS, COLS));
        assert_eq!(&ours.kept, theirs, "head {head}");
    }
}

#[test]
fn the_display_image_and_the_blend_are_the_scripts_exactly() {
    let f = fixture();
    let display = script_display_image(&f.image);
    assert_eq!(
        display, f.display,
        "make_grid(normalize, scale_each) + save_image"
    );
    assert_ne!(
        display, f.image,
        "the script shows the rescaled normalised input"
    );

    let heads: Vec<usize> = (0..f.maps.heads).collect();
    let masks = head_masks(&f.maps, &heads, DINO_MASS);
    let overlay = dino_overlay(&display, &masks, &head_colors(masks.len()));
    // The fixture has no contours (matplotlib draws them as polygons): compare every other pixel,
    // and check that the contour pixels are each in its head's colour.
    let (w, h) = overlay.dimensions();
    let outlines: Vec<Vec<(u32, u32)>> = masks.iter().map(|m| contour(m, w, h)).collect();
    let on_outline = |x, y| outlines.iter().any(|o| o.contains(&(x, y)));
    let mut compared = 0;
    for (x, y, pixel) in overlay.enumerate_pixels() {
        if !on_outline(x, y) {
            assert_eq!(pixel, f.overlay.get_pixel(x, y), "pixel ({x}, {y})");
            compared += 1;
        }
    }
    assert!(
        compared > (w * h) as usize / 3,
        "{compared} pixels compared"
    );
    let colours = head_colors(masks.len());
    let last = outlines.len() - 1;
    for &(x, y) in &outlines[last] {
        let want = colours[last].map(|c| (c * 255.0).round() as u8);
        assert_eq!(
            overlay.get_pixel(x, y).0,
            want,
            "the last head's outline is on top"
        );
    }
    assert!(outlines.iter().all(|o| !o.is_empty()));
}

#[test]
fn the_figure_puts_the_display_image_beside_the_overlay() {
    let f = fixture();
    let figure = dino_attention_figure(&f.image, &f.maps, &[2, 0], DINO_MASS);
    let (w, h) = f.image.dimensions();
    assert_eq!(figure.dimensions(), (2 * w + GAP, h));
    let masks = head_masks(&f.maps, &[2, 0], DINO_MASS);
    let overlay = dino_overlay(&f.display, &masks, &head_colors(2));
    for y in 0..h {
        for x in 0..w {
            assert_eq!(figure.get_pixel(x, y), f.display.get_pixel(x, y));
            assert_eq!(figure.get_pixel(w + GAP + x, y), overlay.get_pixel(x, y));
        }
        for x in w..w + GAP {
            assert_eq!(figure.get_pixel(x, y).0, [255, 255, 255]);
        }
    }
}
