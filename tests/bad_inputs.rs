//! Wrong, truncated, unknown or hostile inputs give clear errors naming the file and the problem.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use common::fixture;
use dinoscope::model::Vit;
use dinoscope::model::checkpoint::{
    CONFIG_METADATA_KEY, PTH_BACKBONE_KEY, PTH_EXTRAS_KEY, RawTensor,
};
use dinoscope::model::config::Arch;
use dinoscope::model::preprocess::load_rgb;
use dinoscope::model::pth_writer::{PyValue, write_pth};
use dinoscope::model::save::{official_tensors, serialize_safetensors};
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
    // The pickle's root is `os.system("touch ...")` (GLOBAL + REDUCE). The reader interprets
    // opcodes without calling anything; the loader must refuse the file and say what it found.
    let msg = load_error(&fixture("malicious.pth"), &LoadOptions::default());
    assert_mentions(
        &msg,
        &[
            "malicious.pth",
            "truncated or corrupt",
            "Expected a dictionary at the root",
            "found os.system",
        ],
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
        ..LoadOptions::default()
    };
    let msg = load_error(&fixture("v1_p8.pth"), &options);
    assert_mentions(&msg, &["v1_p8.pth", "has shape", "expected"]);
}

#[test]
fn heads_that_do_not_divide_the_width_are_reported() {
    let options = LoadOptions {
        config: None,
        heads: Some(5),
        ..LoadOptions::default()
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

fn nano_tensors() -> Vec<(String, RawTensor)> {
    official_tensors(&Vit::init_seeded(
        Arch::VitNano.config(),
        0,
        &Device::flex(),
    ))
    .unwrap()
}

fn write_safetensors(
    path: &Path,
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) {
    std::fs::write(path, serialize_safetensors(tensors, metadata).unwrap()).unwrap();
}

#[test]
fn a_stored_config_that_cannot_run_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    for (heads, expected) in [(0, "head count 0"), (5, "cannot be split into 5 heads")] {
        let mut config = serde_json::to_value(Arch::VitNano.config()).unwrap();
        config["heads"] = heads.into();
        let path = dir.path().join(format!("heads{heads}.safetensors"));
        let metadata = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config.to_string())]);
        write_safetensors(&path, &nano_tensors(), metadata);
        let msg = load_error(&path, &LoadOptions::default());
        assert_mentions(
            &msg,
            &[
                &format!("heads{heads}.safetensors"),
                "invalid model configuration",
                expected,
            ],
        );
    }
}

#[test]
fn a_zero_dimensional_tensor_where_a_matrix_belongs_is_a_shape_error() {
    let mut tensors = nano_tensors();
    for (name, tensor) in &mut tensors {
        if name == "blocks.0.mlp.fc1.weight" {
            *tensor = RawTensor {
                shape: vec![],
                data: vec![1.0],
            };
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scalar_fc1.safetensors");
    write_safetensors(&path, &tensors, HashMap::new());
    let msg = load_error(&path, &LoadOptions::default());
    assert_mentions(
        &msg,
        &[
            "scalar_fc1.safetensors",
            "`blocks.0.mlp.fc1.weight` has shape []",
        ],
    );
}

/// A training checkpoint (`teacher` state dict) whose `dinoscope` entry is `extras`.
fn checkpoint_with_extras(path: &Path, extras: PyValue) {
    let teacher = nano_tensors()
        .into_iter()
        .map(|(name, t)| (format!("backbone.{name}"), PyValue::Tensor(t)))
        .collect();
    let root = PyValue::dict([
        ("teacher", PyValue::OrderedDict(teacher)),
        (PTH_EXTRAS_KEY, extras),
    ]);
    write_pth(path, &root).unwrap();
}

#[test]
fn a_malformed_dinoscope_entry_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dict = dir.path().join("not_a_dict.pth");
    checkpoint_with_extras(&not_a_dict, PyValue::Int(7));
    let msg = load_error(&not_a_dict, &LoadOptions::default());
    assert_mentions(&msg, &["not_a_dict.pth", "malformed `dinoscope` entry"]);

    let number = dir.path().join("backbone_number.pth");
    checkpoint_with_extras(
        &number,
        PyValue::dict([(PTH_BACKBONE_KEY, PyValue::Int(3))]),
    );
    let msg = load_error(&number, &LoadOptions::default());
    assert_mentions(&msg, &["backbone_number.pth", "`backbone` is not a string"]);

    // Without the entry (an official checkpoint) the architecture is detected from the tensors.
    let official = dir.path().join("official.pth");
    let teacher = nano_tensors()
        .into_iter()
        .map(|(name, t)| (format!("backbone.{name}"), PyValue::Tensor(t)))
        .collect();
    write_pth(
        &official,
        &PyValue::dict([("teacher", PyValue::OrderedDict(teacher))]),
    )
    .unwrap();
    let options = LoadOptions {
        config: None,
        heads: Some(3),
        ..LoadOptions::default()
    };
    assert!(load_model(&official, &options, &Device::flex()).is_ok());
}
