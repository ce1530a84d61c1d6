//! `dinoscope coseg` and `dinoscope partseg`: co-segmentation and part co-segmentation of an image
//! set (dino-vit-features' scripts), with their pixel-level post-processing on by default: GrabCut
//! on the co-segmentation masks, a dense CRF on the part labels (`--no-grabcut`, `--no-crf`).
//!
//! Per image `<stem>`: `<stem>_labels.npy` (float32 `[rows, cols]` patch labels: cluster index for
//! `coseg`, part index with NaN for background for `partseg`), `<stem>_mask.png` (foreground at
//! the model image's resolution) and `<stem>_cutout.png` / `<stem>_parts.png`
//! (`partseg` also `<stem>_part_labels.png`: 0 background, part p as p + 1); plus `summary.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use image::{GrayImage, Luma};
use serde_json::{Value, json};

use super::{ModelArgs, expand_image_paths, open_image, save_png, unique_stems};
use crate::analysis::coseg::{
    CosegConfig, Cosegmentation, PartConfig, PartCosegmentation, StageTime, cosegment,
    part_cosegment, refine_masks, refine_parts,
};
use crate::analysis::features::default_saliency_heads;
use crate::analysis::overlay::{cutout, parts_overlay};
use crate::analysis::progress::Progress;
use crate::analysis::refine::{CrfConfig, GrabCutConfig};
use crate::arrays::write_npy;
use crate::model::{Facet, LoadedModel, PreparedImage, Resize, Vit};

/// The model and the image set, shared by both commands.
#[derive(Args, Debug)]
pub struct ImageSetArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files, or directories (their image files, sorted by name).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// `none` (keep size), a short side like `224` (the reference's default), or `WxH`.
    #[arg(long, default_value = "224")]
    pub resize: Resize,
}

impl ImageSetArgs {
    /// Opens the model and the images; also returns the seconds that took.
    fn open(&self) -> Result<(LoadedModel, ImageSet, f64)> {
        let paths = expand_image_paths(&self.images)?;
        let started = Instant::now();
        let (model, _) = self.model.open()?;
        let set = load_images(paths, self.resize, model.config.patch_size)?;
        Ok((model, set, started.elapsed().as_secs_f64()))
    }
}

#[derive(Args, Debug)]
pub struct CosegArgs {
    #[command(flatten)]
    pub set: ImageSetArgs,
    #[command(flatten)]
    pub options: ForegroundArgs,
    /// Leave out images whose CLS descriptor is far from the set's mean (empty masks).
    #[arg(long)]
    pub remove_outliers: bool,
    /// Cosine similarity to the mean CLS descriptor below which an image is an outlier.
    #[arg(long, default_value_t = 0.7)]
    pub outliers_thresh: f32,
    #[command(flatten)]
    pub grabcut: GrabCutArgs,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// GrabCut on the masks, as the reference's co-segmentation ends.
#[derive(Args, Debug)]
pub struct GrabCutArgs {
    /// Keep the patch masks as they are (no GrabCut).
    #[arg(long)]
    pub no_grabcut: bool,
    #[arg(long, default_value_t = 5)]
    pub grabcut_iterations: usize,
}

impl GrabCutArgs {
    fn config(&self, seed: u64) -> Option<GrabCutConfig> {
        (!self.no_grabcut).then_some(GrabCutConfig {
            iterations: self.grabcut_iterations,
            seed,
        })
    }
}

/// The dense CRF on the part labels, as the reference's part co-segmentation ends.
#[derive(Args, Debug)]
pub struct CrfArgs {
    /// Keep the patch labels upsampled (no CRF).
    #[arg(long)]
    pub no_crf: bool,
    /// Mean-field iterations.
    #[arg(long, default_value_t = 10)]
    pub crf_iterations: usize,
    /// Spatial standard deviation (pixels) of the Gaussian kernel.
    #[arg(long, default_value_t = 3.0)]
    pub crf_gaussian_sxy: f32,
    /// Potts weight of the Gaussian kernel.
    #[arg(long, default_value_t = 50.0)]
    pub crf_gaussian_compat: f32,
    /// Spatial standard deviation (pixels) of the bilateral kernel.
    #[arg(long, default_value_t = 5.0)]
    pub crf_bilateral_sxy: f32,
    /// Colour standard deviation (0-255 levels) of the bilateral kernel.
    #[arg(long, default_value_t = 13.0)]
    pub crf_bilateral_srgb: f32,
    /// Potts weight of the bilateral kernel.
    #[arg(long, default_value_t = 15.0)]
    pub crf_bilateral_compat: f32,
}

impl CrfArgs {
    fn config(&self) -> Option<CrfConfig> {
        (!self.no_crf).then_some(CrfConfig {
            gaussian_sxy: self.crf_gaussian_sxy,
            gaussian_compat: self.crf_gaussian_compat,
            bilateral_sxy: self.crf_bilateral_sxy,
            bilateral_srgb: self.crf_bilateral_srgb,
            bilateral_compat: self.crf_bilateral_compat,
            iterations: self.crf_iterations,
        })
    }
}

#[derive(Args, Debug)]
pub struct PartsegArgs {
    #[command(flatten)]
    pub set: ImageSetArgs,
    #[command(flatten)]
    pub options: ForegroundArgs,
    #[arg(long, default_value_t = 4)]
    pub num_parts: usize,
    /// Random 95% crops per image (and as many of its mirror image) that join the clustering
    /// without voting; helps small sets.
    #[arg(long, default_value_t = 0)]
    pub crop_augmentations: usize,
    /// Pick the stage-2 k by an elbow and re-cluster only the parts common to every image.
    #[arg(long)]
    pub three_stages: bool,
    #[arg(long, default_value_t = 0.94)]
    pub elbow_second_stage: f64,
    #[command(flatten)]
    pub crf: CrfArgs,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// Settings shared by both commands (stage 1: which clusters are foreground).
#[derive(Args, Debug)]
pub struct ForegroundArgs {
    /// 0-based descriptor block (default: the last block, 11 for ViT-S/B).
    #[arg(long)]
    pub layer: Option<usize>,
    #[arg(long, value_enum, default_value_t = Facet::Key)]
    pub facet: Facet,
    /// Patch-embedding stride of the descriptors; must divide the patch size.
    #[arg(long, default_value_t = 4)]
    pub stride: usize,
    /// Log-binned descriptors.
    #[arg(long)]
    pub bin: bool,
    /// Elbow coefficient for the number of clusters.
    #[arg(long, default_value_t = 0.975)]
    pub elbow: f64,
    /// Mean saliency a cluster needs in an image to get its vote.
    #[arg(long, default_value_t = 0.065)]
    pub thresh: f32,
    /// Percentage of the images whose votes make a cluster foreground.
    #[arg(long, default_value_t = 75)]
    pub votes_percentage: u32,
    /// Every n-th descriptor of each image trains the k-means.
    #[arg(long, default_value_t = 100)]
    pub sample_interval: usize,
    /// Saliency from a pass at the descriptor stride instead of a half-size image.
    #[arg(long)]
    pub full_res_saliency: bool,
    /// Heads averaged for saliency, comma-separated (default: 0,2,4,5 for ViT-S/8, else all).
    #[arg(long, value_delimiter = ',')]
    pub saliency_heads: Vec<usize>,
    /// Seed of the k-means seeding and the crop augmentations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ForegroundArgs {
    fn config(&self) -> CosegConfig {
        CosegConfig {
            layer: self.layer,
            facet: self.facet,
            stride: self.stride,
            log_bin: self.bin,
            elbow: self.elbow,
            saliency_threshold: self.thresh,
            votes_percentage: self.votes_percentage,
            sample_interval: self.sample_interval,
            low_res_saliency: !self.full_res_saliency,
            saliency_heads: (!self.saliency_heads.is_empty()).then(|| self.saliency_heads.clone()),
            seed: self.seed,
            ..CosegConfig::default()
        }
    }
}

/// The input images, loaded and prepared, with their paths and output stems.
struct ImageSet {
    paths: Vec<PathBuf>,
    stems: Vec<String>,
    images: Vec<PreparedImage>,
}

pub fn run_coseg(args: &CosegArgs) -> Result<()> {
    let (model, set, load_s) = args.set.open()?;
    let config = CosegConfig {
        remove_outliers: args.remove_outliers,
        outliers_threshold: args.outliers_thresh,
        ..args.options.config()
    };
    let mut result =
        with_progress_bar(|progress| cosegment(&model.vit, &set.images, &config, progress))?;
    let grabcut = args.grabcut.config(config.seed);
    let mut failures = vec![None; set.images.len()];
    if let Some(grabcut) = &grabcut {
        let started = Instant::now();
        failures = refine_masks(&mut result, &set.images, grabcut);
        result.timings.push(StageTime {
            stage: "grabcut",
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let writing = Instant::now();
    create_dir(&args.out)?;
    for ((image, coseg), stem) in set.images.iter().zip(&result.images).zip(&set.stems) {
        let labels: Vec<f32> = coseg.labels.iter().map(|&l| l as f32).collect();
        write_labels(&args.out, stem, coseg.grid.rows, coseg.grid.cols, &labels)?;
        save_png(&coseg.mask, &args.out.join(format!("{stem}_mask.png")))?;
        save_png(
            &cutout(&image.rgb, &coseg.mask),
            &args.out.join(format!("{stem}_cutout.png")),
        )?;
    }
    let mut summary = coseg_summary(&result, &set, &config, &model.vit);
    summary["config"]["grabcut"] = match &grabcut {
        Some(g) => json!({ "iterations": g.iterations }),
        None => Value::Null,
    };
    for (i, failure) in failures.iter().enumerate() {
        // The reference keeps the unrefined mask where GrabCut throws; say so per image.
        summary["images"][i]["grabcut_failed"] = json!(failure.as_ref().map(|e| e.to_string()));
    }
    summary["timings"] = timings(load_s, &result.timings, writing.elapsed().as_secs_f64());
    write_summary(&args.out, &summary)?;
    eprintln!(
        "co-segmented {} images: k = {}, foreground clusters {:?}; wrote {}",
        set.images.len(),
        result.k,
        result.votes.salient,
        args.out.display()
    );
    Ok(())
}

pub fn run_partseg(args: &PartsegArgs) -> Result<()> {
    let (model, set, load_s) = args.set.open()?;
    let config = PartConfig {
        coseg: args.options.config(),
        num_parts: args.num_parts,
        num_crop_augmentations: args.crop_augmentations,
        three_stages: args.three_stages,
        elbow_second_stage: args.elbow_second_stage,
        augmentation_resize: args.set.resize,
    };
    let mut result =
        with_progress_bar(|progress| part_cosegment(&model.vit, &set.images, &config, progress))?;
    let crf = args.crf.config();
    if let Some(crf) = &crf {
        let started = Instant::now();
        refine_parts(&mut result, &set.images, crf).context("dense CRF")?;
        result.timings.push(StageTime {
            stage: "crf",
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let writing = Instant::now();
    create_dir(&args.out)?;
    for ((image, parts), stem) in set.images.iter().zip(&result.images).zip(&set.stems) {
        let labels: Vec<f32> = parts
            .parts
            .iter()
            .map(|p| p.map_or(f32::NAN, |p| p as f32))
            .collect();
        write_labels(&args.out, stem, parts.grid.rows, parts.grid.cols, &labels)?;
        let mask = GrayImage::from_fn(parts.width, parts.height, |x, y| {
            let part = parts.pixel_parts[(y * parts.width + x) as usize];
            Luma([if part.is_some() { 255 } else { 0 }])
        });
        save_png(&mask, &args.out.join(format!("{stem}_mask.png")))?;
        let part_labels = GrayImage::from_fn(parts.width, parts.height, |x, y| {
            let part = parts.pixel_parts[(y * parts.width + x) as usize];
            Luma([part.map_or(0, |p| (p + 1).min(255) as u8)])
        });
        save_png(
            &part_labels,
            &args.out.join(format!("{stem}_part_labels.png")),
        )?;
        save_png(
            &parts_overlay(&image.rgb, &parts.pixel_parts, result.num_parts),
            &args.out.join(format!("{stem}_parts.png")),
        )?;
    }
    let mut summary = partseg_summary(&result, &set, &config, &model.vit);
    summary["config"]["crf"] = match &crf {
        Some(c) => json!({
            "iterations": c.iterations,
            "gaussian_sxy": c.gaussian_sxy,
            "gaussian_compat": c.gaussian_compat,
            "bilateral_sxy": c.bilateral_sxy,
            "bilateral_srgb": c.bilateral_srgb,
            "bilateral_compat": c.bilateral_compat,
        }),
        None => Value::Null,
    };
    summary["timings"] = timings(load_s, &result.timings, writing.elapsed().as_secs_f64());
    write_summary(&args.out, &summary)?;
    eprintln!(
        "part co-segmented {} images into {} parts; wrote {}",
        set.images.len(),
        result.num_parts,
        args.out.display()
    );
    Ok(())
}

fn load_images(paths: Vec<PathBuf>, resize: Resize, patch: usize) -> Result<ImageSet> {
    let images = paths
        .iter()
        .map(|path| open_image(path, resize, patch))
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageSet {
        stems: unique_stems(&paths),
        paths,
        images,
    })
}

/// Runs `analysis` with a terminal progress bar (hidden when stderr is not a terminal).
fn with_progress_bar<T, E>(
    analysis: impl FnOnce(&mut Progress<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let bar = indicatif::ProgressBar::new(1000);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let result = analysis(&mut |done, what| {
        bar.set_position((done * 1000.0) as u64);
        bar.set_message(what.to_string());
        true
    });
    bar.finish_and_clear();
    result
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))
}

fn write_labels(out: &Path, stem: &str, rows: usize, cols: usize, labels: &[f32]) -> Result<()> {
    write_npy(
        &out.join(format!("{stem}_labels.npy")),
        &[rows, cols],
        labels,
    )?;
    Ok(())
}

fn write_summary(out: &Path, summary: &Value) -> Result<()> {
    let path = out.join("summary.json");
    let text = serde_json::to_string_pretty(summary)?;
    crate::atomic_file::write(&path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn timings(load_s: f64, stages: &[StageTime], write_s: f64) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("load model and images".into(), json!(load_s));
    for stage in stages {
        map.insert(stage.stage.into(), json!(stage.seconds));
    }
    map.insert("write outputs".into(), json!(write_s));
    Value::Object(map)
}

/// The settings as used on `vit`: the default layer and saliency heads resolved.
fn config_json(config: &CosegConfig, vit: &Vit) -> Value {
    json!({
        "layer": config.layer.unwrap_or(vit.config().depth - 1),
        "facet": format!("{:?}", config.facet).to_lowercase(),
        "stride": config.stride,
        "bin": config.log_bin,
        "elbow": config.elbow,
        "thresh": decimal(config.saliency_threshold),
        "votes_percentage": config.votes_percentage,
        "sample_interval": config.sample_interval,
        "low_res_saliency": config.low_res_saliency,
        "saliency_heads": config.saliency_heads.clone().unwrap_or_else(|| default_saliency_heads(vit)),
        "seed": config.seed,
    })
}

/// An f32 setting as the decimal it was written as (0.065, not 0.06499999761581421).
fn decimal(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .map_or(Value::Null, |v| json!(v))
}

/// What every image's entry has: file, stem, model-image size, grid and the vote inputs.
fn image_entry(set: &ImageSet, i: usize, coseg: &Cosegmentation) -> Value {
    let image = &coseg.images[i];
    let foreground = image.grid_mask.iter().filter(|&&m| m).count();
    json!({
        "file": set.paths[i].display().to_string(),
        "stem": set.stems[i],
        "size": [set.images[i].width(), set.images[i].height()],
        "grid": [image.grid.rows, image.grid.cols],
        "label_saliency": coseg.votes.label_saliency[i],
        "foreground_patch_fraction": foreground as f64 / image.grid_mask.len().max(1) as f64,
        "outlier": image.outlier,
        "cls_similarity": image.cls_similarity,
    })
}

fn foreground_json(coseg: &Cosegmentation) -> Value {
    json!({
        "k": coseg.k,
        "elbow_curve": coseg.elbow_curve,
        "salient_labels": coseg.votes.salient,
        "votes": coseg.votes.counts,
        "votes_needed": coseg.votes.needed,
    })
}

fn coseg_summary(
    result: &Cosegmentation,
    set: &ImageSet,
    config: &CosegConfig,
    vit: &Vit,
) -> Value {
    let mut summary = foreground_json(result);
    let mut config_value = config_json(config, vit);
    config_value["remove_outliers"] = json!(config.remove_outliers);
    config_value["outliers_thresh"] = decimal(config.outliers_threshold);
    summary["command"] = json!("coseg");
    summary["config"] = config_value;
    summary["images"] = (0..set.images.len())
        .map(|i| image_entry(set, i, result))
        .collect();
    summary
}

fn partseg_summary(
    result: &PartCosegmentation,
    set: &ImageSet,
    config: &PartConfig,
    vit: &Vit,
) -> Value {
    let mut config_value = config_json(&config.coseg, vit);
    config_value["num_parts"] = json!(config.num_parts);
    config_value["crop_augmentations"] = json!(config.num_crop_augmentations);
    config_value["three_stages"] = json!(config.three_stages);
    config_value["elbow_second_stage"] = json!(config.elbow_second_stage);
    let images: Vec<Value> = (0..set.images.len())
        .map(|i| {
            let mut entry = image_entry(set, i, &result.foreground);
            let present: std::collections::BTreeSet<usize> =
                result.images[i].parts.iter().flatten().copied().collect();
            entry["parts_present"] = json!(present);
            entry
        })
        .collect();
    json!({
        "command": "partseg",
        "config": config_value,
        "foreground": foreground_json(&result.foreground),
        "num_parts": result.num_parts,
        "part_elbow_curve": result.part_elbow_curve,
        "common_parts": result.common_parts,
        "images": images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_stems_get_numbered() {
        let paths: Vec<PathBuf> = ["a/cat.png", "b/cat.jpg", "dog.png", "c/cat.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(unique_stems(&paths), vec!["cat", "cat_2", "dog", "cat_3"]);
    }

    #[test]
    fn directories_expand_recursively_to_sorted_image_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for name in ["b.png", "a.JPG", "notes.txt", "c.webp", "sub/d.png"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let paths = expand_image_paths(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.JPG", "b.png", "c.webp", "d.png"]);
        let missing = expand_image_paths(&[dir.path().join("nope.png")]).unwrap_err();
        assert!(missing.to_string().contains("nope.png"));
    }
}
