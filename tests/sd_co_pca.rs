//! SD-DINO's co-PCA of a tap pair against sd-dino's `co_pca` run in PyTorch with an exact SVD
//! (`tools/make_sd_copca_fixture.py`), equal up to each output channel's sign.

use dinoscope::analysis::features::FeatureMap;
use dinoscope::analysis::sd_features::{SdTaps, co_pca};
use dinoscope::model::Grid;
use dinoscope::model::sd::SafetensorsFile;

fn fixture() -> SafetensorsFile {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sd/co_pca.safetensors");
    SafetensorsFile::open(&path).unwrap()
}

/// A `[1, C, h, w]` tensor as a map with one cell per `stride` pixels.
fn map(file: &SafetensorsFile, name: &str, stride: usize) -> FeatureMap {
    let shape = file.shape(name).unwrap().to_vec();
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let chw = file.read(name, &shape).unwrap();
    let mut data = vec![0.0; c * h * w];
    for k in 0..c {
        for cell in 0..h * w {
            data[cell * c + k] = chw[k * h * w + cell];
        }
    }
    FeatureMap {
        grid: Grid {
            rows: h,
            cols: w,
            patch: stride,
            stride,
        },
        dim: c,
        data,
        image_size: (w * stride, h * stride),
    }
}

fn taps(file: &SafetensorsFile, side: &str) -> SdTaps {
    SdTaps {
        s5: map(file, &format!("{side}_s5"), 64),
        s4: map(file, &format!("{side}_s4"), 32),
        s3: map(file, &format!("{side}_s3"), 16),
    }
}

#[test]
fn co_pca_matches_sd_dino_up_to_component_signs() {
    let file = fixture();
    let ours = co_pca(&[&taps(&file, "a"), &taps(&file, "b")], [4, 4, 4]).unwrap();
    let (ours_a, ours_b) = (&ours[0], &ours[1]);
    let (ref_a, ref_b) = (map(&file, "out_a", 16), map(&file, "out_b", 16));
    assert_eq!(
        (ours_a.grid.rows, ours_a.grid.cols, ours_a.dim),
        (12, 12, 12)
    );
    let dim = ours_a.dim;
    let mut worst = 0f32;
    for k in 0..dim {
        let channel = |m: &FeatureMap| {
            m.data
                .iter()
                .skip(k)
                .step_by(dim)
                .copied()
                .collect::<Vec<_>>()
        };
        let ours: Vec<f32> = [channel(ours_a), channel(ours_b)].concat();
        let reference: Vec<f32> = [channel(&ref_a), channel(&ref_b)].concat();
        let dot: f32 = ours.iter().zip(&reference).map(|(a, b)| a * b).sum();
        let sign = dot.signum();
        let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&reference) {
            worst = worst.max((a * sign - b).abs() / scale);
        }
    }
    println!("co-PCA max relative difference: {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn mismatched_taps_are_an_error() {
    let file = fixture();
    let a = taps(&file, "a");
    let mut b = taps(&file, "b");
    b.s4 = map(&file, "a_s3", 16);
    let err = co_pca(&[&a, &b], [4, 4, 4]).unwrap_err();
    assert!(err.to_string().contains("s4"), "{err}");
}
