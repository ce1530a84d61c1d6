//! Load benchmark: the app's frame times and memory while a folder of 2,000 images and a
//! 16,000 x 12,000 image load, and its memory after a cancelled load.
//!
//! `cargo run --example gallery_load [-- IMAGES]` (2,000 by default). The app runs headless under
//! egui_kittest at 60 frames a second; a frame's time is the app's UI build plus egui's layout and
//! tessellation (no GPU upload). Memory is the process's resident set from `/proc/self/status`.

use std::path::Path;
use std::time::{Duration, Instant};

use dinoscope::app::{App, AppOptions};
use egui_kittest::Harness;
use image::{ImageEncoder, RgbImage};

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

/// Resident and peak resident memory of this process, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Steps frames at 60 a second until the app is idle; the time of each frame, in ms.
fn frames_until_idle(h: &mut Harness<'static, State>) -> Vec<f64> {
    let mut times = Vec::new();
    loop {
        let start = Instant::now();
        h.step();
        let spent = start.elapsed();
        times.push(spent.as_secs_f64() * 1e3);
        if app(h).is_idle() {
            return times;
        }
        std::thread::sleep(Duration::from_millis(16).saturating_sub(spent));
    }
}

fn report(what: &str, started: Instant, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let over = times.iter().filter(|&&t| t > 16.0).count();
    let (rss, peak) = memory_mib();
    println!(
        "{what}: loaded in {:.1} s, {} frames, frame time p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, \
         {over} over 16 ms; resident {rss:.0} MiB, peak {peak:.0} MiB",
        started.elapsed().as_secs_f64(),
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0),
    );
}

fn small_images(dir: &Path, n: usize) -> image::ImageResult<()> {
    for i in 0..n {
        // Photo-like sizes (640 x 480 and similar) with different content.
        let (w, h) = (480 + (i % 5) as u32 * 80, 360 + (i % 3) as u32 * 60);
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x + i as u32) as u8, (y * 3) as u8, (x ^ y) as u8])
        })
        .save(dir.join(format!("img-{i:04}.jpg")))?;
    }
    Ok(())
}

fn huge_png(path: &Path) -> image::ImageResult<()> {
    let (w, h) = (16_000u32, 12_000u32);
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        file,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x / 64) as u8, (y / 64) as u8, 128]))
        .collect();
    encoder.write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder)?;
    small_images(&folder, n)?;
    let huge = dir.path().join("huge.png");
    huge_png(&huge)?;
    let copy = dir.path().join("huge-copy.png");
    std::fs::copy(&huge, &copy)?;

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
    let (rss, _) = memory_mib();
    println!("start: resident {rss:.0} MiB");

    let started = Instant::now();
    app_mut(&mut h).add_paths(vec![folder]);
    let times = frames_until_idle(&mut h);
    report(&format!("{n} images"), started, times);

    let started = Instant::now();
    app_mut(&mut h).add_paths(vec![huge]);
    let times = frames_until_idle(&mut h);
    report("16,000 x 12,000 PNG", started, times);

    // Cancel once the decoder holds the image (about 550 MiB more), then let the loader return.
    let (base, _) = memory_mib();
    app_mut(&mut h).add_paths(vec![copy]);
    while memory_mib().0 < base + 400.0 {
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    let (during, _) = memory_mib();
    app_mut(&mut h).cancel();
    h.step();
    std::thread::sleep(Duration::from_secs(5));
    h.step();
    let (after, _) = memory_mib();
    println!(
        "cancelled while decoding a copy: resident {during:.0} MiB while decoding, {after:.0} MiB \
         5 s after Cancel ({} images in the gallery)",
        app(&h).gallery().entries.len()
    );
    Ok(())
}
