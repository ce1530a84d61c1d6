//! Downloads from the SD model picker, from a fake hub on 127.0.0.1 serving the tiny SD folder as
//! `stable-diffusion-v1-5/stable-diffusion-v1-5`: the snapshot lands in the Hugging Face cache
//! layout, becomes the SD model of the view that asked (correspondence or PCA) and is listed; a
//! failing hub gives an error naming the repository with nothing in the snapshot; Cancel keeps a
//! part that a retry resumes, the app responsive meanwhile.

mod app_common;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use app_common::{TestApp, bare_options, build_harness, wait_for};
use common::fake_hub::{self, COMMIT, Files, blob_name, leftovers, sha256};
use common::http::Server;
use common::sd_folder::{read_files, tiny_sd_folder};
use dinoscope::analysis::sd_features::FeatureSource;
use dinoscope::app::App;
use dinoscope::app::state::ViewTab;
use dinoscope::model::download::hub::repo_folder_name;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const SD15: &str = "stable-diffusion-v1-5/stable-diffusion-v1-5";
const ENTRY: &str = "Download Stable Diffusion 1.5 (about 2.1 GB)";
const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

/// The tiny SD 1.x folder's files, as the hub serves them.
fn tiny_repo(dir: &Path) -> Files {
    let root = dir.join("tiny-sd");
    tiny_sd_folder(&root, false);
    read_files(&root)
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join(repo_folder_name(SD15))
}

fn snapshot(cache: &Path) -> PathBuf {
    repo_dir(cache).join("snapshots").join(COMMIT)
}

/// The app (random weights, no images) with the correspondence view on SD features, its picker
/// listing `cache` and downloading from `server`.
fn setup(cache: &Path, server: &Server) -> Harness<'static, TestApp> {
    let mut h = build_harness(
        Harness::builder().with_size([1400.0, 900.0]),
        bare_options(),
    );
    wait_for(&mut h, "the model", |app| {
        app.is_idle() && app.model().is_some()
    });
    let app = h.state_mut().app_mut();
    app.set_sd_hub(Some(cache.to_path_buf()), server.base().to_string());
    app.settings_mut().correspondence.features = FeatureSource::Sd;
    app.set_tab(ViewTab::CORRESPONDENCE);
    h.step();
    h
}

/// Steps frames until a widget labelled with `text` shows.
fn wait_for_label(h: &mut Harness<'static, TestApp>, text: &str) {
    let start = Instant::now();
    while h.query_by_label_contains(text).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for `{text}`"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens the SD model combo box (once the cache is listed, it offers the downloads).
fn open_picker(h: &mut Harness<'static, TestApp>) {
    h.get_by_label("SD model").click();
    h.step();
    wait_for_label(h, "Choose folder...");
}

/// Opens the picker and clicks the SD 1.5 download entry.
fn click_download(h: &mut Harness<'static, TestApp>) {
    open_picker(h);
    wait_for_label(h, ENTRY);
    h.get_by_label(ENTRY).click();
    h.step();
}

fn errors(app: &App) -> Vec<String> {
    app.notifications()
        .errors()
        .map(|n| n.text.clone())
        .collect()
}

fn chosen(app: &App) -> Option<PathBuf> {
    app.settings().correspondence.sd.folder.clone()
}

#[test]
fn a_download_entry_fetches_into_the_hub_cache_and_becomes_the_views_model() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_repo(dir.path());
    // Slow enough that the progress shows for a few frames.
    let server = fake_hub::slow_hub(SD15, &files, 32 * 1024, Duration::from_millis(5));
    let cache = dir.path().join("hub");
    let mut h = setup(&cache, &server);
    click_download(&mut h);
    let mut labels: Vec<String> = Vec::new();
    let start = Instant::now();
    while chosen(h.state().app()).is_none() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        labels.extend(h.state().app().task_labels());
        assert!(
            errors(h.state().app()).is_empty(),
            "{:?}",
            errors(h.state().app())
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let snapshot = snapshot(&cache);
    assert_eq!(chosen(h.state().app()), Some(snapshot.clone()));
    // File k of n and the megabytes, in the status bar's task list.
    let shown = |k: usize| {
        let prefix = format!("Downloading Stable Diffusion 1.5: file {k} of 11, ");
        labels
            .iter()
            .any(|l| l.starts_with(&prefix) && l.ends_with(" of 2.3 MB"))
    };
    assert!(shown(3) && shown(7), "{labels:?}");

    // huggingface_hub's layout: relative links into blobs/, named by hash; refs/main.
    assert_eq!(files.len(), 11);
    for (path, bytes) in &files {
        let link = snapshot.join(path);
        assert_eq!(&std::fs::read(&link).unwrap(), bytes, "{path}");
        let target = std::fs::read_link(&link).unwrap();
        assert_eq!(
            target.file_name().unwrap().to_string_lossy(),
            blob_name(path, bytes)
        );
        assert!(target.starts_with(".."), "{}", target.display());
    }
    assert_eq!(
        std::fs::read_to_string(repo_dir(&cache).join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));

    // Listed again, and only the others offered for download.
    open_picker(&mut h);
    let start = Instant::now();
    while h.query_by_label(SD15).is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "never listed");
        h.step();
    }
    assert!(h.query_by_label_contains(ENTRY).is_none());
    h.get_by_label("Download Stable Diffusion 2.1-base (about 2.6 GB)");
    let app = h.state().app();
    assert!(
        app.notifications()
            .items()
            .iter()
            .any(|n| n.text.contains("Downloaded Stable Diffusion 1.5")
                && n.text.contains(&snapshot.display().to_string())),
    );
    assert!(errors(app).is_empty(), "{:?}", errors(app));
    wait_for(&mut h, "the idle app", |app| app.is_idle());
}

#[test]
fn the_pca_views_picker_downloads_for_the_pca_view_alone() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_repo(dir.path());
    let server = fake_hub::hub(SD15, &files, &files);
    let cache = dir.path().join("hub");
    let mut h = setup(&cache, &server);
    let app = h.state_mut().app_mut();
    app.settings_mut().correspondence.features = FeatureSource::Dino;
    app.settings_mut().pca.features = FeatureSource::Sd;
    app.set_tab(ViewTab::PCA);
    h.step();
    click_download(&mut h);
    wait_for(&mut h, "the download", |app| {
        app.is_idle() && app.settings().pca.sd.folder.is_some()
    });
    let app = h.state().app();
    assert_eq!(app.settings().pca.sd.folder, Some(snapshot(&cache)));
    assert_eq!(chosen(app), None, "the correspondence view did not ask");
    assert!(errors(app).is_empty(), "{:?}", errors(app));
}

#[test]
fn a_failing_hub_is_an_error_naming_the_repository_and_nothing_enters_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_repo(dir.path());
    // No such repository: 404 for the file list.
    let missing = Server::start_many(Vec::new(), true);
    // The UNet weights differ from their listed SHA-256.
    let mut served = files.clone();
    let unet = served.iter_mut().find(|(p, _)| p == UNET).unwrap();
    unet.1[100] ^= 1;
    let corrupt = fake_hub::hub(SD15, &files, &served);
    for (server, problem) in [(&missing, "404"), (&corrupt, "SHA-256")] {
        let cache = dir.path().join(format!("hub-{problem}"));
        let mut h = setup(&cache, server);
        click_download(&mut h);
        wait_for(&mut h, "the error", |app| {
            app.is_idle() && !errors(app).is_empty()
        });
        let app = h.state().app();
        let text = errors(app).join("\n");
        assert!(text.contains(SD15) && text.contains(problem), "{text}");
        assert_eq!(chosen(app), None);
        let snapshot = snapshot(&cache);
        assert!(!snapshot.join(UNET).exists());
        assert!(!repo_dir(&cache).join("refs/main").exists());
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
        // Not listed; the entry is offered again.
        open_picker(&mut h);
        h.get_by_label(ENTRY);
        assert!(h.query_by_label(SD15).is_none());
    }
}

#[test]
fn cancel_keeps_a_part_that_the_retry_resumes_and_the_app_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_repo(dir.path());
    // 2.3 MB at about 400 KB/s.
    let server = fake_hub::slow_hub(SD15, &files, 8 * 1024, Duration::from_millis(20));
    let cache = dir.path().join("hub");
    let mut h = setup(&cache, &server);
    click_download(&mut h);
    let unet = &files.iter().find(|(p, _)| p == UNET).unwrap().1;
    let part = repo_dir(&cache)
        .join("blobs")
        .join(format!("{}.incomplete", sha256(unet)));
    let part_len = || std::fs::metadata(&part).map_or(0, |m| m.len());
    let start = Instant::now();
    while part_len() < 100_000 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the UNet never began"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for_label(&mut h, "Cancel download");
    h.get_by_label("Cancel download").click();
    let start = Instant::now();
    for _ in 0..20 {
        h.step();
    }
    assert!(start.elapsed() < Duration::from_secs(10), "frames stalled");
    assert!(h.state().app().is_idle(), "the task ended at once");
    // The thread stops at its next chunk; the entry is offered again once it has.
    open_picker(&mut h);
    wait_for_label(&mut h, ENTRY);
    let kept = part_len();
    assert!(
        kept >= 100_000 && kept < unet.len() as u64,
        "kept {kept} of {}",
        unet.len()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(part_len(), kept, "nothing written after the thread stopped");
    let app = h.state().app();
    assert!(
        errors(app).is_empty(),
        "no error after Cancel: {:?}",
        errors(app)
    );
    assert_eq!(chosen(app), None);
    assert!(!snapshot(&cache).join(UNET).exists());
    assert!(!repo_dir(&cache).join("refs/main").exists());

    // The retry resumes the part.
    h.get_by_label(ENTRY).click();
    h.step();
    wait_for(&mut h, "the resumed download", |app| {
        app.is_idle() && chosen(app).is_some()
    });
    assert_eq!(chosen(h.state().app()), Some(snapshot(&cache)));
    assert_eq!(&std::fs::read(snapshot(&cache).join(UNET)).unwrap(), unet);
    let resumed = format!("bytes={kept}-");
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path.ends_with(UNET) && s.range.as_deref() == Some(resumed.as_str())),
        "{:?}",
        server.seen()
    );
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
}
