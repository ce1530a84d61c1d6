//! Wrong, truncated, unknown or hostile inputs give clear errors naming the file and the problem.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::fixture;
use dinoscope::model::config::Arch;
use dinoscope::model::preprocess::load_rgb;
use dinoscope::model::{LoadOptions, load_model};

fn load_error(path: &Path, options: &LoadOptions) -> String {
    match load_model(path, options, &Device::flex()) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "`{message}` does not mention `{part}`"
        );
    }
}

#[test]
fn truncated_checkpoint() {
    let path = fixture("truncated.pth");
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(&msg, &["truncated.pth", "truncated or corrupt"]);
}

#[test]
fn text_file_is_not_a_checkpoint() {
    let path = fixture("not_a_checkpoint.pth");
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(
        &msg,
        &[
            "not_a_checkpoint.pth",
            "not a PyTorch checkpoint or safetensors file",
        ],
    );
}

#[test]
fn unknown_architecture() {
    let path = fixture("unknown_arch.safetensors");
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(&msg, &["unknown_arch.safetensors", "no ViT backbone found"]);
}

#[test]
fn pickle_with_code_is_refused_and_never_executed() {
    let marker = Path::new("/tmp/dinoscope_pwned");
    let _ = std::fs::remove_file(marker);
    let msg = load_error(&fixture("malicious.pth"), &LoadOptions::default());
    assert!(msg.contains("malicious.pth"), "{msg}");
    assert!(
        !marker.exists(),
        "loading a checkpoint executed code from it"
    );
}

#[test]
fn missing_file() {
    let msg = load_error(Path::new("/nonexistent/model.pth"), &LoadOptions::default());
    assert_mentions(&msg, &["/nonexistent/model.pth", "cannot read the file"]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    std::fs::write(&path, b"").unwrap();
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(&msg, &["empty.safetensors", "not a PyTorch checkpoint"]);
}

#[test]
fn safetensors_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(fixture("v1_p8_hf.safetensors")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(&msg, &["cut.safetensors", "truncated or corrupt"]);
}

#[test]
fn wrong_forced_architecture_names_the_mismatching_tensor() {
    let options = LoadOptions {
        config: Some(Arch::VitS16.config()),
        heads: None,
    };
    let msg = load_error(&fixture("v1_p8.pth"), &options);
    assert_mentions(&msg, &["v1_p8.pth", "has shape", "expected"]);
}

#[test]
fn heads_that_do_not_divide_the_width_are_reported() {
    let options = LoadOptions {
        config: None,
        heads: Some(5),
    };
    let msg = load_error(&fixture("v1_p8.pth"), &options);
    assert_mentions(&msg, &["v1_p8.pth", "heads"]);
}

#[test]
fn corrupt_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.png");
    std::fs::write(&path, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let msg = load_rgb(&path).unwrap_err().to_string();
    assert_mentions(&msg, &["broken.png", "not a readable image"]);
}

#[test]
fn truncated_image() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 7]))
        .save(&good)
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let path = dir.path().join("half.png");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_rgb(&path).unwrap_err().to_string();
    assert!(msg.contains("half.png"), "{msg}");
}

#[test]
fn image_with_gigantic_dimensions_is_refused_before_allocation() {
    // A BMP header claiming 60000 x 60000 pixels (10.8 GB of RGB) with no pixel data.
    let (w, h) = (60_000u32, 60_000u32);
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&w.to_le_bytes());
    bmp.extend_from_slice(&h.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.bmp");
    std::fs::write(&path, &bmp).unwrap();
    let msg = load_rgb(&path).unwrap_err().to_string();
    assert_mentions(&msg, &["huge.bmp", "too large"]);
}
