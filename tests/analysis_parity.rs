//! Parity of the deterministic analysis steps with dino-vit-features / scikit-learn
//! (fixture: tools/make_analysis_fixtures.py).

mod common;

use burn::tensor::Device;
use common::{fixture, read_expected};
use dinoscope::analysis::features::{DescriptorSpec, extract, log_bin, saliency};
use dinoscope::analysis::pca::Pca;
use dinoscope::model::{Facet, LoadOptions, PreparedImage, Vit, load_model};

const TOLERANCE: f32 = 1e-4;

fn max_diff(actual: &[f32], expected: &[f32], what: &str) -> f32 {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn model() -> Vit {
    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    load_model(&fixture("v1_p8.pth"), &options, &Device::flex())
        .expect("fixture model")
        .vit
}

/// The fixture's normalised input as a prepared image (the RGB copy is unused by the analyses).
fn prepared(input: &(Vec<usize>, Vec<f32>)) -> PreparedImage {
    let (h, w) = (input.0[2] as u32, input.0[3] as u32);
    PreparedImage {
        rgb: image::RgbImage::new(w, h),
        normalized: input.1.clone(),
        note: None,
        original_size: (w, h),
        resized_size: (w, h),
    }
}

fn key_spec(log_bin: bool) -> DescriptorSpec {
    DescriptorSpec {
        layer: 2,
        facet: Facet::Key,
        stride: Some(4),
        log_bin,
    }
}

#[test]
fn key_descriptors_and_log_binning_match_the_reference_extractor() {
    let expected = read_expected("analysis.safetensors");
    let vit = model();
    let image = prepared(&expected["input_a"]);
    let keys = extract(&vit, &image, key_spec(false)).unwrap();
    assert_eq!((keys.grid.rows, keys.grid.cols), (9, 11));
    let err = max_diff(&keys.data, &expected["key_a"].1, "key");
    assert!(err <= TOLERANCE, "key descriptors: {err}");
    eprintln!("max abs error: key descriptors {err:e}");

    let binned = extract(&vit, &image, key_spec(true)).unwrap();
    assert_eq!(binned.dim, 17 * 32);
    let err = max_diff(&binned.data, &expected["bin_a"].1, "log-bin");
    assert!(err <= TOLERANCE, "log-binned descriptors: {err}");
    eprintln!("max abs error: log-binned descriptors {err:e}");
    // Binning the reference's own keys isolates the binning from the forward pass.
    let reference_keys = dinoscope::analysis::features::FeatureMap {
        data: expected["key_a"].1.clone(),
        ..keys
    };
    let err = max_diff(
        &log_bin(&reference_keys, 2).data,
        &expected["bin_a"].1,
        "bin",
    );
    assert!(err <= 1e-6, "binning alone: {err}");
    eprintln!("max abs error: binning alone {err:e}");
}

#[test]
fn saliency_matches_the_reference_for_chosen_heads() {
    let expected = read_expected("analysis.safetensors");
    let vit = model();
    let image = prepared(&expected["input_a"]);
    for (heads, name) in [(vec![0, 1], "saliency_a"), (vec![1], "saliency_a_head1")] {
        let (values, grid) = saliency(&vit, &image, Some(4), &heads).unwrap();
        assert_eq!(grid.len(), 99);
        let err = max_diff(&values, &expected[name].1, name);
        assert!(err <= TOLERANCE, "{name}: {err}");
        eprintln!("max abs error: {name} {err:e}");
    }
    assert!(
        saliency(&vit, &image, Some(4), &[2]).is_err(),
        "head 2 does not exist"
    );
}

#[test]
fn joint_pca_projections_match_scikit_learn() {
    let expected = read_expected("analysis.safetensors");
    let both: Vec<f32> = [&expected["key_a"].1, &expected["key_b"].1]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let pca = Pca::fit(&both, 32, 4);
    let err = max_diff(&pca.components, &expected["pca_components"].1, "components");
    assert!(err <= TOLERANCE, "components: {err}");
    eprintln!("max abs error: PCA components {err:e}");
    for name in ["a", "b"] {
        let projected = pca.transform(&expected[&format!("key_{name}")].1);
        let err = max_diff(&projected, &expected[&format!("pca_{name}")].1, name);
        assert!(err <= TOLERANCE, "projections of {name}: {err}");
        eprintln!("max abs error: PCA projections {name} {err:e}");
    }
}
