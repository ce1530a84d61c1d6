//! `dinoscope video`: the live view offline, frame by frame to an animated GIF or an MP4 (the job
//! of the official `video_generation.py`). Unlike that script it streams: no frames written to
//! disk and read back, no whole video held in memory, frames in their true order (it sorts file
//! names, so `frame-10000` comes before `frame-1001`), its mass threshold is applied (the script
//! computes the masks and never draws them), and MP4s are H.264 (playable in browsers).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ModelArgs;
use crate::analysis::colormap::Colormap;
use crate::analysis::live::{LiveAnalyzer, LiveOptions, LiveView};
use crate::model::Resize;
use crate::video::SourceSpec;
use crate::video::record::{RecordFormat, Recording};

/// What is drawn over the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewArg {
    /// CLS attention: the mean over heads, or `--head N`.
    Attention,
    /// The patches holding `--threshold` of the head-mean attention mass, outlined.
    Outline,
    /// PCA colours of the key descriptors, fitted on the first frame and held.
    Pca,
}

#[derive(Args, Debug)]
pub struct VideoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A video file (read by ffmpeg), an animated GIF / WebP / PNG, or a folder of frames.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value_t = ViewArg::Attention)]
    pub view: ViewArg,
    /// The attention of this head (0-based) instead of the mean over heads.
    #[arg(long)]
    pub head: Option<usize>,
    /// 0-based block (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Share of the attention mass the outline keeps (as in the DINO paper).
    #[arg(long, default_value_t = 0.6)]
    pub threshold: f32,
    /// `none`, a short side like `224`, or `WxH`: the size the model sees (and the output's).
    #[arg(long, default_value = "224")]
    pub resize: Resize,
    /// Patch-embedding stride (default: the patch size).
    #[arg(long)]
    pub stride: Option<usize>,
    #[arg(long, value_enum, default_value_t = Colormap::Inferno)]
    pub colormap: Colormap,
    /// Opacity of the colours over the frame (1: the map alone).
    #[arg(long, default_value_t = 0.6)]
    pub opacity: f32,
    /// Stop after this many frames.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// `.gif`, or `.mp4` (encoded by ffmpeg).
    #[arg(long)]
    pub out: PathBuf,
}

fn progress_bar(total: Option<usize>) -> indicatif::ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n as u64),
            "{elapsed_precise} [{bar:30}] {pos}/{len} frames, {per_sec} {msg}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} frames, {per_sec} {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn run(args: &VideoArgs) -> Result<()> {
    for (name, value) in [("--threshold", args.threshold), ("--opacity", args.opacity)] {
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1, got {value}");
        }
    }
    RecordFormat::for_path(&args.out)?;
    if !args.input.exists() {
        bail!("{}: no such file or directory", args.input.display());
    }
    let (model, _device) = args.model.open()?;
    let config = &model.config;
    if let Some(head) = args.head.filter(|&h| h >= config.heads) {
        bail!(
            "--head {head} is out of range: the model has {} heads",
            config.heads
        );
    }
    let view = match (args.view, args.head) {
        (ViewArg::Attention, Some(head)) => LiveView::Head(head),
        (ViewArg::Attention, None) => LiveView::HeadMean,
        (ViewArg::Outline, _) => LiveView::Outline,
        (ViewArg::Pca, _) => LiveView::Pca,
    };
    let options = LiveOptions {
        view,
        layer: args.layer,
        resize: args.resize,
        stride: args.stride,
        threshold: args.threshold,
        colormap: args.colormap,
        opacity: args.opacity,
    };
    let mut source = SourceSpec::for_path(&args.input).open()?;
    let limit = args.max_frames.unwrap_or(usize::MAX);
    let mut recording = Recording::start(&args.out)?;
    let bar = progress_bar(source.frame_count().map(|n| n.min(limit)));
    let mut analyzer = LiveAnalyzer::default();
    let (mut frames, mut model_time) = (0usize, Duration::ZERO);
    let mut record = || -> Result<()> {
        while frames < limit {
            let Some(frame) = source.next_frame()? else {
                break;
            };
            let shown = analyzer
                .analyse(&model.vit, &frame, &options)
                .with_context(|| format!("{}: frame {}", args.input.display(), frame.index))?;
            model_time += shown.model_time;
            recording.push(shown.image, frame.duration)?;
            frames += 1;
            bar.inc(1);
        }
        if frames == 0 {
            bail!("{}: no frames", args.input.display());
        }
        Ok(())
    };
    let recorded = record();
    bar.finish_and_clear();
    if let Err(e) = recorded {
        // No half-written output file.
        recording.abandon();
        return Err(e);
    }
    let summary = recording.finish()?;
    eprintln!(
        "wrote {} ({} frames of {}x{}; model {:.1} ms per frame)",
        summary.path.display(),
        summary.frames,
        summary.size.0,
        summary.size.1,
        model_time.as_secs_f64() * 1e3 / frames as f64
    );
    Ok(())
}
