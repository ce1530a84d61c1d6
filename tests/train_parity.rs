//! The training library against PyTorch: `tests/fixtures/train/*.safetensors` from
//! `tools/make_train_fixtures.py` (DINO's `main_dino.py` / `utils.py` semantics on fixed inputs).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use dinoscope::model::checkpoint::RawTensor;
use dinoscope::model::config::{FfnKind, VitConfig};
use dinoscope::train::{
    DinoHead, DinoHeadConfig, DinoLoss, DinoNetwork, Schedules, TrainStep, cosine_scheduler,
    ema_update, teacher_temp_schedule,
};

/// A fixture's tensors as (shape, values), f32 and f64 alike.
type Fixture = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn read(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/train")
        .join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/make_train_fixtures.py)", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors fixture");
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                    .collect(),
                safetensors::Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

fn get<'a>(fixture: &'a Fixture, name: &str) -> &'a (Vec<usize>, Vec<f64>) {
    fixture
        .get(name)
        .unwrap_or_else(|| panic!("fixture tensor {name}"))
}

fn values<'a>(fixture: &'a Fixture, name: &str) -> &'a [f64] {
    &get(fixture, name).1
}

fn tensor<const D: usize>(fixture: &Fixture, name: &str, device: &Device) -> Tensor<D> {
    let (shape, data) = get(fixture, name);
    let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, shape.clone()), device)
}

/// Tensors whose name starts with `prefix`, prefix removed, as checkpoint tensors.
fn raw_tensors(fixture: &Fixture, prefix: &str) -> BTreeMap<String, RawTensor> {
    fixture
        .iter()
        .filter_map(|(name, (shape, data))| {
            name.strip_prefix(prefix).map(|n| {
                (
                    n.to_string(),
                    RawTensor {
                        shape: shape.clone(),
                        data: data.iter().map(|&v| v as f32).collect(),
                    },
                )
            })
        })
        .collect()
}

fn max_abs(actual: &[f64], expected: &[f64], what: &str) -> f64 {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f64::max)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Max error over every tensor of `network` against `{prefix}{official name}`; all names must be there.
///
/// With `key_bias_bound`, the key third of each `attn.qkv.bias` is held only to that bound: softmax is
/// invariant to a shift of all scores, so the key bias has an exactly zero gradient and what both
/// implementations get is float rounding noise (~1e-9), which Adam's `m / (sqrt(v) + 1e-8)` turns into
/// updates of the order of the learning rate with arbitrary signs. It has no effect on any output.
fn network_error(
    network: &DinoNetwork,
    fixture: &Fixture,
    prefix: &str,
    key_bias_bound: Option<f64>,
) -> (f64, String) {
    let dim = network.backbone.config().dim;
    let tensors = network.official_tensors().unwrap();
    let expected = raw_tensors(fixture, prefix);
    assert_eq!(
        tensors.len(),
        expected.len(),
        "{prefix}: tensor count ({:?})",
        tensors.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let mut worst = (0.0, String::new());
    for (name, t) in tensors {
        let e = expected
            .get(&name)
            .unwrap_or_else(|| panic!("{prefix}{name} missing"));
        assert_eq!(t.shape, e.shape, "{name}");
        let mut a: Vec<f64> = t.data.iter().map(|&v| v as f64).collect();
        let mut b: Vec<f64> = e.data.iter().map(|&v| v as f64).collect();
        if let (Some(bound), true) = (key_bias_bound, name.ends_with("attn.qkv.bias")) {
            let key = dim..2 * dim;
            let noise = max_abs(&a[key.clone()], &b[key.clone()], &name);
            assert!(noise <= bound, "{name} key bias: {noise} > {bound}");
            a.drain(key.clone());
            b.drain(key);
        }
        let err = max_abs(&a, &b, &name);
        if err >= worst.0 {
            worst = (err, name);
        }
    }
    worst
}

fn head_config(args: &[f64]) -> DinoHeadConfig {
    let [i, o, nl, hid, bn, norm] = args else {
        panic!("head args {args:?}")
    };
    DinoHeadConfig {
        in_dim: *i as usize,
        out_dim: *o as usize,
        nlayers: *nl as usize,
        hidden_dim: *hid as usize,
        bottleneck_dim: *bn as usize,
        norm_last_layer: *norm != 0.0,
    }
}

fn tiny_vit(
    patch: usize,
    dim: usize,
    depth: usize,
    heads: usize,
    grid: usize,
    hidden: usize,
) -> VitConfig {
    VitConfig {
        pos_grid: grid,
        ffn: FfnKind::Mlp { hidden },
        ..VitConfig::dino(patch, dim, depth, heads)
    }
}

#[test]
fn cosine_and_teacher_temperature_schedules_match_numpy() {
    let f = read("schedules.safetensors");
    let mut cases = 0;
    for i in 0.. {
        let Some((_, args)) = f.get(&format!("cosine.{i}.args")) else {
            break;
        };
        let &[base, last, epochs, niter, warmup, start] = args.as_slice() else {
            panic!("cosine args {args:?}")
        };
        let s = cosine_scheduler(
            base,
            last,
            epochs as usize,
            niter as usize,
            warmup as usize,
            start,
        )
        .unwrap();
        let err = max_abs(&s, values(&f, &format!("cosine.{i}.values")), "cosine");
        println!("cosine case {i}: max abs error {err:e}");
        assert!(err <= 1e-12, "cosine case {i}: {err}");
        cases += 1;
    }
    assert_eq!(cases, 5);
    for i in 0..4 {
        let args = values(&f, &format!("teacher_temp.{i}.args"));
        let &[warm, temp, warm_epochs, epochs] = args else {
            panic!("temperature args {args:?}")
        };
        let s = teacher_temp_schedule(warm, temp, warm_epochs as usize, epochs as usize).unwrap();
        let err = max_abs(&s, values(&f, &format!("teacher_temp.{i}.values")), "temp");
        println!("teacher temperature case {i}: max abs error {err:e}");
        assert!(err <= 1e-12, "teacher temperature case {i}: {err}");
    }
}

#[test]
fn dino_head_matches_pytorch() {
    let f = read("head.safetensors");
    let device = Device::flex();
    for case in ["nl3_norm", "nl3_free", "nl1_norm", "nl4_free"] {
        let config = head_config(values(&f, &format!("{case}.args")));
        let params = raw_tensors(&f, &format!("{case}.param."));
        let head = DinoHead::from_tensors(&params, "", &config, &device).unwrap();
        let out = head.forward(tensor(&f, &format!("{case}.input"), &device));
        let err = max_abs(&host(out), values(&f, &format!("{case}.output")), case);
        println!("head {case}: max abs error {err:e}");
        assert!(err <= 1e-5, "head {case}: {err}");
    }
}

#[test]
fn dino_loss_and_centering_match_pytorch() {
    let f = read("loss.safetensors");
    let device = Device::flex();
    let args = values(&f, "args");
    let &[ncrops, warm, temp, warm_epochs, epochs, epoch1, epoch2] = args else {
        panic!("loss args {args:?}")
    };
    let schedule =
        teacher_temp_schedule(warm, temp, warm_epochs as usize, epochs as usize).unwrap();
    let center0: Tensor<2> = tensor(&f, "center0", &device);
    let mut loss = DinoLoss::new(center0.dims()[1], ncrops as usize, schedule, &device).unwrap();
    loss.center = center0;
    for (call, epoch) in [(1, epoch1), (2, epoch2)] {
        let value = loss
            .forward(
                tensor(&f, &format!("student{call}"), &device),
                tensor(&f, &format!("teacher{call}"), &device),
                epoch as usize,
            )
            .unwrap();
        let loss_err = max_abs(&host(value), values(&f, &format!("loss{call}")), "loss");
        let center_err = max_abs(
            &host(loss.center.clone()),
            values(&f, &format!("center{call}")),
            "center",
        );
        println!("loss call {call}: loss error {loss_err:e}, center error {center_err:e}");
        assert!(loss_err <= 1e-5, "loss {call}: {loss_err}");
        assert!(center_err <= 1e-5, "center {call}: {center_err}");
    }
}

#[test]
fn ema_teacher_update_matches_pytorch() {
    let f = read("ema.safetensors");
    let device = Device::flex();
    let vit = tiny_vit(4, 16, 1, 2, 2, 32);
    let head = DinoHeadConfig {
        in_dim: 16,
        out_dim: 24,
        nlayers: 3,
        hidden_dim: 24,
        bottleneck_dim: 8,
        norm_last_layer: true,
    };
    let load = |prefix: &str| {
        DinoNetwork::from_tensors(&raw_tensors(&f, prefix), vit.clone(), &head, &device).unwrap()
    };
    let (student, teacher) = (load("student."), load("teacher."));
    let momentum = values(&f, "momentum")[0];
    let updated = ema_update(teacher, &student, momentum).unwrap();
    let (err, worst) = network_error(&updated, &f, "expected.", None);
    println!("EMA: max abs error {err:e} ({worst})");
    assert!(err <= 1e-5, "EMA {worst}: {err}");
}

#[test]
fn three_training_steps_match_pytorch() {
    three_steps_match_pytorch_on(Device::flex(), 1e-4);
}

/// The same three steps on burn's wgpu backend (a software adapter in CI). Losses and the centre
/// match PyTorch within 1e-4 as on the CPU; the parameters within 2.5e-3 (measured: 1.8e-3, in the
/// last layer of the head MLP): gradients whose true value is near zero (directions the head's
/// L2 normalisation removes) differ by float rounding between summation orders, and Adam's
/// `m / (sqrt(v) + 1e-8)` turns that into updates of up to the learning rate with either sign,
/// as for the key bias explained at `network_error`.
#[test]
fn three_training_steps_on_the_gpu_backend_match_pytorch() {
    let gpu = dinoscope::model::backend::gpu()
        .unwrap_or_else(|e| panic!("this test needs a wgpu adapter (lavapipe in CI): {e}"));
    println!("device: {}", gpu.description);
    three_steps_match_pytorch_on(gpu.device, 2.5e-3);
}

fn three_steps_match_pytorch_on(plain: Device, parameter_tolerance: f64) {
    let f = read("step.safetensors");
    let c = values(&f, "config");
    let &[
        batch,
        global,
        local,
        locals,
        epochs,
        niter,
        steps,
        lr,
        min_lr,
        warmup_epochs,
        wd,
        wd_end,
        momentum,
        warm_temp,
        temp,
        warm_temp_epochs,
        freeze_last_layer,
        clip_grad,
    ] = c
    else {
        panic!("step config {c:?}")
    };
    let (epochs, niter) = (epochs as usize, niter as usize);
    let device = plain.clone().autodiff();
    let head = DinoHeadConfig {
        in_dim: 32,
        out_dim: 64,
        nlayers: 3,
        hidden_dim: 48,
        bottleneck_dim: 16,
        norm_last_layer: true,
    };
    let student = DinoNetwork::from_tensors(
        &raw_tensors(&f, "init."),
        tiny_vit(8, 32, 2, 2, 4, 64),
        &head,
        &device,
    )
    .unwrap();
    let schedules = Schedules::dino(
        lr,
        min_lr,
        warmup_epochs as usize,
        wd,
        wd_end,
        momentum,
        epochs,
        niter,
    )
    .unwrap();
    let ncrops = 2 + locals as usize;
    let temps = teacher_temp_schedule(warm_temp, temp, warm_temp_epochs as usize, epochs).unwrap();
    let loss = DinoLoss::new(head.out_dim, ncrops, temps, &plain).unwrap();
    let mut train = TrainStep::new(
        student,
        loss,
        schedules,
        Some(clip_grad),
        freeze_last_layer as usize,
    );
    let v_id = train.student.head.last_layer_v.id;
    let expected_losses = values(&f, "losses");
    assert_eq!(expected_losses.len(), steps as usize);
    for (it, &expected) in expected_losses.iter().enumerate() {
        let crops: Vec<Tensor<4>> = (0..ncrops)
            .map(|v| tensor(&f, &format!("step{it}.crop{v}"), &plain))
            .collect();
        assert_eq!(
            crops[0].dims(),
            [batch as usize, 3, global as usize, global as usize]
        );
        assert_eq!(crops[2].dims()[3], local as usize);
        let outcome = train.step(it, &crops).unwrap();
        let err = (outcome.loss - expected).abs();
        println!(
            "step {it} (epoch {}): loss {:.6} vs {expected:.6}, error {err:e}",
            outcome.epoch, outcome.loss
        );
        assert!(err <= 1e-4, "step {it} loss: {err}");
    }
    // The last layer was frozen for the first epoch: it has had exactly one update.
    assert_eq!(train.optimizer.steps_of(v_id), 1);
    assert!(train.student.head.last_layer_v.val().is_require_grad());
    let center_err = max_abs(
        &host(train.loss.center.clone()),
        values(&f, "center"),
        "center",
    );
    // Each Adam step moves a parameter by at most about lr / (1 - beta1) = 10 lr.
    let bound = Some(2.0 * 10.0 * lr * steps);
    let (student_err, s_worst) = network_error(&train.student, &f, "student.", bound);
    let (teacher_err, t_worst) = network_error(&train.teacher, &f, "teacher.", bound);
    println!(
        "after {steps} steps: center {center_err:e}, student {student_err:e} ({s_worst}), teacher {teacher_err:e} ({t_worst})"
    );
    assert!(center_err <= 1e-4, "center: {center_err}");
    assert!(
        student_err <= parameter_tolerance,
        "student {s_worst}: {student_err}"
    );
    assert!(
        teacher_err <= parameter_tolerance,
        "teacher {t_worst}: {teacher_err}"
    );
    // The teacher never needs gradients.
    assert!(!train.teacher.backbone.cls_token.val().is_autodiff());
}
