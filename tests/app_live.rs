//! The live view driven headless through egui_kittest with the synthetic source and the default
//! untrained model: frames shown while the UI keeps its frame budget, frames dropped rather than
//! queued, a click followed, a recording written, and a snapshot (`UPDATE_SNAPSHOTS=1 cargo test
//! --test app_live snapshot` rewrites it).

mod app_common;

use std::time::{Duration, Instant};

use app_common::{TestApp, bare_options, build_harness, snapshot_masked, wait_for};
use dinoscope::analysis::live::LiveView;
use dinoscope::app::App;
use dinoscope::app::live::LiveTab;
use dinoscope::video::{SourceSpec, SyntheticScene};
use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, HarnessBuilder, SnapshotOptions};

fn live(app: &App) -> &LiveTab {
    app.view_of::<LiveTab>()
        .expect("the live view is registered")
}

fn live_mut<'a>(h: &'a mut Harness<'static, TestApp>) -> &'a mut LiveTab {
    h.state_mut()
        .app_mut()
        .view_mut_of::<LiveTab>()
        .expect("the live view is registered")
}

/// The app on the live tab once the default (untrained ViT-nano) model is loaded.
fn live_app(builder: HarnessBuilder<TestApp>) -> Harness<'static, TestApp> {
    let mut h = build_harness(builder, bare_options());
    wait_for(&mut h, "the default model", |app| {
        app.model().is_some() && app.is_idle()
    });
    h.state_mut().app_mut().set_tab(LiveTab::ID);
    h.step();
    h
}

fn start(h: &mut Harness<'static, TestApp>, scene: SyntheticScene) {
    let ctx = h.ctx.clone();
    live_mut(h)
        .start(SourceSpec::Synthetic(scene), &ctx)
        .unwrap();
}

/// Steps frames until a frame after `after` is shown.
fn wait_for_frame_after(h: &mut Harness<'static, TestApp>, after: u64) {
    wait_for(h, "a new live frame", |app| {
        live(app).shown().is_some_and(|f| f.index > after)
    });
}

fn stop_and_settle(h: &mut Harness<'static, TestApp>) {
    live_mut(h).stop();
    wait_for(h, "the last live frame", |app| app.is_idle());
}

#[test]
fn live_view_keeps_up_drops_frames_and_follows_a_click() {
    let mut h = live_app(Harness::builder().with_size([1200.0, 800.0]));
    // A source far faster than the model: the slot drops what the model cannot take.
    start(
        &mut h,
        SyntheticScene {
            fps: 240.0,
            ..SyntheticScene::default()
        },
    );
    wait_for_frame_after(&mut h, 0);
    let first = live(h.state().app()).shown().unwrap().index;
    live_mut(&mut h).click((160.0, 120.0));
    let mut ui_ms = Vec::new();
    let started = Instant::now();
    while live(h.state().app()).shown().unwrap().index < first + 40 {
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
        h.step();
        ui_ms.push(h.state().app().last_ui_ms());
        std::thread::sleep(Duration::from_millis(5));
    }
    let view = live(h.state().app());
    let counts = view.frame_counts().unwrap();
    assert!(counts.dropped > 0, "{counts:?}");
    assert!(counts.put >= counts.taken + counts.dropped);
    assert!(view.fps().unwrap() > 0.0);
    let frame = view.shown().unwrap();
    assert_eq!(frame.tracks.len(), 1, "the click is followed");
    // The UI thread only uploads finished pictures.
    ui_ms.sort_by(f32::total_cmp);
    let median = ui_ms[ui_ms.len() / 2];
    assert!(median < 16.0, "median UI build {median} ms");
    stop_and_settle(&mut h);
}

#[test]
fn the_live_view_records_what_it_shows() {
    let mut h = live_app(Harness::builder().with_size([1200.0, 800.0]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.gif");
    start(&mut h, SyntheticScene::default());
    live_mut(&mut h).start_recording(path.clone()).unwrap();
    wait_for_frame_after(&mut h, 3);
    let shown = live(h.state().app()).shown().unwrap().image.dimensions();
    stop_and_settle(&mut h);
    h.get_by_label_contains("Stop recording").click();
    wait_for(&mut h, "the recording", |app| {
        !live(app).is_recording() && !live(app).is_saving()
    });
    assert_eq!(h.state().app().notifications().errors().count(), 0);
    let mut back = dinoscope::video::animated::AnimatedSource::open(&path).unwrap();
    let mut frames = 0;
    while let Some(frame) = dinoscope::video::FrameSource::next_frame(&mut back).unwrap() {
        assert_eq!(frame.image.dimensions(), shown);
        frames += 1;
    }
    assert!(frames >= 2, "{frames} frames recorded");
}

#[test]
fn snapshot_live_view() {
    let builder = Harness::builder()
        .with_size([1000.0, 640.0])
        .with_pixels_per_point(0.6)
        .with_render_cursor(false)
        // As tests/app.rs: software rasterisers differ slightly between Mesa versions.
        .with_options(SnapshotOptions::new().threshold(2.0).max_failed_pixels(400));
    let mut h = live_app(builder);
    {
        let settings = h.state_mut().app_mut().settings_mut();
        settings.show_model_panel = false;
    }
    live_mut(&mut h).options.view = LiveView::Pca;
    // A still scene: whichever frames the model gets, the picture is the same.
    start(
        &mut h,
        SyntheticScene {
            shift: (0, 0),
            ..SyntheticScene::default()
        },
    );
    wait_for_frame_after(&mut h, 0);
    live_mut(&mut h).click((200.0, 90.0));
    wait_for(&mut h, "the track", |app| {
        live(app).shown().is_some_and(|f| f.tracks.len() == 1)
    });
    let tracked = live(h.state().app()).shown().unwrap().index;
    wait_for_frame_after(&mut h, tracked);
    stop_and_settle(&mut h);
    h.event(egui::Event::PointerGone);
    for _ in 0..4 {
        h.step();
    }
    // Rates and times differ between runs: painted over.
    let masked: Vec<egui::Rect> = h
        .query_all_by_label_contains("frames/s")
        .map(|n| n.rect())
        .collect();
    assert!(!masked.is_empty());
    snapshot_masked(&mut h, "live", &masked);
}
