//! A DINO training checkpoint written by PyTorch (`tools/train_checkpoint.py --write`: three iterations of the
//! reference recipe, `torch.save` of `main_dino.py`'s dict, `args` a real `argparse.Namespace`) read by the
//! resume and visualizer paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dinoscope::model::checkpoint::read_state_dict;
use dinoscope::model::config::Arch;
use dinoscope::model::{LoadOptions, load_model};
use dinoscope::train::TrainConfig;
use dinoscope::train::official_checkpoint;
use dinoscope::train::run::{RESUME_FILE, RunOptions, train};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/train")
        .join(name)
}

fn expected() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture("torch_checkpoint_expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (n, (v.shape().to_vec(), data))
        })
        .collect()
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| data[r * cols + c]))
        .collect()
}

#[test]
fn a_pytorch_checkpoint_gives_torch_adamw_state_under_burn_paths() {
    let saved = official_checkpoint::load(&fixture("torch_checkpoint.pth")).unwrap();
    assert_eq!(saved.next_step, 3);
    assert_eq!(saved.config.arch, "vit-nano");
    assert_eq!(saved.config.head.out_dim, 64);
    let expected = expected();
    let (_, center) = &expected["center"];
    assert_eq!(&saved.tensors["loss.center"].data, center);
    // (official name, burn path): Linear weights are transposed, the rest kept.
    for (official, burn) in [
        (
            "backbone.blocks.0.attn.qkv.weight",
            "backbone.blocks.0.attn.qkv.weight",
        ),
        ("backbone.norm.bias", "backbone.norm.beta"),
        ("head.mlp.0.weight", "head.mlp.0.weight"),
        ("head.last_layer.weight_v", "head.last_layer_v"),
    ] {
        let (shape, torch) = &expected[&format!("exp_avg.{official}")];
        let ours = &saved.tensors[&format!("optimizer.{burn}.exp_avg")].data;
        let want = if official.ends_with(".weight") {
            transpose(torch, shape[0], shape[1])
        } else {
            torch.clone()
        };
        assert_eq!(ours, &want, "{official}");
        let (_, step) = &expected[&format!("step.{official}")];
        assert_eq!(saved.optimizer_steps[burn] as f32, step[0], "{official}");
    }
    assert_eq!(
        saved.optimizer_steps["head.last_layer_v"], 1,
        "frozen during epoch 0"
    );
    assert_eq!(
        saved.optimizer_steps["backbone.blocks.0.attn.qkv.weight"],
        3
    );
}

#[test]
fn a_pytorch_checkpoint_loads_in_the_visualizer_and_resumes() {
    let path = fixture("torch_checkpoint.pth");
    let dict = read_state_dict(&path).unwrap();
    let (_, teacher_qkv) = &expected()["teacher.blocks.0.attn.qkv.weight"];
    assert_eq!(&dict.tensors["blocks.0.attn.qkv.weight"].data, teacher_qkv);
    // PyTorch's file has no backbone configuration, and 96 channels are not 64-channel heads:
    // the head count must be given rather than guessed.
    let unknown = load_model(&path, &LoadOptions::default(), &Device::flex()).err();
    let message = unknown.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("torch_checkpoint.pth") && message.contains("--heads"),
        "{message}"
    );
    let options = LoadOptions {
        heads: Some(3),
        ..LoadOptions::default()
    };
    let model = load_model(&path, &options, &Device::flex()).unwrap();
    assert_eq!(model.config, Arch::VitNano.config());

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&path, dir.path().join(RESUME_FILE)).unwrap();
    let run = RunOptions {
        out: dir.path().to_path_buf(),
        resume: true,
        max_steps: Some(4),
        save_every: 0,
        device: Device::flex(),
        progress: false,
    };
    let summary = train(TrainConfig::default(), &run).unwrap();
    assert_eq!((summary.steps, summary.total_steps), (4, 4));
    assert!(summary.last_loss.is_some_and(f64::is_finite));
    let again = official_checkpoint::load(&dir.path().join(RESUME_FILE)).unwrap();
    assert_eq!(again.next_step, 4);
    assert_eq!(
        again.optimizer_steps["backbone.blocks.0.attn.qkv.weight"],
        4
    );
    assert_eq!(again.optimizer_steps["head.last_layer_v"], 2);
}
