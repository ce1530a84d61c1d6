//! `dinoscope bench`: median forward time of a randomly initialised model, for comparing with PyTorch.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Distribution, Tensor};
use clap::Args;

use crate::model::config::Arch;
use crate::model::{DeviceChoice, Vit, backend};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Arch::VitS16)]
    pub arch: Arch,
    /// Square input side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Patch-embedding stride (default: the patch size); 4 on ViT-S/8 is dino-vit-features' setting.
    #[arg(long)]
    pub stride: Option<usize>,
    #[arg(long, default_value_t = 20, value_parser = super::timed_iterations)]
    pub iters: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let compute = backend::select(args.device)?;
    let device = compute.device;
    let vit = Vit::init(args.arch.config(), &device);
    let patch = vit.config().patch_size;
    let stride = args.stride.unwrap_or(patch);
    if stride == 0 || stride > patch || !patch.is_multiple_of(stride) {
        anyhow::bail!("--stride {stride} must divide the patch size {patch}");
    }
    let input = Tensor::<4>::random(
        [args.batch, 3, args.size, args.size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.warmup + args.iters {
        let start = Instant::now();
        let (out, _) = vit.forward_tokens(input.clone(), stride);
        // Reading the result back forces completion on every backend.
        let _ = out.into_data();
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "arch={} size={} stride={stride} batch={} iters={} device=\"{}\" median_ms={median:.3} min_ms={:.3}",
        args.arch, args.size, args.batch, args.iters, compute.description, times[0]
    );
    Ok(())
}
