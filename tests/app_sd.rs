//! The correspondence view's Stable Diffusion sources in the app, on the tiny SD folder and the
//! tiny DINOv2 fixture: SD+DINO and SD alone match as the library does, the weight re-fuses without
//! rerunning the UNet, Cancel mid-UNet caches nothing, and a bad folder is an error naming it; the
//! PCA view colours SD and SD+DINO features as `dinoscope pca --features sd|fused` does.

mod app_common;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use app_common::{TestApp, bare_options, build_harness, wait_for};
use burn::tensor::Device;
use common::fixture;
use common::sd_folder::tiny_sd_folder;
use dinoscope::analysis::correspond::{
    BuddySide, ImageDescriptors, PointQuery, find_best_buddies, query_point,
};
use dinoscope::analysis::features::{default_saliency_heads, resize_nearest, saliency};
use dinoscope::analysis::pca_rgb::{PcaColoring, pca_colors, render_on_original};
use dinoscope::analysis::sd_features::{
    FeatureSource, Placed, Placement, SD_DINO_DINO_SIZE, SD_DINO_PCA_DIMS, SdCaches,
    SdFeatureSettings, SdPreset, SdSession, dino_placed, fuse_placed, saliency_input,
    sd_descriptors,
};
use dinoscope::analysis::similarity::Score;
use dinoscope::app::App;
use dinoscope::app::state::ViewTab;
use dinoscope::model::save::save_safetensors;
use dinoscope::model::sd::SdFolder;
use dinoscope::model::vit::Vit;
use dinoscope::model::{LoadOptions, load_model};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use image::RgbImage;

fn picture(dir: &Path, name: &str, (w, h): (u32, u32), seed: u32) -> PathBuf {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 5 + y * 3 + seed) % 256) as u8,
            ((x * y + 7 * seed) % 251) as u8,
            ((x * 11 + seed * 13) % 256) as u8,
        ])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    path
}

/// The tiny DINOv2 (2 heads) as a safetensors file the app opens (its config in the metadata).
fn tiny_dinov2(dir: &Path) -> (PathBuf, Vit) {
    let vit = load_model(
        &fixture("v2_p14.pth"),
        &LoadOptions {
            heads: Some(2),
            ..LoadOptions::default()
        },
        &Device::flex(),
    )
    .unwrap()
    .vit;
    let path = dir.join("v2_p14.safetensors");
    save_safetensors(&vit, &path).unwrap();
    (path, vit)
}

struct Setup {
    dir: tempfile::TempDir,
    sd: PathBuf,
    vit: Vit,
    h: Harness<'static, TestApp>,
}

/// The app with the tiny DINOv2 and two pictures, the correspondence view shown, `features` from
/// the tiny SD 1.x folder under SD-DINO at `size`, the SD cache in the temporary folder.
fn setup(features: FeatureSource, size: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd15");
    tiny_sd_folder(&sd, false);
    let (weights, _) = tiny_dinov2(dir.path());
    let vit = load_model(&weights, &LoadOptions::default(), &Device::flex())
        .unwrap()
        .vit;
    let images = vec![
        picture(dir.path(), "a.png", (120, 90), 2),
        picture(dir.path(), "b.png", (96, 128), 9),
    ];
    let mut h = build_harness(
        Harness::builder().with_size([1400.0, 900.0]),
        bare_options(),
    );
    {
        let app = h.state_mut().app_mut();
        app.open_checkpoint(weights);
        app.add_paths(images);
    }
    wait_for(&mut h, "the model and images", |app| {
        app.is_idle() && app.gallery().entries.len() == 2 && app.model().is_some()
    });
    {
        let app = h.state_mut().app_mut();
        app.set_corr_sd_cache(Some(dir.path().join("sd-cache")));
        let c = &mut app.settings_mut().correspondence;
        c.features = features;
        c.sd.folder = Some(sd.clone());
        c.sd.preset = SdPreset::SdDino;
        c.sd.size = Some(size);
        c.fusion_weight = 0.5;
        app.set_tab(ViewTab::CORRESPONDENCE);
    }
    Setup { dir, sd, vit, h }
}

/// Steps frames until a widget labelled with `text` shows.
fn wait_for_label(h: &mut Harness<'static, TestApp>, text: &str) {
    let start = Instant::now();
    while h.query_by_label_contains(text).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for `{text}`"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The shown images' names in view order (source first).
fn shown_names(app: &App) -> Vec<String> {
    let mut ids = vec![app.corr_source().unwrap()];
    ids.extend(app.corr_targets());
    ids.iter()
        .map(|id| {
            app.gallery()
                .entries
                .iter()
                .find(|e| e.id == *id)
                .unwrap()
                .name
                .clone()
        })
        .collect()
}

/// The library's descriptors of the pair in view order: SD-DINO at `size` (co-PCA over the
/// pair), fused with the ViT's last-block tokens at 840 px under `weight` when given.
fn library_placed(s: &Setup, order: &[String], size: u32, weight: Option<f32>) -> Vec<Placed> {
    library_placed_weighted(s, order, size, weight.map(|w| [w, 1.0 - w]))
}

/// As [`library_placed`], with the (SD, DINO) weights given.
fn library_placed_weighted(
    s: &Setup,
    order: &[String],
    size: u32,
    weights: Option<[f32; 2]>,
) -> Vec<Placed> {
    let mut settings = SdFeatureSettings::sd_dino();
    settings.size = size;
    let folder = SdFolder::open(&s.sd).unwrap();
    let mut session =
        SdSession::new(folder, settings, SdCaches::in_memory(), &Device::flex()).unwrap();
    let rgbs: Vec<RgbImage> = order
        .iter()
        .map(|name| image::open(s.dir.path().join(name)).unwrap().to_rgb8())
        .collect();
    let features: Vec<_> = rgbs
        .iter()
        .map(|img| session.features(img, &mut |_, _| true).unwrap())
        .collect();
    let sd = sd_descriptors(&features, SD_DINO_PCA_DIMS).unwrap();
    let Some(weights) = weights else {
        return sd;
    };
    let layer = s.vit.config().depth - 1;
    rgbs.iter()
        .zip(&sd)
        .map(|(img, sd)| {
            let dino =
                dino_placed(&s.vit, img, Placement::Letterbox, SD_DINO_DINO_SIZE, layer).unwrap();
            fuse_placed(sd, &dino, weights).unwrap()
        })
        .collect()
}

fn library_query(placed: &[Placed], point: (f64, f64)) -> PointQuery {
    let source = ImageDescriptors::new(&placed[0].map, placed[0].pixels, Score::Cosine);
    let target = ImageDescriptors::new(&placed[1].map, placed[1].pixels, Score::Cosine);
    query_point(&source, point, &[&target])
}

fn sd_shown(app: &App) -> bool {
    app.is_idle()
        && app
            .corr_spec()
            .and_then(|spec| app.corr_matching(spec))
            .is_some()
        && app.corr_query_current()
}

/// The view's answer for the point equals the library's: best patch, pixel and every score.
fn assert_same_match(app: &App, expected: &PointQuery, what: &str) {
    let shown = app.corr_point().unwrap().query().unwrap().clone();
    let (ours, theirs) = (&shown.matches[0], &expected.matches[0]);
    assert_eq!(
        shown.source_patch, expected.source_patch,
        "{what}: source patch"
    );
    assert_eq!(ours.best_patch, theirs.best_patch, "{what}: best patch");
    assert_eq!(ours.best_pixel, theirs.best_pixel, "{what}: best pixel");
    assert_eq!(ours.scores.len(), theirs.scores.len(), "{what}: cells");
    let worst = ours
        .scores
        .iter()
        .zip(&theirs.scores)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-4, "{what}: scores differ by {worst}");
}

#[test]
fn sd_dino_and_sd_alone_match_as_the_library_and_the_weight_only_refuses() {
    let mut s = setup(FeatureSource::Fused, 128);
    let point = (40.0, 30.0);
    s.h.state_mut().app_mut().set_corr_point(point);
    // Nothing runs before Run; the estimate is shown.
    wait_for_label(&mut s.h, "Estimate: ");
    s.h.get_by_label_contains("(2 images, 1 VAE and 1 UNet pass each)");
    assert_eq!(s.h.state().app().corr_sd_computed(), 0);
    assert!(
        s.h.state()
            .app()
            .corr_matching(s.h.state().app().corr_spec().unwrap())
            .is_none()
    );
    s.h.state_mut().app_mut().run_corr_sd();
    wait_for(&mut s.h, "the SD+DINO descriptors", sd_shown);
    let app = s.h.state().app();
    assert_eq!(app.corr_sd_computed(), 2, "one UNet run per image");
    let order = shown_names(app);
    let expected = library_query(&library_placed(&s, &order, 128, Some(0.5)), point);
    assert_same_match(app, &expected, "SD+DINO at 0.5");
    let cached = std::fs::read_dir(s.dir.path().join("sd-cache/features"))
        .unwrap()
        .count();
    assert_eq!(cached, 2, "each image's SD features on disk");

    s.h.state_mut()
        .app_mut()
        .settings_mut()
        .correspondence
        .fusion_weight = 0.8;
    s.h.step();
    wait_for(&mut s.h, "the re-fused descriptors", sd_shown);
    let app = s.h.state().app();
    let expected_08 = library_query(&library_placed(&s, &order, 128, Some(0.8)), point);
    assert_same_match(app, &expected_08, "SD+DINO at 0.8");
    assert_ne!(
        expected.matches[0].scores, expected_08.matches[0].scores,
        "the weight changes the scores"
    );
    assert_eq!(app.corr_sd_computed(), 2, "the weight reran no UNet");

    s.h.state_mut()
        .app_mut()
        .settings_mut()
        .correspondence
        .features = FeatureSource::Sd;
    s.h.step();
    wait_for(&mut s.h, "the SD descriptors", sd_shown);
    let app = s.h.state().app();
    let expected_sd = library_query(&library_placed(&s, &order, 128, None), point);
    assert_same_match(app, &expected_sd, "SD alone");
    assert_eq!(app.corr_sd_computed(), 2, "SD alone reuses the features");
}

#[test]
fn cancel_mid_unet_keeps_the_app_responsive_and_caches_nothing() {
    // 1024 px: SD-DINO's windows make several UNet passes, each long enough to cancel inside.
    let mut s = setup(FeatureSource::Sd, 1024);
    wait_for_label(&mut s.h, "Estimate: ");
    s.h.state_mut().app_mut().run_corr_sd();
    wait_for(&mut s.h, "a UNet pass", |app| {
        app.task_labels().iter().any(|l| l.contains("UNet"))
    });
    s.h.state_mut().app_mut().cancel();
    // Frames keep coming while the worker stops inside the pass.
    let start = Instant::now();
    for _ in 0..20 {
        s.h.step();
    }
    assert!(start.elapsed() < Duration::from_secs(10), "frames stalled");
    wait_for(&mut s.h, "the cancelled job to end", |app| app.is_idle());
    // Give the worker time to have written anything it would have.
    std::thread::sleep(Duration::from_millis(300));
    s.h.step();
    let app = s.h.state().app();
    let errors: Vec<String> = app
        .notifications()
        .errors()
        .map(|n| n.text.clone())
        .collect();
    assert!(errors.is_empty(), "no error after Cancel: {errors:?}");
    assert_eq!(app.corr_sd_computed(), 0);
    let features = s.dir.path().join("sd-cache/features");
    let files = std::fs::read_dir(&features).map_or(0, |d| d.count());
    assert_eq!(files, 0, "nothing cached from a cancelled run");
    // Not restarted on its own; the next Run computes.
    for _ in 0..5 {
        s.h.step();
    }
    assert!(s.h.state().app().is_idle(), "a cancelled run stays stopped");
    s.h.state_mut()
        .app_mut()
        .settings_mut()
        .correspondence
        .sd
        .size = Some(128);
    s.h.state_mut().app_mut().run_corr_sd();
    wait_for(&mut s.h, "the SD descriptors after the cancel", |app| {
        app.is_idle()
            && app
                .corr_spec()
                .and_then(|spec| app.corr_matching(spec))
                .is_some()
    });
    assert_eq!(s.h.state().app().corr_sd_computed(), 2);
}

#[test]
fn a_bad_sd_folder_is_an_error_naming_it() {
    let mut s = setup(FeatureSource::Fused, 128);
    let bad = s.dir.path().join("not-a-model");
    std::fs::create_dir_all(bad.join("stuff")).unwrap();
    s.h.state_mut()
        .app_mut()
        .settings_mut()
        .correspondence
        .sd
        .folder = Some(bad.clone());
    wait_for(&mut s.h, "the error", |app| {
        app.is_idle() && app.notifications().errors().next().is_some()
    });
    let app = s.h.state().app();
    let errors: Vec<String> = app
        .notifications()
        .errors()
        .map(|n| n.text.clone())
        .collect();
    let named = bad.display().to_string();
    assert!(
        errors.iter().any(|e| e.contains(&named)),
        "an error naming {named}: {errors:?}"
    );
    s.h.get_by_label_contains(&format!("Cannot open {named}"));
    // Not retried every frame.
    for _ in 0..5 {
        s.h.step();
    }
    assert!(s.h.state().app().is_idle());
}

#[test]
fn a_cache_folder_that_cannot_be_written_is_reported_and_the_features_still_used() {
    let mut s = setup(FeatureSource::Sd, 128);
    // A file where the cache folder should be: nothing can be written below it.
    let blocked = s.dir.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    s.h.state_mut()
        .app_mut()
        .set_corr_sd_cache(Some(blocked.clone()));
    s.h.state_mut().app_mut().set_corr_point((40.0, 30.0));
    s.h.state_mut().app_mut().run_corr_sd();
    wait_for_label(&mut s.h, "Not kept for next time");
    wait_for(&mut s.h, "the SD descriptors", sd_shown);
    let label =
        s.h.query_by_label_contains("Not kept for next time")
            .map(|n| format!("{n:?}"))
            .unwrap_or_default();
    assert!(label.contains("blocked"), "{label}");
    assert!(s.h.state().app().notifications().errors().next().is_none());
}

fn pca_shown(app: &App) -> bool {
    app.is_idle() && app.current_pca_result().is_some()
}

/// The PCA view's colouring equals the library's `pca --features sd|fused` on the same pixels:
/// co-PCA over both images, fused with the last block's tokens at equal weights, one joint colour
/// PCA painted on each original image.
fn assert_same_colouring(app: &App, placed: &[Placed], what: &str) {
    let result = app.current_pca_result().unwrap().clone();
    let maps: Vec<_> = placed.iter().map(|p| p.map.clone()).collect();
    let expected = pca_colors(&maps, PcaColoring::default());
    assert_eq!(result.images.len(), 2, "{what}");
    for ((shown, want), p) in result.images.iter().zip(&expected).zip(placed) {
        assert_eq!(shown.grid, p.map.grid, "{what}: grid");
        let worst = shown
            .view
            .projections
            .iter()
            .zip(&want.projections)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-4, "{what}: projections differ by {worst}");
        let (w, h) = shown.picture.dimensions();
        let painted = render_on_original(&want.colors, &p.pixels, w, h);
        let off = shown
            .colored
            .pixels()
            .zip(painted.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (a[c] as i32 - b[c] as i32).abs()))
            .max()
            .unwrap_or(0);
        assert!(off <= 1, "{what}: colours differ by {off} levels");
    }
}

#[test]
fn pca_view_colours_sd_and_fused_features_as_the_library() {
    let mut s = setup(FeatureSource::Dino, 128);
    {
        let app = s.h.state_mut().app_mut();
        app.set_pca_sd_cache(Some(s.dir.path().join("sd-cache")));
        let pca = &mut app.settings_mut().pca;
        pca.all_images = true;
        pca.joint = true;
        pca.foreground = false;
        pca.layer = None;
        pca.features = FeatureSource::Sd;
        pca.sd.folder = Some(s.sd.clone());
        pca.sd.preset = SdPreset::SdDino;
        pca.sd.size = Some(128);
        app.set_tab(ViewTab::PCA);
    }
    // Nothing runs before Run; the estimate and what to do are shown.
    wait_for_label(&mut s.h, "Estimate: ");
    s.h.get_by_label_contains("Press Run in the panel");
    assert_eq!(s.h.state().app().pca_sd_computed(), 0);
    assert!(s.h.state().app().current_pca_result().is_none());

    s.h.state_mut().app_mut().run_pca_sd();
    wait_for(&mut s.h, "the PCA of SD features", pca_shown);
    let order = ["a.png".to_string(), "b.png".to_string()];
    let app = s.h.state().app();
    assert_eq!(app.pca_sd_computed(), 2, "one UNet run per image");
    let names: Vec<_> = app
        .current_pca_result()
        .unwrap()
        .images
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(names, order);
    let sd = library_placed(&s, &order, 128, None);
    assert_same_colouring(app, &sd, "SD");
    // Shown on the original pictures, with the heading naming the recipe.
    let shown = &app.current_pca_result().unwrap().images[0];
    assert_eq!(shown.picture.dimensions(), (120, 90));
    s.h.get_by_label_contains("Stable Diffusion (SD-DINO, 128 px)");

    s.h.state_mut().app_mut().settings_mut().pca.features = FeatureSource::Fused;
    s.h.step();
    wait_for(&mut s.h, "the PCA of SD+DINO features", pca_shown);
    let app = s.h.state().app();
    let fused = library_placed_weighted(&s, &order, 128, Some([1.0, 1.0]));
    assert_same_colouring(app, &fused, "SD+DINO");
    assert_eq!(app.pca_sd_computed(), 2, "SD+DINO reuses the SD features");
    s.h.get_by_label_contains("+ DINO block");

    // Another block's tokens: only the DINO side and the PCA run again.
    let depth = s.vit.config().depth;
    s.h.state_mut().app_mut().settings_mut().pca.layer = Some(depth - 2);
    s.h.step();
    wait_for(&mut s.h, "the PCA with another block", pca_shown);
    let app = s.h.state().app();
    assert_eq!(app.current_pca_key().unwrap().layer, depth - 2);
    assert_eq!(app.pca_sd_computed(), 2);
}

#[test]
fn best_buddies_under_sd_dino_use_the_fused_descriptors_as_the_library() {
    let mut s = setup(FeatureSource::Fused, 128);
    let point = (40.0, 30.0);
    {
        let app = s.h.state_mut().app_mut();
        app.set_corr_point(point);
        let c = &mut app.settings_mut().correspondence;
        c.saliency_threshold = 0.0;
        c.num_pairs = 4;
        app.run_corr_sd();
    }
    wait_for(&mut s.h, "the SD+DINO descriptors", sd_shown);
    s.h.state_mut().app_mut().find_best_buddies();
    wait_for(&mut s.h, "the best buddies", |app| {
        app.is_idle() && !app.current_buddies().is_empty()
    });
    let app = s.h.state().app();
    let order = shown_names(app);
    let placed = library_placed(&s, &order, 128, Some(0.5));
    // The ViT's saliency of each image letterboxed at 224 px, on the descriptors' grid.
    let saliencies: Vec<Vec<f32>> = order
        .iter()
        .zip(&placed)
        .map(|(name, p)| {
            let rgb = image::open(s.dir.path().join(name)).unwrap().to_rgb8();
            let input =
                saliency_input(&rgb, Placement::Letterbox, s.vit.config().patch_size).unwrap();
            let heads = default_saliency_heads(&s.vit);
            let (values, grid) = saliency(&s.vit, &input, None, &heads).unwrap();
            resize_nearest(
                &values,
                (grid.rows, grid.cols),
                (p.map.grid.rows, p.map.grid.cols),
            )
        })
        .collect();
    let side = |i: usize| BuddySide {
        features: &placed[i].map,
        saliency: &saliencies[i],
        pixels: placed[i].pixels,
    };
    let expected = find_best_buddies(side(0), side(1), 0.0, 4, Score::Cosine);
    let shown = &app.current_buddies()[0].1;
    assert!(!expected.pairs.is_empty());
    assert_eq!(shown.mutual, expected.mutual);
    assert_eq!(shown.pairs.len(), expected.pairs.len());
    for (a, b) in shown.pairs.iter().zip(&expected.pairs) {
        assert_eq!((a.patch_a, a.patch_b), (b.patch_a, b.patch_b));
        assert_eq!((a.model_a, a.model_b), (b.model_a, b.model_b));
        assert!((a.score - b.score).abs() < 1e-5);
    }
}
