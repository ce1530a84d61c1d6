//! `dinoscope embed-folder`, `knn` and `linear` end to end on a labelled folder, with the bundled
//! model on the CPU.

mod common;

use std::path::Path;

use common::{dinoscope, labelled_folder, stderr};
use dinoscope::analysis::readout::knn::{KnnConfig, knn_classify};
use dinoscope::analysis::readout::logistic::{LogisticConfig, fit};
use dinoscope::analysis::readout::split::train_test_split;
use dinoscope::arrays::read_npy;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/default.safetensors");

#[test]
fn a_labelled_folder_is_embedded_and_read_out_by_knn() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("set");
    labelled_folder(&folder);
    let features = dir.path().join("feats.npy");
    let out = dinoscope(&[
        "embed-folder",
        folder.to_str().unwrap(),
        "--weights",
        WEIGHTS,
        "--device",
        "cpu",
        "--resize",
        "32x32",
        "--batch",
        "5",
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
        "--out",
        features.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 of 25 from the feature cache"),
        "{}",
        stderr(&out)
    );
    let (shape, values) = read_npy(&features).unwrap();
    assert_eq!(shape[0], 25);
    let dim = shape[1];
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("feats.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["classes"],
        serde_json::json!(["blue", "green", "red"])
    );

    // A batched row is the image's own `embed` output.
    let paths = index["paths"].as_array().unwrap();
    let row = 9;
    let single = dir.path().join("single.npy");
    let out = dinoscope(&[
        "embed",
        "--weights",
        WEIGHTS,
        "--device",
        "cpu",
        "--image",
        paths[row].as_str().unwrap(),
        "--resize",
        "32x32",
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, alone) = read_npy(&single).unwrap();
    let batched = &values[row * dim..(row + 1) * dim];
    let worst = alone
        .iter()
        .zip(batched)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "batched vs single: {worst}");

    // k-NN: the report is the library's k-NN on the split scikit-learn would make.
    let report_file = dir.path().join("knn.json");
    let out = dinoscope(&[
        "knn",
        "--features",
        features.to_str().unwrap(),
        "--k",
        "5",
        "--out",
        report_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("accuracy"), "{printed}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let labels: Vec<Option<usize>> = index["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().map(|l| l as usize))
        .collect();
    let labelled: Vec<usize> = (0..25).filter(|&i| labels[i].is_some()).collect();
    assert_eq!(labelled.len(), 24);
    let split = train_test_split(24, 0.3, 42).unwrap();
    let rows = |ps: &[usize]| -> Vec<f32> {
        ps.iter()
            .flat_map(|&p| values[labelled[p] * dim..(labelled[p] + 1) * dim].to_vec())
            .collect()
    };
    let train_labels: Vec<usize> = split
        .train
        .iter()
        .map(|&p| labels[labelled[p]].unwrap())
        .collect();
    let expected = knn_classify(
        &rows(&split.train),
        &train_labels,
        &rows(&split.test),
        dim,
        3,
        KnnConfig {
            k: 5,
            temperature: 0.07,
        },
    )
    .unwrap();
    let test = report["test"].as_array().unwrap();
    assert_eq!(test.len(), split.test.len());
    let mut correct = 0;
    for ((entry, &p), &predicted) in test.iter().zip(&split.test).zip(&expected.predictions) {
        assert_eq!(entry["path"], paths[labelled[p]]);
        assert_eq!(entry["predicted"].as_u64(), Some(predicted as u64));
        correct += usize::from(Some(predicted) == labels[labelled[p]]);
    }
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((accuracy - correct as f64 / test.len() as f64).abs() < 1e-12);
    let confusion_total: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion_total, test.len() as u64);
    println!("k-NN accuracy on three colour classes: {accuracy}");

    // Logistic regression: the library's model fitted on the same split.
    let linear_file = dir.path().join("linear.json");
    let out = dinoscope(&[
        "linear",
        "--features",
        features.to_str().unwrap(),
        "--out",
        linear_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let linear: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&linear_file).unwrap()).unwrap();
    let model = fit(
        &rows(&split.train),
        &train_labels,
        dim,
        3,
        LogisticConfig::default(),
    )
    .unwrap();
    let predicted: Vec<u64> = linear["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["predicted"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = model
        .predict(&rows(&split.test))
        .into_iter()
        .map(|p| p as u64)
        .collect();
    assert_eq!(predicted, expected);
    println!(
        "logistic regression accuracy on three colour classes: {}",
        linear["accuracy"]
    );
}

#[test]
fn knn_refuses_features_without_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("feats.npy");
    dinoscope::arrays::write_npy(&features, &[2, 3], &[0.0; 6]).unwrap();
    let out = dinoscope(&["knn", "--features", features.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("feats.json"), "{}", stderr(&out));
}

/// The 1,797 handwritten digits bundled with scikit-learn (tests/fixtures/readout/digits.png, by
/// tools/make_readout_fixtures.py) written as a class-folder image set.
fn digits_folder(root: &Path) -> usize {
    let atlas = image::open(common::fixture("readout/digits.png"))
        .unwrap()
        .to_luma8();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("readout/digits.json")).unwrap(),
    )
    .unwrap();
    let per_row = index["per_row"].as_u64().unwrap() as u32;
    let labels = index["labels"].as_array().unwrap();
    for (i, label) in labels.iter().enumerate() {
        let (r, c) = (i as u32 / per_row, i as u32 % per_row);
        let digit = image::imageops::crop_imm(&atlas, c * 8, r * 8, 8, 8).to_image();
        let class = root.join(label.as_u64().unwrap().to_string());
        std::fs::create_dir_all(&class).unwrap();
        image::DynamicImage::ImageLuma8(digit)
            .save(class.join(format!("{i:04}.png")))
            .unwrap();
    }
    labels.len()
}

fn accuracy(command: &str, features: &Path, report: &Path) -> f64 {
    let out = dinoscope(&[
        command,
        "--features",
        features.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    report["accuracy"].as_f64().unwrap()
}

/// A real labelled image set from folder to accuracy, with the bundled model and with random
/// weights (the figures the README reports).
#[test]
fn scikit_learns_digits_go_from_folder_to_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("digits");
    assert_eq!(digits_folder(&folder), 1797);
    let random = dir.path().join("random.safetensors");
    let device = dinoscope::model::backend::cpu();
    let vit = dinoscope::model::vit::Vit::init_seeded(
        dinoscope::model::config::Arch::VitNano.config(),
        1,
        &device.device,
    );
    dinoscope::model::save::save_safetensors(&vit, &random).unwrap();
    for (name, weights) in [("bundled", WEIGHTS), ("random", random.to_str().unwrap())] {
        let features = dir.path().join(format!("{name}.npy"));
        let out = dinoscope(&[
            "embed-folder",
            folder.to_str().unwrap(),
            "--weights",
            weights,
            "--device",
            "cpu",
            "--resize",
            "32x32",
            "--no-cache",
            "--out",
            features.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let timing = stderr(&out)
            .lines()
            .find(|l| l.contains("ms per image"))
            .unwrap_or_default()
            .to_string();
        let knn = accuracy(
            "knn",
            &features,
            &dir.path().join(format!("{name}-knn.json")),
        );
        let linear = accuracy(
            "linear",
            &features,
            &dir.path().join(format!("{name}-linear.json")),
        );
        println!(
            "digits, {name} weights: k-NN {knn:.4}, logistic regression {linear:.4}; {timing}"
        );
        // Ten classes: chance is 0.1; even random features separate the digits well above it.
        assert!(
            knn > 0.3 && linear > 0.3,
            "{name}: k-NN {knn}, linear {linear}"
        );
    }
}

#[test]
fn embedded_images_come_from_the_feature_cache_until_their_content_changes() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("set");
    labelled_folder(&folder);
    let cache = dir.path().join("cache");
    let embed = |out: &Path| {
        let out = dinoscope(&[
            "embed-folder",
            folder.to_str().unwrap(),
            "--weights",
            WEIGHTS,
            "--device",
            "cpu",
            "--resize",
            "32x32",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let (first, second, third) = (
        dir.path().join("1.npy"),
        dir.path().join("2.npy"),
        dir.path().join("3.npy"),
    );
    assert!(embed(&first).contains("0 of 25 from the feature cache"));
    assert!(embed(&second).contains("25 of 25 from the feature cache"));
    assert_eq!(read_npy(&first).unwrap(), read_npy(&second).unwrap());
    // A changed image is embedded again; the others still come from the cache.
    image::RgbImage::from_pixel(40, 32, image::Rgb([250, 250, 0]))
        .save(folder.join("red").join("0.png"))
        .unwrap();
    assert!(embed(&third).contains("24 of 25 from the feature cache"));
    let (_, before) = read_npy(&first).unwrap();
    let (shape, after) = read_npy(&third).unwrap();
    let changed: Vec<usize> = (0..shape[0])
        .filter(|&r| {
            before[r * shape[1]..(r + 1) * shape[1]] != after[r * shape[1]..(r + 1) * shape[1]]
        })
        .collect();
    assert_eq!(changed.len(), 1, "rows changed: {changed:?}");
}

#[test]
fn a_csv_list_embeds_as_the_folder_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("set");
    labelled_folder(&folder);
    let embed = |input: &Path, out: &Path| {
        let out = dinoscope(&[
            "embed-folder",
            input.to_str().unwrap(),
            "--weights",
            WEIGHTS,
            "--device",
            "cpu",
            "--resize",
            "32x32",
            "--no-cache",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    embed(&folder, &dir.path().join("folder.npy"));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("folder.json")).unwrap())
            .unwrap();
    // The folder's images and classes as a list beside them, the unlabelled one with no label.
    let mut csv = String::from("path,label\n");
    for (path, label) in index["paths"]
        .as_array()
        .unwrap()
        .iter()
        .zip(index["labels"].as_array().unwrap())
    {
        let relative = Path::new(path.as_str().unwrap())
            .strip_prefix(&folder)
            .unwrap();
        let class = label
            .as_u64()
            .map_or("", |l| index["classes"][l as usize].as_str().unwrap());
        csv.push_str(&format!("{},{class}\n", relative.display()));
    }
    let list = folder.join("list.csv");
    std::fs::write(&list, csv).unwrap();
    embed(&list, &dir.path().join("list.npy"));
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("list.json")).unwrap())
            .unwrap();
    for key in ["paths", "labels", "classes"] {
        assert_eq!(listed[key], index[key], "{key}");
    }
    assert_eq!(
        read_npy(&dir.path().join("list.npy")).unwrap(),
        read_npy(&dir.path().join("folder.npy")).unwrap()
    );

    // A listed file that is not there: the error names the list and the line.
    std::fs::write(&list, "blue/0.png,blue\nblue/gone.png,blue\n").unwrap();
    let out = dinoscope(&[
        "embed-folder",
        list.to_str().unwrap(),
        "--weights",
        WEIGHTS,
        "--out",
        dir.path().join("x.npy").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("list.csv: line 2") && err.contains("gone.png"),
        "{err}"
    );
}
