//! The side-by-side view driven headless through egui_kittest: each side shows what the library
//! computes for its own model, block and head move together when the two models have the same
//! shape and separately when not, a checkpoint that cannot be read is an error naming it, and a
//! snapshot (`UPDATE_SNAPSHOTS=1 cargo test --test app_compare snapshot` rewrites it).

mod app_common;
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use app_common::{TestApp, bare_options, build_harness, snapshot_masked, wait_for};
use dinoscope::analysis::attention::{AttentionMaps, Query, attention_maps};
use dinoscope::analysis::features::{DescriptorSpec, extract};
use dinoscope::analysis::pca_rgb::{PcaColoring, pca_colors};
use dinoscope::app::compare::CompareTab;
use dinoscope::app::compare::job::{SideKey, SideMaps, SideResult, Which};
use dinoscope::app::downloads::DownloadRequest;
use dinoscope::app::state::{CompareShow, InputSize, ViewTab};
use dinoscope::app::worker::ModelSource;
use dinoscope::app::{App, AppOptions};
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, load_rgb, prepare};
use dinoscope::model::save::save_safetensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{DeviceChoice, Facet, LoadOptions, Resize, VitConfig, backend, load_model};
use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, HarnessBuilder, SnapshotOptions};

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/images")
        .join(name)
}

fn weights(dir: &Path, name: &str, config: VitConfig, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let device = backend::select(DeviceChoice::Auto).unwrap();
    save_safetensors(&Vit::init_seeded(config, seed, &device.device), &path).unwrap();
    path
}

/// DINO-style ViT/16, 4 blocks of 2 heads (random weights).
fn dino(dir: &Path, name: &str, seed: u64) -> PathBuf {
    weights(dir, name, VitConfig::dino(16, 128, 4, 2), seed)
}

/// DINOv2-style ViT/14, 3 blocks of 3 heads: another shape.
fn dinov2(dir: &Path) -> PathBuf {
    weights(
        dir,
        "v2.safetensors",
        VitConfig::dinov2(192, 3, 3, false, 0),
        7,
    )
}

fn compare_app(
    builder: HarnessBuilder<TestApp>,
    loaded: &Path,
    second: &Path,
) -> Harness<'static, TestApp> {
    let mut h = build_harness(builder, bare_options());
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(loaded.to_path_buf());
        app.add_paths(vec![asset("chelsea.png")]);
        let settings = app.settings_mut();
        settings.input_size = InputSize::ShortSide(112);
        settings.compare.second = Some(second.to_path_buf());
        app.set_tab(ViewTab::COMPARE);
    }
    let loaded = ModelSource::File(loaded.to_path_buf());
    wait_for(&mut h, "both sides", |app| {
        app.model().is_some_and(|m| m.source == loaded) && both_shown(app, |_| true)
    });
    h
}

fn view(app: &App) -> &CompareTab {
    app.view_of::<CompareTab>().unwrap()
}

/// Both sides show a result of the key the settings ask for, and `want` holds for both keys.
fn both_shown(app: &App, want: impl Fn(&SideKey) -> bool) -> bool {
    let shared = app.shared();
    let view = view(app);
    app.is_idle()
        && (0..2).all(|side| {
            let current = view.side_key(side, shared);
            view.shown(side)
                .is_some_and(|(k, _)| Some(k) == current.as_ref() && want(k))
        })
}

fn shown(h: &Harness<'static, TestApp>, side: usize) -> (SideKey, Arc<SideResult>) {
    view(h.state().app()).shown(side).unwrap().clone()
}

fn library_vit(path: &Path) -> Vit {
    let device = backend::select(DeviceChoice::Auto).unwrap();
    load_model(path, &LoadOptions::default(), &device.device)
        .unwrap()
        .vit
}

/// What the library computes for chelsea.png at 112 px under `vit`.
fn library_attention(vit: &Vit, block: usize) -> AttentionMaps {
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let patch = vit.config().patch_size;
    let rgb = load_rgb(&asset("chelsea.png")).unwrap();
    let prepared = prepare(&rgb, Resize::ShortSide(112), patch, DEFAULT_MAX_PATCHES).unwrap();
    attention_maps(
        vit,
        prepared.to_tensor(&device.device),
        block,
        Query::Cls,
        patch,
    )
    .unwrap()
}

fn attention(result: &SideResult) -> &AttentionMaps {
    match &result.maps {
        SideMaps::Attention(maps) => maps,
        SideMaps::Pca { .. } => panic!("an attention result was expected"),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn same_shaped_models_show_their_own_attention_with_block_and_head_linked() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dino(dir.path(), "a.safetensors", 1),
        dino(dir.path(), "b.safetensors", 2),
    );
    let mut h = compare_app(Harness::builder().with_size([1400.0, 900.0]), &a, &b);

    let (key0, left) = shown(&h, 0);
    let (key1, right) = shown(&h, 1);
    assert_eq!((key0.which.clone(), key0.block), (Which::Loaded, 3));
    assert_eq!(
        (key1.which.clone(), key1.block),
        (Which::Second(b.clone()), 3)
    );
    let (vit_a, vit_b) = (library_vit(&a), library_vit(&b));
    for (result, vit) in [(&left, &vit_a), (&right, &vit_b)] {
        let want = library_attention(vit, 3);
        let got = attention(result);
        assert_eq!((got.heads, got.grid), (want.heads, want.grid));
        assert!(max_diff(&got.values, &want.values) < 1e-6);
    }
    // Two different models: their maps differ.
    assert!(max_diff(&attention(&left).values, &attention(&right).values) > 1e-4);

    // One head choice for both.
    let app = h.state().app();
    let shapes = view(app).shapes(app.shared());
    assert!(shapes.blocks_linked && shapes.heads_linked);
    h.state_mut().app_mut().settings_mut().compare.heads[0] = Some(1);
    h.step();
    let app = h.state().app();
    let shapes = view(app).shapes(app.shared());
    assert_eq!(shapes.head(1, app.settings()), Some(1));
    // Clicking the second side's "head mean" tile moves both back to the mean.
    h.get_all_by_label("head mean").nth(1).unwrap().click();
    h.step();
    assert_eq!(h.state().app().settings().compare.heads, [None, None]);

    // Down: the block below, on both sides.
    h.key_press(egui::Key::ArrowDown);
    h.step();
    wait_for(&mut h, "block 2 on both sides", |app| {
        both_shown(app, |k| k.block == 2)
    });
    let right = shown(&h, 1).1;
    let want = library_attention(&vit_b, 2);
    assert!(max_diff(&attention(&right).values, &want.values) < 1e-6);
}

#[test]
fn differently_shaped_models_are_chosen_per_side_and_pca_colours_each() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dino(dir.path(), "a.safetensors", 1), dinov2(dir.path()));
    let mut h = compare_app(Harness::builder().with_size([1400.0, 900.0]), &a, &b);

    let app = h.state().app();
    let shapes = view(app).shapes(app.shared());
    assert_eq!(shapes.sides, [Some((4, 2)), Some((3, 3))]);
    assert!(!shapes.blocks_linked && !shapes.heads_linked);
    assert_eq!(shown(&h, 1).0.block, 2, "the second model's own last block");
    assert_eq!(attention(&shown(&h, 1).1).heads, 3);
    h.get_by_label_contains("what differs is chosen per side");

    // The loaded model's head does not move the second's.
    h.state_mut().app_mut().settings_mut().compare.heads[0] = Some(1);
    h.step();
    let app = h.state().app();
    assert_eq!(view(app).shapes(app.shared()).head(1, app.settings()), None);

    // PCA: every patch of each model coloured, as the library colours the block's tokens.
    {
        let settings = h.state_mut().app_mut().settings_mut();
        settings.compare.show = CompareShow::Pca;
        settings.compare.blocks[1] = Some(1);
    }
    h.step();
    wait_for(&mut h, "the PCA colouring", |app| {
        both_shown(app, |k| k.show == CompareShow::Pca)
    });
    let (key, right) = shown(&h, 1);
    assert_eq!(key.block, 1);
    let SideMaps::Pca { grid, colors } = &right.maps else {
        panic!("a PCA result was expected");
    };
    let vit = library_vit(&b);
    let rgb = load_rgb(&asset("chelsea.png")).unwrap();
    let prepared = prepare(&rgb, Resize::ShortSide(112), 14, DEFAULT_MAX_PATCHES).unwrap();
    let spec = DescriptorSpec {
        layer: 1,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    let map = extract(&vit, &prepared, spec).unwrap();
    assert_eq!(*grid, map.grid);
    let want = pca_colors(&[map], PcaColoring::default()).remove(0);
    let differing = colors
        .iter()
        .zip(&want.colors)
        .filter(|(x, y)| x.iter().zip(y.iter()).any(|(p, q)| p.abs_diff(*q) > 1))
        .count();
    assert_eq!(differing, 0);
}

#[test]
fn a_second_checkpoint_that_cannot_be_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = dino(dir.path(), "a.safetensors", 1);
    let bad = dir.path().join("broken.pth");
    std::fs::write(&bad, b"not a checkpoint").unwrap();
    let mut h = build_harness(
        Harness::builder().with_size([1400.0, 900.0]),
        bare_options(),
    );
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(a.clone());
        app.add_paths(vec![asset("chelsea.png")]);
        app.settings_mut().input_size = InputSize::ShortSide(112);
        app.settings_mut().compare.second = Some(bad.clone());
        app.set_tab(ViewTab::COMPARE);
    }
    wait_for(&mut h, "the error", |app| {
        app.notifications().errors().count() > 0 && app.is_idle()
    });
    let errors: Vec<String> = h
        .state()
        .app()
        .notifications()
        .errors()
        .map(|n| n.text.clone())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("broken.pth")),
        "{errors:?}"
    );
    // The loaded model's side still shows, and the failed file is not retried every frame.
    wait_for(&mut h, "the loaded side", |app| {
        app.is_idle() && view(app).shown(0).is_some()
    });
    for _ in 0..5 {
        h.step();
    }
    assert_eq!(
        h.state().app().notifications().errors().count(),
        errors.len()
    );
    h.get_by_label_contains("could not be loaded");
}

#[test]
fn a_downloaded_checkpoint_becomes_the_second_model_and_the_loaded_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dino(dir.path(), "a.safetensors", 1),
        dino(dir.path(), "b.safetensors", 2),
    );
    let server = common::http::Server::start("b.safetensors", std::fs::read(&b).unwrap(), true);
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut h = build_harness(
        Harness::builder().with_size([1400.0, 900.0]),
        AppOptions {
            checkpoint_dir: Some(cache.clone()),
            ..bare_options()
        },
    );
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(a.clone());
        app.add_paths(vec![asset("chelsea.png")]);
        app.settings_mut().input_size = InputSize::ShortSide(112);
        app.set_tab(ViewTab::COMPARE);
    }
    let loaded = ModelSource::File(a.clone());
    wait_for(&mut h, "the loaded side", |app| {
        app.is_idle()
            && app.model().is_some_and(|m| m.source == loaded)
            && view(app).shown(0).is_some()
    });
    // One click on the supervised offer starts its download (a test fetches nothing from the
    // internet: cancelled at once).
    h.get_by_label_contains("Download DeiT ViT-S/16 (supervised)")
        .click();
    h.step();
    let downloads = h.state().app().downloads();
    assert!(
        downloads.active.contains_key("deit_s16") || downloads.outcome.contains_key("deit_s16")
    );
    h.state_mut().app_mut().cancel();
    wait_for(&mut h, "the cancelled download", |app| app.is_idle());

    let dest = cache.join("b.safetensors");
    h.state_mut()
        .app_mut()
        .download_second_model(DownloadRequest {
            id: "second".into(),
            title: "second".into(),
            url: server.url("b.safetensors"),
            dest: dest.clone(),
            expected_sha256: None,
        });
    wait_for(&mut h, "both sides after the download", |app| {
        app.settings().compare.second.as_ref() == Some(&dest) && both_shown(app, |_| true)
    });
    let app = h.state().app();
    assert_eq!(app.model().map(|m| &m.source), Some(&loaded));
    let right = shown(&h, 1).1;
    let want = library_attention(&library_vit(&b), 3);
    assert!(max_diff(&attention(&right).values, &want.values) < 1e-6);
}

#[test]
fn snapshot_compare_view() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dino(dir.path(), "a.safetensors", 1), dinov2(dir.path()));
    let builder = Harness::builder()
        .with_size([1000.0, 640.0])
        .with_pixels_per_point(0.6)
        .with_render_cursor(false)
        // As tests/app.rs: software rasterisers differ slightly between Mesa versions.
        .with_options(SnapshotOptions::new().threshold(2.0).max_failed_pixels(400));
    let mut h = compare_app(builder, &a, &b);
    {
        let settings = h.state_mut().app_mut().settings_mut();
        settings.show_model_panel = false;
        settings.tile_size = 200.0;
    }
    h.event(egui::Event::PointerGone);
    for _ in 0..4 {
        h.step();
    }
    // Compute times and the temporary folder's name differ between runs: painted over.
    let masked: Vec<egui::Rect> = h
        .query_all_by_label_contains(" ms")
        .chain(h.query_all_by_label_contains(".safetensors"))
        .map(|n| n.rect())
        .collect();
    assert!(!masked.is_empty());
    snapshot_masked(&mut h, "compare", &masked);
}
