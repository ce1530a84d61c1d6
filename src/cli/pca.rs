//! `dinoscope pca`: PCA colouring of patch features for one or more images.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{ModelArgs, expand_image_paths, open_image, save_png};
use crate::analysis::coords::PixelMap;
use crate::analysis::features::{DescriptorSpec, extract};
use crate::analysis::pca_rgb::{PcaColoring, pca_colors, render_patch_colors};
use crate::arrays::write_npy;
use crate::model::{Facet, Resize};

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
}

pub fn run(args: &PcaArgs) -> Result<()> {
    if let Some(t) = args.foreground
        && !(0.0..=1.0).contains(&t)
    {
        anyhow::bail!("--foreground must be between 0 and 1, got {t}");
    }
    let paths = expand_image_paths(&args.images)?;
    let (model, _device) = args.model.open()?;
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
    let views = pca_colors(
        &maps,
        PcaColoring {
            joint: !args.separate,
            foreground_threshold: args.foreground,
        },
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create directory", args.out.display()))?;
    for (((path, image), map), view) in paths.iter().zip(&images).zip(&maps).zip(&views) {
        let stem = path
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy());
        let pixels = PixelMap::new(map.grid, image);
        save_png(
            &render_patch_colors(&view.colors, &pixels, image.width(), image.height()),
            &args.out.join(format!("{stem}_pca.png")),
        )?;
        write_npy(
            &args.out.join(format!("{stem}_pca.npy")),
            &[map.grid.rows, map.grid.cols, 3],
            &view.projections,
        )?;
    }
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
    Ok(())
}
