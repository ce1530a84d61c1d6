//! The desktop app, driven headless through egui_kittest: loading images, switching layers,
//! clicking patches, errors as notifications, exports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dinoscope::analysis::attention::{Query, attention_maps};
use dinoscope::app::attention_panel::cell_rect;
use dinoscope::app::{App, AppOptions};
use dinoscope::model::config::Arch;
use dinoscope::model::save::save_safetensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{DeviceChoice, Grid, LoadOptions, backend, load_model};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

/// The harness builds the app on its first frame, with the harness's egui context.
struct TestApp {
    options: AppOptions,
    app: Option<App>,
}

impl TestApp {
    fn app(&self) -> &App {
        self.app
            .as_ref()
            .expect("the app is built on the first frame")
    }

    fn app_mut(&mut self) -> &mut App {
        self.app
            .as_mut()
            .expect("the app is built on the first frame")
    }
}

fn harness(options: AppOptions) -> Harness<'static, TestApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(
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

fn bare_options() -> AppOptions {
    AppOptions {
        default_weights: None,
        samples: false,
        restore_session: false,
    }
}

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/images")
        .join(name)
}

/// Steps frames until `done` holds (the worker runs on its own thread).
fn wait_for(h: &mut Harness<'static, TestApp>, what: &str, done: impl Fn(&App) -> bool) {
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

fn shows_current_result(app: &App) -> bool {
    app.is_idle() && app.current_result().is_some()
}

#[test]
fn starts_on_the_first_sample_with_an_untrained_model_clearly_labelled() {
    let mut h = harness(AppOptions {
        samples: true,
        ..bare_options()
    });
    wait_for(&mut h, "the first attention", shows_current_result);
    let app = h.state().app();
    assert_eq!(app.gallery().entries.len(), 7);
    assert_eq!(
        app.gallery().selected_entry().map(|e| e.name.as_str()),
        Some("chelsea.png")
    );
    let model = app.model().expect("a model");
    assert!(model.is_untrained());
    assert_eq!(model.config, Arch::VitNano.config());
    // The last block by default, and every head plus the mean on screen.
    assert_eq!(app.layer(), 3);
    assert_eq!(app.view().tile_rects.len(), 3 + 1);
    assert!(
        h.query_all_by_label_contains("untrained ViT-nano (random weights)")
            .next()
            .is_some()
    );
    h.get_by_label("attention head mean");
    h.get_by_label("attention head 2");
}

#[test]
fn layer_switch_and_patch_click_match_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("nano.safetensors");
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let vit = Vit::init(Arch::VitNano.config(), &device.device);
    save_safetensors(&vit, &weights).unwrap();

    let mut h = harness(bare_options());
    h.state_mut().app_mut().open_checkpoint(weights.clone());
    h.state_mut()
        .app_mut()
        .add_paths(vec![asset("chelsea.png")]);
    wait_for(&mut h, "the first attention", shows_current_result);
    assert!(!h.state().app().model().unwrap().is_untrained());
    assert_eq!(h.state().app().layer(), 3);

    // Down arrow: one block earlier.
    h.key_press(egui::Key::ArrowDown);
    h.step();
    assert_eq!(h.state().app().layer(), 2);
    wait_for(&mut h, "block 2", shows_current_result);
    let result = h.state().app().current_result().unwrap().clone();
    assert_eq!(h.state().app().current_key().unwrap().layer, 2);

    // Click the centre of patch (5, 7) on the head-mean tile.
    let grid = result.maps.grid;
    let size = [result.prepared.width(), result.prepared.height()];
    assert_eq!(
        Some(grid),
        Grid::for_image(size[1], size[0], 8, 8),
        "the grid is the library's"
    );
    let (_, tile) = h
        .state()
        .app()
        .view()
        .tile_rects
        .iter()
        .copied()
        .find(|(head, _)| head.is_none())
        .unwrap();
    let (row, col) = (5, 7);
    let pos = cell_rect(tile, grid, size, row, col).center();
    // The pixel under the pointer, in the image the model saw, and its patch.
    let px = ((pos.x - tile.min.x) / tile.width() * size[0] as f32) as usize;
    let py = ((pos.y - tile.min.y) / tile.height() * size[1] as f32) as usize;
    assert_eq!((py / grid.stride, px / grid.stride), (row, col));
    h.event(egui::Event::PointerMoved(pos));
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
    }
    h.step();
    assert_eq!(h.state().app().query(), Query::Patch { row, col });
    assert_eq!(
        h.state().app().view().hover.map(|hv| (hv.row, hv.col)),
        Some((row, col))
    );
    wait_for(&mut h, "the patch attention", shows_current_result);

    // The app shows exactly what the library computes for that patch.
    let shown = h.state().app().current_result().unwrap().clone();
    let loaded = load_model(&weights, &LoadOptions::default(), &device.device).unwrap();
    let expected = attention_maps(
        &loaded.vit,
        shown.prepared.to_tensor(&device.device),
        2,
        Query::Patch { row, col },
        8,
    );
    assert_eq!(shown.maps.grid, expected.grid);
    let max_err = shown
        .maps
        .values
        .iter()
        .zip(&expected.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-5, "max error {max_err}");

    // Escape goes back to CLS.
    h.key_press(egui::Key::Escape);
    h.step();
    assert_eq!(h.state().app().query(), Query::Cls);
}

#[test]
fn recolouring_never_recomputes() {
    let mut h = harness(bare_options());
    h.state_mut()
        .app_mut()
        .add_paths(vec![asset("cartoon_cat.png")]);
    wait_for(&mut h, "the first attention", shows_current_result);
    let before = h.state().app().current_result().unwrap().clone();
    {
        let settings = h.state_mut().app_mut().settings_mut();
        settings.threshold = 0.3;
        settings.opacity = 0.9;
        settings.colormap = dinoscope::analysis::colormap::Colormap::Magma;
    }
    h.step();
    let app = h.state().app();
    assert!(app.is_idle(), "a colour change started a computation");
    assert!(std::sync::Arc::ptr_eq(
        app.current_result().unwrap(),
        &before
    ));
}

#[test]
fn a_corrupt_image_gives_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken-cat.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let mut h = harness(bare_options());
    h.state_mut()
        .app_mut()
        .add_paths(vec![broken, asset("chelsea.png")]);
    wait_for(&mut h, "the loader", |app| {
        app.is_idle() && app.gallery().entries.len() == 1
    });
    let errors: Vec<String> = h
        .state()
        .app()
        .notifications()
        .errors()
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("broken-cat.png"), "{}", errors[0]);
    // The good image still loaded, and the error can be dismissed.
    h.get_by_label_contains("broken-cat.png");
    h.get_by_label("Dismiss").click();
    h.step();
    h.step();
    assert_eq!(h.state().app().notifications().errors().count(), 0);
}

#[test]
fn folders_are_searched_for_images_and_the_gallery_reorders() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::copy(asset("chelsea.png"), dir.path().join("1.png")).unwrap();
    std::fs::copy(asset("rocket.jpg"), nested.join("2.jpg")).unwrap();
    std::fs::write(nested.join("notes.txt"), "not an image").unwrap();
    let mut h = harness(bare_options());
    h.state_mut()
        .app_mut()
        .add_paths(vec![dir.path().to_path_buf()]);
    wait_for(&mut h, "the folder", |app| {
        app.is_idle() && app.gallery().entries.len() == 2
    });
    let names = |h: &Harness<'static, TestApp>| -> Vec<String> {
        h.state()
            .app()
            .gallery()
            .entries
            .iter()
            .map(|e| e.name.clone())
            .collect()
    };
    assert_eq!(names(&h), ["1.png", "2.jpg"]);
    assert_eq!(h.state().app().notifications().errors().count(), 0);
    // Move the first image right, then select the next one with the keyboard.
    h.get_by_label(">").click();
    h.step();
    assert_eq!(names(&h), ["2.jpg", "1.png"]);
    h.key_press(egui::Key::ArrowLeft);
    h.step();
    assert_eq!(
        h.state().app().gallery().selected_entry().unwrap().name,
        "2.jpg"
    );
    h.get_by_label("Remove").click();
    h.step();
    assert_eq!(names(&h), ["1.png"]);
}

#[test]
fn exports_write_the_head_mean_png_and_the_attention_npy() {
    let mut h = harness(bare_options());
    h.state_mut()
        .app_mut()
        .add_paths(vec![asset("guitar_cat.jpg")]);
    wait_for(&mut h, "the first attention", shows_current_result);
    let app = h.state().app();
    let result = app.current_result().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("mean.png");
    let npy = dir.path().join("attention.npy");
    dinoscope::app::export::export_png(&png, result, app.settings()).unwrap();
    dinoscope::app::export::export_npy(&npy, result).unwrap();
    let image = image::open(&png).unwrap();
    assert_eq!(
        (image.width() as usize, image.height() as usize),
        (result.prepared.width(), result.prepared.height())
    );
    let (shape, values) = dinoscope::arrays::read_npy(&npy).unwrap();
    let g = result.maps.grid;
    assert_eq!(shape, vec![result.maps.heads, g.rows, g.cols]);
    assert_eq!(values, result.maps.values);
    // A file that cannot be written is an error naming it, not a panic.
    let bad = dir.path().join("no/such/dir/mean.png");
    let err = dinoscope::app::export::export_png(&bad, result, app.settings()).unwrap_err();
    assert!(err.to_string().contains("mean.png"), "{err}");
}
