//! Tests that need the `ffmpeg` program: short videos made at test time. A missing ffmpeg fails
//! them with what to install, unless DINOSCOPE_SKIP_FFMPEG_TESTS is set (then they pass without
//! running, saying so).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SKIP_ENV: &str = "DINOSCOPE_SKIP_FFMPEG_TESTS";

/// `true` when ffmpeg runs; `false` (skip) only when the environment asks to skip; else fails.
pub fn require_ffmpeg() -> bool {
    let runs = |program: &str| {
        Command::new(program)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs("ffmpeg") && runs("ffprobe") {
        return true;
    }
    if std::env::var_os(SKIP_ENV).is_some() {
        eprintln!("SKIPPED: ffmpeg / ffprobe not found and {SKIP_ENV} is set");
        return false;
    }
    panic!(
        "this test needs the ffmpeg and ffprobe programs: install FFmpeg (`apt install ffmpeg`), \
         or set {SKIP_ENV}=1 to skip the tests that need it"
    );
}

/// Grey level of frame `i` of [`index_video`].
pub fn level(i: usize) -> u8 {
    (10 + 20 * i) as u8
}

/// A `frames`-frame H.264 MP4 of `width x height` at 10 fps whose frame `i` is grey
/// [`level`]`(i)` with a dark square moving right (made by ffmpeg from PNG frames).
pub fn index_video(dir: &Path, frames: usize, (width, height): (u32, u32)) -> PathBuf {
    let pngs = dir.join("index-frames");
    std::fs::create_dir_all(&pngs).unwrap();
    for i in 0..frames {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            let square = (x / 8) as usize == i % (width as usize / 8) && y < 8;
            image::Rgb(if square { [0, 0, 0] } else { [level(i); 3] })
        });
        image.save(pngs.join(format!("f{i:03}.png"))).unwrap();
    }
    let out = dir.join("index.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "10", "-i"])
        .arg(pngs.join("f%03d.png"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make the test video");
    out
}

/// Frames in a video file, counted by ffprobe decoding it.
pub fn count_frames(path: &Path) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe could not read {path:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
