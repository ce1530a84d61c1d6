//! `dinoscope embed-folder`, `knn` and `linear`: a labelled image folder embedded by a frozen
//! backbone, and the classes read out of those features by DINO's weighted k-NN or by
//! multinomial logistic regression.
//!
//! `embed-folder` writes `OUT.npy` (`[images, features]`, float32) and `OUT.json` beside it (the
//! files, their classes and how the features were made); `knn` and `linear` read both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::ModelArgs;
use crate::analysis::readout::embed::{
    LabelledImages, Pooling, cache_settings, embed_images, embed_images_cached, feature_dim,
};
use crate::analysis::readout::feature_cache::{self, FeatureCache};
use crate::analysis::readout::image_list::labelled_images;
use crate::analysis::readout::knn::KnnConfig;
use crate::analysis::readout::logistic::LogisticConfig;
use crate::analysis::readout::report::{Classifier, ReadoutReport, SplitSettings, read_out};
use crate::arrays::{read_npy, write_npy};
use crate::model::Resize;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PoolArg {
    /// The final-normed CLS token.
    Cls,
    /// CLS concatenated with the mean patch token (DINOv2's linear-evaluation features).
    ClsAvgpool,
}

impl From<PoolArg> for Pooling {
    fn from(p: PoolArg) -> Pooling {
        match p {
            PoolArg::Cls => Pooling::Cls,
            PoolArg::ClsAvgpool => Pooling::ClsAvgpool,
        }
    }
}

#[derive(Args, Debug)]
pub struct EmbedFolderArgs {
    /// Images in class sub-folders (`DIR/CLASS/...`), or in `DIR/train/CLASS` and `DIR/val/CLASS`
    /// for a given split; files directly in DIR are unlabelled. Or a `.csv` list of `path,label`
    /// rows (paths relative to the list; an empty label leaves the image unlabelled).
    pub folder: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// `WxH` (e.g. `98x98` as in the DINOv2 article's Omniglot example), a short side, or `none`.
    #[arg(long, default_value = "224x224")]
    pub resize: Resize,
    #[arg(long, value_enum, default_value_t = PoolArg::Cls)]
    pub pool: PoolArg,
    /// Images per forward pass (images of one size).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The features (`.npy`); the index goes beside it as `.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Where features are kept per (checkpoint, settings, image content) so that images already
    /// embedded are not run again (default: `$XDG_CACHE_HOME/dinoscope/features`, else
    /// `~/.cache/dinoscope/features`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Embed every image again and keep nothing.
    #[arg(long)]
    pub no_cache: bool,
}

/// What `embed-folder` writes beside the features.
#[derive(Serialize, Deserialize)]
pub struct FeatureIndex {
    pub weights: PathBuf,
    pub resize: String,
    pub pooling: Pooling,
    pub dim: usize,
    #[serde(flatten)]
    pub images: LabelledImages,
}

/// `feats.npy` -> `feats.json`.
pub fn index_path(features: &Path) -> PathBuf {
    features.with_extension("json")
}

pub fn run_embed_folder(args: &EmbedFolderArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let images = labelled_images(&args.folder)?;
    for skipped in &images.skipped {
        eprintln!("skipped {skipped}");
    }
    if images.paths.is_empty() {
        bail!("{}: no images found", args.folder.display());
    }
    let (model, _) = args.model.open()?;
    let pooling = Pooling::from(args.pool);
    let dim = feature_dim(&model.vit, pooling);
    eprintln!(
        "{} images, {} classes",
        images.paths.len(),
        images.classes.len()
    );
    let started = Instant::now();
    let mut last_shown = Instant::now();
    let n = images.paths.len();
    let mut progress = |done: f32, _: &str| {
        if last_shown.elapsed().as_secs_f32() > 2.0 {
            eprintln!(
                "{:.0} % ({} of {n})",
                done * 100.0,
                (done * n as f32) as usize
            );
            last_shown = Instant::now();
        }
        true
    };
    let cache_root = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(feature_cache::default_root)
    };
    let features = match cache_root {
        Some(root) => {
            let settings = cache_settings(args.resize, pooling, &model.config);
            let cache = FeatureCache::open(&root, &args.model.weights, &settings, dim)
                .with_context(|| format!("{}: cannot open the feature cache", root.display()))?;
            let (features, used) = embed_images_cached(
                &model.vit,
                &images.paths,
                args.resize,
                pooling,
                args.batch,
                &cache,
                &mut progress,
            )?;
            eprintln!(
                "{} of {n} from the feature cache ({})",
                used.hits,
                cache.dir().display()
            );
            for problem in &used.not_kept {
                eprintln!("not kept in the cache: {problem}");
            }
            features
        }
        None => embed_images(
            &model.vit,
            &images.paths,
            args.resize,
            pooling,
            args.batch,
            &mut progress,
        )?,
    };
    let seconds = started.elapsed().as_secs_f64();
    write_npy(&args.out, &[n, dim], &features)?;
    let index = FeatureIndex {
        weights: args.model.weights.clone(),
        resize: format!("{:?}", args.resize),
        pooling,
        dim,
        images,
    };
    let index_file = index_path(&args.out);
    let json = serde_json::to_string_pretty(&index)?;
    crate::atomic_file::write(&index_file, json.as_bytes())
        .with_context(|| format!("{}: cannot write the index", index_file.display()))?;
    eprintln!(
        "wrote {} ([{n}, {dim}]) and {} in {seconds:.1} s ({:.1} ms per image)",
        args.out.display(),
        index_file.display(),
        1e3 * seconds / n as f64
    );
    Ok(())
}

/// The features and how their labelled images are split.
#[derive(Args, Debug)]
pub struct SplitArgs {
    /// Features written by `embed-folder` (its `.json` index beside them).
    #[arg(long)]
    pub features: PathBuf,
    /// Share of the labelled images held out for testing (ignored when the folder had
    /// `train/` and `val/`), as scikit-learn's `train_test_split`.
    #[arg(long, default_value_t = 0.3)]
    pub test_size: f64,
    /// The split's `random_state`.
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Writes the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub split: SplitArgs,
    /// Neighbours that vote (DINO: 20).
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Temperature of the `exp(similarity / T)` vote weights (DINO: 0.07).
    #[arg(long, default_value_t = 0.07)]
    pub temperature: f32,
}

#[derive(Args, Debug)]
pub struct LinearArgs {
    #[command(flatten)]
    pub split: SplitArgs,
    /// Inverse L2 regularisation strength (scikit-learn's `C`).
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
}

/// Reads `features` and its index, checking that they belong together.
fn read_features(features: &Path) -> Result<(FeatureIndex, Vec<f32>)> {
    let index_file = index_path(features);
    let text = std::fs::read_to_string(&index_file)
        .with_context(|| format!("{}: cannot read the index", index_file.display()))?;
    let index: FeatureIndex = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an embed-folder index", index_file.display()))?;
    let (shape, values) = read_npy(features)?;
    let n = index.images.paths.len();
    let consistent = shape == [n, index.dim]
        && index.images.labels.len() == n
        && index.images.subsets.as_ref().is_none_or(|s| s.len() == n)
        && index
            .images
            .labels
            .iter()
            .flatten()
            .all(|&l| l < index.images.classes.len());
    if !consistent {
        bail!(
            "{}: shape {shape:?} does not match its index {} ({n} images of {} features)",
            features.display(),
            index_file.display(),
            index.dim
        );
    }
    Ok((index, values))
}

fn read_out_file(args: &SplitArgs, classifier: Classifier) -> Result<ReadoutReport> {
    let (index, values) = read_features(&args.features)?;
    let split = SplitSettings {
        test_size: args.test_size,
        seed: args.seed,
    };
    read_out(&index.images, &values, index.dim, split, classifier)
        .with_context(|| args.features.display().to_string())
}

pub fn knn_report(args: &KnnArgs) -> Result<ReadoutReport> {
    let config = KnnConfig {
        k: args.k,
        temperature: args.temperature,
    };
    read_out_file(&args.split, Classifier::Knn(config))
}

pub fn linear_report(args: &LinearArgs) -> Result<ReadoutReport> {
    let config = LogisticConfig {
        c: args.c,
        ..LogisticConfig::default()
    };
    let report = read_out_file(&args.split, Classifier::Logistic(config))?;
    if report.not_converged {
        eprintln!(
            "note: L-BFGS stopped after {} iterations before its tolerance",
            config.max_iterations
        );
    }
    Ok(report)
}

fn print_and_write(what: &str, report: &ReadoutReport, out: Option<&Path>) -> Result<()> {
    println!(
        "{what}: accuracy {:.4} on {} test images ({} training)",
        report.accuracy,
        report.test.len(),
        report.train.len()
    );
    for (class, accuracy) in report.classes.iter().zip(&report.per_class_accuracy) {
        match accuracy {
            Some(a) => println!("  {class}: {a:.4}"),
            None => println!("  {class}: no test image"),
        }
    }
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(report)?;
        crate::atomic_file::write(out, json.as_bytes())
            .with_context(|| format!("{}: cannot write the report", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

pub fn run_knn(args: &KnnArgs) -> Result<()> {
    let what = format!("k-NN (k = {}, T = {})", args.k, args.temperature);
    print_and_write(&what, &knn_report(args)?, args.split.out.as_deref())
}

pub fn run_linear(args: &LinearArgs) -> Result<()> {
    let what = format!("logistic regression (C = {})", args.c);
    print_and_write(&what, &linear_report(args)?, args.split.out.as_deref())
}
