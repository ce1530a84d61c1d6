//! The `dinoscope` command line: embeddings, attention maps, dense features and benchmarks.

mod bench;
mod bench_analysis;
mod bench_train;
mod correspond;
pub mod coseg;
mod download;
mod eval_coseg;
mod figure;
mod pca;
pub mod readout;
pub mod sd_features;
mod sd_models;
mod token_norms;
pub mod train;
mod video;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::analysis::attention::{Query, attention_maps, mass_mask, rollout};
use crate::analysis::colormap::{Colormap, overlay_mask, render_map};
use crate::analysis::features::{DescriptorSpec, extract};
use crate::arrays::write_npy;
use crate::image_files::find_images;
use crate::model::config::Arch;
use crate::model::preprocess::{DEFAULT_MAX_PATCHES, load_rgb, prepare};
use crate::model::{
    ComputeDevice, DeviceChoice, Facet, InputNorm, LoadOptions, LoadedModel, PreparedImage, Resize,
    backend, load_model,
};

#[derive(Parser, Debug)]
#[command(
    name = "dinoscope",
    version,
    about = "See what DINO / DINOv2 Vision Transformers see."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Final normalised CLS embedding `[D]` of an image.
    Embed {
        #[command(flatten)]
        input: ModelInput,
        #[arg(long)]
        out: PathBuf,
    },
    /// CLS-to-patch attention of a block: `attention.npy` `[heads, Hp, Wp]`, one PNG per head, the
    /// head mean and thresholded masks.
    Attention {
        #[command(flatten)]
        input: ModelInput,
        /// 0-based block index (default: the last block).
        #[arg(long)]
        layer: Option<usize>,
        /// Share of attention mass kept by the masks (as in the DINO paper).
        #[arg(long, default_value_t = 0.6)]
        threshold: f32,
        #[arg(long, value_enum, default_value_t = Colormap::Viridis)]
        colormap: Colormap,
        /// Attention of the patch at `ROW,COL` (0-based grid position) instead of the CLS token.
        #[arg(long, value_parser = parse_grid_position)]
        query: Option<(usize, usize)>,
        /// Also write the attention rollout across all blocks (`rollout.npy`, `rollout.png`).
        #[arg(long)]
        rollout: bool,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Patch descriptors `[Hp*Wp, D]` of a block's facet (dino-vit-features' extractor).
    Features {
        #[command(flatten)]
        input: ModelInput,
        /// 0-based block index (11 = the last block of a 12-block ViT).
        #[arg(long)]
        layer: usize,
        #[arg(long, value_enum, default_value_t = Facet::Key)]
        facet: Facet,
        /// Patch-embedding stride; smaller than the patch size gives overlapping patches.
        #[arg(long)]
        stride: Option<usize>,
        /// Log-binning descriptor (17 bins, as in dino-vit-features' `bin=True`).
        #[arg(long)]
        bin: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// PCA colouring of patch features: `<stem>_pca.png` and `<stem>_pca.npy` `[rows, cols, 3]` per image.
    Pca(pca::PcaArgs),
    /// The paper figures of the app's presets as one PNG: `dino` (attention masks) or `dinov2`
    /// (PCA colourings).
    Figure(figure::FigureArgs),
    /// L2 norms of a block's patch tokens `[rows, cols]` (or every block's), and for register
    /// models the attention CLS and every patch pay to each register.
    TokenNorms(token_norms::TokenNormsArgs),
    /// Attention, its mass outline or held PCA colours drawn on every frame of a video file (via
    /// ffmpeg), an animated GIF / WebP / PNG or a folder of frames, written as a GIF or an MP4.
    Video(video::VideoArgs),
    /// Co-segmentation of an image set (dino-vit-features): per-image foreground masks, cut-outs
    /// and patch cluster labels.
    Coseg(coseg::CosegArgs),
    /// Part co-segmentation of an image set: the parts common to the images, per patch and pixel.
    Partseg(coseg::PartsegArgs),
    /// Jaccard (foreground IoU) and precision of `coseg` masks against ground-truth masks, and with
    /// `--parts` the matched mean IoU of `partseg` parts (JSON on stdout).
    EvalCoseg(eval_coseg::EvalCosegArgs),
    /// Median forward time of a randomly initialised model.
    Bench(bench::BenchArgs),
    /// Times point query, best buddies and co-segmentation on ViT-S/8 stride-4 features (random
    /// weights) and writes the features for tools/bench_analysis_torch.py.
    BenchAnalysis(bench_analysis::BenchAnalysisArgs),
    /// Training images/s of the default recipe (vit-nano, synthetic scenes), warm-up excluded.
    BenchTrain(bench_train::BenchTrainArgs),
    /// Self-supervised DINO training (synthetic scenes or an image folder); writes the teacher backbone,
    /// a resume checkpoint and metrics.
    Train(train::TrainArgs),
    /// Attention-mask IoU and k-NN accuracy on held-out synthetic scenes (JSON on stdout).
    EvalSynthetic(train::EvalArgs),
    /// Correspondences between two images: a point query (`--point X,Y`: heatmap PNG + JSON) or
    /// best-buddy pairs (correspondences.json, correspondence_A/B.txt, a side-by-side PNG).
    Correspond(correspond::CorrespondArgs),
    /// PCK of nearest-neighbour matching on SPair-71k or a stereo pair with disparity (JSON on stdout).
    EvalPck(correspond::EvalPckArgs),
    /// Download official checkpoints (by id, `--list` shows them) or any `--url` into the
    /// checkpoint folder: resumable, SHA-256 recorded and optionally verified. Stable Diffusion
    /// models (`sd15`, `sd21`, `sd21_base`) go into the Hugging Face cache.
    Download(download::DownloadArgs),
    /// Stable Diffusion models in the Hugging Face cache and the given folders: version, size,
    /// what is missing.
    SdModels(sd_models::SdModelsArgs),
    /// Stable Diffusion features of an image, DIFT or SD-DINO preset (`[C, h, w]` `.npy`), or
    /// SD-DINO's taps / co-PCA'd pair (`.safetensors`).
    SdFeatures(sd_features::SdFeaturesArgs),
    /// Features of every image below a labelled folder (class sub-folders): `OUT.npy` and an
    /// index `OUT.json`.
    EmbedFolder(readout::EmbedFolderArgs),
    /// DINO's weighted k-NN on `embed-folder` features: accuracy, per class, confusion matrix.
    Knn(readout::KnnArgs),
    /// Multinomial logistic regression (scikit-learn's defaults: L2, C = 1) on `embed-folder`
    /// features: accuracy, per class, confusion matrix.
    Linear(readout::LinearArgs),
}

/// Which checkpoint to load and where to run it.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Checkpoint: official `.pth` (backbone or full training checkpoint) or Hugging Face `.safetensors`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Architecture; `auto` detects it from the tensor names and shapes.
    #[arg(long, default_value = "auto")]
    pub arch: ArchArg,
    /// Attention heads when detecting (official models: dim / 64).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Normalisation the model was trained with: `imagenet` (DINO, DeiT) or `inception` (mean = std
    /// = 0.5, timm AugReg ViTs). Default: a timm `config.json` beside the weights, else imagenet.
    #[arg(long)]
    pub input_norm: Option<InputNorm>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// Where the model and one image come from.
#[derive(Args, Debug)]
pub struct ModelInput {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub image: PathBuf,
    /// `none` (keep size, crop to a multiple of the patch), a short side like `480`, or `WxH`.
    #[arg(long, default_value = "none")]
    pub resize: Resize,
}

/// `--arch auto` or a named architecture.
#[derive(Clone, Copy, Debug)]
pub enum ArchArg {
    Auto,
    Named(Arch),
}

impl std::str::FromStr for ArchArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use clap::ValueEnum;
        if s == "auto" {
            return Ok(ArchArg::Auto);
        }
        Arch::from_str(s, true).map(ArchArg::Named).map_err(|_| {
            let names: Vec<String> = Arch::ALL.iter().map(|a| a.to_string()).collect();
            format!(
                "unknown architecture `{s}`; use auto or one of: {}",
                names.join(", ")
            )
        })
    }
}

/// A loaded model, its device and one prepared image.
struct Session {
    model: LoadedModel,
    device: ComputeDevice,
    image: PreparedImage,
}

impl ModelArgs {
    /// Selects the device and loads the checkpoint, reporting both on stderr.
    pub fn open(&self) -> Result<(LoadedModel, ComputeDevice)> {
        let device = backend::select(self.device)?;
        eprintln!("device: {}", device.description);
        let options = LoadOptions {
            config: match self.arch {
                ArchArg::Auto => None,
                ArchArg::Named(a) => Some(a.config()),
            },
            heads: self.heads,
            input_norm: self.input_norm,
        };
        let model = load_model(&self.weights, &options, &device.device)?;
        let params = model.config.param_count();
        eprintln!(
            "model: {} ({}{})",
            model.config.describe(),
            if params >= 1_000_000 {
                format!("{:.1}M parameters", params as f64 / 1e6)
            } else {
                format!("{params} parameters")
            },
            if model.ignored > 0 {
                format!(", {} non-backbone tensors ignored", model.ignored)
            } else {
                String::new()
            }
        );
        if model.input_norm != InputNorm::IMAGENET {
            eprintln!(
                "input normalisation: {}, folded into the patch embedding",
                model.input_norm.describe()
            );
        }
        Ok((model, device))
    }
}

/// Decodes and prepares one image for a model of patch size `patch`, naming the file on error.
pub fn open_image(path: &Path, resize: Resize, patch: usize) -> Result<PreparedImage> {
    let rgb = load_rgb(path)?;
    let image = prepare(&rgb, resize, patch, DEFAULT_MAX_PATCHES)
        .with_context(|| path.display().to_string())?;
    if let Some(note) = &image.note {
        eprintln!("note: {}: {note}", path.display());
    }
    Ok(image)
}

impl ModelInput {
    fn open(&self) -> Result<Session> {
        let (model, device) = self.model.open()?;
        let image = open_image(&self.image, self.resize, model.config.patch_size)?;
        Ok(Session {
            model,
            device,
            image,
        })
    }
}

/// Files as given and the image files below directories (recursively, sorted by path); fails on a
/// missing path. Entries of a directory that cannot be searched are named on stderr.
pub fn expand_image_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = find_images(input)?;
            for entry in &found.skipped {
                eprintln!("warning: not searched: {entry}");
            }
            if found.images.is_empty() {
                bail!("{}: no image files in the directory", input.display());
            }
            paths.extend(found.images);
        } else if input.exists() {
            paths.push(input.clone());
        } else {
            bail!("{}: no such file or directory", input.display());
        }
    }
    Ok(paths)
}

/// `--iters` of the benchmark commands: a median needs at least one timed run.
fn timed_iterations(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 timed iteration is needed".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// File stems, with `_2`, `_3`... appended to repeats so that outputs never overwrite each other.
pub fn unique_stems(paths: &[PathBuf]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    paths
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            let count = seen.entry(stem.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                stem
            } else {
                format!("{stem}_{count}")
            }
        })
        .collect()
}

/// `ROW,COL` -> `(row, col)`.
fn parse_grid_position(text: &str) -> Result<(usize, usize), String> {
    let (row, col) = text
        .split_once(',')
        .ok_or_else(|| format!("expected ROW,COL, got `{text}`"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{v}` is not a grid index in `{text}`"))
    };
    Ok((number(row)?, number(col)?))
}

fn resolve_layer(layer: Option<usize>, depth: usize) -> Result<usize> {
    let layer = layer.unwrap_or(depth - 1);
    if layer >= depth {
        bail!(
            "--layer {layer} is out of range: the model has {depth} blocks (0..={})",
            depth - 1
        );
    }
    Ok(layer)
}

/// Encodes a PNG in memory and writes it atomically (a failed or killed export never leaves a
/// truncated image in place of a good one).
pub(crate) fn save_png<P>(
    image: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    path: &Path,
) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode image", path.display()))?;
    crate::atomic_file::write(path, bytes.get_ref())
        .with_context(|| format!("{}: cannot write image", path.display()))
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Embed { input, out } => {
            let s = input.open()?;
            let cls = s.model.vit.forward(s.image.to_tensor(&s.device.device));
            let data = crate::model::host::f32_values(cls)?;
            write_npy(&out, &[data.len()], &data)?;
            eprintln!("wrote {} ([{}])", out.display(), data.len());
        }
        Command::Attention {
            input,
            layer,
            threshold,
            colormap,
            query,
            rollout: with_rollout,
            out,
        } => {
            if !(0.0..=1.0).contains(&threshold) {
                bail!("--threshold must be between 0 and 1, got {threshold}");
            }
            let s = input.open()?;
            let layer = resolve_layer(layer, s.model.config.depth)?;
            let patch = s.model.config.patch_size;
            let query = match query {
                Some((row, col)) => Query::Patch { row, col },
                None => Query::Cls,
            };
            let maps = attention_maps(
                &s.model.vit,
                s.image.to_tensor(&s.device.device),
                layer,
                query,
                patch,
            )?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("{}: cannot create directory", out.display()))?;
            let (rows, cols) = (maps.grid.rows, maps.grid.cols);
            write_npy(
                &out.join("attention.npy"),
                &[maps.heads, rows, cols],
                &maps.values,
            )?;
            save_png(&s.image.rgb, &out.join("img.png"))?;
            for h in 0..maps.heads {
                save_png(
                    &render_map(maps.head(h), rows, cols, patch, colormap),
                    &out.join(format!("attn-head{h}.png")),
                )?;
                let mask = mass_mask(maps.head(h), threshold);
                save_png(
                    &overlay_mask(&s.image.rgb, &mask, rows, cols, [255, 0, 0]),
                    &out.join(format!("mask_th{threshold}_head{h}.png")),
                )?;
            }
            let mean = maps.head_mean();
            save_png(
                &render_map(&mean, rows, cols, patch, colormap),
                &out.join("attn-mean.png"),
            )?;
            save_png(
                &overlay_mask(
                    &s.image.rgb,
                    &mass_mask(&mean, threshold),
                    rows,
                    cols,
                    [255, 0, 0],
                ),
                &out.join(format!("mask_th{threshold}_mean.png")),
            )?;
            if with_rollout {
                let (values, _) =
                    rollout(&s.model.vit, s.image.to_tensor(&s.device.device), patch)?;
                write_npy(&out.join("rollout.npy"), &[rows, cols], &values)?;
                save_png(
                    &render_map(&values, rows, cols, patch, colormap),
                    &out.join("rollout.png"),
                )?;
            }
            eprintln!(
                "wrote {} ([{}, {rows}, {cols}]) and {} PNGs (layer {layer})",
                out.join("attention.npy").display(),
                maps.heads,
                2 * maps.heads + 3
            );
        }
        Command::Features {
            input,
            layer,
            facet,
            stride,
            bin,
            out,
        } => {
            let s = input.open()?;
            let spec = DescriptorSpec {
                layer,
                facet,
                stride,
                log_bin: bin,
            };
            let map = extract(&s.model.vit, &s.image, spec)?;
            write_npy(&out, &[map.len(), map.dim], &map.data)?;
            eprintln!(
                "wrote {} ([{}, {}]; grid {}x{}, stride {})",
                out.display(),
                map.len(),
                map.dim,
                map.grid.rows,
                map.grid.cols,
                map.grid.stride
            );
        }
        Command::Pca(args) => pca::run(&args)?,
        Command::Figure(args) => figure::run(&args)?,
        Command::TokenNorms(args) => token_norms::run(&args)?,
        Command::Video(args) => video::run(&args)?,
        Command::Coseg(args) => coseg::run_coseg(&args)?,
        Command::EmbedFolder(args) => readout::run_embed_folder(&args)?,
        Command::Knn(args) => readout::run_knn(&args)?,
        Command::Linear(args) => readout::run_linear(&args)?,
        Command::Partseg(args) => coseg::run_partseg(&args)?,
        Command::EvalCoseg(args) => eval_coseg::run(&args)?,
        Command::Bench(args) => bench::run(&args)?,
        Command::BenchAnalysis(args) => bench_analysis::run(&args)?,
        Command::BenchTrain(args) => bench_train::run(&args)?,
        Command::Train(args) => train::run(&args)?,
        Command::EvalSynthetic(args) => train::run_eval(&args)?,
        Command::Correspond(args) => correspond::run_correspond(&args)?,
        Command::EvalPck(args) => correspond::run_eval(&args)?,
        Command::Download(args) => download::run(&args)?,
        Command::SdModels(args) => sd_models::run(&args)?,
        Command::SdFeatures(args) => sd_features::run(&args)?,
    }
    Ok(())
}
