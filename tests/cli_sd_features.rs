//! `dinoscope sd-features` and `correspond --features sd|fused` on a whole tiny SD folder (the
//! fixture networks, whose parity with diffusers `tests/sd_pipeline.rs` checks): each output equals
//! the library's computation of the same pixels and settings, bad requests fail naming the
//! problem, and a second run is served from the feature cache.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::sd_folder::tiny_sd_folder;
use common::{dinoscope, fixture, stderr};
use dinoscope::analysis::correspond::{ImageDescriptors, query_point};
use dinoscope::analysis::features::FeatureMap;
use dinoscope::analysis::sd_features::{
    Placement, SD_DINO_PCA_DIMS, SdCaches, SdFeatureSettings, SdImageFeatures, SdSession,
    dino_placed, fuse_placed, sd_descriptors,
};
use dinoscope::analysis::similarity::Score;
use dinoscope::arrays::{read_npy, write_npy};
use dinoscope::model::sd::{SafetensorsFile, SdFolder};
use dinoscope::model::{LoadOptions, load_model};
use image::RgbImage;

fn picture(dir: &Path, name: &str, (w, h): (u32, u32), seed: u32) -> (PathBuf, RgbImage) {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 5 + y * 3 + seed) % 256) as u8,
            ((x * y + 7 * seed) % 251) as u8,
            ((x * 11 + seed * 13) % 256) as u8,
        ])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    (path, img)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn session(folder: &Path, settings: SdFeatureSettings) -> SdSession {
    let folder = SdFolder::open(folder).unwrap();
    SdSession::new(folder, settings, SdCaches::in_memory(), &Device::flex()).unwrap()
}

/// `[cells, C]` as `[C, rows, cols]`, as the command writes it.
fn channels_first(map: &FeatureMap) -> Vec<f32> {
    let cells = map.grid.len();
    let mut out = vec![0.0; map.data.len()];
    for (cell, row) in map.data.chunks_exact(map.dim).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[c * cells + cell] = *v;
        }
    }
    out
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let worst = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-5, "{what}: max |diff| {worst}");
}

fn quiet(mut args: Vec<String>) -> Vec<String> {
    args.extend(["--device", "cpu", "--no-sd-cache"].map(String::from));
    args
}

fn run(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    dinoscope(&refs)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dift_features_equal_the_librarys_seeded_and_with_injected_noise() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd21");
    tiny_sd_folder(&sd, true);
    let (image, pixels) = picture(dir.path(), "a.png", (100, 80), 1);
    let mut settings = SdFeatureSettings::dift();
    settings.size = 128;
    settings.ensemble = 2;
    settings.seed = 3;
    let out = dir.path().join("dift.npy");
    let base = strings(&[
        "sd-features",
        "--sd",
        text(&sd),
        "--image",
        text(&image),
        "--preset",
        "dift",
        "--size",
        "128",
        "--ensemble",
        "2",
        "--seed",
        "3",
        "--out",
        text(&out),
    ]);
    let done = run(&quiet(base.clone()));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stderr(&done).contains("UNet pass 2 of 2"),
        "{}",
        stderr(&done)
    );
    let (shape, values) = read_npy(&out).unwrap();
    let mut lib = session(&sd, settings.clone());
    let SdImageFeatures::Dift { map, original } = lib.features(&pixels, &mut |_, _| true).unwrap()
    else {
        panic!("DIFT settings gave other features")
    };
    assert_eq!(original, (100, 80));
    assert_eq!(shape, vec![map.dim, map.grid.rows, map.grid.cols]);
    assert_eq!((map.grid.rows, map.grid.cols), (8, 8));
    assert_close("seeded DIFT", &values, &channels_first(&map));

    let noise: Vec<f32> = (0..2 * 4 * 16 * 16)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let noise_path = dir.path().join("eps.npy");
    write_npy(&noise_path, &[2, 4, 16, 16], &noise).unwrap();
    let mut injected = base.clone();
    injected.extend(strings(&["--noise", text(&noise_path)]));
    let done = run(&quiet(injected));
    assert!(done.status.success(), "{}", stderr(&done));
    let SdImageFeatures::Dift { map, .. } = lib
        .features_with_noise(&pixels, &noise, &mut |_, _| true)
        .unwrap()
    else {
        panic!("DIFT settings gave other features")
    };
    assert_close(
        "injected DIFT",
        &read_npy(&out).unwrap().1,
        &channels_first(&map),
    );

    write_npy(&noise_path, &[1, 4, 16, 16], &noise[..1024]).unwrap();
    let mut wrong = base;
    wrong.extend(strings(&["--noise", text(&noise_path)]));
    let failed = run(&quiet(wrong));
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("2 x 4 x 16 x 16"),
        "{}",
        stderr(&failed)
    );
}

#[test]
fn sd_dino_writes_three_taps_or_the_co_pca_pair_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    let (a_path, a) = picture(dir.path(), "a.png", (120, 90), 2);
    let (b_path, b) = picture(dir.path(), "b.png", (90, 120), 5);
    let mut settings = SdFeatureSettings::sd_dino();
    settings.size = 128;
    let mut lib = session(&sd, settings);
    let features = [&a, &b].map(|img| lib.features(img, &mut |_, _| true).unwrap());

    let one = dir.path().join("taps.safetensors");
    let done = run(&quiet(strings(&[
        "sd-features",
        "--sd",
        text(&sd),
        "--image",
        text(&a_path),
        "--preset",
        "sd-dino",
        "--size",
        "128",
        "--out",
        text(&one),
    ])));
    assert!(done.status.success(), "{}", stderr(&done));
    let file = SafetensorsFile::open(&one).unwrap();
    let SdImageFeatures::SdDino(taps) = &features[0] else {
        panic!("SD-DINO settings gave other features")
    };
    for (name, map) in [
        ("s5", &taps.taps.s5),
        ("s4", &taps.taps.s4),
        ("s3", &taps.taps.s3),
    ] {
        let shape = [map.dim, map.grid.rows, map.grid.cols];
        assert_close(
            name,
            &file.read(name, &shape).unwrap(),
            &channels_first(map),
        );
    }

    let pair = dir.path().join("pair.safetensors");
    let done = run(&quiet(strings(&[
        "sd-features",
        "--sd",
        text(&sd),
        "--image",
        text(&a_path),
        "--image",
        text(&b_path),
        "--preset",
        "sd-dino",
        "--size",
        "128",
        "--out",
        text(&pair),
    ])));
    assert!(done.status.success(), "{}", stderr(&done));
    let file = SafetensorsFile::open(&pair).unwrap();
    let placed = sd_descriptors(&features, SD_DINO_PCA_DIMS).unwrap();
    for (name, p) in ["a", "b"].iter().zip(&placed) {
        let shape = [p.map.dim, p.map.grid.rows, p.map.grid.cols];
        assert_close(
            name,
            &file.read(name, &shape).unwrap(),
            &channels_first(&p.map),
        );
    }
}

#[test]
fn bad_requests_fail_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    let (image, _) = picture(dir.path(), "a.png", (64, 64), 0);
    let cases: [(&[&str], &str); 4] = [
        (&["--preset", "sd-dino", "--out", "x.npy"], ".safetensors"),
        (
            &["--image", text(&image), "--out", "x.npy"],
            "one image at a time",
        ),
        (&["--size", "100", "--out", "x.npy"], "multiple of 64"),
        (&["--t", "1000", "--out", "x.npy"], "999"),
    ];
    for (extra, expected) in cases {
        let mut args = strings(&["sd-features", "--sd", text(&sd), "--image", text(&image)]);
        args.extend(strings(extra));
        let failed = run(&quiet(args));
        assert!(!failed.status.success(), "{extra:?}");
        assert!(
            stderr(&failed).contains(expected),
            "{extra:?}: {}",
            stderr(&failed)
        );
    }
    let missing = dir.path().join("nowhere");
    let failed = run(&quiet(strings(&[
        "sd-features",
        "--sd",
        text(&missing),
        "--image",
        text(&image),
        "--out",
        "x.npy",
    ])));
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("nowhere"), "{}", stderr(&failed));
}

#[test]
fn a_second_run_reads_the_feature_cache() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd21");
    tiny_sd_folder(&sd, true);
    let (image, _) = picture(dir.path(), "a.png", (64, 64), 4);
    let cache = dir.path().join("cache");
    let out = |name: &str| dir.path().join(name);
    let args = |to: &Path| {
        strings(&[
            "sd-features",
            "--sd",
            text(&sd),
            "--image",
            text(&image),
            "--size",
            "64",
            "--ensemble",
            "1",
            "--device",
            "cpu",
            "--sd-cache",
            text(&cache),
            "--out",
            text(to),
        ])
    };
    let first = run(&args(&out("1.npy")));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("UNet pass"), "{}", stderr(&first));
    let second = run(&args(&out("2.npy")));
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        !stderr(&second).contains("UNet pass"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        read_npy(&out("1.npy")).unwrap(),
        read_npy(&out("2.npy")).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(cache.join("features")).unwrap().count(),
        1
    );
    assert_eq!(std::fs::read_dir(cache.join("prompts")).unwrap().count(), 1);
}

/// `correspond --point` with SD or fused descriptors: the match equals the library's.
#[test]
fn correspond_matches_with_sd_and_fused_features_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    let (a_path, a) = picture(dir.path(), "a.png", (120, 90), 2);
    let (b_path, b) = picture(dir.path(), "b.png", (96, 128), 9);
    let mut settings = SdFeatureSettings::sd_dino();
    settings.size = 128;
    let mut lib = session(&sd, settings);
    let features = [&a, &b].map(|img| lib.features(img, &mut |_, _| true).unwrap());
    let sd_maps = sd_descriptors(&features, SD_DINO_PCA_DIMS).unwrap();
    let weights = fixture("v2_p14.pth");
    let vit = load_model(
        &weights,
        &LoadOptions {
            heads: Some(2),
            ..LoadOptions::default()
        },
        &Device::flex(),
    )
    .unwrap()
    .vit;
    let layer = vit.config().depth - 1;
    let fused: Vec<_> = [&a, &b]
        .iter()
        .zip(&sd_maps)
        .map(|(img, s)| {
            let dino = dino_placed(&vit, img, Placement::Letterbox, 112, layer).unwrap();
            fuse_placed(s, &dino, [1.0, 1.0]).unwrap()
        })
        .collect();
    let point = (40.0, 30.0);
    for (features, placed, score) in [
        ("sd", &sd_maps, Score::Cosine),
        ("fused", &fused, Score::NegativeL2),
    ] {
        let out = dir.path().join(features);
        let done = run(&quiet(strings(&[
            "correspond",
            "--weights",
            text(&weights),
            "--heads",
            "2",
            "--image-a",
            text(&a_path),
            "--image-b",
            text(&b_path),
            "--features",
            features,
            "--sd",
            text(&sd),
            "--size",
            "128",
            "--dino-size",
            "112",
            "--point",
            "40,30",
            "--out",
            text(&out),
        ])));
        assert!(done.status.success(), "{features}: {}", stderr(&done));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("point.json")).unwrap())
                .unwrap();
        let source = ImageDescriptors::new(&placed[0].map, placed[0].pixels, score);
        let target = ImageDescriptors::new(&placed[1].map, placed[1].pixels, score);
        let query = query_point(&source, point, &[&target]);
        let found = &query.matches[0];
        assert_eq!(
            report["target"]["best_patch"].as_u64(),
            Some(found.best_patch as u64),
            "{features}"
        );
        let score_there = report["target"]["best_score"].as_f64().unwrap();
        assert!(
            (score_there - f64::from(found.best_score)).abs() < 1e-4,
            "{features}: {score_there} vs {}",
            found.best_score
        );
        let centre = &report["target"]["best_patch_center"];
        assert!((centre[0].as_f64().unwrap() - found.best_pixel.0).abs() < 1e-6);
        assert!((centre[1].as_f64().unwrap() - found.best_pixel.1).abs() < 1e-6);
    }
}

/// `eval-pck --stereo` and best-buddy `correspond` run with each descriptor source on the same
/// pair, so the three can be compared.
#[test]
fn eval_pck_and_best_buddies_take_every_feature_source() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    // Right = left shifted by 8 pixels: left (x, y) is right (x - 8, y).
    let scene = RgbImage::from_fn(72, 48, |x, y| {
        image::Rgb([(x * 9 % 256) as u8, ((x * y) % 251) as u8, (y * 5) as u8])
    });
    let crop = |from: u32| image::imageops::crop_imm(&scene, from, 0, 64, 48).to_image();
    let (left, right) = (dir.path().join("left.png"), dir.path().join("right.png"));
    crop(0).save(&left).unwrap();
    crop(8).save(&right).unwrap();
    let disparity = dir.path().join("disp.npy");
    write_npy(&disparity, &[48, 64], &[8.0; 48 * 64]).unwrap();
    let weights = fixture("v2_p14.pth");
    for (features, score) in [("dino", "cos"), ("sd", "cos"), ("fused", "l2")] {
        let common = [
            "--weights",
            text(&weights),
            "--heads",
            "2",
            "--layer",
            "2",
            "--stride",
            "7",
            "--features",
            features,
            "--sd",
            text(&sd),
            "--size",
            "128",
            "--dino-size",
            "112",
        ];
        let mut eval = strings(&["eval-pck", "--stereo", text(&left), text(&right)]);
        eval.extend(strings(&[text(&disparity), "--step", "8"]));
        eval.extend(strings(&common));
        let done = run(&quiet(eval));
        assert!(done.status.success(), "{features}: {}", stderr(&done));
        let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        assert_eq!(report["score"], score, "{features}");
        assert_eq!(report["report"]["points"], 7 * 6, "{features}");

        let out = dir.path().join(format!("pairs_{features}"));
        let mut pairs = strings(&["correspond", "--image-a", text(&left), "--image-b"]);
        pairs.extend(strings(&[
            text(&right),
            "--threshold",
            "0",
            "--out",
            text(&out),
        ]));
        pairs.extend(strings(&common));
        let done = run(&quiet(pairs));
        assert!(done.status.success(), "{features}: {}", stderr(&done));
        let found: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("correspondences.json")).unwrap(),
        )
        .unwrap();
        assert!(
            found["best_buddies"]["mutual"].as_u64().unwrap() > 0,
            "{features}"
        );
        assert!(out.join("correspondences.png").is_file());
    }
}

/// `pca --features sd`: sd-dino's PCA figure, coloured on the original pixels, with the library's
/// projections of the set's co-PCA'd descriptors.
#[test]
fn pca_colours_sd_features_on_the_original_pixels() {
    use dinoscope::analysis::pca_rgb::{PcaColoring, pca_colors};
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    let (a_path, a) = picture(dir.path(), "a.png", (120, 90), 2);
    let (b_path, b) = picture(dir.path(), "b.png", (90, 120), 5);
    let out = dir.path().join("pca");
    let done = run(&quiet(strings(&[
        "pca",
        "--weights",
        text(&fixture("v2_p14.pth")),
        "--heads",
        "2",
        text(&a_path),
        text(&b_path),
        "--features",
        "sd",
        "--sd",
        text(&sd),
        "--size",
        "128",
        "--out",
        text(&out),
    ])));
    assert!(done.status.success(), "{}", stderr(&done));
    let mut settings = SdFeatureSettings::sd_dino();
    settings.size = 128;
    let mut lib = session(&sd, settings);
    let features = [&a, &b].map(|img| lib.features(img, &mut |_, _| true).unwrap());
    let placed = sd_descriptors(&features, SD_DINO_PCA_DIMS).unwrap();
    let maps: Vec<FeatureMap> = placed.iter().map(|p| p.map.clone()).collect();
    let views = pca_colors(
        &maps,
        PcaColoring {
            joint: true,
            foreground_threshold: None,
        },
    );
    for ((name, img), view) in [("a", &a), ("b", &b)].iter().zip(&views) {
        let png = image::open(out.join(format!("{name}_pca.png"))).unwrap();
        assert_eq!((png.width(), png.height()), img.dimensions());
        let (shape, values) = read_npy(&out.join(format!("{name}_pca.npy"))).unwrap();
        assert_eq!(shape, vec![8, 8, 3]);
        assert_close(name, &values, &view.projections);
    }
}
