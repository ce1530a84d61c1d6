//! Stable Diffusion's text side against transformers 5.24 / diffusers 0.42.1 (fixtures from
//! tools/make_sd_text_fixtures.py): CLIP text encoders on the CPU and on wgpu, the CLIP BPE
//! tokenizer, the noise schedule, the prompt-embedding cache, and typed errors on bad inputs.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use dinoscope::model::backend;
use dinoscope::model::sd::clip_text::Activation;
use dinoscope::model::sd::tokenizer::{SD1_PAD, SD2_PAD, empty_prompt_ids};
use dinoscope::model::sd::{
    ClipTextConfig, ClipTextEncoder, ClipTextError, ClipTokenizer, NoiseSchedule, PromptCache,
    PromptError, PromptTokens, SafetensorsFile, ScheduleError, SdFolder, TextConditioning,
    TokenizerError, WeightsProblem,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sd")
        .join(name)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Golden ids `[2, 77]` and `last_hidden_state` `[2, 77, 32]` of one tiny model.
fn text_golden(act: &str) -> (Vec<Vec<u32>>, Vec<f32>) {
    let golden = SafetensorsFile::open(&fixture("text_golden.safetensors")).unwrap();
    let ids = golden.read(&format!("{act}.ids"), &[2, 77]).unwrap();
    let ids = ids
        .chunks(77)
        .map(|row| row.iter().map(|&v| v as u32).collect())
        .collect();
    let out = golden
        .read(&format!("{act}.last_hidden_state"), &[2, 77, 32])
        .unwrap();
    (ids, out)
}

/// Max |Rust − transformers| of both tiny encoders on `device`, relative to max(1, max|ref|).
fn text_encoder_errors(device: &Device) -> Vec<(&'static str, f32)> {
    [
        ("quick_gelu", Activation::QuickGelu),
        ("gelu", Activation::Gelu),
    ]
    .into_iter()
    .map(|(act, activation)| {
        let encoder = ClipTextEncoder::load(&fixture(&format!("text_{act}")), device).unwrap();
        assert_eq!(encoder.config().hidden_act, activation);
        let (ids, expected) = text_golden(act);
        let got = encoder.encode(&ids).unwrap();
        assert_eq!(got.dims(), [2, 77, 32]);
        let error = max_abs_diff(&values(got), &expected) / max_abs(&expected).max(1.0);
        println!("{act}: max|d| / max(1, max|ref|) = {error:.2e}");
        (act, error)
    })
    .collect()
}

#[test]
fn text_encoders_match_transformers_on_the_cpu() {
    for (act, error) in text_encoder_errors(&backend::cpu().device) {
        assert!(error <= 1e-4, "{act}: {error}");
    }
    // The fp16 file is the one read for text_gelu.
    assert!(
        ClipTextEncoder::load(&fixture("text_gelu"), &backend::cpu().device)
            .unwrap()
            .weights_path()
            .ends_with("model.fp16.safetensors")
    );
}

/// Fails, not skips, without an adapter (CI has lavapipe).
#[test]
fn text_encoders_match_transformers_on_wgpu() {
    let gpu = backend::gpu().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter, so the wgpu backend cannot be checked ({e}): install a GPU driver \
             or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        )
    });
    println!("wgpu device: {}", gpu.description);
    for (act, error) in text_encoder_errors(&gpu.device) {
        assert!(error <= 1e-3, "{act}: {error}");
    }
}

fn tokenizer_golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer_golden.json")).unwrap())
        .unwrap()
}

/// The fixture tokenizer with SD 2.x's pad token `!`, as the fixture script builds it.
fn sd2_tokenizer(into: &Path) -> PathBuf {
    let dir = into.join("tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("tokenizer")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        if name == "special_tokens_map.json" || name == "tokenizer_config.json" {
            let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            json["pad_token"] = "!".into();
            bytes = serde_json::to_vec(&json).unwrap();
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn tokenizer_ids_match_transformers_for_sd1_and_sd2_pad_tokens() {
    let golden = tokenizer_golden();
    let tmp = tempfile::tempdir().unwrap();
    for (flavour, dir, pad) in [
        ("sd1", fixture("tokenizer"), SD1_PAD),
        ("sd2", sd2_tokenizer(tmp.path()), SD2_PAD),
    ] {
        let tokenizer = ClipTokenizer::load(&dir).unwrap();
        assert_eq!(tokenizer.pad_id(), pad);
        let cases = golden[flavour].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let prompt = case["prompt"].as_str().unwrap();
            let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(
                tokenizer.encode(prompt).unwrap(),
                expected,
                "{flavour} {prompt:?}"
            );
        }
        assert_eq!(tokenizer.encode("").unwrap(), empty_prompt_ids(pad));
    }
}

#[test]
fn schedule_and_add_noise_match_diffusers() {
    let golden = SafetensorsFile::open(&fixture("schedule_golden.safetensors")).unwrap();
    let schedule = NoiseSchedule::stable_diffusion();
    let expected = golden.read("alphas_cumprod", &[1000]).unwrap();
    let error = max_abs_diff(schedule.alphas_cumprod(), &expected);
    println!("alphas_cumprod max|d| = {error:.2e}");
    assert!(error <= 1e-6, "{error}");

    let device = backend::cpu().device;
    let shape = [2, 4, 8, 8];
    let z = golden.tensor("z", shape, &device).unwrap();
    let eps = golden.tensor("eps", shape, &device).unwrap();
    for t in [0, 100, 261, 999] {
        let expected = golden.read(&format!("noisy_t{t}"), &shape).unwrap();
        let got = schedule.add_noise(z.clone(), eps.clone(), t).unwrap();
        let error = max_abs_diff(&values(got), &expected);
        println!("add_noise t={t}: max|d| = {error:.2e}");
        assert!(error <= 1e-6, "t={t}: {error}");
    }
    assert_eq!(
        schedule.add_noise(z.clone(), eps, 1000).unwrap_err(),
        ScheduleError::Timestep(1000)
    );
    let wrong = Tensor::<4>::zeros([1, 4, 8, 8], &device);
    assert!(matches!(
        schedule.add_noise(z, wrong, 100),
        Err(ScheduleError::Shape { .. })
    ));
}

/// The quick-GELU fixture with its token table tiled to CLIP's 49,408 ids (row i = tiny row
/// i mod 1000), so real tokenizer ids run through it.
fn full_vocab_encoder(into: &Path) -> PathBuf {
    let source = SafetensorsFile::open(&fixture("text_quick_gelu/model.safetensors")).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = source
        .names()
        .filter(|name| !name.ends_with("position_ids"))
        .map(|name| {
            let shape = source.shape(name).unwrap().to_vec();
            let data = source.read(name, &shape).unwrap();
            (name.to_string(), shape, data)
        })
        .collect();
    for (name, shape, data) in &mut tensors {
        if name.ends_with("token_embedding.weight") {
            let width = shape[1];
            *data = (0..49408)
                .flat_map(|i| data[(i % 1000) * width..][..width].to_vec())
                .collect();
            shape[0] = 49408;
        }
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<_> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let dir = into.join("text_encoder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("text_quick_gelu/config.json")).unwrap(),
    )
    .unwrap();
    config["vocab_size"] = 49408.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn prompt_embeddings_are_computed_once_and_cached_in_memory_and_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let encoder_dir = full_vocab_encoder(tmp.path());
    let cache_dir = tmp.path().join("cache");
    let device = backend::cpu().device;
    let tokens = || PromptTokens::Tokenizer(ClipTokenizer::load(&fixture("tokenizer")).unwrap());
    let conditioning = |tokens| {
        TextConditioning::new(
            &encoder_dir,
            tokens,
            PromptCache::on_disk(&cache_dir),
            &device,
        )
        .unwrap()
    };

    let mut text = conditioning(tokens());
    assert!(!text.encoder_loaded(), "loaded before it was needed");
    let cat = text.embed("a photo of a cat").unwrap();
    assert_eq!(cat.dims(), [1, 77, 32]);
    assert_eq!(text.encoder_runs(), 1);
    // Equal to running the encoder on the tokenizer's ids directly.
    let direct = ClipTextEncoder::load(&encoder_dir, &device)
        .unwrap()
        .encode(&[ClipTokenizer::load(&fixture("tokenizer"))
            .unwrap()
            .encode("a photo of a cat")
            .unwrap()])
        .unwrap();
    let cat_values = values(cat);
    assert_eq!(cat_values, values(direct));

    let again = text.embed("a photo of a cat").unwrap();
    assert_eq!(text.encoder_runs(), 1, "recomputed a cached prompt");
    assert_eq!(values(again), cat_values);
    let empty = values(text.embed("").unwrap());
    assert_eq!(text.encoder_runs(), 2);
    assert_ne!(empty, cat_values);
    assert_eq!(std::fs::read_dir(&cache_dir).unwrap().count(), 2);
    assert!(text.cache().disk_problem().is_none());

    // A new session finds both on disk without loading the encoder; the empty prompt needs no
    // vocabulary at all.
    let mut fresh = conditioning(PromptTokens::EmptyOnly { pad: SD1_PAD });
    assert_eq!(values(fresh.embed("").unwrap()), empty);
    assert_eq!(fresh.encoder_runs(), 0);
    assert!(!fresh.encoder_loaded());
    assert!(matches!(
        fresh.embed("a photo of a cat"),
        Err(PromptError::NoTokenizer { .. })
    ));
    // SD 2.x's padding is another key.
    let mut sd2 = conditioning(PromptTokens::EmptyOnly { pad: SD2_PAD });
    assert_ne!(values(sd2.embed("").unwrap()), empty);
    assert_eq!(sd2.encoder_runs(), 1);

    // A damaged cache file is recomputed, not trusted.
    for entry in std::fs::read_dir(&cache_dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let mut damaged = conditioning(tokens());
    assert_eq!(
        values(damaged.embed("a photo of a cat").unwrap()),
        cat_values
    );
    assert_eq!(damaged.encoder_runs(), 1);

    // Replacing the weights file (new size / time) invalidates its embeddings.
    let weights = encoder_dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::remove_file(&weights).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&weights, bytes).unwrap();
    let mut replaced = conditioning(tokens());
    replaced.embed("a photo of a cat").unwrap();
    assert_eq!(replaced.encoder_runs(), 1);
}

/// A copy of the quick-GELU fixture folder with `edit` applied to its config.
fn edited_encoder(into: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = into.join("text_encoder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture("text_quick_gelu/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("text_quick_gelu/config.json")).unwrap(),
    )
    .unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn bad_text_encoder_folders_give_typed_errors_naming_the_file() {
    let device = backend::cpu().device;
    let load = |dir: &Path| ClipTextEncoder::load(dir, &device).unwrap_err();

    let missing = tempfile::tempdir().unwrap();
    let err = load(missing.path());
    assert!(matches!(err, ClipTextError::Read { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_encoder(tmp.path(), |c| c["hidden_act"] = "gelu_new".into());
    let err = load(&dir);
    assert!(matches!(err, ClipTextError::Activation { ref found, .. } if found == "gelu_new"));
    assert!(err.to_string().contains("config.json"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_encoder(tmp.path(), |c| c["model_type"] = "clip_vision_model".into());
    let err = load(&dir);
    assert!(matches!(err, ClipTextError::NotClip { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_encoder(tmp.path(), |c| c["num_attention_heads"] = 5.into());
    assert!(matches!(load(&dir), ClipTextError::Config { .. }));

    // Weights of another size than the config says.
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_encoder(tmp.path(), |c| c["intermediate_size"] = 128.into());
    let err = load(&dir);
    let ClipTextError::Weights(ref weights) = err else {
        panic!("{err}")
    };
    assert!(
        matches!(weights.problem, WeightsProblem::Shape { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(err.to_string().contains("fc1.weight"), "{err}");

    // No weights file.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(matches!(load(&dir), ClipTextError::NoWeights { .. }));

    // A truncated download.
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited_encoder(tmp.path(), |_| {});
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = load(&dir);
    assert!(
        matches!(&err, ClipTextError::Weights(w) if matches!(w.problem, WeightsProblem::Truncated { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // Ids the model cannot embed.
    let encoder = ClipTextEncoder::load(&fixture("text_quick_gelu"), &device).unwrap();
    for ids in [
        vec![vec![1000; 77]],
        vec![vec![1; 78]],
        vec![vec![1; 77], vec![1; 76]],
        vec![],
    ] {
        assert!(matches!(encoder.encode(&ids), Err(ClipTextError::Ids(_))));
    }
    assert_eq!(
        ClipTextConfig::read(&fixture("text_quick_gelu/config.json"))
            .unwrap()
            .num_hidden_layers,
        3
    );
}

#[test]
fn bad_tokenizer_folders_give_typed_errors_naming_the_file() {
    let copy = |into: &Path| {
        let dir = into.join("tokenizer");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["vocab.json", "merges.txt"] {
            std::fs::copy(fixture("tokenizer").join(name), dir.join(name)).unwrap();
        }
        dir
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy(tmp.path());
    // No special-token files: transformers' defaults (pad `<|endoftext|>`).
    assert_eq!(ClipTokenizer::load(&dir).unwrap().pad_id(), SD1_PAD);

    std::fs::write(
        dir.join("merges.txt"),
        "#version: 0.2\nh e\nthree parts here\n",
    )
    .unwrap();
    let err = ClipTokenizer::load(&dir).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err}");
    assert!(
        err.to_string().contains("merges.txt") && err.to_string().contains("line 3"),
        "{err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = copy(tmp.path());
    std::fs::write(
        dir.join("special_tokens_map.json"),
        r#"{"pad_token": "<pad>"}"#,
    )
    .unwrap();
    let err = ClipTokenizer::load(&dir).unwrap_err();
    assert!(matches!(err, TokenizerError::MissingToken { ref token, .. } if token == "<pad>"));
    assert!(err.to_string().contains("vocab.json"), "{err}");

    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    let err = ClipTokenizer::load(&dir).unwrap_err();
    assert!(matches!(err, TokenizerError::Read { .. }), "{err}");
    assert!(err.to_string().contains("vocab.json"), "{err}");

    std::fs::write(dir.join("vocab.json"), "[1, 2]").unwrap();
    let err = ClipTokenizer::load(&dir).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err}");
}

#[test]
fn the_empty_prompt_embedding_runs_on_real_ids_without_a_tokenizer() {
    let device = backend::cpu().device;
    let tmp = tempfile::tempdir().unwrap();
    let dir = full_vocab_encoder(tmp.path());
    let encoder = ClipTextEncoder::load(&dir, &device).unwrap();
    let sd1 = encoder.encode(&[empty_prompt_ids(SD1_PAD)]).unwrap();
    assert_eq!(sd1.dims(), [1, 77, 32]);
    // Causal attention: position 0 sees only BOS, so the pad token cannot change it.
    let sd2 = encoder.encode(&[empty_prompt_ids(SD2_PAD)]).unwrap();
    let first = |t: Tensor<3>| values(t.narrow(1, 0, 2));
    assert_eq!(first(sd1.clone()), first(sd2.clone()));
    assert_ne!(values(sd1), values(sd2));
}

/// The app computes embeddings on its worker thread.
#[test]
fn the_text_side_can_move_to_a_worker_thread() {
    fn send<T: Send>() {}
    send::<TextConditioning>();
    send::<ClipTokenizer>();
    send::<ClipTextEncoder>();
}

#[test]
fn a_tiny_folder_embeds_the_empty_prompt_as_transformers_does_for_both_pads() {
    let golden = SafetensorsFile::open(&fixture("text_tiny_sd_golden.safetensors")).unwrap();
    let device = backend::cpu().device;
    for (v2, name) in [(false, "empty.sd1"), (true, "empty.sd2")] {
        let tmp = tempfile::tempdir().unwrap();
        common::sd_folder::tiny_sd_folder(tmp.path(), v2);
        let folder = SdFolder::open(tmp.path()).unwrap();
        assert!(folder.has_prompts(), "{:?}", folder.absent);
        let mut text =
            TextConditioning::for_folder(&folder, PromptCache::in_memory(), &device).unwrap();
        let ours = values(text.embed("").unwrap());
        let reference = golden.read(name, &[1, 77, 8]).unwrap();
        let error = max_abs_diff(&ours, &reference) / max_abs(&reference).max(1.0);
        println!("{name}: max relative difference {error:e}");
        assert!(error <= 1e-4, "{name}: {error}");
        assert_eq!(text.embed("a photo of a cat").unwrap().dims(), [1, 77, 8]);
    }
}
