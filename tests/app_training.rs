//! The Training tab, driven headless through egui_kittest: a tiny run started from the panel, its
//! metrics and attention probe arriving, pause, stop, and its teacher loaded into the visualizer.

mod app_common;
mod common;

use std::path::Path;
use std::time::Duration;

use app_common::{TestApp, bare_options, build_harness, wait_for};
use dinoscope::app::state::ViewTab;
use dinoscope::app::train::panel::Phase;
use dinoscope::app::worker::ModelSource;
use dinoscope::train::TrainConfig;
use dinoscope::train::run::{RESUME_FILE, metrics_before};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

fn harness() -> Harness<'static, TestApp> {
    build_harness(
        Harness::builder().with_size([1400.0, 1000.0]),
        bare_options(),
    )
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        epochs: 50,
        eval_every: 2,
        probe_every: 1,
        eval_bank: 6,
        eval_queries: 3,
        ..common::tiny_train_config(48)
    }
}

/// Waits for the model, then shows the Training tab.
fn open_training_tab(h: &mut Harness<'static, TestApp>) {
    wait_for(h, "the default model", |a| a.model().is_some());
    h.key_press(egui::Key::Num5);
    h.run_steps(2);
    assert_eq!(h.state().app().tab(), ViewTab::TRAINING);
}

fn start_tiny_run(h: &mut Harness<'static, TestApp>, out: &Path) {
    open_training_tab(h);
    {
        let app = h.state_mut().app_mut();
        let form = &mut app.training_mut().form;
        form.config = tiny_config();
        form.out = out.to_path_buf();
        form.save_every = 0;
    }
    h.run_steps(1);
    h.get_by_label("Start").click();
    h.run_steps(1);
}

#[test]
fn a_run_started_from_the_panel_reports_pauses_stops_and_its_teacher_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut h = harness();
    start_tiny_run(&mut h, &out);
    assert_eq!(h.state().app().training().phase(), Phase::Running);
    wait_for(&mut h, "metrics, an evaluation and a probe", |a| {
        let t = a.training();
        t.history().len() >= 3
            && t.history().iter().any(|m| m.eval.is_some())
            && t.probe_step().is_some()
    });
    let t = h.state().app().training();
    assert_eq!(
        t.plan().map(|p| p.total),
        Some(100),
        "8 scenes / 4 x 50 epochs"
    );
    assert_eq!(t.probe_heads(), 3, "vit-nano's heads");
    h.get_by_label("probe head 2");
    h.get_by_label("Loss, teacher entropy and KL (nats)");
    h.get_by_label("Evaluation of the teacher");
    let first_probe = t.probe_step();
    wait_for(&mut h, "a newer probe", |a| {
        a.training().probe_step() > first_probe
    });

    h.get_by_label("Pause").click();
    h.run_steps(1);
    assert_eq!(h.state().app().training().phase(), Phase::Paused);
    // The iteration under way may still finish; after that nothing arrives.
    std::thread::sleep(Duration::from_millis(800));
    h.run_steps(1);
    let paused_at = h.state().app().training().history().len();
    std::thread::sleep(Duration::from_millis(500));
    h.run_steps(2);
    assert_eq!(
        h.state().app().training().history().len(),
        paused_at,
        "paused"
    );

    h.get_by_label("Resume").click();
    wait_for(&mut h, "iterations after resuming", |a| {
        a.training().history().len() > paused_at
    });
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the run to stop", |a| {
        a.training().phase() == Phase::Finished
    });
    let t = h.state().app().training();
    let summary = t.summary().expect("a summary");
    assert!(summary.stopped);
    assert_eq!(
        summary.steps,
        t.history().len(),
        "the stop saved the last iteration"
    );
    assert!(out.join("teacher.safetensors").is_file() && out.join(RESUME_FILE).is_file());

    h.get_by_label("View this teacher").click();
    let teacher = out.join("teacher.safetensors");
    wait_for(&mut h, "the teacher in the visualizer", |a| {
        a.model()
            .is_some_and(|m| m.source == ModelSource::File(teacher.clone()))
    });
}

#[test]
fn closing_the_app_stops_the_run_after_saving() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut h = harness();
    start_tiny_run(&mut h, &out);
    wait_for(&mut h, "a first iteration", |a| {
        !a.training().history().is_empty()
    });
    drop(h);
    // Dropping the app stopped the run, which saved before the drop returned.
    let bytes = std::fs::read(out.join(RESUME_FILE)).unwrap();
    assert!(!bytes.is_empty());
    assert!(!out.join(format!("{RESUME_FILE}.partial")).exists());

    // A new session continues the saved run where it stopped, charting it from its beginning.
    let done = metrics_before(&out, usize::MAX).len();
    assert!(done >= 1);
    let mut h = harness();
    open_training_tab(&mut h);
    {
        let app = h.state_mut().app_mut();
        let form = &mut app.training_mut().form;
        form.config = tiny_config();
        form.out = out.clone();
    }
    h.run_steps(1);
    h.get_by_label("Continue saved run").click();
    wait_for(&mut h, "iterations of the continued run", |a| {
        a.training()
            .history()
            .last()
            .is_some_and(|m| m.step >= done)
    });
    let t = h.state().app().training();
    assert_eq!(t.plan().map(|p| p.start), Some(done));
    let steps: Vec<usize> = t.history().iter().map(|m| m.step).collect();
    assert_eq!(
        steps,
        (0..steps.len()).collect::<Vec<_>>(),
        "one line per iteration"
    );
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the continued run to stop", |a| {
        a.training().phase() == Phase::Finished
    });
}

#[test]
fn continue_is_offered_only_for_a_folder_with_a_saved_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness();
    open_training_tab(&mut h);
    h.state_mut().app_mut().training_mut().form.out = dir.path().to_path_buf();
    h.run_steps(1);
    assert!(
        h.get_by_label("Continue saved run")
            .accesskit_node()
            .is_disabled()
    );
    std::fs::write(dir.path().join(RESUME_FILE), b"saved").unwrap();
    h.run_steps(1);
    assert!(
        !h.get_by_label("Continue saved run")
            .accesskit_node()
            .is_disabled()
    );
    // A file that is not a checkpoint fails with a message; nothing panics.
    h.get_by_label("Continue saved run").click();
    wait_for(&mut h, "the failure", |a| {
        a.training().phase() == Phase::Failed
    });
}
