//! Stable Diffusion feature extraction, one image, timed: loads a diffusers folder's UNet (only as
//! far as the preset's taps) and VAE encoder, then runs DIFT or SD-DINO with the preset's defaults.
//!
//! `cargo run --example sd_bench -- --model DIR --preset dift|sd-dino --image PATH
//! [--device cpu|wgpu] [--size N] [--ensemble N] [--runs N] [--context FILE]`
//!
//! The text conditioning is read from `context.safetensors` (tensor `context`, `[1, 77, D]`) in the
//! folder, as `tools/make_sd_fullsize_random.py` writes it, so no text encoder is needed. Prints
//! one `key=value` line per run for `tools/bench_sd_vs_diffusers.sh`: load and feature wall
//! times, and the process's peak resident memory (VmHWM; host memory only, not the GPU's).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Parser;
use dinoscope::analysis::features::FeatureMap;
use dinoscope::analysis::sd_features::extract::{NoiseSource, SdNetworks, dift, sd_dino};
use dinoscope::analysis::sd_features::{SdFeatureSettings, SdPreset};
use dinoscope::model::backend;
use dinoscope::model::sd::unet::{Unet, UnetTap};
use dinoscope::model::sd::vae::VaeEncoder;
use dinoscope::model::sd::{SafetensorsFile, SdFolder};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Backend {
    Cpu,
    Wgpu,
}

#[derive(Parser)]
struct Args {
    /// A diffusers folder with unet/ and vae/.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum)]
    preset: SdPreset,
    #[arg(long)]
    image: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    device: Backend,
    /// SD input side (default: the preset's).
    #[arg(long)]
    size: Option<u32>,
    /// Noises per image (default: the preset's).
    #[arg(long)]
    ensemble: Option<usize>,
    /// Feature runs on the same networks; on a GPU the first one includes burn's autotuning.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// `[1, 77, D]` text embedding (default: MODEL/context.safetensors).
    #[arg(long)]
    context: Option<PathBuf>,
}

/// Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status).
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("/proc/self/status has no VmHWM line")?;
    Ok(kib / 1024.0)
}

/// Mean |x| of a feature map, to see the random network gave finite, non-trivial values.
fn mean_abs(map: &FeatureMap) -> f64 {
    map.data.iter().map(|v| v.abs() as f64).sum::<f64>() / map.data.len().max(1) as f64
}

fn describe(map: &FeatureMap) -> String {
    format!("{}x{}x{}", map.grid.rows, map.grid.cols, map.dim)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = match args.device {
        Backend::Cpu => backend::cpu(),
        Backend::Wgpu => backend::gpu()?,
    };
    let mut settings = SdFeatureSettings::preset(args.preset);
    if let Some(size) = args.size {
        settings.size = size;
    }
    if let Some(ensemble) = args.ensemble {
        settings.ensemble = ensemble;
    }
    settings.validate()?;
    let image = image::open(&args.image)
        .with_context(|| format!("{}", args.image.display()))?
        .to_rgb8();
    let folder = SdFolder::open(&args.model)?;
    let context_path = args
        .context
        .unwrap_or_else(|| args.model.join("context.safetensors"));
    let file = SafetensorsFile::open(&context_path)?;
    let shape = file.shape("context").map(<[usize]>::to_vec);
    let Some([1, tokens, width]) = shape
        .as_deref()
        .and_then(|s| <[usize; 3]>::try_from(s).ok())
    else {
        bail!(
            "{}: expected a tensor `context` of shape [1, 77, D], found {shape:?}",
            context_path.display()
        );
    };
    let values = file.read("context", &[1, tokens, width])?;
    println!(
        "# {} ({}), {:?} preset, size {}, ensemble {}, on {}",
        folder.version,
        args.model.display(),
        args.preset,
        settings.size,
        settings.ensemble,
        device.description
    );

    let start = Instant::now();
    let taps: Vec<UnetTap> = match args.preset {
        SdPreset::Dift => vec![UnetTap::UpBlock(settings.up_block)],
        SdPreset::SdDino => [0, 1, 2].map(UnetTap::UpBlockLayer1).to_vec(),
    };
    let unet_dir = folder.unet.config.parent().unwrap_or(&args.model);
    let vae_dir = folder.vae.config.parent().unwrap_or(&args.model);
    let nets = SdNetworks {
        unet: Unet::load(unet_dir, &device.device, &taps)?,
        vae: VaeEncoder::load(vae_dir, &device.device)?,
    };
    let context: Tensor<3> =
        Tensor::from_data(TensorData::new(values, [1, tokens, width]), &device.device);
    let load_s = start.elapsed().as_secs_f64();

    for run in 0..args.runs.max(1) {
        let start = Instant::now();
        let mut quiet = |_: f32, _: &str| true;
        let out = match args.preset {
            SdPreset::Dift => {
                let map = dift(
                    &nets,
                    &image,
                    &context,
                    &settings,
                    NoiseSource::Seeded,
                    &mut quiet,
                )?;
                format!(
                    "up_block{}={} mean_abs={:.4}",
                    settings.up_block,
                    describe(&map),
                    mean_abs(&map)
                )
            }
            SdPreset::SdDino => {
                let taps = sd_dino(
                    &nets,
                    &image,
                    &context,
                    &settings,
                    NoiseSource::Seeded,
                    &mut quiet,
                )?
                .taps;
                [("s5", &taps.s5), ("s4", &taps.s4), ("s3", &taps.s3)]
                    .map(|(name, map)| {
                        format!("{name}={} mean_abs={:.4}", describe(map), mean_abs(map))
                    })
                    .join(" ")
            }
        };
        let features_s = start.elapsed().as_secs_f64();
        println!(
            "run={run} load_s={load_s:.2} features_s={features_s:.2} peak_rss_mib={:.0} {out}",
            peak_rss_mib()?
        );
    }
    Ok(())
}
