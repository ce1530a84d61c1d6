//! `dinoscope correspond` (point query or best-buddy pairs between two images) and
//! `dinoscope eval-pck` (PCK on SPair-71k or a stereo pair with ground-truth disparity).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::sd_features::{DinoSide, SdSourceArgs, placed_descriptors};
use super::{ArchArg, ModelArgs, open_image, save_png};
use crate::analysis::colormap::Colormap;
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::{
    BestBuddiesConfig, BuddySide, ImageDescriptors, find_best_buddies, match_points,
    patch_at_pixel, pixel_heatmap, query_point,
};
use crate::analysis::features::{
    DescriptorSpec, FeatureMap, default_saliency_heads, extract, resize_nearest, saliency,
};
use crate::analysis::figure::{RED, dot, overlay_heatmap, pair_color, pair_marker, side_by_side};
use crate::analysis::fusion::{ExternalMap, FusionConfig, SecondSource, fuse_pair, load_external};
use crate::analysis::pck::summarize;
use crate::analysis::sd_features::{FeatureSource, Placed, Placement, SdSession, saliency_input};
use crate::analysis::similarity::Score;
use crate::analysis::{spair, stereo};
use crate::arrays::write_npy;
use crate::model::preprocess::load_rgb;
use crate::model::{Facet, LoadedModel, PreparedImage, Resize};

/// Which descriptor is matched (defaults of dino-vit-features' `correspondences.py`).
#[derive(Args, Debug)]
pub struct DescriptorArgs {
    /// 0-based block whose facet gives the descriptors.
    #[arg(long, default_value_t = BestBuddiesConfig::default().layer)]
    pub layer: usize,
    #[arg(long, value_enum, default_value_t = BestBuddiesConfig::default().facet)]
    pub facet: Facet,
    /// Patch-embedding stride (4 gives ViT-S/8 2x overlapping patches).
    #[arg(long, default_value_t = BestBuddiesConfig::default().stride)]
    pub stride: usize,
    /// Plain descriptors instead of the 17-bin log-binning descriptor.
    #[arg(long)]
    pub no_bin: bool,
    /// `none`, a short side like `224` (the reference's load size), or `WxH`.
    #[arg(long, default_value = "224")]
    pub resize: Resize,
}

impl DescriptorArgs {
    fn spec(&self) -> DescriptorSpec {
        DescriptorSpec {
            layer: self.layer,
            facet: self.facet,
            stride: Some(self.stride),
            log_bin: !self.no_bin,
        }
    }
}

/// A second descriptor source fused with the first as in sd-dino.
#[derive(Args, Debug)]
pub struct FusionArgs {
    /// Checkpoint of a second model to fuse with (e.g. DINOv2 next to DINO).
    #[arg(long)]
    pub fuse_weights: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub fuse_arch: ArchArg,
    #[arg(long)]
    pub fuse_heads: Option<usize>,
    /// Block of the second model (default: its last); its stride is its patch size.
    #[arg(long)]
    pub fuse_layer: Option<usize>,
    #[arg(long, value_enum, default_value_t = Facet::Token)]
    pub fuse_facet: Facet,
    /// External `[C, h, w]` or `[1, C, h, w]` map of image A (.npy or .safetensors).
    #[arg(long, requires = "fuse_features_b", conflicts_with = "fuse_weights")]
    pub fuse_features_a: Option<PathBuf>,
    /// External map of image B.
    #[arg(long, requires = "fuse_features_a")]
    pub fuse_features_b: Option<PathBuf>,
    /// Tensor to read from a .safetensors map holding several.
    #[arg(long)]
    pub fuse_tensor: Option<String>,
    /// Weights of the first and the second source after per-source L2 normalisation.
    #[arg(long, value_delimiter = ',', num_args = 1, default_value = "1,1")]
    pub source_weights: Vec<f32>,
    /// Joint PCA of each source over both images to this many dimensions (sd-dino's co-PCA).
    #[arg(long)]
    pub co_pca: Option<usize>,
    /// Matching distance (default: l2 when fusing, as sd-dino; cos otherwise).
    #[arg(long, value_enum)]
    pub distance: Option<Score>,
}

impl FusionArgs {
    fn fusing(&self) -> bool {
        self.fuse_weights.is_some() || self.fuse_features_a.is_some()
    }

    fn config(&self) -> Result<FusionConfig> {
        let weights: [f32; 2] = self.source_weights.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "--source-weights takes two numbers like 1,1; got {}",
                self.source_weights.len()
            )
        })?;
        Ok(FusionConfig {
            weights,
            co_pca: self.co_pca,
        })
    }

    fn score(&self, features: FeatureSource) -> Score {
        self.distance
            .unwrap_or(if self.fusing() || features == FeatureSource::Fused {
                Score::NegativeL2
            } else {
                Score::Cosine
            })
    }
}

/// `x,y` in pixels.
fn parse_point(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("invalid point `{s}`: use X,Y in pixels, like 120,64");
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    let parse = |v: &str| v.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    Ok((parse(x).ok_or_else(bad)?, parse(y).ok_or_else(bad)?))
}

#[derive(Args, Debug)]
pub struct CorrespondArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub image_a: PathBuf,
    #[arg(long)]
    pub image_b: PathBuf,
    #[command(flatten)]
    pub descriptors: DescriptorArgs,
    #[command(flatten)]
    pub fusion: FusionArgs,
    #[command(flatten)]
    pub sd: SdSourceArgs,
    /// Point query at pixel X,Y of image A (pixel indices of the original image) instead of
    /// best-buddy pairs: writes point.png, point.json and similarity.npy.
    #[arg(long, value_parser = parse_point)]
    pub point: Option<(f64, f64)>,
    /// Best-buddy pairs kept after the k-means selection.
    #[arg(long, default_value_t = BestBuddiesConfig::default().num_pairs)]
    pub num_pairs: usize,
    /// Saliency above this is foreground.
    #[arg(long, default_value_t = BestBuddiesConfig::default().threshold)]
    pub threshold: f32,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalPckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// SPair-71k root (PairAnnotation/, JPEGImages/).
    #[arg(long, required_unless_present = "stereo", conflicts_with = "stereo")]
    pub spair: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// At most this many pairs per category (in file-name order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Rectified stereo pair and its disparity (.npz `arr_0` or .npy, `[H, W]`).
    #[arg(long, num_args = 3, value_names = ["LEFT", "RIGHT", "DISP"])]
    pub stereo: Option<Vec<PathBuf>>,
    #[command(flatten)]
    pub descriptors: DescriptorArgs,
    #[command(flatten)]
    pub fusion: FusionArgs,
    #[command(flatten)]
    pub sd: SdSourceArgs,
    /// PCK alphas (default: 0.1,0.05,0.01 for SPair as sd-dino; 0.05,0.1,0.15 for stereo).
    #[arg(long, value_delimiter = ',')]
    pub alpha: Vec<f64>,
    /// Stereo: PCK thresholds in pixels.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub pixels: Vec<f64>,
    /// Stereo: spacing of the sampled grid of left-image points, pixels.
    #[arg(long, default_value_t = 8)]
    pub step: usize,
    /// Stereo: keep only points whose saliency exceeds --threshold.
    #[arg(long)]
    pub foreground: bool,
    #[arg(long, default_value_t = BestBuddiesConfig::default().threshold)]
    pub threshold: f32,
}

/// One image described by the (possibly fused) descriptors.
struct Described {
    /// The image the pixel map measures in: the first model's input, or SD's square.
    model_image: image::RgbImage,
    original_size: (u32, u32),
    /// The first model's input, for saliency, and the stride to compute it at.
    saliency_input: PreparedImage,
    saliency_stride: Option<usize>,
    features: FeatureMap,
    pixels: PixelMap,
}

/// The second model of a fusion and the descriptor it contributes.
struct SecondModel {
    model: LoadedModel,
    spec: DescriptorSpec,
}

/// Models and settings that turn two image files into matchable descriptors.
struct Pipeline {
    model: LoadedModel,
    spec: DescriptorSpec,
    resize: Resize,
    second: Option<SecondModel>,
    fusion: FusionConfig,
    score: Score,
    sd: Option<SdSource>,
}

/// Stable Diffusion's side of the pipeline.
struct SdSource {
    session: std::cell::RefCell<SdSession>,
    fused: bool,
    dino_size: u32,
    dino_layer: usize,
}

impl Pipeline {
    fn open(
        model: &ModelArgs,
        descriptors: &DescriptorArgs,
        fusion: &FusionArgs,
        sd: &SdSourceArgs,
    ) -> Result<Self> {
        let config = fusion.config()?;
        let (loaded, device) = model.open()?;
        let sd_source = match (sd.features, &sd.sd) {
            (FeatureSource::Dino, _) => None,
            (_, None) => bail!("--features sd|fused needs --sd (a folder, hub id or sd15/sd21)"),
            (_, Some(_)) if fusion.fusing() => {
                bail!("--features sd|fused fuses SD itself; drop --fuse-weights/--fuse-features-*")
            }
            (features, Some(id)) => {
                let settings = sd.knobs.settings(sd.sd_preset);
                Some(SdSource {
                    session: std::cell::RefCell::new(sd.caches.session(id, settings, &device)?),
                    fused: features == FeatureSource::Fused,
                    dino_size: sd.dino_size,
                    dino_layer: fusion.fuse_layer.unwrap_or(loaded.config.depth - 1),
                })
            }
        };
        let second = match &fusion.fuse_weights {
            Some(weights) => {
                let args = ModelArgs {
                    weights: weights.clone(),
                    arch: fusion.fuse_arch,
                    heads: fusion.fuse_heads,
                    input_norm: None,
                    device: model.device,
                };
                let (second, _) = args.open().context("second model (--fuse-weights)")?;
                let spec = DescriptorSpec {
                    layer: fusion.fuse_layer.unwrap_or(second.config.depth - 1),
                    facet: fusion.fuse_facet,
                    stride: None,
                    log_bin: false,
                };
                Some(SecondModel {
                    model: second,
                    spec,
                })
            }
            None => None,
        };
        Ok(Pipeline {
            model: loaded,
            spec: descriptors.spec(),
            resize: descriptors.resize,
            second,
            fusion: config,
            score: fusion.score(sd.features),
            sd: sd_source,
        })
    }

    fn patch(&self) -> usize {
        self.model.config.patch_size
    }

    fn extract(&self, image: &PreparedImage, path: &Path) -> Result<FeatureMap> {
        extract(&self.model.vit, image, self.spec)
            .with_context(|| format!("{}: descriptors", path.display()))
    }

    /// Descriptors of both images, fused with the second model or `external` maps when given.
    fn describe(
        &self,
        paths: [&Path; 2],
        external: Option<&[ExternalMap; 2]>,
    ) -> Result<[Described; 2]> {
        if let Some(sd) = &self.sd {
            return self.describe_sd(sd, paths);
        }
        let images = [
            open_image(paths[0], self.resize, self.patch())?,
            open_image(paths[1], self.resize, self.patch())?,
        ];
        let first = [
            self.extract(&images[0], paths[0])?,
            self.extract(&images[1], paths[1])?,
        ];
        let features = if let Some(second) = &self.second {
            let patch = second.model.config.patch_size;
            let mut maps = Vec::with_capacity(2);
            for path in paths {
                let image = open_image(path, self.resize, patch)?;
                maps.push(
                    extract(&second.model.vit, &image, second.spec)
                        .with_context(|| format!("{}: second-model descriptors", path.display()))?,
                );
            }
            fuse_pair(
                [&first[0], &first[1]],
                [SecondSource::Model(&maps[0]), SecondSource::Model(&maps[1])],
                &self.fusion,
            )?
        } else if let Some([a, b]) = external {
            fuse_pair(
                [&first[0], &first[1]],
                [SecondSource::External(a), SecondSource::External(b)],
                &self.fusion,
            )?
        } else {
            first
        };
        let [image_a, image_b] = images;
        let [features_a, features_b] = features;
        let stride = self.spec.stride;
        let described = |image: PreparedImage, features: FeatureMap| Described {
            pixels: PixelMap::new(features.grid, &image),
            model_image: image.rgb.clone(),
            original_size: image.original_size,
            saliency_input: image,
            saliency_stride: stride,
            features,
        };
        Ok([
            described(image_a, features_a),
            described(image_b, features_b),
        ])
    }

    /// Both images' SD descriptors (co-PCA'd over the pair for SD-DINO), fused with the model's
    /// tokens of the same placement when asked.
    fn describe_sd(&self, sd: &SdSource, paths: [&Path; 2]) -> Result<[Described; 2]> {
        let mut session = sd.session.borrow_mut();
        let placement = Placement::of(session.settings().preset);
        let originals = paths
            .iter()
            .map(|path| load_rgb(path).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        let dino = sd.fused.then_some(DinoSide {
            vit: &self.model.vit,
            size: sd.dino_size,
            layer: sd.dino_layer,
            weights: self.fusion.weights,
        });
        let placed = placed_descriptors(&mut session, &paths, &originals, dino)?;
        let patch = self.patch();
        let mut described = Vec::with_capacity(2);
        for (image, Placed { map, pixels }) in originals.iter().zip(placed) {
            let side = map.image_size.0 as u32;
            described.push(Described {
                model_image: placement.canvas(image, side).0,
                original_size: image.dimensions(),
                saliency_input: saliency_input(image, placement, patch)?,
                saliency_stride: None,
                features: map,
                pixels,
            });
        }
        let mut described = described.into_iter();
        match (described.next(), described.next()) {
            (Some(a), Some(b)) => Ok([a, b]),
            _ => bail!("expected the descriptors of two images"),
        }
    }

    /// Saliency of `described`'s image on its descriptor grid.
    fn saliency(&self, described: &Described, path: &Path) -> Result<Vec<f32>> {
        let vit = &self.model.vit;
        let (values, grid) = saliency(
            vit,
            &described.saliency_input,
            described.saliency_stride,
            &default_saliency_heads(vit),
        )
        .with_context(|| format!("{}: saliency", path.display()))?;
        let target = described.features.grid;
        Ok(resize_nearest(
            &values,
            (grid.rows, grid.cols),
            (target.rows, target.cols),
        ))
    }
}

fn external_maps(fusion: &FusionArgs) -> Result<Option<[ExternalMap; 2]>> {
    match (&fusion.fuse_features_a, &fusion.fuse_features_b) {
        (Some(a), Some(b)) => {
            let tensor = fusion.fuse_tensor.as_deref();
            Ok(Some([load_external(a, tensor)?, load_external(b, tensor)?]))
        }
        _ => Ok(None),
    }
}

fn create_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create directory", out.display()))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::atomic_file::write(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn score_name(score: Score) -> &'static str {
    match score {
        Score::Cosine => "cos",
        Score::NegativeL2 => "l2",
    }
}

pub fn run_correspond(args: &CorrespondArgs) -> Result<()> {
    let external = external_maps(&args.fusion)?;
    let pipeline = Pipeline::open(&args.model, &args.descriptors, &args.fusion, &args.sd)?;
    let [a, b] = pipeline.describe([&args.image_a, &args.image_b], external.as_ref())?;
    create_dir(&args.out)?;
    match args.point {
        Some(point) => write_point_query(args, &pipeline, &a, &b, point),
        None => write_best_buddies(args, &pipeline, &a, &b),
    }
}

fn write_point_query(
    args: &CorrespondArgs,
    pipeline: &Pipeline,
    a: &Described,
    b: &Described,
    (x, y): (f64, f64),
) -> Result<()> {
    let (width, height) = a.original_size;
    if !(0.0..width as f64).contains(&x) || !(0.0..height as f64).contains(&y) {
        bail!(
            "--point {x},{y} is outside {} ({width}x{height})",
            args.image_a.display()
        );
    }
    let source = ImageDescriptors::new(&a.features, a.pixels, pipeline.score);
    let target = ImageDescriptors::new(&b.features, b.pixels, pipeline.score);
    let query = query_point(&source, (x, y), &[&target]);
    let found = &query.matches[0];
    let heatmap = pixel_heatmap(&found.scores, &b.pixels, b.original_size);

    let mut source_image = load_rgb(&args.image_a)?;
    dot(&mut source_image, (x, y), 5.0, RED);
    let mut target_image = overlay_heatmap(
        &load_rgb(&args.image_b)?,
        &heatmap.values,
        Colormap::Viridis,
        0.45,
    );
    let best = (heatmap.best.0 as f64, heatmap.best.1 as f64);
    dot(&mut target_image, best, 5.0, RED);
    save_png(
        &side_by_side(&source_image, &target_image),
        &args.out.join("point.png"),
    )?;

    let grid = found.grid;
    write_npy(
        &args.out.join("similarity.npy"),
        &[grid.rows, grid.cols],
        &found.scores,
    )?;
    let report = json!({
        "score": score_name(pipeline.score),
        "source": {
            "image": args.image_a,
            "point": [x, y],
            "patch": query.source_patch,
        },
        "target": {
            "image": args.image_b,
            "grid": [grid.rows, grid.cols],
            "best_patch": found.best_patch,
            "best_score": found.best_score,
            "best_patch_center": [found.best_pixel.0, found.best_pixel.1],
            "pixel_best": [heatmap.best.0, heatmap.best.1],
            "pixel_best_score": heatmap.best_score,
        },
    });
    write_text(
        &args.out.join("point.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "({x}, {y}) in A -> ({:.1}, {:.1}) in B (patch {}, score {:.4}); wrote {}",
        found.best_pixel.0,
        found.best_pixel.1,
        found.best_patch,
        found.best_score,
        args.out.display()
    );
    Ok(())
}

fn write_best_buddies(
    args: &CorrespondArgs,
    pipeline: &Pipeline,
    a: &Described,
    b: &Described,
) -> Result<()> {
    let saliency_a = pipeline.saliency(a, &args.image_a)?;
    let saliency_b = pipeline.saliency(b, &args.image_b)?;
    let found = find_best_buddies(
        BuddySide {
            features: &a.features,
            saliency: &saliency_a,
            pixels: a.pixels,
        },
        BuddySide {
            features: &b.features,
            saliency: &saliency_b,
            pixels: b.pixels,
        },
        args.threshold,
        args.num_pairs,
        pipeline.score,
    );
    let lines = |pick: fn(&crate::analysis::correspond::Correspondence) -> (usize, usize)| {
        found
            .pairs
            .iter()
            .map(|p| {
                let (y, x) = pick(p);
                format!("{y}, {x}\n")
            })
            .collect::<String>()
    };
    write_text(
        &args.out.join("correspondence_A.txt"),
        &lines(|p| p.model_a),
    )?;
    write_text(
        &args.out.join("correspondence_B.txt"),
        &lines(|p| p.model_b),
    )?;
    let report = json!({
        "score": score_name(pipeline.score),
        "image_a": args.image_a,
        "image_b": args.image_b,
        "grid_a": [a.features.grid.rows, a.features.grid.cols],
        "grid_b": [b.features.grid.rows, b.features.grid.cols],
        "model_size_a": [a.model_image.width(), a.model_image.height()],
        "model_size_b": [b.model_image.width(), b.model_image.height()],
        "best_buddies": found,
    });
    write_text(
        &args.out.join("correspondences.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let (mut left, mut right) = (a.model_image.clone(), b.model_image.clone());
    let count = found.pairs.len();
    for (i, pair) in found.pairs.iter().enumerate() {
        let color = pair_color(i, count);
        pair_marker(
            &mut left,
            (pair.model_a.1 as f64, pair.model_a.0 as f64),
            color,
        );
        pair_marker(
            &mut right,
            (pair.model_b.1 as f64, pair.model_b.0 as f64),
            color,
        );
    }
    save_png(
        &side_by_side(&left, &right),
        &args.out.join("correspondences.png"),
    )?;
    eprintln!(
        "{} mutual nearest neighbours, {} salient, {count} selected; wrote {}",
        found.mutual,
        found.salient,
        args.out.display()
    );
    Ok(())
}

pub fn run_eval(args: &EvalPckArgs) -> Result<()> {
    let alphas = |default: &[f64]| {
        if args.alpha.is_empty() {
            default.to_vec()
        } else {
            args.alpha.clone()
        }
    };
    if let Some(root) = &args.spair {
        if args.fusion.fuse_features_a.is_some() {
            bail!("--fuse-features-a/-b hold maps of one pair; use --fuse-weights with --spair");
        }
        let pipeline = Pipeline::open(&args.model, &args.descriptors, &args.fusion, &args.sd)?;
        return eval_spair(args, &pipeline, root, &alphas(&[0.1, 0.05, 0.01]));
    }
    let Some([left, right, disparity]) = args.stereo.as_deref() else {
        bail!("give --spair ROOT or --stereo LEFT RIGHT DISP");
    };
    let external = external_maps(&args.fusion)?;
    let pipeline = Pipeline::open(&args.model, &args.descriptors, &args.fusion, &args.sd)?;
    eval_stereo(
        args,
        &pipeline,
        [left, right, disparity],
        external.as_ref(),
        &alphas(&[0.05, 0.1, 0.15]),
    )
}

fn eval_spair(args: &EvalPckArgs, pipeline: &Pipeline, root: &Path, alphas: &[f64]) -> Result<()> {
    let pairs = spair::load_pairs(root, &args.split, args.limit)?;
    let total = pairs.len();
    let mut done = 0;
    let errors = spair::evaluate(&pairs, |pair| -> Result<Vec<(f64, f64)>> {
        done += 1;
        eprintln!("pair {done}/{total}: {}", pair.id);
        let [a, b] = pipeline.describe([&pair.source_image, &pair.target_image], None)?;
        let source = ImageDescriptors::new(&a.features, a.pixels, pipeline.score);
        let target = ImageDescriptors::new(&b.features, b.pixels, pipeline.score);
        Ok(match_points(&source, &target, &pair.source_points))
    })?;
    let summary = summarize(&errors, alphas);
    let report = json!({
        "dataset": "spair",
        "root": root,
        "split": args.split,
        "score": score_name(pipeline.score),
        "convention": "correct if distance < alpha * max(target bbox w, h), original image pixels; per_point pools all points, per_image averages pair PCKs",
        "summary": summary,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn eval_stereo(
    args: &EvalPckArgs,
    pipeline: &Pipeline,
    [left, right, disparity_path]: [&PathBuf; 3],
    external: Option<&[ExternalMap; 2]>,
    alphas: &[f64],
) -> Result<()> {
    let disparity = stereo::load_disparity(disparity_path)?;
    let [l, r] = pipeline.describe([left, right], external)?;
    stereo::check_size(&disparity, disparity_path, l.original_size)?;
    let foreground = if args.foreground {
        Some(pipeline.saliency(&l, left)?)
    } else {
        None
    };
    let points = stereo::sample_points(&disparity, args.step, |x, y| {
        foreground
            .as_ref()
            .is_none_or(|s| s[patch_at_pixel(&l.pixels, (x as f64, y as f64))] > args.threshold)
    });
    if points.left.is_empty() {
        bail!(
            "{}: no left-image point with a known disparity{}",
            disparity_path.display(),
            if args.foreground {
                " in the foreground"
            } else {
                ""
            }
        );
    }
    let source = ImageDescriptors::new(&l.features, l.pixels, pipeline.score);
    let target = ImageDescriptors::new(&r.features, r.pixels, pipeline.score);
    let predicted = match_points(&source, &target, &points.left);
    let report = stereo::stereo_report(
        &predicted,
        &points.right,
        l.original_size,
        &args.pixels,
        alphas,
    );
    let out = json!({
        "dataset": "stereo",
        "left": left,
        "right": right,
        "disparity": disparity_path,
        "score": score_name(pipeline.score),
        "step": args.step,
        "foreground": args.foreground,
        "convention": "left (x, y) matches right (x - d, y); correct if distance < threshold (pixels) or < alpha * max(H, W), original image pixels",
        "report": report,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
