//! Live-view throughput on the CPU: ViT-S/16 and ViT-S/8 (random weights) on a 224 x 224 synthetic
//! scene played at 30 frames a second, in the real app under egui_kittest.
//!
//! `cargo run --example live_bench [-- SECONDS]` (20 per model by default). Reports the
//! frames per second the view showed, the model time per frame, the frames dropped, and the UI
//! frame time while it runs: the app's UI build (`App::show`) and the whole harness step (egui's
//! layout and tessellation too, no GPU upload), stepped at 60 frames a second. First the library
//! alone (`LiveAnalyzer::analyse` in a loop) gives the model-bound rate.

use std::time::{Duration, Instant};

use dinoscope::analysis::live::{LiveAnalyzer, LiveOptions, LiveView};
use dinoscope::app::live::LiveTab;
use dinoscope::app::{App, AppOptions};
use dinoscope::model::config::Arch;
use dinoscope::model::save::save_safetensors;
use dinoscope::model::vit::Vit;
use dinoscope::model::{DeviceChoice, backend};
use dinoscope::video::{FrameSource, SourceSpec, SyntheticScene};
use egui_kittest::Harness;

struct State(Option<App>);

fn options() -> AppOptions {
    AppOptions {
        default_weights: None,
        samples: false,
        restore_session: false,
        checkpoint_dir: None,
        settings_file: None,
    }
}

fn app<'a>(h: &'a Harness<'static, State>) -> &'a App {
    h.state().0.as_ref().expect("built on the first frame")
}

fn app_mut<'a>(h: &'a mut Harness<'static, State>) -> &'a mut App {
    h.state_mut().0.as_mut().expect("built on the first frame")
}

fn live<'a>(h: &'a mut Harness<'static, State>) -> &'a mut LiveTab {
    app_mut(h).view_mut_of::<LiveTab>().expect("registered")
}

fn scene() -> SyntheticScene {
    SyntheticScene {
        width: 224,
        height: 224,
        frames: None,
        fps: 30.0,
        ..SyntheticScene::default()
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Frames per second of the analysis alone, and the mean model time, over `n` frames.
fn library_rate(vit: &Vit, view: LiveView, n: u64) -> (f64, f64) {
    let options = LiveOptions {
        view,
        ..LiveOptions::default()
    };
    let mut analyzer = LiveAnalyzer::default();
    let mut source = scene().source();
    let mut model = Duration::ZERO;
    let first = source.next_frame().ok().flatten().expect("a frame");
    let _ = analyzer.analyse(vit, &first, &options);
    let start = Instant::now();
    for _ in 0..n {
        let frame = source.next_frame().ok().flatten().expect("a frame");
        model += analyzer
            .analyse(vit, &frame, &options)
            .expect("analysis")
            .model_time;
    }
    let seconds = start.elapsed().as_secs_f64();
    (n as f64 / seconds, model.as_secs_f64() * 1e3 / n as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let device = backend::select(DeviceChoice::Cpu)?;
    println!("device: {}", device.description);
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(
            |ui, state: &mut State| {
                state
                    .0
                    .get_or_insert_with(|| App::new(ui.ctx(), None, options()))
                    .show(ui);
            },
            State(None),
        );
    h.step();
    for (arch, name) in [(Arch::VitS16, "ViT-S/16"), (Arch::VitS8, "ViT-S/8")] {
        let vit = Vit::init_seeded(arch.config(), 0, &device.device);
        for view in [LiveView::HeadMean, LiveView::Pca] {
            let (fps, ms) = library_rate(&vit, view, 10);
            println!(
                "{name} {view:?}, library alone: {fps:.2} frames/s, model {ms:.0} ms per frame"
            );
        }
        let weights = dir
            .path()
            .join(format!("{name}.safetensors").replace('/', "-"));
        save_safetensors(&vit, &weights)?;
        app_mut(&mut h).open_checkpoint(weights);
        while app(&h)
            .model()
            .is_none_or(|m| m.config.patch_size != arch.config().patch_size)
            || !app(&h).is_idle()
        {
            h.step();
            std::thread::sleep(Duration::from_millis(10));
        }
        app_mut(&mut h).set_tab(LiveTab::ID);
        live(&mut h).options.view = LiveView::HeadMean;
        let ctx = h.ctx.clone();
        live(&mut h).start(SourceSpec::Synthetic(scene()), &ctx)?;
        let (mut build, mut step) = (Vec::new(), Vec::new());
        let mut models = Vec::new();
        let mut last = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(seconds) {
            let t = Instant::now();
            h.step();
            let spent = t.elapsed();
            step.push(spent.as_secs_f64() * 1e3);
            build.push(app(&h).last_ui_ms() as f64);
            if let Some(frame) = live(&mut h).shown()
                && last != Some(frame.index)
            {
                last = Some(frame.index);
                models.push(frame.model_time.as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_millis(16).saturating_sub(spent));
        }
        let fps = live(&mut h).fps().unwrap_or(0.0);
        let counts = live(&mut h).frame_counts().unwrap_or_default();
        live(&mut h).stop();
        build.sort_by(f64::total_cmp);
        step.sort_by(f64::total_cmp);
        let model = models.iter().sum::<f64>() / models.len().max(1) as f64;
        println!(
            "{name} in the app, head mean, 224 x 224 at 30 frames/s for {seconds} s: {:.2} \
             frames/s shown ({} frames; {fps:.2} over the last 30), model {model:.0} ms per \
             frame, {} of {} frames dropped; \
             UI build p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; harness step p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms ({} steps, {} over 16 ms)",
            models.len() as f64 / seconds as f64,
            models.len(),
            counts.dropped,
            counts.put,
            quantile(&build, 0.5),
            quantile(&build, 0.99),
            quantile(&build, 1.0),
            quantile(&step, 0.5),
            quantile(&step, 0.99),
            quantile(&step, 1.0),
            step.len(),
            step.iter().filter(|&&t| t > 16.0).count(),
        );
        while !app(&h).is_idle() {
            h.step();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
