//! `dinoscope figure dino|dinov2` on the fixture checkpoints: the PNG is the library's figure of
//! the same model and pixels.

mod common;

use std::path::Path;

use common::{dinoscope, fixture, stderr};
use dinoscope::analysis::attention::{Query, attention_maps};
use dinoscope::analysis::coords::PixelMap;
use dinoscope::analysis::features::{DescriptorSpec, extract};
use dinoscope::analysis::figure_presets::{
    DINO_MASS, GAP, dino_attention_figure, dinov2_pca_figure, dinov2_views,
};
use dinoscope::analysis::pca_rgb::render_patch_colors;
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use dinoscope::model::{Facet, LoadOptions, Resize, load_model};
use image::RgbImage;

fn picture(dir: &Path, name: &str, w: u32, h: u32, seed: u32) -> (std::path::PathBuf, RgbImage) {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 6 + seed) as u8,
            (y * 7) as u8,
            ((x * y + seed) % 251) as u8,
        ])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    (path, img)
}

fn options() -> LoadOptions {
    LoadOptions {
        heads: Some(2),
        ..LoadOptions::default()
    }
}

#[test]
fn the_dino_figure_is_the_librarys() {
    let dir = tempfile::tempdir().unwrap();
    let (path, img) = picture(dir.path(), "picture.png", 40, 32, 0);
    let out = dir.path().join("figure.png");
    let run = dinoscope(&[
        "figure",
        "dino",
        "--weights",
        fixture("v1_p8.pth").to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--image",
        path.to_str().unwrap(),
        "--resize",
        "none",
        "--show-heads",
        "1,0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let written = image::open(&out).unwrap().to_rgb8();
    assert_eq!(written.dimensions(), (40 + GAP + 40, 32));

    let model = load_model(
        &fixture("v1_p8.pth"),
        &options(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let prepared = prepare(&img, Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap();
    let maps = attention_maps(
        &model.vit,
        prepared.to_tensor(&model.vit.device()),
        2,
        Query::Cls,
        8,
    )
    .unwrap();
    assert_eq!(
        written,
        dino_attention_figure(&img, &maps, &[1, 0], DINO_MASS)
    );

    let bad = dinoscope(&[
        "figure",
        "dino",
        "--weights",
        fixture("v1_p8.pth").to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--image",
        path.to_str().unwrap(),
        "--show-heads",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("--show-heads 5"), "{}", stderr(&bad));
}

#[test]
fn the_dinov2_figure_is_the_librarys() {
    let dir = tempfile::tempdir().unwrap();
    let (a, img_a) = picture(dir.path(), "a.png", 56, 42, 0);
    let (b, img_b) = picture(dir.path(), "b.png", 42, 56, 90);
    let out = dir.path().join("figure.png");
    let run = dinoscope(&[
        "figure",
        "dinov2",
        "--weights",
        fixture("v2_p14.pth").to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--resize",
        "none",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let written = image::open(&out).unwrap().to_rgb8();
    assert_eq!(written.dimensions(), (56 + GAP + 42, 56 + GAP + 56));

    let model = load_model(
        &fixture("v2_p14.pth"),
        &options(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let spec = DescriptorSpec {
        layer: 2,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    let prepared: Vec<_> = [&img_a, &img_b]
        .iter()
        .map(|i| prepare(i, Resize::None, 14, DEFAULT_MAX_PATCHES).unwrap())
        .collect();
    let maps: Vec<_> = prepared
        .iter()
        .map(|p| extract(&model.vit, p, spec).unwrap())
        .collect();
    let views = dinov2_views(&maps);
    let colorings: Vec<RgbImage> = prepared
        .iter()
        .zip(&maps)
        .zip(&views)
        .map(|((p, m), v)| {
            render_patch_colors(&v.colors, &PixelMap::new(m.grid, p), p.width(), p.height())
        })
        .collect();
    let figure = dinov2_pca_figure(&[&img_a, &img_b], &[&colorings[0], &colorings[1]]);
    assert_eq!(written, figure);
    // The images on top, their colourings below.
    assert_eq!(written.get_pixel(3, 5), img_a.get_pixel(3, 5));
    assert_eq!(
        written.get_pixel(56 + GAP + 7, 56 + GAP + 9),
        colorings[1].get_pixel(7, 9)
    );
}
