//! The bundled default model (`weights/`): it loads as the ViT-nano it claims to be, and on held-out
//! synthetic scenes drawn like its training data its attention finds the objects and its CLS embedding
//! tells the shapes apart better than untrained ViT-nanos do (the check that the shipped file is the
//! trained one).

use std::path::PathBuf;

use burn::tensor::Device;
use dinoscope::model::config::Arch;
use dinoscope::model::vit::Vit;
use dinoscope::model::{LoadOptions, load_model};
use dinoscope::train::TrainConfig;
use dinoscope::train::eval::evaluate_synthetic;

fn weights(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("weights")
        .join(name)
}

#[test]
fn the_default_model_finds_objects_and_shapes_better_than_untrained_models() {
    let device = Device::flex();
    let model = load_model(
        &weights("default.safetensors"),
        &LoadOptions::default(),
        &device,
    )
    .expect("weights/default.safetensors loads");
    assert_eq!(*model.vit.config(), Arch::VitNano.config());
    let config = TrainConfig::from_file(&weights("default-model.json")).unwrap();
    let scenes = config.synthetic;
    let trained = evaluate_synthetic(&model.vit, &scenes, 0, 200, 100).unwrap();
    for seed in 0..3 {
        let untrained = Vit::init_seeded(Arch::VitNano.config(), seed, &device);
        let baseline = evaluate_synthetic(&untrained, &scenes, 0, 200, 100).unwrap();
        assert!(
            trained.mask_iou > baseline.mask_iou + 0.1
                && trained.knn_accuracy > baseline.knn_accuracy + 0.08,
            "trained {trained:?} vs untrained (seed {seed}) {baseline:?}"
        );
    }
}
