//! The image-set explorer driven through egui_kittest: a labelled folder embedded in the app reads
//! out with the same accuracy and confusion matrix as `dinoscope embed-folder` + `knn` / `linear`,
//! and its confusion cells, retrieval, patch explanation, map and "open in the other views" work.

mod app_common;
mod common;

use std::path::{Path, PathBuf};

use app_common::{TestApp, bare_options, build_harness, wait_for};
use common::{dinoscope, labelled_folder, stderr};
use dinoscope::analysis::readout::report::{Classifier, ReadoutReport};
use dinoscope::app::App;
use dinoscope::app::explorer::job::ClassifierChoice;
use dinoscope::app::explorer::map::{MapMethod, MapSubject};
use dinoscope::app::explorer::retrieval::QueryImage;
use dinoscope::app::explorer::{ExplorerTab, Page};
use dinoscope::app::state::ViewTab;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/default.safetensors");

fn explorer(app: &App) -> &ExplorerTab {
    app.view_of::<ExplorerTab>()
        .expect("the explorer is a built-in view")
}

fn explorer_mut<'h>(h: &'h mut Harness<'static, TestApp>) -> &'h mut ExplorerTab {
    h.state_mut()
        .app_mut()
        .view_mut_of::<ExplorerTab>()
        .expect("the explorer is a built-in view")
}

/// The CLI's report of `command` (`knn` or `linear`) on the folder's features, and its summary line.
fn cli_report(dir: &Path, folder: &Path, command: &str) -> (ReadoutReport, String) {
    let features = dir.join("feats.npy");
    if !features.exists() {
        let out = dinoscope(&[
            "embed-folder",
            folder.to_str().unwrap(),
            "--weights",
            WEIGHTS,
            "--resize",
            "224x224",
            "--out",
            features.to_str().unwrap(),
            "--no-cache",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let json = dir.join(format!("{command}.json"));
    let out = dinoscope(&[
        command,
        "--features",
        features.to_str().unwrap(),
        "--out",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (report, summary)
}

fn same_readout(app: &ReadoutReport, cli: &ReadoutReport) {
    assert_eq!(app.accuracy, cli.accuracy);
    assert_eq!(app.confusion, cli.confusion);
    assert_eq!(app.per_class_accuracy, cli.per_class_accuracy);
    let predictions = |r: &ReadoutReport| -> Vec<(PathBuf, usize)> {
        r.test
            .iter()
            .map(|p| (p.path.clone(), p.predicted))
            .collect()
    };
    assert_eq!(predictions(app), predictions(cli));
}

fn embedded_app(folder: &Path) -> Harness<'static, TestApp> {
    let options = dinoscope::app::AppOptions {
        default_weights: Some(PathBuf::from(WEIGHTS)),
        ..bare_options()
    };
    let mut h = build_harness(Harness::builder().with_size([1400.0, 900.0]), options);
    wait_for(&mut h, "the bundled model", |app| app.model().is_some());
    h.state_mut().app_mut().set_tab(ViewTab::EXPLORER);
    h.step();
    let tab = explorer_mut(&mut h);
    tab.settings.folder = Some(folder.to_path_buf());
    tab.settings.keep_on_disk = false;
    h.step();
    h.get_by_label("Embed").click();
    wait_for(&mut h, "the embedding", |app| explorer(app).set().is_some());
    h
}

#[test]
fn the_explorer_reads_out_what_the_command_line_reads_out() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("set");
    labelled_folder(&folder);
    let mut h = embedded_app(&folder);
    let set = explorer(h.state().app()).set().unwrap().clone();
    assert_eq!(set.len(), 25);
    assert_eq!(set.images.classes, ["blue", "green", "red"]);

    // k-NN, DINO's defaults: the same numbers as `dinoscope knn`, and the same summary line.
    let (cli, summary) = cli_report(dir.path(), &folder, "knn");
    wait_for(&mut h, "the k-NN read-out", |app| {
        explorer(app).readout().is_some()
    });
    same_readout(&explorer(h.state().app()).readout().unwrap().report, &cli);
    h.get_by_label(&summary);

    // A confusion cell clicked lists its images.
    let (label, predicted) = (0, cli.confusion[0].iter().position(|&n| n > 0).unwrap());
    explorer_mut(&mut h).readout_view.cell = Some((label, predicted));
    h.step();
    let classes = &cli.classes;
    h.get_by_label(&format!(
        "{} {} images predicted {}",
        cli.confusion[label][predicted], classes[label], classes[predicted]
    ));

    // Logistic regression: the same numbers as `dinoscope linear`.
    let (cli, summary) = cli_report(dir.path(), &folder, "linear");
    explorer_mut(&mut h).settings.classifier = ClassifierChoice::Logistic;
    wait_for(&mut h, "the logistic read-out", |app| {
        explorer(app)
            .readout()
            .is_some_and(|r| matches!(r.key.classifier, Classifier::Logistic(_)))
    });
    same_readout(&explorer(h.state().app()).readout().unwrap().report, &cli);
    h.get_by_label(&summary);
}

#[test]
fn retrieval_explains_matches_maps_the_set_and_opens_images_in_the_other_views() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("set");
    labelled_folder(&folder);
    let mut h = embedded_app(&folder);
    let set = explorer(h.state().app()).set().unwrap().clone();

    // Retrieval: the nearest images to a query, most similar first, itself excluded.
    let query = 3;
    let explorer_tab = explorer_mut(&mut h);
    explorer_tab.page = Page::Retrieval;
    explorer_tab.retrieval.query = Some(QueryImage::Row(query));
    let ranked = explorer_tab.retrieval.ranked(&set).to_vec();
    assert!(!ranked.is_empty() && ranked.iter().all(|n| n.row != query));
    assert!(
        ranked
            .windows(2)
            .all(|w| w[0].similarity >= w[1].similarity)
    );
    let expected = set.nearest_to(query, 1)[0];
    assert_eq!(ranked[0], expected);

    // The patch-level explanation of the query and its best result.
    explorer_mut(&mut h).retrieval.pair = Some(ranked[0].row);
    wait_for(&mut h, "the patch matches", |app| {
        explorer(app).retrieval.explanation().is_some()
    });
    let explanation = explorer(h.state().app())
        .retrieval
        .explanation()
        .unwrap()
        .clone();
    assert!(!explanation.matches.pairs.is_empty());
    h.get_by_label_contains("mutual nearest patch pairs");

    // The map: one point per image, for PCA and t-SNE.
    for method in [MapMethod::Pca, MapMethod::Tsne] {
        let tab = explorer_mut(&mut h);
        tab.page = Page::Map;
        tab.map.method = method;
        wait_for(&mut h, "the map", |app| {
            explorer(app)
                .map
                .result
                .as_ref()
                .is_some_and(|r| r.key.method == method)
        });
        let points = &explorer(h.state().app())
            .map
            .result
            .as_ref()
            .unwrap()
            .points;
        assert_eq!(points.len(), set.len());
        assert!(points.iter().flatten().all(|v| v.is_finite()));
    }

    // The patch map of the gallery's images: one point per patch, coloured by image.
    h.state_mut()
        .app_mut()
        .add_paths(set.images.paths[..2].to_vec());
    wait_for(&mut h, "two gallery images", |app| {
        app.gallery().entries.len() == 2
    });
    let tab = explorer_mut(&mut h);
    tab.map.subject = MapSubject::Patches;
    tab.map.method = MapMethod::Tsne;
    wait_for(&mut h, "the patch map", |app| {
        explorer(app)
            .map
            .result
            .as_ref()
            .is_some_and(|r| r.patches.is_some())
    });
    let map = explorer(h.state().app()).map.result.clone().unwrap();
    let patches = map.patches.as_ref().unwrap();
    assert_eq!(patches.step, 1);
    assert_eq!(patches.at.len(), map.points.len());
    let per_image = |i: usize| patches.at.iter().filter(|a| a.0 == i).count();
    // 40 x 32 images at their own size.
    let patch = h.state().app().model().unwrap().config.patch_size;
    let expected = (40 / patch) * (32 / patch);
    assert_eq!((per_image(0), per_image(1)), (expected, expected));

    // "Open in the other views": the file joins the gallery, selected, in the attention view.
    explorer_mut(&mut h).page = Page::Retrieval;
    h.step();
    h.get_by_label("Open in the other views").click();
    wait_for(&mut h, "the opened image", |app| {
        app.gallery()
            .selected_entry()
            .is_some_and(|e| e.path == set.images.paths[query])
    });
    assert_eq!(h.state().app().tab(), ViewTab::ATTENTION);

    // The gallery's selected image as the query, embedded with the set's settings: its own file
    // in the set comes first, with similarity 1.
    h.state_mut().app_mut().set_tab(ViewTab::EXPLORER);
    h.step();
    h.get_by_label_contains("Find images like").click();
    wait_for(&mut h, "the outside query", |app| {
        matches!(explorer(app).retrieval.query, Some(QueryImage::Outside(_)))
    });
    let ranked = explorer_mut(&mut h).retrieval.ranked(&set).to_vec();
    assert_eq!(ranked[0].row, query);
    assert!((ranked[0].similarity - 1.0).abs() < 1e-4, "{:?}", ranked[0]);
}
