//! The "Paper figure" presets of the attention and PCA views, driven headless through
//! egui_kittest: one click sets the view's options to the paper's, the figure shown is the
//! library's figure of the view's result, and the export writes that figure as a PNG.

mod app_common;

use std::path::{Path, PathBuf};

use app_common::{TestApp, bare_options, build_harness, wait_for};
use dinoscope::analysis::attention::Query;
use dinoscope::analysis::features::{DescriptorSpec, extract};
use dinoscope::analysis::figure_presets::{
    DINO_MASS, GAP, dino_attention_figure, dinov2_pca_figure, dinov2_views,
};
use dinoscope::app::App;
use dinoscope::app::state::{InputSize, ViewTab};
use dinoscope::app::worker::patch_budget;
use dinoscope::model::config::Arch;
use dinoscope::model::preprocess::{load_rgb, prepare};
use dinoscope::model::save::save_safetensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{DeviceChoice, Facet, LoadOptions, Resize, backend, load_model};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use image::RgbImage;

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/images")
        .join(name)
}

/// A ViT-nano (patch 8, 3 heads, 4 blocks) with seeded random weights, saved as safetensors.
fn nano_weights(dir: &Path) -> PathBuf {
    let weights = dir.join("nano.safetensors");
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let vit = Vit::init_seeded(Arch::VitNano.config(), 7, &device.device);
    save_safetensors(&vit, &weights).unwrap();
    weights
}

/// The app with `weights` and the named sample images at a 224-pixel short side.
fn app_with(weights: &Path, names: &[&str]) -> Harness<'static, TestApp> {
    let mut h = build_harness(
        Harness::builder().with_size([1400.0, 900.0]),
        bare_options(),
    );
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(weights.to_path_buf());
        app.add_paths(names.iter().map(|n| asset(n)).collect());
        app.settings_mut().input_size = InputSize::ShortSide(224);
    }
    wait_for(&mut h, "the model and images", |app| {
        app.is_idle() && app.gallery().entries.len() == names.len() && app.model().is_some()
    });
    h
}

fn read_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

#[test]
fn the_attention_preset_sets_the_papers_options_shows_and_exports_its_figure() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app_with(&nano_weights(dir.path()), &["guitar_cat.jpg"]);
    {
        // Options away from the paper's.
        let app = h.state_mut().app_mut();
        app.set_layer(1);
        app.set_query(Query::Patch { row: 2, col: 3 });
        app.settings_mut().threshold = 0.3;
        app.settings_mut().show_masks = false;
    }
    wait_for(&mut h, "the attention", |app| {
        app.is_idle() && app.current_result().is_some()
    });
    assert!(!h.state().app().shows_attention_figure());

    h.get_by_label("Paper figure").click();
    h.step();
    let app = h.state().app();
    assert!(app.shows_attention_figure());
    assert_eq!(app.settings().layer, None, "the last block");
    assert_eq!(app.layer(), 3);
    assert_eq!(app.query(), Query::Cls);
    assert_eq!(app.settings().threshold, DINO_MASS);
    assert!(app.settings().show_masks);
    assert_eq!(app.attention_figure_heads(), vec![0, 1, 2]);

    let figure_of = |app: &App, heads: &[usize]| {
        let result = app
            .current_result()
            .expect("the attention of the last block");
        dino_attention_figure(&result.prepared.rgb, &result.maps, heads, DINO_MASS)
    };
    wait_for(&mut h, "the figure", |app| {
        app.is_idle() && app.attention_figure().is_some()
    });
    let app = h.state().app();
    let shown = app.attention_figure().unwrap().clone();
    assert_eq!(*shown, figure_of(app, &[0, 1, 2]));
    let result = app.current_result().unwrap();
    let (w, ht) = (
        result.prepared.width() as u32,
        result.prepared.height() as u32,
    );
    assert_eq!(shown.dimensions(), (2 * w + GAP, ht));
    h.get_by_label("DINO paper figure");

    // A head left out: the figure follows.
    h.get_by_label("Head 1").click();
    h.step();
    assert_eq!(h.state().app().attention_figure_heads(), vec![0, 2]);
    wait_for(&mut h, "the figure without head 1", |app| {
        app.is_idle() && app.attention_figure().is_some()
    });
    let shown = h.state().app().attention_figure().unwrap().clone();
    assert_eq!(*shown, figure_of(h.state().app(), &[0, 2]));

    // The export writes the figure shown.
    h.get_by_label("Export figure (PNG)...");
    let png = dir.path().join("figure.png");
    h.state_mut()
        .app_mut()
        .export_attention_figure_to(png.clone());
    wait_for(&mut h, "the export", App::is_idle);
    assert_eq!(read_png(&png), *shown);
    assert_eq!(h.state().app().notifications().errors().count(), 0);

    // And back to the tiles.
    h.get_by_label("Back to the heads").click();
    h.step();
    assert!(!h.state().app().shows_attention_figure());
    h.step();
    assert!(!h.state().app().view().tile_rects.is_empty());
}

#[test]
fn the_pca_preset_sets_the_papers_options_shows_and_exports_its_figure() {
    let dir = tempfile::tempdir().unwrap();
    let weights = nano_weights(dir.path());
    let names = ["chelsea.png", "cartoon_cat.png"];
    let mut h = app_with(&weights, &names);
    {
        let app = h.state_mut().app_mut();
        app.set_tab(ViewTab::PCA);
        let pca = &mut app.settings_mut().pca;
        pca.all_images = false;
        pca.joint = false;
        pca.layer = Some(1);
        pca.facet = Facet::Key;
        pca.stride = Some(4);
        pca.foreground = false;
    }
    wait_for(&mut h, "the PCA", |app| {
        app.is_idle() && app.current_pca_result().is_some()
    });

    h.get_by_label("Paper figure").click();
    h.step();
    let pca = h.state().app().settings().pca.clone();
    assert!(pca.all_images && pca.joint && pca.foreground && pca.positive_score);
    assert_eq!(
        (pca.layer, pca.facet, pca.stride),
        (None, Facet::Token, None)
    );
    assert!(h.state().app().shows_pca_figure());
    wait_for(&mut h, "the figure", |app| {
        app.is_idle() && app.pca_figure().is_some()
    });
    let app = h.state().app();
    let result = app.current_pca_result().unwrap().clone();
    assert_eq!(result.images.len(), 2);
    assert_eq!(app.pca_layer(), 3);

    // The colouring is the library's DINOv2 colouring of the same features.
    let device = backend::select(DeviceChoice::Auto).unwrap();
    let vit = load_model(&weights, &LoadOptions::default(), &device.device)
        .unwrap()
        .vit;
    let spec = DescriptorSpec {
        layer: 3,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    let maps: Vec<_> = names
        .iter()
        .map(|n| {
            let rgb = load_rgb(&asset(n)).unwrap();
            let prepared = prepare(&rgb, Resize::ShortSide(224), 8, patch_budget(8, 8)).unwrap();
            extract(&vit, &prepared, spec).unwrap()
        })
        .collect();
    let expected = dinov2_views(&maps);
    let (kept, patches) = expected.iter().fold((0, 0), |(k, n), v| {
        let fg = v.foreground.iter().filter(|f| **f).count();
        (k + fg, n + v.foreground.len())
    });
    assert!(
        0 < kept && kept < patches,
        "{kept} of {patches} patches foreground"
    );
    for (shown, want) in result.images.iter().zip(&expected) {
        assert_eq!(shown.view.foreground, want.foreground);
        let colour_err = shown
            .view
            .colors
            .iter()
            .zip(&want.colors)
            .flat_map(|(a, b)| (0..3).map(move |c| (a[c] as i32 - b[c] as i32).abs()))
            .max()
            .unwrap_or(0);
        assert!(colour_err <= 1, "colours differ by {colour_err}");
    }

    // The figure: the images in a row over their colourings.
    let shown = app.pca_figure().unwrap().clone();
    let images: Vec<&RgbImage> = result.images.iter().map(|i| i.picture.as_ref()).collect();
    let colorings: Vec<&RgbImage> = result.images.iter().map(|i| &i.colored).collect();
    assert_eq!(*shown, dinov2_pca_figure(&images, &colorings));
    let (a, b) = (&result.images[0], &result.images[1]);
    assert_eq!(shown.width(), a.picture.width() + b.picture.width() + GAP);
    h.get_by_label("DINOv2 paper figure");

    let png = dir.path().join("pca-figure.png");
    h.state_mut().app_mut().export_pca_figure_to(png.clone());
    wait_for(&mut h, "the export", App::is_idle);
    assert_eq!(read_png(&png), *shown);

    h.get_by_label("Back to the pairs").click();
    h.step();
    h.step();
    assert!(!h.state().app().shows_pca_figure());
    h.get_by_label("PCA colours of cartoon_cat.png");
}
