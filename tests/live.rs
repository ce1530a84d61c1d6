//! The live view's library: frame sources (synthetic, and a short video made by ffmpeg), frames
//! dropped under a slow model, the held PCA basis, point tracking on a translated scene, and MP4
//! recording read back.

mod common;

use std::time::Duration;

use burn::tensor::Device;
use common::ffmpeg::{count_frames, index_video, level, require_ffmpeg};
use dinoscope::analysis::attention::{Query, attention_maps};
use dinoscope::analysis::live::{LiveAnalyzer, LiveOptions, LiveView, cls_attention};
use dinoscope::model::config::Arch;
use dinoscope::model::preprocess::{DEFAULT_MAX_PATCHES, prepare};
use dinoscope::model::{Resize, Vit};
use dinoscope::video::ffmpeg::{FfmpegSource, probe};
use dinoscope::video::player::{Player, PlayerOptions};
use dinoscope::video::record::Recording;
use dinoscope::video::{CaptureSpec, Frame, FrameSource, SourceSpec, SyntheticScene};

/// An untrained ViT-nano (patch 8, 4 blocks, 3 heads), seeded.
fn nano() -> Vit {
    Vit::init_seeded(Arch::VitNano.config(), 7, &Device::flex())
}

fn scene(shift: (i32, i32), frames: usize) -> SyntheticScene {
    SyntheticScene {
        width: 96,
        height: 64,
        frames: Some(frames),
        shift,
        fps: 25.0,
        seed: 3,
    }
}

fn frames(scene: &SyntheticScene) -> Vec<Frame> {
    let mut source = scene.source();
    std::iter::from_fn(|| source.next_frame().unwrap()).collect()
}

/// Original-size frames: the model sees the frames as they are.
fn options(view: LiveView) -> LiveOptions {
    LiveOptions {
        view,
        resize: Resize::None,
        ..LiveOptions::default()
    }
}

#[test]
fn attention_from_one_pass_equals_the_attention_maps() {
    let vit = nano();
    let image = scene((0, 0), 1).frame(0);
    let prepared = prepare(&image, Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap();
    for (layer, stride) in [(3, 8), (1, 4)] {
        let tensor = || prepared.to_tensor(&vit.device());
        let outputs = vit.layer_outputs(tensor(), layer, stride);
        let ours = cls_attention(&outputs).unwrap();
        let reference = attention_maps(&vit, tensor(), layer, Query::Cls, stride).unwrap();
        assert_eq!((ours.heads, ours.grid), (reference.heads, reference.grid));
        let diff = ours
            .values
            .iter()
            .zip(&reference.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-6, "layer {layer} stride {stride}: {diff}");
    }
}

#[test]
fn pca_colours_of_a_static_scene_are_identical_across_frames_until_refit() {
    let vit = nano();
    let mut analyzer = LiveAnalyzer::default();
    let still = frames(&scene((0, 0), 4));
    let opts = options(LiveView::Pca);
    let shown: Vec<_> = still
        .iter()
        .map(|f| analyzer.analyse(&vit, f, &opts).unwrap())
        .collect();
    for frame in &shown[1..] {
        assert_eq!(frame.image, shown[0].image, "frame {}", frame.index);
        assert_eq!(frame.pca_fitted_on, Some(0));
    }
    // A moving scene keeps the first frame's basis; a refit takes the frame it is asked on.
    let moving = frames(&scene((8, 0), 3));
    let mut held = LiveAnalyzer::default();
    for f in &moving {
        assert_eq!(held.analyse(&vit, f, &opts).unwrap().pca_fitted_on, Some(0));
    }
    held.refit_pca();
    let refit = held.analyse(&vit, &moving[2], &opts).unwrap();
    assert_eq!(refit.pca_fitted_on, Some(2));
}

#[test]
fn a_clicked_point_follows_the_translated_scene() {
    let vit = nano();
    let shift = (8, 8);
    let moving = frames(&scene(shift, 5));
    let mut analyzer = LiveAnalyzer::default();
    let opts = LiveOptions {
        stride: Some(4),
        ..options(LiveView::HeadMean)
    };
    let click = (43.5, 27.5);
    analyzer.track(click);
    for frame in &moving {
        let shown = analyzer.analyse(&vit, frame, &opts).unwrap();
        let k = frame.index as f64;
        let expected = (click.0 + k * shift.0 as f64, click.1 + k * shift.1 as f64);
        let at = shown.tracks[0].at;
        assert!(
            (at.0 - expected.0).abs() <= 2.0 && (at.1 - expected.1).abs() <= 2.0,
            "frame {k}: at {at:?}, expected {expected:?}"
        );
    }
    assert_eq!(analyzer.tracks()[0].trail().len(), 5);
}

#[test]
fn a_slow_model_drops_frames_and_sees_the_newest() {
    let vit = nano();
    let spec = SourceSpec::Synthetic(SyntheticScene {
        width: 320,
        height: 240,
        frames: Some(120),
        fps: 400.0,
        ..SyntheticScene::default()
    });
    let options_paced = PlayerOptions {
        paced: true,
        looping: false,
    };
    let player = Player::start(spec, options_paced, || {}).unwrap();
    let mut analyzer = LiveAnalyzer::default();
    let opts = LiveOptions {
        view: LiveView::Pca,
        ..LiveOptions::default()
    };
    let mut analysed = Vec::new();
    while let Some(frame) = player.wait_frame(Duration::from_secs(30)) {
        let shown = analyzer.analyse(&vit, &frame, &opts).unwrap();
        analysed.push(shown.index);
    }
    let counts = player.counts();
    assert_eq!(counts.put, 120);
    assert_eq!(counts.put, counts.taken + counts.dropped);
    assert!(counts.dropped > 0, "{counts:?}");
    assert!(analysed.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(analysed.last(), Some(&119), "the last frame is not lost");
}

#[test]
fn a_video_made_by_ffmpeg_decodes_in_order() {
    if !require_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = index_video(dir.path(), 12, (64, 48));
    let info = probe(&video).unwrap();
    assert_eq!((info.width, info.height, info.frames), (64, 48, Some(12)));
    assert!((info.fps.unwrap() - 10.0).abs() < 1e-9);
    let mut source = SourceSpec::for_path(&video).open().unwrap();
    assert_eq!(source.frame_count(), Some(12));
    let mut count = 0;
    while let Some(frame) = source.next_frame().unwrap() {
        assert_eq!(frame.index, count as u64);
        assert_eq!(frame.duration, Duration::from_millis(100));
        // A pixel away from the moving square: the frame's own grey, through lossy H.264.
        let grey = frame.image.get_pixel(40, 40).0[1];
        assert!(
            grey.abs_diff(level(count)) <= 4,
            "frame {count}: grey {grey}, expected {}",
            level(count)
        );
        count += 1;
    }
    assert_eq!(count, 12);
    let missing = SourceSpec::Video(dir.path().join("none.mp4")).open();
    assert!(missing.is_err());
}

#[test]
fn a_capture_input_gives_frames_of_the_asked_size() {
    if !require_ffmpeg() {
        return;
    }
    let spec = CaptureSpec {
        format: "lavfi".into(),
        device: "testsrc=size=200x100:rate=25".into(),
        width: 160,
        height: 120,
        fps: 25,
    };
    let mut source = FfmpegSource::open_capture(&spec).unwrap();
    assert!(source.is_live());
    for i in 0..3 {
        let frame = source.next_frame().unwrap().unwrap();
        assert_eq!((frame.index, frame.image.dimensions()), (i, (160, 120)));
        // 200 x 100 letterboxed into 160 x 120: black bars above and below.
        assert_eq!(frame.image.get_pixel(80, 2).0, [0, 0, 0]);
    }
}

#[test]
fn an_mp4_recording_holds_every_frame() {
    if !require_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    let scene = scene((4, 0), 6);
    let mut recording = Recording::start(&path).unwrap();
    for frame in frames(&scene) {
        recording.push(frame.image, frame.duration).unwrap();
    }
    let summary = recording.finish().unwrap();
    assert_eq!((summary.frames, summary.size), (6, (96, 64)));
    assert_eq!(count_frames(&path), 6);
    let mut back = SourceSpec::Video(path).open().unwrap();
    let first = back.next_frame().unwrap().unwrap();
    assert_eq!(first.image.dimensions(), (96, 64));
    assert_eq!(first.duration, Duration::from_millis(40));
}
