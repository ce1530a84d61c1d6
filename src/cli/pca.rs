//! `dinoscope pca`: PCA colouring of patch features for one or more images.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::sd_features::{DinoSide, SdSourceArgs, placed_descriptors};
use super::{ModelArgs, expand_image_paths, open_image, save_png};
use crate::analysis::coords::PixelMap;
use crate::analysis::features::{DescriptorSpec, FeatureMap, extract};
use crate::analysis::pca_rgb::{
    PcaColoring, PcaView, pca_colors, render_on_original, render_patch_colors,
};
use crate::analysis::sd_features::FeatureSource;
use crate::arrays::write_npy;
use crate::model::preprocess::load_rgb;
use crate::model::{ComputeDevice, Facet, LoadedModel, Resize};

#[derive(Args, Debug)]
pub struct PcaArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files, or folders whose images are all used (sorted by name).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// `none`, a short side like `224` (the reference's default), or `WxH`.
    #[arg(long, default_value = "224")]
    pub resize: Resize,
    /// 0-based block (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    #[arg(long, value_enum, default_value_t = Facet::Key)]
    pub facet: Facet,
    /// Patch-embedding stride (default: the patch size).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Fit one PCA per image instead of one over all images.
    #[arg(long)]
    pub separate: bool,
    /// Keep only patches whose scaled first component exceeds this (0..1) and colour those.
    #[arg(long)]
    pub foreground: Option<f32>,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub sd: SdSourceArgs,
}

pub fn run(args: &PcaArgs) -> Result<()> {
    if let Some(t) = args.foreground
        && !(0.0..=1.0).contains(&t)
    {
        anyhow::bail!("--foreground must be between 0 and 1, got {t}");
    }
    let paths = expand_image_paths(&args.images)?;
    let (model, device) = args.model.open()?;
    if let (FeatureSource::Sd | FeatureSource::Fused, Some(id)) = (args.sd.features, &args.sd.sd) {
        return run_sd(args, &model, &device, id, &paths);
    }
    let spec = DescriptorSpec {
        layer: args.layer.unwrap_or(model.config.depth - 1),
        facet: args.facet,
        stride: args.stride,
        log_bin: false,
    };
    let mut images = Vec::new();
    let mut maps = Vec::new();
    for path in &paths {
        let image = open_image(path, args.resize, model.config.patch_size)?;
        maps.push(extract(&model.vit, &image, spec).with_context(|| path.display().to_string())?);
        images.push(image);
    }
    let views = pca_colors(&maps, coloring(args));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create directory", args.out.display()))?;
    for (((path, image), map), view) in paths.iter().zip(&images).zip(&maps).zip(&views) {
        let pixels = PixelMap::new(map.grid, image);
        let rendered = render_patch_colors(&view.colors, &pixels, image.width(), image.height());
        write_outputs(args, path, &rendered, map, view)?;
    }
    report(args, &views);
    Ok(())
}

/// SD's or the fused descriptors (co-PCA over all the images), coloured on the original pixels:
/// sd-dino's PCA figure.
fn run_sd(
    args: &PcaArgs,
    model: &LoadedModel,
    device: &ComputeDevice,
    id: &str,
    paths: &[PathBuf],
) -> Result<()> {
    let settings = args.sd.knobs.settings(args.sd.sd_preset);
    let mut session = args.sd.caches.session(id, settings, device)?;
    let images = paths
        .iter()
        .map(|path| load_rgb(path).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let dino = (args.sd.features == FeatureSource::Fused).then_some(DinoSide {
        vit: &model.vit,
        size: args.sd.dino_size,
        layer: args.layer.unwrap_or(model.config.depth - 1),
        weights: [1.0, 1.0],
    });
    let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    let placed = placed_descriptors(&mut session, &refs, &images, dino)?;
    let maps: Vec<FeatureMap> = placed.iter().map(|p| p.map.clone()).collect();
    let views = pca_colors(&maps, coloring(args));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create directory", args.out.display()))?;
    for (((path, image), p), view) in paths.iter().zip(&images).zip(&placed).zip(&views) {
        let rendered = render_on_original(&view.colors, &p.pixels, image.width(), image.height());
        write_outputs(args, path, &rendered, &p.map, view)?;
    }
    report(args, &views);
    Ok(())
}

fn coloring(args: &PcaArgs) -> PcaColoring {
    PcaColoring {
        joint: !args.separate,
        foreground_threshold: args.foreground,
    }
}

/// `<stem>_pca.png` and the projections `<stem>_pca.npy` `[rows, cols, 3]`.
fn write_outputs(
    args: &PcaArgs,
    path: &std::path::Path,
    rendered: &image::RgbImage,
    map: &FeatureMap,
    view: &PcaView,
) -> Result<()> {
    let stem = path
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy());
    save_png(rendered, &args.out.join(format!("{stem}_pca.png")))?;
    write_npy(
        &args.out.join(format!("{stem}_pca.npy")),
        &[map.grid.rows, map.grid.cols, 3],
        &view.projections,
    )?;
    Ok(())
}

fn report(args: &PcaArgs, views: &[PcaView]) {
    let explained = views.first().map(|v| v.explained).unwrap_or_default();
    eprintln!(
        "wrote {} colourings to {} (explained variance {:.1}% / {:.1}% / {:.1}%{})",
        views.len(),
        args.out.display(),
        100.0 * explained[0],
        100.0 * explained[1],
        100.0 * explained[2],
        if args.separate {
            " for the first image"
        } else {
            ""
        }
    );
}
