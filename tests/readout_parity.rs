//! Class read-out parity (tools/make_readout_fixtures.py): splits index for index as scikit-learn's
//! `train_test_split`, k-NN votes and predictions as DINO's `eval_knn.py`.

mod common;

use common::fixture;
use dinoscope::analysis::readout::knn::{KnnConfig, knn_classify};
use dinoscope::analysis::readout::split::train_test_split;
use serde_json::Value;

fn read(name: &str) -> Value {
    let path = fixture(&format!("readout/{name}"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn splits_are_scikit_learns_index_for_index() {
    for case in read("split.json").as_array().unwrap() {
        let samples = case["samples"].as_u64().unwrap() as usize;
        let split = train_test_split(
            samples,
            case["test_size"].as_f64().unwrap(),
            case["seed"].as_u64().unwrap() as u32,
        )
        .unwrap();
        assert_eq!(split.test, indices(&case["test"]), "test of {samples}");
        assert_eq!(split.train, indices(&case["train"]), "train of {samples}");
    }
}

#[test]
fn knn_matches_dinos_eval_knn() {
    let f = read("knn.json");
    let dim = f["dim"].as_u64().unwrap() as usize;
    let classes = f["classes"].as_u64().unwrap() as usize;
    let (train, test) = (floats(&f["train"]), floats(&f["test"]));
    let labels = indices(&f["train_labels"]);
    for case in f["cases"].as_array().unwrap() {
        let config = KnnConfig {
            k: case["k"].as_u64().unwrap() as usize,
            temperature: case["temperature"].as_f64().unwrap() as f32,
        };
        let result = knn_classify(&train, &labels, &test, dim, classes, config).unwrap();
        assert_eq!(
            result.predictions,
            indices(&case["predictions"]),
            "{config:?}"
        );
        let want = floats(&case["scores"]);
        let worst = result
            .scores
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0f32, f32::max);
        println!("{config:?}: largest relative score difference {worst:.1e}");
        assert!(worst < 1e-4, "{config:?}: {worst}");
    }
}
