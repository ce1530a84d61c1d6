//! The app under egui_kittest, shared by the app test files: the app built on the first frame, and
//! waiting for work on its threads.

use std::time::{Duration, Instant};

use dinoscope::app::{App, AppOptions};
use eframe::egui;
use egui_kittest::{Harness, HarnessBuilder};

pub struct TestApp {
    pub options: AppOptions,
    pub app: Option<App>,
}

impl TestApp {
    pub fn app(&self) -> &App {
        self.app
            .as_ref()
            .expect("the app is built on the first frame")
    }

    pub fn app_mut(&mut self) -> &mut App {
        self.app
            .as_mut()
            .expect("the app is built on the first frame")
    }
}

pub fn build_harness(
    builder: HarnessBuilder<TestApp>,
    options: AppOptions,
) -> Harness<'static, TestApp> {
    builder.build_ui_state(
        |ui, state: &mut TestApp| {
            let options = state.options.clone();
            state
                .app
                .get_or_insert_with(|| App::new(ui.ctx(), None, options))
                .show(ui);
        },
        TestApp { options, app: None },
    )
}

/// No default weights, samples, stored session or settings file, and an empty checkpoint folder
/// (so the first-run offer shows whatever the user's own cache holds).
pub fn bare_options() -> AppOptions {
    let empty = std::env::temp_dir().join("dinoscope-tests-no-checkpoints");
    AppOptions {
        default_weights: None,
        samples: false,
        restore_session: false,
        checkpoint_dir: Some(empty),
        settings_file: None,
    }
}

/// Steps frames until `done` holds (the worker runs on its own thread).
pub fn wait_for(h: &mut Harness<'static, TestApp>, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    while !done(h.state().app()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    // One more frame so the screen shows the new state.
    h.step();
}

/// Renders the harness, paints `masked` (what differs between runs: times, temporary names)
/// magenta and compares the image with the snapshot `name`.
#[allow(dead_code)] // only the test files with snapshots call it
pub fn snapshot_masked(h: &mut Harness<'static, TestApp>, name: &str, masked: &[egui::Rect]) {
    let mut image = h
        .render()
        .expect("snapshot tests need a wgpu renderer (a GPU, or Mesa's lavapipe)");
    let ppp = h.ctx.pixels_per_point();
    for rect in masked {
        let (x0, y0) = ((rect.min.x * ppp) as u32, (rect.min.y * ppp) as u32);
        let (x1, y1) = (
            ((rect.max.x * ppp).ceil() as u32).min(image.width()),
            ((rect.max.y * ppp).ceil() as u32).min(image.height()),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                image.put_pixel(x, y, image::Rgba([255, 0, 255, 255]));
            }
        }
    }
    egui_kittest::image_snapshot_options(&image, name, h.options());
}
