//! Supervised ViTs (timm / DeiT, tools/make_supervised_fixtures.py): detection with the classifier
//! ignored, the input normalisation folded into the patch embedding from raw pixels to timm's outputs,
//! `--input-norm`, and the errors for a bad config.json and for timm variants that are not supported.
//! The forward-pass parity itself is in tests/parity.rs.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{dinoscope, fixture, max_abs_diff, read_expected, stderr};
use dinoscope::arrays::read_npy;
use dinoscope::model::config::PosEmbedMode;
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use dinoscope::model::{Family, InputNorm, LoadOptions, Resize, load_model};
use safetensors::tensor::{Dtype, TensorView};

const TOLERANCE: f32 = 1e-4;
const DEIT: &str = "supervised/deit_tiny.pth";
const HUB: &str = "supervised/augreg/model.safetensors";

fn options() -> LoadOptions {
    LoadOptions {
        heads: Some(2),
        ..LoadOptions::default()
    }
}

fn load_error(path: &Path) -> String {
    load_model(path, &options(), &Device::flex())
        .map(|_| ())
        .expect_err("the load should fail")
        .to_string()
}

/// The 8-bit image of a fixture case.
fn case_pixels(case: &str) -> image::RgbImage {
    let bytes = std::fs::read(fixture(case)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor("pixels").unwrap();
    assert_eq!(view.dtype(), Dtype::U8);
    let [1, 3, h, w] = view.shape()[..] else {
        panic!("pixels have shape {:?}", view.shape());
    };
    let plane = h * w;
    let data = view.data();
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb([data[i], data[plane + i], data[2 * plane + i]])
    })
}

/// The tensors of the timm Hub fixture with `edit` applied, written as `dir/model.safetensors`.
fn edited_hub_file(dir: &Path, edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let bytes = std::fs::read(fixture(HUB)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

fn zeros(shape: &[usize]) -> Vec<u8> {
    vec![0; 4 * shape.iter().product::<usize>()]
}

#[test]
fn deit_and_timm_files_are_detected_as_supervised_with_the_head_ignored() {
    for file in [DEIT, HUB] {
        let loaded = load_model(&fixture(file), &options(), &Device::flex()).unwrap();
        let config = &loaded.config;
        assert_eq!(config.family, Family::Supervised, "{file}");
        assert_eq!(config.pos_mode, PosEmbedMode::BicubicAntialias, "{file}");
        assert_eq!((config.dim, config.depth, config.patch_size), (32, 2, 16));
        assert_eq!((config.pos_grid, config.registers), (3, 0));
        assert!(!config.layer_scale);
        assert_eq!(loaded.ignored, 2, "{file}: head.weight and head.bias");
        assert!(
            config
                .describe()
                .starts_with("Supervised ViT 32d x2 blocks"),
            "{}",
            config.describe()
        );
    }
    // Without its classifier the same backbone reads as DINO, with DINO's resampling.
    let dir = tempfile::tempdir().unwrap();
    let headless = edited_hub_file(dir.path(), |t| {
        t.retain(|(n, _, _)| !n.starts_with("head."))
    });
    let loaded = load_model(&headless, &options(), &Device::flex()).unwrap();
    assert_eq!(loaded.config.family, Family::Dino);
    assert_eq!(loaded.config.pos_mode, PosEmbedMode::BicubicOffset);
    assert_eq!(loaded.ignored, 0);
}

/// The whole path of the app and the CLI: 8-bit pixels, dinoscope's ImageNet normalisation, and the
/// model trained with mean = std = 0.5 (its config.json) give timm's outputs on its own normalisation.
#[test]
fn inception_model_on_imagenet_normalised_pixels_equals_timm() {
    let device = Device::flex();
    let loaded = load_model(&fixture(HUB), &options(), &device).unwrap();
    assert_eq!(loaded.input_norm, InputNorm::INCEPTION);
    for case in [
        "supervised/augreg__48x48.safetensors",
        "supervised/augreg__64x48.safetensors",
    ] {
        let rgb = case_pixels(case);
        let prepared = prepare(&rgb, Resize::None, 16, DEFAULT_MAX_PATCHES).unwrap();
        assert_eq!(prepared.rgb, rgb, "the pixels are used untouched");
        let expected = read_expected(case);
        let (tokens, grid) = loaded.vit.forward_tokens(prepared.to_tensor(&device), 16);
        let [_, t, d] = tokens.dims();
        assert_eq!(t, 1 + grid.len());
        let cls = max_abs_diff(
            tokens.clone().narrow(1, 0, 1).reshape([d]),
            &expected["cls"],
            case,
        );
        let patches = max_abs_diff(
            tokens.narrow(1, 1, t - 1).reshape([t - 1, d]),
            &expected["patch_tokens"],
            case,
        );
        println!("{case}: cls {cls:e}, patch tokens {patches:e}");
        assert!(cls <= TOLERANCE && patches <= TOLERANCE, "{case}");
    }
    // Without the folding the outputs are far off: the fixture can tell.
    let unfolded = LoadOptions {
        input_norm: Some(InputNorm::IMAGENET),
        ..options()
    };
    let wrong = load_model(&fixture(HUB), &unfolded, &device).unwrap();
    let case = "supervised/augreg__48x48.safetensors";
    let prepared = prepare(&case_pixels(case), Resize::None, 16, DEFAULT_MAX_PATCHES).unwrap();
    let cls = wrong.vit.forward(prepared.to_tensor(&device));
    assert!(max_abs_diff(cls, &read_expected(case)["cls"], case) > 0.1);
}

#[test]
fn cli_input_norm_flag_folds_the_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    let case = "supervised/augreg__48x48.safetensors";
    let picture = dir.path().join("pixels.png");
    case_pixels(case).save(&picture).unwrap();
    let out = dir.path().join("cls.npy");
    let run = dinoscope(&[
        "embed",
        "--weights",
        fixture(DEIT).to_str().unwrap(),
        "--input-norm",
        "inception",
        "--image",
        picture.to_str().unwrap(),
        "--heads",
        "2",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("Supervised ViT"), "{log}");
    assert!(log.contains("2 non-backbone tensors ignored"), "{log}");
    assert!(log.contains("input normalisation: inception"), "{log}");
    let (shape, cls) = read_npy(&out).unwrap();
    assert_eq!(shape, vec![32]);
    let expected = &read_expected(case)["cls"].1;
    let err = cls
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err <= TOLERANCE, "CLI CLS vs timm: {err}");

    let run = dinoscope(&[
        "embed",
        "--weights",
        fixture(DEIT).to_str().unwrap(),
        "--input-norm",
        "clip",
        "--image",
        picture.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("use imagenet"), "{}", stderr(&run));
}

#[test]
fn a_bad_config_json_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    std::fs::copy(fixture(HUB), &weights).unwrap();
    let config = dir.path().join("config.json");
    for (text, why) in [
        ("{\"pretrained_cfg\": ", "not valid JSON"),
        (
            r#"{"pretrained_cfg": {"mean": "0.5", "std": [0.5, 0.5, 0.5]}}"#,
            "`pretrained_cfg.mean` is \"0.5\", not a list of 3 numbers",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let msg = load_error(&weights);
        assert!(msg.contains(&config.display().to_string()), "{msg}");
        assert!(msg.contains(&weights.display().to_string()), "{msg}");
        assert!(msg.contains(why) && msg.contains("--input-norm"), "{msg}");
        // An explicit normalisation does not read it.
        let options = LoadOptions {
            input_norm: Some(InputNorm::INCEPTION),
            ..options()
        };
        assert!(load_model(&weights, &options, &Device::flex()).is_ok());
    }
}

#[test]
fn distilled_deit_and_tables_without_a_cls_row_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let distilled = edited_hub_file(dir.path(), |t| {
        t.push(("dist_token".into(), vec![1, 1, 32], zeros(&[1, 1, 32])));
        t.push(("head_dist.weight".into(), vec![10, 32], zeros(&[10, 32])));
    });
    let msg = load_error(&distilled);
    assert!(msg.contains(&distilled.display().to_string()), "{msg}");
    assert!(
        msg.contains("unsupported model") && msg.contains("distilled DeiT"),
        "{msg}"
    );

    // DeiT III (timm `no_embed_class`): 3x3 positional rows and none for the CLS token.
    let no_cls_row = edited_hub_file(dir.path(), |t| {
        for (name, shape, data) in t.iter_mut() {
            if name == "pos_embed" {
                *shape = vec![1, 9, 32];
                data.truncate(4 * 9 * 32);
            }
        }
    });
    let msg = load_error(&no_cls_row);
    assert!(
        msg.contains("none for the CLS token") && msg.contains("DeiT III"),
        "{msg}"
    );
}
