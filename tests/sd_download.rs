//! Stable Diffusion repository downloads into a Hugging Face cache, from a fake hub on 127.0.0.1
//! (its API's file list with hashes, then `resolve/<commit>/<path>`): the cache layout, fp16
//! chosen, reuse, resume after an interruption, cancellation, wrong hashes refused with nothing
//! entering the snapshot, pinned hashes, and the `dinoscope download` / `sd-models` commands.

mod common;

use std::path::{Path, PathBuf};

use common::fake_hub::{self, COMMIT, Files, blob_name, is_lfs, leftovers, sha256};
use common::http::Server;
use common::sd_folder::{Kind, sd_files};
use dinoscope::model::download::DownloadError;
use dinoscope::model::download::DownloadSettings;
use dinoscope::model::download::hub::{
    Candidate, FileSpec, HubError, RepoDownload, RepoProgress, Verification, download_repo,
    repo_folder_name,
};
use dinoscope::model::sd::catalog::SD_FILES;
use dinoscope::model::sd::{
    SdDownloadError, SdFolder, SdVersion, resolve_sd_model, sd_catalog_entry,
};

const SD15: &str = "stable-diffusion-v1-5/stable-diffusion-v1-5";
/// Weights files span several 64 KiB download chunks.
const WEIGHTS: usize = 200_000;

fn manifest(files: &Files, commit: &str) -> Vec<u8> {
    fake_hub::manifest(SD15, files, commit)
}

fn hub(listed: &Files, served: &Files) -> Server {
    fake_hub::hub(SD15, listed, served)
}

fn repo() -> Files {
    sd_files(Kind::V1, true, true, WEIGHTS)
}

fn fetch(
    server: &Server,
    cache: &Path,
    specs: &[FileSpec],
    progress: &mut dyn FnMut(RepoProgress) -> bool,
) -> Result<RepoDownload, HubError> {
    download_repo(
        server.base(),
        cache,
        SD15,
        "main",
        specs,
        &DownloadSettings::default(),
        progress,
    )
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join(repo_folder_name(SD15))
}

fn bytes_of<'a>(files: &'a Files, path: &str) -> &'a [u8] {
    &files.iter().find(|(p, _)| p == path).unwrap().1
}

fn resolve_requests(server: &Server) -> Vec<String> {
    server
        .seen()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p.contains("/resolve/"))
        .collect()
}

#[test]
fn a_repository_lands_in_the_hub_layout_fp16_first_and_opens() {
    let files = repo();
    let server = hub(&files, &files);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let mut reports: Vec<(u64, u64)> = Vec::new();
    let done = fetch(&server, &cache, SD_FILES, &mut |p| {
        reports.push((p.received, p.total));
        true
    })
    .unwrap();
    let snapshot = repo_dir(&cache).join("snapshots").join(COMMIT);
    assert_eq!((done.commit.as_str(), &done.snapshot), (COMMIT, &snapshot));
    assert_eq!(
        done.absent,
        vec!["scheduler/scheduler_config.json".to_string()]
    );
    assert!(!done.copied);
    assert_eq!(done.files.len(), 11);
    for file in &done.files {
        assert!(!file.path.ends_with("model.safetensors") || file.path.contains("fp16"));
        let bytes = bytes_of(&files, &file.path);
        assert_eq!(file.bytes, bytes.len() as u64);
        assert!(!file.reused && file.resumed_from == 0);
        let expected = if is_lfs(&file.path) {
            Verification::ServerSha256
        } else {
            Verification::ServerGitSha1
        };
        assert_eq!(file.verification, expected, "{}", file.path);
        // A relative link into blobs/, named as huggingface_hub names it.
        let link = snapshot.join(&file.path);
        let depth = Path::new(&file.path).components().count() + 1;
        let target: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(blob_name(&file.path, bytes));
        assert_eq!(std::fs::read_link(&link).unwrap(), target, "{}", file.path);
        assert_eq!(std::fs::read(&link).unwrap(), bytes);
    }
    assert_eq!(
        std::fs::read_to_string(repo_dir(&cache).join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    // Only the fp16 weights were asked for.
    let asked = resolve_requests(&server);
    assert_eq!(asked.len(), 11);
    assert!(
        asked.iter().all(
            |p| !p.ends_with("pytorch_model.safetensors") && !p.ends_with("/model.safetensors")
        )
    );
    // Progress adds up to the listed sizes of the chosen files.
    let total: u64 = done.files.iter().map(|f| f.bytes).sum();
    assert_eq!(reports.last(), Some(&(total, total)));
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0));

    let folder = SdFolder::open(&snapshot).unwrap();
    assert_eq!(folder.version, SdVersion::V1);
    assert!(folder.unet.fp16 && folder.vae.fp16 && folder.has_prompts());
    assert_eq!(
        resolve_sd_model("sd15", Some(&cache)).unwrap().folder.root,
        snapshot
    );

    // Again: everything is reused, only the file list is asked for.
    let seen = server.seen().len();
    let again = fetch(&server, &cache, SD_FILES, &mut |_| true).unwrap();
    assert!(again.files.iter().all(|f| f.reused));
    assert_eq!(server.seen().len(), seen + 1);
}

#[test]
fn an_interrupted_file_resumes_and_a_cancelled_one_keeps_its_part() {
    let files = repo();
    let server = hub(&files, &files);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let blobs = repo_dir(cache).join("blobs");
    let unet_path = "unet/diffusion_pytorch_model.fp16.safetensors";
    let vae_path = "vae/diffusion_pytorch_model.fp16.safetensors";
    let unet = bytes_of(&files, unet_path);
    let vae = bytes_of(&files, vae_path);
    // What an earlier, interrupted run (ours or huggingface_hub's) left.
    std::fs::create_dir_all(&blobs).unwrap();
    let cut = 70_001;
    std::fs::write(
        blobs.join(format!("{}.incomplete", sha256(unet))),
        &unet[..cut],
    )
    .unwrap();
    // Cancel once the VAE weights have begun.
    let err = fetch(&server, cache, SD_FILES, &mut |p| {
        !(p.path == vae_path && p.file.received > 0)
    })
    .unwrap_err();
    assert!(
        matches!(err, HubError::Download(DownloadError::Cancelled)),
        "{err:?}"
    );
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path.ends_with(unet_path) && s.range == Some(format!("bytes={cut}-")))
    );
    let snapshot = repo_dir(cache).join("snapshots").join(COMMIT);
    assert_eq!(std::fs::read(snapshot.join(unet_path)).unwrap(), unet);
    assert!(!snapshot.join(vae_path).exists());
    assert!(!repo_dir(cache).join("refs/main").exists());
    let part = blobs.join(format!("{}.incomplete", sha256(vae)));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < vae.len() as u64, "kept {kept}");

    let done = fetch(&server, cache, SD_FILES, &mut |_| true).unwrap();
    let file = |path: &str| done.files.iter().find(|f| f.path == path).unwrap();
    assert!(file(unet_path).reused);
    assert_eq!(file(vae_path).resumed_from, kept);
    assert_eq!(std::fs::read(snapshot.join(vae_path)).unwrap(), vae);
    assert_eq!(
        server.seen().last().map(|s| s.path.clone()),
        Some(format!(
            "/{SD15}/resolve/{COMMIT}/tokenizer/special_tokens_map.json"
        ))
    );
    assert!(leftovers(cache).is_empty(), "{:?}", leftovers(cache));
    assert_eq!(SdFolder::open(&snapshot).unwrap().version, SdVersion::V1);
}

#[test]
fn wrong_contents_are_refused_and_never_enter_the_snapshot() {
    let listed = repo();
    for (path, verification) in [
        ("unet/diffusion_pytorch_model.fp16.safetensors", "SHA-256"),
        ("vae/config.json", "git SHA-1"),
    ] {
        let mut served = listed.clone();
        let entry = served.iter_mut().find(|(p, _)| p == path).unwrap();
        entry.1[10] ^= 1;
        let server = hub(&listed, &served);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let err = fetch(&server, cache, SD_FILES, &mut |_| true).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(path) && text.contains(verification) && text.contains("deleted"),
            "{text}"
        );
        let snapshot = repo_dir(cache).join("snapshots").join(COMMIT);
        assert!(!snapshot.join(path).exists(), "{path}");
        assert!(snapshot.join("unet/config.json").exists());
        let blob = blob_name(path, bytes_of(&listed, path));
        assert!(!repo_dir(cache).join("blobs").join(&blob).exists());
        assert!(leftovers(cache).is_empty(), "{:?}", leftovers(cache));
        assert!(!repo_dir(cache).join("refs/main").exists());
    }
}

#[test]
fn pinned_hashes_are_checked_and_missing_files_named() {
    let files = repo();
    let server = hub(&files, &files);
    let dir = tempfile::tempdir().unwrap();
    // `printf '#version: 0.2\n' | sha256sum`
    const MERGES: &[Candidate] = &[Candidate {
        path: "tokenizer/merges.txt",
        sha256: Some("215a6aba00d27bcd42b8ad1dccc4b4d23f40decc150bdbf0d5ce6bb2410708df"),
        size: Some(14),
    }];
    let pinned = [FileSpec {
        candidates: MERGES,
        optional: false,
    }];
    let done = fetch(&server, dir.path(), &pinned, &mut |_| true).unwrap();
    assert_eq!(done.files[0].verification, Verification::PinnedSha256);
    assert!(
        repo_dir(dir.path())
            .join("blobs/5e7f1fd94996c8e2b65adea828af1b398eace61f")
            .is_file()
    );

    const WRONG: &[Candidate] = &[Candidate {
        path: "unet/diffusion_pytorch_model.fp16.safetensors",
        sha256: Some("0000000000000000000000000000000000000000000000000000000000000000"),
        size: None,
    }];
    let asked = resolve_requests(&server).len();
    let err = fetch(
        &server,
        dir.path(),
        &[FileSpec {
            candidates: WRONG,
            optional: false,
        }],
        &mut |_| true,
    )
    .unwrap_err();
    assert!(matches!(err, HubError::PinDisagrees { .. }), "{err:?}");
    assert!(err.to_string().contains(WRONG[0].path), "{err}");
    assert_eq!(resolve_requests(&server).len(), asked, "nothing fetched");

    let no_text: Files = files
        .iter()
        .filter(|(p, _)| !p.starts_with("text_encoder/model"))
        .cloned()
        .collect();
    let server = hub(&no_text, &no_text);
    let err = fetch(&server, dir.path(), SD_FILES, &mut |_| true).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, HubError::NotInRepo { .. })
            && text
                .contains("text_encoder/model.fp16.safetensors or text_encoder/model.safetensors")
            && text.contains(SD15),
        "{text}"
    );
}

#[test]
fn a_file_list_without_hashes_is_downloaded_unverified_and_named_by_sha256() {
    let files = repo();
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, bytes)| serde_json::json!({"rfilename": path, "size": bytes.len()}))
        .collect();
    let mut routes = vec![(
        format!("api/models/{SD15}/revision/main?blobs=True"),
        serde_json::to_vec(&serde_json::json!({"sha": COMMIT, "siblings": siblings})).unwrap(),
    )];
    routes.extend(
        files
            .iter()
            .map(|(path, bytes)| (format!("{SD15}/resolve/{COMMIT}/{path}"), bytes.clone())),
    );
    let server = Server::start_many(routes, true);
    let dir = tempfile::tempdir().unwrap();
    let done = fetch(&server, dir.path(), SD_FILES, &mut |_| true).unwrap();
    for file in &done.files {
        assert_eq!(file.verification, Verification::Unverified);
        let link = done.snapshot.join(&file.path);
        let bytes = bytes_of(&files, &file.path);
        assert_eq!(
            std::fs::read_link(&link).unwrap().file_name().unwrap(),
            sha256(bytes).as_str()
        );
        assert_eq!(std::fs::read(&link).unwrap(), bytes);
    }
    let names: Vec<String> = std::fs::read_dir(repo_dir(dir.path()).join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.len() == 64), "{names:?}");
    assert_eq!(
        SdFolder::open(&done.snapshot).unwrap().version,
        SdVersion::V1
    );
}

#[test]
fn a_bad_file_list_is_an_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let url_path = format!("api/models/{SD15}/revision/main?blobs=True");
    for body in [b"<html>".to_vec(), manifest(&repo(), "../../etc")] {
        let server = Server::start_many(vec![(url_path.clone(), body)], true);
        let err = fetch(&server, dir.path(), SD_FILES, &mut |_| true).unwrap_err();
        assert!(matches!(err, HubError::Manifest { .. }), "{err:?}");
        assert!(err.to_string().contains(&server.url(&url_path)), "{err}");
    }
    assert!(!repo_dir(dir.path()).exists());
}

#[test]
fn the_cli_downloads_sd15_lists_it_and_finds_it() {
    let files = repo();
    let server = hub(&files, &files);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let cache_arg = cache.to_str().unwrap();
    let env = [("HF_ENDPOINT", server.base())];
    let out = common::dinoscope_with_env(&["download", "sd15", "--hf-cache", cache_arg], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        stdout.contains("Stable Diffusion 1.x") && stdout.contains(COMMIT),
        "{stdout}"
    );
    assert!(stdout.contains("SHA-256 from the hub"), "{stdout}");

    let local = dir.path().join("local");
    common::sd_folder::write_sd_folder(&local, Kind::V2V768);
    let out = common::dinoscope(&[
        "sd-models",
        "--hf-cache",
        cache_arg,
        local.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        stdout.contains(&format!("* {SD15}@{}", &COMMIT[..10]))
            && stdout.contains("Stable Diffusion 2.x (768-v")
            && stdout.contains("fp16"),
        "{stdout}"
    );
    // A folder that is no SD model: listed with its problem, non-zero exit.
    let out = common::dinoscope(&[
        "sd-models",
        "--hf-cache",
        cache_arg,
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not a Stable Diffusion diffusers folder")
    );

    let ckpt = dir.path().join("ckpt");
    let out = common::dinoscope(&[
        "download",
        "--list",
        "--hf-cache",
        cache_arg,
        "--cache-dir",
        ckpt.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        stdout.contains("* sd15") && stdout.contains("  sd21 ") && stdout.contains(SD15),
        "{stdout}"
    );
}

#[test]
fn a_catalogue_download_opens_the_snapshot_and_its_errors_name_the_repository() {
    let entry = sd_catalog_entry("sd15").unwrap();
    let files = repo();
    let server = hub(&files, &files);
    let dir = tempfile::tempdir().unwrap();
    let settings = DownloadSettings::default();
    let (done, folder) = entry
        .download(server.base(), dir.path(), &settings, &mut |_| true)
        .unwrap();
    assert_eq!(
        done.snapshot,
        repo_dir(dir.path()).join("snapshots").join(COMMIT)
    );
    assert_eq!(
        (folder.root, folder.version),
        (done.snapshot, SdVersion::V1)
    );

    // A cancel is told apart from a failure.
    let other = tempfile::tempdir().unwrap();
    let err = entry
        .download(server.base(), other.path(), &settings, &mut |_| false)
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");

    let empty = Server::start_many(Vec::new(), true);
    let err = entry
        .download(empty.base(), other.path(), &settings, &mut |_| true)
        .unwrap_err();
    assert!(!err.is_cancelled());
    assert!(matches!(err, SdDownloadError::Hub { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(SD15) && text.contains("HTTP 404"),
        "{text}"
    );

    // Downloaded as listed, but the UNet config is no SD's: the error says it does not open.
    let mut broken = files.clone();
    broken
        .iter_mut()
        .find(|(p, _)| p == "unet/config.json")
        .unwrap()
        .1 = b"{}".to_vec();
    let server = hub(&broken, &broken);
    let third = tempfile::tempdir().unwrap();
    let err = entry
        .download(server.base(), third.path(), &settings, &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, SdDownloadError::NotSd { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(SD15) && text.contains("does not open"),
        "{text}"
    );
}
