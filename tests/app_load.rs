//! Load: a folder of 2,000 images and a 16,000 x 12,000 image dropped on the app keep its memory
//! bounded, its frames cheap (only the thumbnails in view are laid out) and cancelling frees what
//! the load held. Memory is counted by this binary's allocator, so the figures do not depend on
//! timing. Frame times are measured by `examples/gallery_load.rs`, not here.

mod app_common;
mod counting_alloc;

use std::path::Path;
use std::sync::Mutex;

use app_common::{bare_options, build_harness, wait_for};
use counting_alloc::{live, peak, restart};
use dinoscope::app::pixels::{DECODED_BUDGET, WORKING_LONG_SIDE};
use egui_kittest::Harness;
use image::{ImageEncoder, RgbImage};

/// The tests measure the process's memory: one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

fn harness() -> Harness<'static, app_common::TestApp> {
    let mut h = build_harness(
        Harness::builder().with_size([1200.0, 800.0]),
        bare_options(),
    );
    h.step();
    h
}

/// `n` small PNGs of different colours and sizes in `dir`.
fn small_images(dir: &Path, n: usize) {
    for i in 0..n {
        let (w, h) = (24 + (i % 5) as u32 * 8, 24 + (i % 3) as u32 * 8);
        let colour = [(i * 7) as u8, (i * 13) as u8, (i * 29) as u8];
        RgbImage::from_pixel(w, h, image::Rgb(colour))
            .save(dir.join(format!("img-{i:04}.png")))
            .unwrap();
    }
}

/// A 16,000 x 12,000 PNG (a gradient, so it compresses to a few MB and decodes to 576 MB).
fn huge_png(path: &Path) {
    let (w, h) = (16_000u32, 12_000u32);
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        file,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    for (i, row) in pixels.chunks_exact_mut((w * 3) as usize).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[(x / 64) as u8, (i / 64) as u8, 128]);
        }
    }
    encoder
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
}

#[test]
fn two_thousand_images_load_with_bounded_memory_and_only_visible_thumbnails_laid_out() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    small_images(dir.path(), 2000);
    let mut h = harness();
    let before = live();
    restart();
    h.state_mut()
        .app_mut()
        .add_paths(vec![dir.path().to_path_buf()]);
    let mut most_drawn = 0;
    wait_for(&mut h, "2,000 images", |app| {
        app.is_idle() && app.gallery().entries.len() == 2000
    });
    for _ in 0..3 {
        h.step();
        most_drawn = most_drawn.max(h.state().app().gallery().thumbnails_drawn());
    }
    let app = h.state().app();
    assert_eq!(app.notifications().errors().count(), 0);
    // The strip is about 1,050 points wide and thumbnails at least 24 points: at most ~45 fit.
    assert!(
        (1..=45).contains(&most_drawn),
        "{most_drawn} thumbnails laid out in a frame"
    );
    // Every image is a 24-56 px square: its pixels and thumbnail are a few KB each.
    let held = live().saturating_sub(before);
    let grown = peak() - before;
    eprintln!(
        "2,000 images: {} MiB held after loading, peak {} MiB above the start",
        held / MIB,
        grown / MIB
    );
    assert!(held < 64 * MIB, "{} MiB held", held / MIB);
    assert!(grown < 128 * MIB, "peak {} MiB", grown / MIB);
    assert!(app.gallery().pixels.bytes() <= DECODED_BUDGET);

    // Moving the selection to the far end scrolls the strip there.
    let last = app.gallery().entries[1999].id;
    h.state_mut().app_mut().select_image(last);
    h.step();
    h.step();
    assert!(h.state().app().gallery().thumbnails_drawn() <= 45);
}

#[test]
fn a_16000_by_12000_image_is_kept_at_its_working_size_and_a_cancelled_load_frees_its_memory() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.png");
    huge_png(&huge);
    let mut h = harness();

    // Loaded: the gallery keeps a 4,096 x 3,072 working copy (36 MiB), not 576 MiB.
    let before = live();
    restart();
    h.state_mut().app_mut().add_paths(vec![huge.clone()]);
    wait_for(&mut h, "the huge image", |app| {
        app.is_idle() && app.gallery().entries.len() == 1
    });
    let app = h.state().app();
    assert_eq!(app.notifications().errors().count(), 0);
    let entry = &app.gallery().entries[0];
    assert_eq!(entry.original_size, [16_000, 12_000]);
    assert_eq!(entry.size, [WORKING_LONG_SIDE, 3072]);
    let held = live().saturating_sub(before);
    let grown = peak() - before;
    eprintln!(
        "16,000 x 12,000: {} MiB held after loading, peak {} MiB above the start",
        held / MIB,
        grown / MIB
    );
    assert!(held < 64 * MIB, "{} MiB held", held / MIB);
    // The decoded file (549 MiB) and its working copy (36 MiB), plus decoder buffers.
    assert!(grown < 700 * MIB, "peak {} MiB", grown / MIB);
    let rgb = app.gallery().pixels.get(&entry.path).unwrap();
    assert_eq!(rgb.dimensions(), (4096, 3072));
    // The area average of the gradient: the pixel at working (x, y) covers file x / 64 ~ x / 16.4.
    assert_eq!(
        rgb.get_pixel(4000, 10).0[0],
        (4000.0 * 16_000.0 / 4096.0 / 64.0) as u8
    );
    drop(rgb);

    // Cancelled half-way through decoding another copy: nothing is added, the memory goes back.
    let copy = dir.path().join("huge-copy.png");
    std::fs::copy(&huge, &copy).unwrap();
    let before = live();
    h.state_mut().app_mut().add_paths(vec![copy]);
    let start = std::time::Instant::now();
    while live() < before + 256 * MIB {
        assert!(
            start.elapsed().as_secs() < 120,
            "the decoder never held its buffer"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    h.state_mut().app_mut().cancel();
    wait_for(&mut h, "the cancelled load", |app| app.is_idle());
    // The loader thread drops the decoded image once the decoder returns.
    let start = std::time::Instant::now();
    while live() > before + 16 * MIB && start.elapsed().as_secs() < 120 {
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let app = h.state().app();
    assert_eq!(app.gallery().entries.len(), 1);
    assert!(
        live() <= before + 16 * MIB,
        "{} MiB still held after cancelling",
        live().saturating_sub(before) / MIB
    );
}
