//! `dinoscope figure`: the paper figures of the apps' "Paper figure" presets as one PNG each.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::{ModelArgs, expand_image_paths, open_image, resolve_layer, save_png};
use crate::analysis::attention::{Query, attention_maps};
use crate::analysis::coords::PixelMap;
use crate::analysis::features::{DescriptorSpec, extract};
use crate::analysis::figure_presets::{
    DINO_MASS, dino_attention_figure, dinov2_pca_figure, dinov2_views,
};
use crate::analysis::pca_rgb::render_patch_colors;
use crate::model::{Facet, Resize};

#[derive(Args, Debug)]
pub struct FigureArgs {
    #[command(subcommand)]
    pub preset: FigurePreset,
}

#[derive(Subcommand, Debug)]
pub enum FigurePreset {
    /// DINO's attention figure: the image beside the last block's CLS attention, each head's
    /// mask keeping 60% of its mass in its own colour (visualize_attention.py --threshold 0.6).
    Dino(DinoArgs),
    /// DINOv2's PCA figure: the images in a row over their colourings (background removed by the
    /// sign of the first component, one colour PCA on the foreground patches of all images).
    Dinov2(Dinov2Args),
}

#[derive(Args, Debug)]
pub struct DinoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub image: PathBuf,
    /// `none`, a short side like `480`, or `WxH` (the script's default squashes to 480x480).
    #[arg(long, default_value = "480x480")]
    pub resize: Resize,
    /// 0-based block (default: the last, as the paper).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Heads shown, like `0,2,5` (default: all).
    #[arg(long, value_delimiter = ',')]
    pub show_heads: Option<Vec<usize>>,
    /// Share of each head's attention mass its mask keeps.
    #[arg(long, default_value_t = DINO_MASS)]
    pub threshold: f32,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct Dinov2Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files, or folders whose images are all used (sorted by name).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// `none`, a short side like `448`, or `WxH`.
    #[arg(long, default_value = "448")]
    pub resize: Resize,
    /// 0-based block whose output tokens are used (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &FigureArgs) -> Result<()> {
    match &args.preset {
        FigurePreset::Dino(a) => run_dino(a),
        FigurePreset::Dinov2(a) => run_dinov2(a),
    }
}

fn run_dino(args: &DinoArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!(
            "--threshold must be between 0 and 1, got {}",
            args.threshold
        );
    }
    let (model, device) = args.model.open()?;
    let config = &model.config;
    let layer = resolve_layer(args.layer, config.depth)?;
    let heads = args
        .show_heads
        .clone()
        .unwrap_or_else(|| (0..config.heads).collect());
    if let Some(h) = heads.iter().find(|&&h| h >= config.heads) {
        bail!(
            "--show-heads {h} is out of range: the model has {} heads (0..={})",
            config.heads,
            config.heads - 1
        );
    }
    let image = open_image(&args.image, args.resize, config.patch_size)?;
    let maps = attention_maps(
        &model.vit,
        image.to_tensor(&device.device),
        layer,
        Query::Cls,
        config.patch_size,
    )?;
    let figure = dino_attention_figure(&image.rgb, &maps, &heads, args.threshold);
    save_png(&figure, &args.out)?;
    eprintln!(
        "wrote {} ({}x{}: block {layer}, heads {heads:?}, {:.0}% of the mass)",
        args.out.display(),
        figure.width(),
        figure.height(),
        100.0 * args.threshold
    );
    Ok(())
}

fn run_dinov2(args: &Dinov2Args) -> Result<()> {
    let paths = expand_image_paths(&args.images)?;
    let (model, _device) = args.model.open()?;
    let spec = DescriptorSpec {
        layer: resolve_layer(args.layer, model.config.depth)?,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    let mut images = Vec::new();
    let mut maps = Vec::new();
    for path in &paths {
        let image = open_image(path, args.resize, model.config.patch_size)?;
        maps.push(extract(&model.vit, &image, spec).with_context(|| path.display().to_string())?);
        images.push(image);
    }
    let views = dinov2_views(&maps);
    let colorings: Vec<_> = images
        .iter()
        .zip(&maps)
        .zip(&views)
        .map(|((image, map), view)| {
            let pixels = PixelMap::new(map.grid, image);
            render_patch_colors(&view.colors, &pixels, image.width(), image.height())
        })
        .collect();
    let rgbs: Vec<_> = images.iter().map(|i| &i.rgb).collect();
    let figure = dinov2_pca_figure(&rgbs, &colorings.iter().collect::<Vec<_>>());
    save_png(&figure, &args.out)?;
    let foreground: usize = views
        .iter()
        .map(|v| v.foreground.iter().filter(|f| **f).count())
        .sum();
    let patches: usize = maps.iter().map(|m| m.len()).sum();
    eprintln!(
        "wrote {} ({}x{}: {} images, block {}, {foreground} of {patches} patches foreground)",
        args.out.display(),
        figure.width(),
        figure.height(),
        paths.len(),
        spec.layer
    );
    Ok(())
}
