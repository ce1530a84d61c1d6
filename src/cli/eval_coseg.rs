//! `dinoscope eval-coseg`: scores `coseg` / `partseg` outputs against ground-truth masks.
//!
//! Each ground-truth file `<stem>.<ext>` in `--gt` is paired with `<stem>_mask.png` (foreground)
//! or, with `--parts`, `<stem>_part_labels.png` (0 background, part p as p + 1) in `--pred`. A
//! prediction of another size is resized to the ground truth's (nearest). Foreground: non-zero
//! ground truth. Prints JSON: per image Jaccard and precision, their means, and with `--parts` the
//! matched mean IoU of parts ([`crate::analysis::seg_metrics`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use image::GrayImage;
use image::imageops::{FilterType, resize};
use serde_json::json;

use super::{expand_image_paths, unique_stems};
use crate::analysis::seg_metrics::{Confusion, jaccard, precision};

#[derive(Args, Debug)]
pub struct EvalCosegArgs {
    /// Output folder of `dinoscope coseg` or `partseg`.
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground-truth masks (image files; non-zero is foreground; with `--parts`, the grey level is
    /// the part, 0 background).
    #[arg(long)]
    pub gt: PathBuf,
    /// Also score parts (needs `partseg` output).
    #[arg(long)]
    pub parts: bool,
}

fn load_gray(path: &Path) -> Result<GrayImage> {
    Ok(image::open(path)
        .with_context(|| format!("{}: cannot read the image", path.display()))?
        .to_luma8())
}

/// `predicted` at the size of `truth` (nearest).
fn fit(predicted: GrayImage, truth: &GrayImage) -> GrayImage {
    if predicted.dimensions() == truth.dimensions() {
        predicted
    } else {
        resize(
            &predicted,
            truth.width(),
            truth.height(),
            FilterType::Nearest,
        )
    }
}

pub fn run(args: &EvalCosegArgs) -> Result<()> {
    let truths = expand_image_paths(std::slice::from_ref(&args.gt))?;
    if truths.is_empty() {
        bail!("{}: no ground-truth images", args.gt.display());
    }
    let stems = unique_stems(&truths);
    let mut images = Vec::new();
    let (mut sum_j, mut sum_p) = (0.0, 0.0);
    let mut confusion = Confusion::default();
    for (path, stem) in truths.iter().zip(&stems) {
        let truth = load_gray(path)?;
        let mask_path = args.pred.join(format!("{stem}_mask.png"));
        let predicted = fit(load_gray(&mask_path)?, &truth);
        let p: Vec<bool> = predicted.pixels().map(|v| v.0[0] > 127).collect();
        let t: Vec<bool> = truth.pixels().map(|v| v.0[0] > 0).collect();
        let (j, pr) = (jaccard(&p, &t), precision(&p, &t));
        sum_j += j;
        sum_p += pr;
        images.push(json!({ "stem": stem, "jaccard": j, "precision": pr }));
        if args.parts {
            let parts_path = args.pred.join(format!("{stem}_part_labels.png"));
            let parts = fit(load_gray(&parts_path)?, &truth);
            confusion.add(parts.as_raw(), truth.as_raw());
        }
    }
    let n = images.len() as f64;
    let mut report = json!({
        "images": images,
        "mean_jaccard": sum_j / n,
        "mean_precision": sum_p / n,
    });
    if args.parts {
        let score = confusion.score();
        report["part_mean_iou"] = json!(score.mean_iou);
        report["part_iou"] = json!(score.per_label);
        report["part_matched"] = json!(score.matched);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
