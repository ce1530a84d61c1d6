//! End-to-end training runs: checkpoints that load, exact resuming, drop-path, the `train` command.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use burn::store::pytorch_reader::{PickleValue, PytorchReader};
use burn::tensor::{Device, Distribution, Tensor};
use dinoscope::model::checkpoint::read_state_dict;
use dinoscope::model::config::Arch;
use dinoscope::model::save::official_tensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{LoadOptions, load_model};
use dinoscope::train::RunControl;
use dinoscope::train::TrainConfig;
use dinoscope::train::run::{
    Metrics, RESUME_FILE, RunEvent, RunOptions, metrics_before, train, train_with,
};

fn small_config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        seed: 17,
        ..common::tiny_train_config(72)
    }
}

fn metrics_lines(dir: &Path) -> Vec<Metrics> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn no_partial_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    })
}

fn options(out: &Path, resume: bool, max_steps: usize) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        resume,
        max_steps: Some(max_steps),
        save_every: 1,
        device: Device::flex(),
        progress: false,
    }
}

/// Every tensor of a `.pth` file, by flattened name, as raw bytes.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let reader = PytorchReader::new(path).unwrap();
    reader
        .tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.read().unwrap()))
        .collect()
}

#[test]
fn a_three_step_run_writes_a_loadable_teacher_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let summary = train(small_config(), &options(dir.path(), false, 3)).unwrap();
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.total_steps, 4, "8 images / batch 4 x 2 epochs");
    assert!(summary.last_loss.is_some_and(f64::is_finite));

    let device = Device::flex();
    let model = load_model(&summary.teacher, &LoadOptions::default(), &device).unwrap();
    assert_eq!(model.config, Arch::VitNano.config());
    let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let cls = model
        .vit
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert!(cls.iter().all(|v| v.is_finite()));

    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let lines: Vec<Metrics> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for m in &lines {
        assert!(m.loss.is_finite() && m.images_per_s > 0.0);
        assert!(m.teacher_entropy >= 0.0 && m.teacher_entropy <= (64f64).ln() + 1e-6);
        assert!((m.loss - m.teacher_entropy - m.kl).abs() < 1e-9);
        assert_eq!(m.teacher_temp, 0.04);
    }
    assert_eq!(lines[0].lr, 0.0, "the lr warm-up starts at 0");
    assert!(lines[1].momentum > 0.996 && lines[1].momentum < 1.0);
    assert!(dir.path().join(RESUME_FILE).exists());
    assert!(!dir.path().join("checkpoint.pth.partial").exists());
}

#[test]
fn stopping_and_resuming_gives_the_same_parameters_as_running_straight() {
    let straight = tempfile::tempdir().unwrap();
    train(small_config(), &options(straight.path(), false, 4)).unwrap();
    let split = tempfile::tempdir().unwrap();
    // Stopped from the observer after iteration 1, without periodic saves: the stop itself saves.
    let control = RunControl::default();
    let mut seen = Vec::new();
    let stopped = train_with(
        small_config(),
        &RunOptions {
            save_every: 0,
            ..options(split.path(), false, 4)
        },
        &control,
        &mut |event| match event {
            RunEvent::Iteration(m) => {
                seen.push(m.step);
                if m.step == 1 {
                    control.stop();
                }
            }
            RunEvent::Saved { next_step } => seen.push(100 + next_step),
            _ => {}
        },
    )
    .unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.steps, 2);
    assert_eq!(
        seen,
        vec![0, 1, 102],
        "no iteration after the stop, then a save"
    );
    assert!(no_partial_files(split.path()));
    // The training part of the config given on resume is ignored (the saved one is used); the
    // monitoring settings come from the call.
    let given = small_config();
    let ignored = TrainConfig {
        eval_every: given.eval_every,
        probe_every: given.probe_every,
        eval_bank: given.eval_bank,
        eval_queries: given.eval_queries,
        ..TrainConfig::default()
    };
    let summary = train(ignored, &options(split.path(), true, 4)).unwrap();
    assert_eq!(summary.steps, 4);

    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let losses = |text: String| -> Vec<f64> {
        text.lines()
            .map(|l| serde_json::from_str::<Metrics>(l).unwrap().loss)
            .collect()
    };
    assert_eq!(
        losses(metrics(straight.path())),
        losses(metrics(split.path()))
    );
    let a = tensors(&straight.path().join(RESUME_FILE));
    let b = tensors(&split.path().join(RESUME_FILE));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for group in [
        "student.module.backbone.",
        "student.module.head.last_layer.weight_v",
        "teacher.backbone.",
        "teacher.head.",
        "dino_loss.center",
        "optimizer.state.0.exp_avg_sq",
    ] {
        assert!(a.keys().any(|k| k.starts_with(group)), "{group} saved");
    }
    for (name, value) in &a {
        assert!(value == &b[name], "{name} differs after resuming");
    }
    assert_eq!(
        std::fs::read(straight.path().join("teacher.safetensors")).unwrap(),
        std::fs::read(split.path().join("teacher.safetensors")).unwrap()
    );
    assert_eq!(
        std::fs::read(straight.path().join(RESUME_FILE)).unwrap(),
        std::fs::read(split.path().join(RESUME_FILE)).unwrap(),
        "the whole checkpoint is byte-identical"
    );
}

#[test]
fn the_training_checkpoint_loads_as_its_teacher_in_the_visualizer() {
    let dir = tempfile::tempdir().unwrap();
    train(small_config(), &options(dir.path(), false, 3)).unwrap();
    let checkpoint = dir.path().join(RESUME_FILE);
    let from_pth = read_state_dict(&checkpoint).unwrap();
    let from_safetensors = read_state_dict(&dir.path().join("teacher.safetensors")).unwrap();
    assert_eq!(
        from_pth.tensors.keys().collect::<Vec<_>>(),
        from_safetensors.tensors.keys().collect::<Vec<_>>()
    );
    assert!(from_pth.tensors.contains_key("blocks.0.attn.qkv.weight"));
    for (name, t) in &from_safetensors.tensors {
        assert_eq!(
            &from_pth.tensors[name], t,
            "{name}: the teacher, prefixes stripped"
        );
    }
    let student = tensors(&checkpoint);
    assert_ne!(
        student["student.module.backbone.blocks.0.attn.qkv.weight"],
        student["teacher.backbone.blocks.0.attn.qkv.weight"],
        "after 3 steps the student differs from the teacher, so the test can tell them apart"
    );
    let device = Device::flex();
    // Weights do not tell the head count (vit-nano has 3 heads of 32 channels): the checkpoint does.
    let model = load_model(&checkpoint, &LoadOptions::default(), &device).unwrap();
    assert_eq!(model.config, Arch::VitNano.config());
    let args = PytorchReader::read_pickle_data(&checkpoint, Some("args")).unwrap();
    let PickleValue::Dict(args) = args else {
        panic!("args is a dict")
    };
    assert_eq!(args["arch"], PickleValue::String("vit_nano".into()));
    assert_eq!(args["patch_size"], PickleValue::Int(8));
    assert!(
        model.ignored > 0,
        "student, heads and optimizer are skipped"
    );
}

/// The app charts a resumed run from `metrics.jsonl`: every logged number must read back exactly
/// (419.03177257525084 is one that a fast, inexact float parser reads one ulp off).
#[test]
fn logged_metrics_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let line = |step: usize| Metrics {
        step,
        epoch: 0,
        loss: 419.03177257525084,
        lr: 1.0e-4 / 3.0,
        wd: 0.04 + 0.36 * 0.7f64.cos(),
        momentum: 0.996,
        teacher_temp: 0.04,
        teacher_entropy: 2.0f64.ln(),
        kl: 1.0 / 7.0,
        images_per_s: 22.3,
        data_s: 0.1 + 0.2,
        collapse: None,
        eval: None,
        eval_s: Some(1.0 / 3.0),
        probe_s: None,
    };
    let logged: Vec<Metrics> = (0..3).map(line).collect();
    let text: String = logged
        .iter()
        .map(|m| serde_json::to_string(m).unwrap() + "\n")
        .collect();
    std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
    assert_eq!(metrics_before(dir.path(), 2), logged[..2]);
}

#[test]
fn resuming_without_a_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(train(small_config(), &options(dir.path(), true, 1)).is_err());
    std::fs::write(dir.path().join(RESUME_FILE), b"garbage").unwrap();
    let err = train(small_config(), &options(dir.path(), true, 1)).unwrap_err();
    assert!(err.to_string().contains("resume"), "{err}");
}

#[test]
fn drop_path_drops_whole_samples_and_is_inactive_at_rate_zero() {
    let device = Device::flex();
    let vit = Vit::init(Arch::VitNano.config(), &device);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let plain = vit
        .forward(x.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let zero = vit
        .forward_drop_path(x.clone(), 0.0, &mut || panic!("no draws at rate 0"))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(plain, zero);

    // Every branch of every block dropped: the output is the final norm of the embedded tokens.
    let dropped = vit
        .forward_drop_path(x.clone(), 0.5, &mut || 0.999)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    // Block 0 has rate linspace(0, 0.5, 4)[0] = 0: it always runs.
    let tokens = vit
        .norm
        .forward(vit.blocks[0].forward(vit.embed(x.clone(), 8).0));
    let [b, _, d] = tokens.dims();
    let expected = tokens
        .narrow(1, 0, 1)
        .reshape([b, d])
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let diff = dropped
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "{diff}");

    // Per sample: sample 0 keeps everything (0.0 < keep), sample 1 drops everything.
    let mut draws = [0.0, 0.999].into_iter().cycle();
    let mixed = vit
        .forward_drop_path(x, 0.5, &mut || draws.next().unwrap_or(0.0))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(&mixed[d..], &dropped[d..]);
    assert!(mixed[..d] != dropped[..d] && mixed[..d] != plain[..d]);
}

#[test]
fn the_train_command_writes_a_teacher_that_attention_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("small.json");
    std::fs::write(
        &config,
        r#"{"head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
            "augment": {"local_crops": 2}, "synthetic": {"size": 72, "images": 8},
            "eval_bank": 10, "eval_queries": 5}"#,
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_dinoscope");
    let status = Command::new(bin)
        .args([
            "train",
            "--data",
            "synthetic",
            "--arch",
            "vit-nano",
            "--epochs",
            "1",
        ])
        .args([
            "--batch",
            "4",
            "--device",
            "cpu",
            "--eval-every",
            "1",
            "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stderr = String::from_utf8_lossy(&status.stderr);
    for it in [0, 1] {
        assert!(
            stderr.contains(&format!("eval after iteration {it}: k-NN accuracy")),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let picture = dir.path().join("picture.png");
    image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    })
    .save(&picture)
    .unwrap();
    let attention = Command::new(bin)
        .args(["attention", "--device", "cpu", "--weights"])
        .arg(out.join("teacher.safetensors"))
        .arg("--image")
        .arg(&picture)
        .arg("--out")
        .arg(dir.path().join("attn"))
        .output()
        .unwrap();
    assert!(
        attention.status.success(),
        "{}",
        String::from_utf8_lossy(&attention.stderr)
    );
    assert!(dir.path().join("attn/attention.npy").exists());

    let bad = Command::new(bin)
        .args(["train", "--data"])
        .arg(dir.path().join("missing"))
        .arg("--out")
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing"));
}

#[test]
fn a_paused_run_waits_and_a_resumed_one_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let control = RunControl::default();
    let remote = control.clone();
    let resumer = std::thread::spawn(move || {
        while !remote.is_paused() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let resumed_at = std::time::Instant::now();
        remote.resume();
        resumed_at
    });
    let mut times = Vec::new();
    let summary = train_with(
        small_config(),
        &options(dir.path(), false, 3),
        &control,
        &mut |event| {
            if let RunEvent::Iteration(m) = event {
                times.push((m.step, std::time::Instant::now()));
                if m.step == 0 {
                    control.pause();
                }
            }
        },
    )
    .unwrap();
    let resumed_at = resumer.join().unwrap();
    assert!(!summary.stopped);
    assert_eq!(summary.steps, 3);
    assert_eq!(times.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(
        times[1].1 > resumed_at,
        "iteration 1 ran only after the resume"
    );
}

#[test]
fn evaluations_and_probes_come_every_n_iterations() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        eval_every: 2,
        probe_every: 3,
        eval_bank: 10,
        eval_queries: 5,
        ..small_config()
    };
    let mut probes = Vec::new();
    let mut evaluated = Vec::new();
    let mut plan = None;
    train_with(
        config,
        &options(dir.path(), false, 4),
        &RunControl::default(),
        &mut |event| match event {
            RunEvent::Started(p) => plan = Some(p),
            RunEvent::Iteration(m) if m.eval.is_some() => evaluated.push(m.step),
            RunEvent::Probe(p) => {
                probes.push((p.step, p.maps.heads, p.maps.grid.rows, p.image.width()))
            }
            _ => {}
        },
    )
    .unwrap();
    assert_eq!(evaluated, vec![1, 3]);
    assert_eq!(
        probes,
        vec![(2, 3, 9, 72)],
        "vit-nano: 3 heads, 72 px / 8 px patches"
    );
    let plan = plan.expect("a Started event");
    assert!(plan.evaluates);
    assert_eq!((plan.start, plan.end, plan.total), (0, 4, 4));
    assert_eq!(plan.lr.len(), 4);
    assert_eq!(plan.teacher_temp, vec![0.04; 4]);

    let lines = metrics_lines(dir.path());
    let with_eval: Vec<usize> = lines
        .iter()
        .filter(|m| m.eval.is_some() && m.eval_s.is_some())
        .map(|m| m.step)
        .collect();
    assert_eq!(
        with_eval,
        vec![1, 3],
        "evaluations are in metrics.jsonl too"
    );
    for m in lines.iter().filter_map(|m| m.eval) {
        assert!((0.0..=1.0).contains(&m.knn_accuracy));
        assert!(m.mask_iou.is_some_and(|v| (0.0..=1.0).contains(&v)));
    }
    assert_eq!(
        lines.iter().filter(|m| m.probe_s.is_some()).count(),
        1,
        "the probe time is recorded"
    );
}

#[test]
fn fine_tuning_starts_both_backbones_from_the_checkpoint() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, heads) in [("v1_p8.pth", 2), ("v2_p14_hf.safetensors", 2)] {
        let init = fixtures.join(file);
        let config = TrainConfig {
            init: Some(init.clone()),
            init_heads: Some(heads),
            ..small_config()
        };
        let device = Device::flex();
        let options_of = |dir: &Path, resume, max| RunOptions {
            max_steps: Some(max),
            ..options(dir, resume, 0)
        };
        let dir = tempfile::tempdir().unwrap();
        // No iteration: the saved state is the starting point.
        train(config.clone(), &options_of(dir.path(), false, 0)).unwrap();
        let expected = load_model(
            &init,
            &LoadOptions {
                heads: Some(heads),
                ..LoadOptions::default()
            },
            &device,
        )
        .unwrap();
        let saved = tensors(&dir.path().join(RESUME_FILE));
        for (name, t) in official_tensors(&expected.vit).unwrap() {
            let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            for network in ["student.module", "teacher"] {
                assert!(
                    saved[&format!("{network}.backbone.{name}")] == bytes,
                    "{file}: {network} {name} starts from the checkpoint"
                );
            }
        }
        // Both saved files carry the backbone's configuration, head count included.
        for saved in ["teacher.safetensors", RESUME_FILE] {
            let teacher =
                load_model(&dir.path().join(saved), &LoadOptions::default(), &device).unwrap();
            assert_eq!(
                teacher.config, expected.config,
                "{file} -> {saved}: architecture detected"
            );
        }
        let args = PytorchReader::read_pickle_data(dir.path().join(RESUME_FILE), Some("args"));
        let PickleValue::Dict(args) = args.unwrap() else {
            panic!("args is a dict")
        };
        let patch = expected.config.patch_size as i64;
        assert_eq!(args["patch_size"], PickleValue::Int(patch), "{file}");
        assert_eq!(args["arch"], PickleValue::String("custom".into()), "{file}");

        // It trains, and a resumed fine-tuning run continues exactly.
        let straight = tempfile::tempdir().unwrap();
        let summary = train(config.clone(), &options_of(straight.path(), false, 2)).unwrap();
        assert!(summary.last_loss.is_some_and(f64::is_finite), "{file}");
        let split = tempfile::tempdir().unwrap();
        train(config.clone(), &options_of(split.path(), false, 1)).unwrap();
        train(TrainConfig::default(), &options_of(split.path(), true, 2)).unwrap();
        let (a, b) = (metrics_lines(straight.path()), metrics_lines(split.path()));
        assert_eq!(
            a.iter().map(|m| m.loss).collect::<Vec<_>>(),
            b.iter().map(|m| m.loss).collect::<Vec<_>>(),
            "{file}"
        );
    }
}

#[test]
fn a_missing_init_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        init: Some(dir.path().join("nope.pth")),
        ..small_config()
    };
    let err = train(config, &options(dir.path(), false, 1)).unwrap_err();
    assert!(err.to_string().contains("nope.pth"), "{err}");
}

#[test]
fn toml_and_json_configs_read_the_same_and_unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("run.toml");
    std::fs::write(
        &toml,
        "epochs = 7\nlr = 0.008\n\n[head]\nout_dim = 256\n\n[synthetic]\nobject_scale = [0.25, 0.45]\nbackground_contrast = 0.3\n",
    )
    .unwrap();
    let json = dir.path().join("run.json");
    std::fs::write(
        &json,
        r#"{"epochs": 7, "lr": 0.008, "head": {"out_dim": 256},
            "synthetic": {"object_scale": [0.25, 0.45], "background_contrast": 0.3}}"#,
    )
    .unwrap();
    let from_toml = TrainConfig::from_file(&toml).unwrap();
    assert_eq!(from_toml, TrainConfig::from_file(&json).unwrap());
    assert_eq!((from_toml.epochs, from_toml.head.out_dim), (7, 256));
    assert_eq!(from_toml.synthetic.object_scale, (0.25, 0.45));

    std::fs::write(&toml, "epochs = 7\nepoch = 8\n").unwrap();
    let err = TrainConfig::from_file(&toml).unwrap_err().to_string();
    assert!(err.contains("run.toml") && err.contains("epoch"), "{err}");
    // Misspelt keys of the nested sections are errors too, not silently the default.
    for section in [
        "[synthetic]\ncolor_variety = 0.0\n",
        "[augment]\nlocal_crop = 2\n",
        "[head]\nout_dims = 64\n",
    ] {
        std::fs::write(&toml, section).unwrap();
        let err = TrainConfig::from_file(&toml).unwrap_err().to_string();
        let key = section.lines().nth(1).unwrap().split(' ').next().unwrap();
        assert!(err.contains("run.toml") && err.contains(key), "{err}");
    }
}
