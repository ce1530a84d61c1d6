//! The token-norms view driven headless through egui_kittest on a register model: the norms and
//! register attention the library computes, the outlier count following the threshold, and a
//! snapshot (`UPDATE_SNAPSHOTS=1 cargo test --test app_norms snapshot` rewrites it).

mod app_common;

use std::path::{Path, PathBuf};

use app_common::{TestApp, bare_options, build_harness, snapshot_masked, wait_for};
use dinoscope::analysis::token_norms::{BlockTokens, block_tokens};
use dinoscope::app::App;
use dinoscope::app::norms::NormsTab;
use dinoscope::app::norms::job::NormsKey;
use dinoscope::app::norms::panel::outlier_text;
use dinoscope::app::state::{InputSize, ViewTab};
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, load_rgb, prepare};
use dinoscope::model::save::save_safetensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{DeviceChoice, LoadOptions, Resize, VitConfig, backend, load_model};
use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, HarnessBuilder, SnapshotOptions};

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/images")
        .join(name)
}

/// A DINOv2-style ViT/14 with `registers` registers, 2 heads and 4 blocks (random weights,
/// seeded).
fn dinov2_weights(dir: &Path, registers: usize) -> PathBuf {
    let path = dir.join(format!("reg{registers}.safetensors"));
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let config = VitConfig::dinov2(128, 4, 2, false, registers);
    let vit = Vit::init_seeded(config, 16 + registers as u64, &device.device);
    save_safetensors(&vit, &path).unwrap();
    path
}

fn register_weights(dir: &Path) -> PathBuf {
    dinov2_weights(dir, 4)
}

/// The app on the norms tab with `weights` and chelsea.png at a 224-pixel short side, block 2.
fn norms_app(builder: HarnessBuilder<TestApp>, weights: &Path) -> Harness<'static, TestApp> {
    let mut h = build_harness(builder, bare_options());
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(weights.to_path_buf());
        app.add_paths(vec![asset("chelsea.png")]);
        app.settings_mut().input_size = InputSize::ShortSide(224);
        app.settings_mut().norms.block = Some(2);
        app.set_tab(ViewTab::NORMS);
    }
    wait_for(&mut h, "the token norms", shows_block_2);
    h
}

fn shows_block_2(app: &App) -> bool {
    shows(app, |key| key.block == 2)
}

fn shows(app: &App, want: impl Fn(&NormsKey) -> bool) -> bool {
    app.is_idle()
        && app
            .view_of::<NormsTab>()
            .and_then(|v| v.shown())
            .is_some_and(|(key, _)| want(key))
}

fn shown(h: &Harness<'static, TestApp>) -> std::sync::Arc<dinoscope::app::norms::job::NormsResult> {
    let view = h.state().app().view_of::<NormsTab>().unwrap();
    view.shown().unwrap().1.clone()
}

/// What the library computes for chelsea.png at block 2.
fn library(weights: &Path) -> BlockTokens {
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let vit = load_model(weights, &LoadOptions::default(), &device.device)
        .unwrap()
        .vit;
    let rgb = load_rgb(&asset("chelsea.png")).unwrap();
    let prepared = prepare(&rgb, Resize::ShortSide(224), 14, DEFAULT_MAX_PATCHES).unwrap();
    block_tokens(&vit, &prepared, 2).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn norms_view_shows_the_library_norms_and_counts_outliers_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let weights = register_weights(dir.path());
    let mut h = norms_app(Harness::builder().with_size([1400.0, 900.0]), &weights);

    let result = shown(&h);
    let expected = library(&weights);
    let norms = &result.tokens.norms;
    assert_eq!(norms.grid, expected.norms.grid);
    assert!(max_diff(&norms.patches, &expected.norms.patches) < 1e-5);
    assert!(max_diff(&norms.prefix, &expected.norms.prefix) < 1e-5);
    let (shown_attn, want_attn) = (
        result.tokens.registers.as_ref().unwrap(),
        expected.registers.as_ref().unwrap(),
    );
    assert_eq!(shown_attn.registers, 4);
    assert!(max_diff(&shown_attn.values, &want_attn.values) < 1e-6);

    // The suggested threshold first, then one that leaves exactly five patches above it.
    let total = norms.patches.len();
    let count = |t: f32| norms.patches.iter().filter(|n| **n > t).count();
    h.get_by_label(&outlier_text(
        count(result.suggested),
        total,
        result.suggested,
    ));
    let mut sorted = norms.patches.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = (sorted[4] + sorted[5]) / 2.0;
    h.state_mut().app_mut().settings_mut().norms.threshold = Some(threshold);
    h.step();
    h.get_by_label(&outlier_text(5, total, threshold));

    // The register attention: CLS to each register, a map per register.
    h.get_by_label_contains("Attention to the registers (mean over 2 heads)");
    h.get_by_label("attention to register 3 of chelsea.png");
    h.get_by_label("norm map of chelsea.png");

    // Up: the next block, computed and shown.
    h.key_press(egui::Key::ArrowUp);
    h.step();
    wait_for(&mut h, "block 3", |app| shows(app, |key| key.block == 3));
}

#[test]
fn the_toggle_shows_a_second_checkpoint_without_registers_in_place_of_the_loaded_one() {
    let dir = tempfile::tempdir().unwrap();
    let weights = register_weights(dir.path());
    let plain = dinov2_weights(dir.path(), 0);
    let mut h = norms_app(Harness::builder().with_size([1400.0, 900.0]), &weights);
    let with_registers = shown(&h);
    {
        let norms = &mut h.state_mut().app_mut().settings_mut().norms;
        norms.second = Some(plain.clone());
        norms.show_second = true;
    }
    wait_for(&mut h, "the second checkpoint's norms", |app| {
        shows(app, |key| key.second.is_some())
    });
    let without = shown(&h);
    assert!(without.tokens.registers.is_none());
    assert_eq!(without.tokens.norms.prefix.len(), 1, "CLS alone");
    // The library on the second checkpoint gives the same norms.
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let vit = load_model(&plain, &LoadOptions::default(), &device.device)
        .unwrap()
        .vit;
    let rgb = load_rgb(&asset("chelsea.png")).unwrap();
    let prepared = prepare(&rgb, Resize::ShortSide(224), 14, DEFAULT_MAX_PATCHES).unwrap();
    let expected = block_tokens(&vit, &prepared, 2).unwrap();
    assert!(max_diff(&without.tokens.norms.patches, &expected.norms.patches) < 1e-5);
    h.get_by_label_contains("block 2 of reg0.safetensors");
    assert!(
        h.query_all_by_label_contains("Attention to the registers")
            .next()
            .is_none()
    );

    // Back to the loaded model: its cached result, registers and all.
    h.state_mut().app_mut().settings_mut().norms.show_second = false;
    h.step();
    h.step();
    let back = shown(&h);
    assert!(std::sync::Arc::ptr_eq(&back, &with_registers));
    h.get_by_label_contains("Attention to the registers");
}

#[test]
fn snapshot_norms_view() {
    let dir = tempfile::tempdir().unwrap();
    let weights = register_weights(dir.path());
    let builder = Harness::builder()
        .with_size([1000.0, 640.0])
        .with_pixels_per_point(0.6)
        .with_render_cursor(false)
        // As tests/app.rs: software rasterisers differ slightly between Mesa versions.
        .with_options(SnapshotOptions::new().threshold(2.0).max_failed_pixels(400));
    let mut h = norms_app(builder, &weights);
    {
        let settings = h.state_mut().app_mut().settings_mut();
        settings.show_model_panel = false;
        settings.tile_size = 150.0;
    }
    h.event(egui::Event::PointerGone);
    for _ in 0..4 {
        h.step();
    }
    // The compute time differs between runs: painted over.
    let masked: Vec<egui::Rect> = h
        .query_all_by_label_contains("computed in")
        .map(|n| n.rect())
        .collect();
    assert!(!masked.is_empty());
    snapshot_masked(&mut h, "norms", &masked);
}
