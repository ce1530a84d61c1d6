//! End-to-end runs of `dinoscope video` on a short video made by ffmpeg, an animated GIF and a
//! folder of frames, and its message when ffmpeg is missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ffmpeg::{count_frames, index_video, require_ffmpeg};
use common::{dinoscope, dinoscope_with_env, fixture, stderr};
use dinoscope::video::animated::AnimatedSource;
use dinoscope::video::record::Recording;
use dinoscope::video::{FrameSource, SyntheticScene};

fn video_args<'a>(weights: &'a str, input: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "video",
        "--weights",
        weights,
        "--heads",
        "2",
        "--device",
        "cpu",
        "--input",
        input,
        "--out",
        out,
        "--resize",
        "none",
    ]
}

fn weights() -> PathBuf {
    fixture("v1_p8_hf.safetensors")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 5-frame GIF of a synthetic scene at 40 ms per frame.
fn synthetic_gif(dir: &Path) -> PathBuf {
    let path = dir.join("scene.gif");
    let scene = SyntheticScene {
        width: 48,
        height: 40,
        frames: Some(5),
        ..SyntheticScene::default()
    };
    let mut recording = Recording::start(&path).unwrap();
    for i in 0..5 {
        recording
            .push(scene.frame(i), Duration::from_millis(40))
            .unwrap();
    }
    recording.finish().unwrap();
    path
}

fn read_gif(path: &Path) -> Vec<dinoscope::video::Frame> {
    let mut source = AnimatedSource::open(path).unwrap();
    std::iter::from_fn(|| source.next_frame().unwrap()).collect()
}

#[test]
fn a_video_becomes_an_attention_gif_and_a_pca_mp4() {
    if !require_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = index_video(dir.path(), 12, (64, 48));
    let weights = weights();
    let gif = dir.path().join("attention.gif");
    let out = dinoscope(&video_args(
        path_str(&weights),
        path_str(&video),
        path_str(&gif),
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("12 frames of 64x48"),
        "{}",
        stderr(&out)
    );
    let frames = read_gif(&gif);
    assert_eq!(frames.len(), 12);
    assert!(frames.iter().all(|f| f.image.dimensions() == (64, 48)));
    assert!(
        frames
            .iter()
            .all(|f| f.duration == Duration::from_millis(100))
    );

    let mp4 = dir.path().join("pca.mp4");
    let mut args = video_args(path_str(&weights), path_str(&video), path_str(&mp4));
    args.extend(["--view", "pca", "--max-frames", "7"]);
    let out = dinoscope(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(count_frames(&mp4), 7);
}

#[test]
fn an_animated_gif_and_a_folder_of_frames_need_no_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic_gif(dir.path());
    let weights = weights();
    // An empty PATH: no ffmpeg to be found.
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let env = [("PATH", path_str(&empty))];
    let outline = dir.path().join("outline.gif");
    let mut args = video_args(path_str(&weights), path_str(&input), path_str(&outline));
    args.extend(["--view", "outline", "--threshold", "0.5"]);
    let out = dinoscope_with_env(&args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let frames = read_gif(&outline);
    assert_eq!(frames.len(), 5);
    assert!(
        frames
            .iter()
            .all(|f| f.duration == Duration::from_millis(40))
    );

    let folder = dir.path().join("frames");
    std::fs::create_dir(&folder).unwrap();
    for (i, frame) in read_gif(&input).into_iter().enumerate() {
        frame
            .image
            .save(folder.join(format!("frame-{i}.png")))
            .unwrap();
    }
    let head = dir.path().join("head.gif");
    let mut args = video_args(path_str(&weights), path_str(&folder), path_str(&head));
    args.extend(["--head", "1"]);
    let out = dinoscope_with_env(&args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_gif(&head).len(), 5);
}

#[test]
fn missing_ffmpeg_and_bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let weights = weights();
    let video = dir.path().join("clip.mp4");
    std::fs::write(&video, b"not decoded: ffmpeg is missing").unwrap();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let env = [("PATH", path_str(&empty))];
    let gif = dir.path().join("out.gif");
    let out = dinoscope_with_env(
        &video_args(path_str(&weights), path_str(&video), path_str(&gif)),
        &env,
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("`ffprobe` was not found") && text.contains("apt install ffmpeg"),
        "{text}"
    );
    assert!(!gif.exists());

    let input = synthetic_gif(dir.path());
    let mp4 = dir.path().join("out.mp4");
    let out = dinoscope_with_env(
        &video_args(path_str(&weights), path_str(&input), path_str(&mp4)),
        &env,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("to write MP4 files"),
        "{}",
        stderr(&out)
    );
    assert!(!mp4.exists());

    let avi = dir.path().join("out.avi");
    let out = dinoscope(&video_args(
        path_str(&weights),
        path_str(&input),
        path_str(&avi),
    ));
    assert!(
        stderr(&out).contains("use a .gif or .mp4"),
        "{}",
        stderr(&out)
    );
    let mut args = video_args(path_str(&weights), path_str(&input), path_str(&gif));
    args.extend(["--head", "9"]);
    let out = dinoscope(&args);
    assert!(
        stderr(&out).contains("--head 9 is out of range"),
        "{}",
        stderr(&out)
    );
}
