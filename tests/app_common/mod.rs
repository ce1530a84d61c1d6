//! The app under egui_kittest, shared by the app test files: the app built on the first frame, and
//! waiting for work on its threads.

use std::time::{Duration, Instant};

use dinoscope::app::{App, AppOptions};
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
