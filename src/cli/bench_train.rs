//! `dinoscope bench-train`: training throughput of the default recipe (vit-nano, synthetic scenes), for
//! comparing with the same recipe in PyTorch (`tools/bench_train_torch.py`, both run by
//! `tools/bench_train.sh`).

use anyhow::{Context, Result};
use clap::Args;

use crate::model::{DeviceChoice, backend};
use crate::train::TrainConfig;
use crate::train::run::{METRICS_FILE, Metrics, RunOptions, train};

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// Timed iterations.
    #[arg(long, default_value_t = 20, value_parser = super::timed_iterations)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Images per iteration (the default recipe's 32).
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// Throughput over the timed iterations: (images/s with data loading, images/s of the training step
/// alone, share of the time spent loading and augmenting).
fn throughput(lines: &[Metrics], batch: usize) -> (f64, f64, f64) {
    let total: f64 = lines.iter().map(|m| batch as f64 / m.images_per_s).sum();
    let data: f64 = lines.iter().map(|m| m.data_s).sum();
    let images = (lines.len() * batch) as f64;
    (images / total, images / (total - data), data / total)
}

pub fn run(args: &BenchTrainArgs) -> Result<()> {
    let compute = backend::select(args.device)?;
    let defaults = TrainConfig::default();
    let config = TrainConfig {
        batch: args.batch.unwrap_or(defaults.batch),
        eval_every: 0,
        probe_every: 0,
        ..defaults
    };
    let dir = tempfile_dir()?;
    let options = RunOptions {
        out: dir.clone(),
        resume: false,
        max_steps: Some(args.warmup + args.iters),
        save_every: 0,
        device: compute.device,
        progress: false,
    };
    let summary = train(config.clone(), &options);
    let metrics = std::fs::read_to_string(dir.join(METRICS_FILE));
    std::fs::remove_dir_all(&dir).ok();
    summary?;
    let lines: Vec<Metrics> = metrics
        .context("metrics")?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let timed = lines.get(args.warmup..).unwrap_or_default();
    if timed.is_empty() {
        anyhow::bail!("no timed iterations: the schedule is shorter than --warmup");
    }
    let (images_per_s, step_images_per_s, data_share) = throughput(timed, config.batch);
    let a = &config.augment;
    println!(
        "arch={} batch={} crops=2x{}+{}x{} out_dim={} iters={} device=\"{}\" rayon_threads={} images_per_s={images_per_s:.2} \
         step_images_per_s={step_images_per_s:.2} data_share={data_share:.3}",
        config.arch,
        config.batch,
        a.global_size,
        a.local_crops,
        a.local_size,
        config.head.out_dim,
        timed.len(),
        compute.description,
        rayon::current_num_threads()
    );
    Ok(())
}

/// A fresh directory for the run's files (removed afterwards).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dinoscope-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_separates_data_time() {
        let line = |images_per_s: f64, data_s: f64| Metrics {
            step: 0,
            epoch: 0,
            loss: 1.0,
            lr: 0.0,
            wd: 0.0,
            momentum: 0.0,
            teacher_temp: 0.04,
            teacher_entropy: 0.0,
            kl: 1.0,
            images_per_s,
            data_s,
            collapse: None,
            eval: None,
            eval_s: None,
            probe_s: None,
        };
        // 2 iterations of 10 images taking 1 s and 4 s, of which 0.5 s and 0.5 s loading.
        let (all, step, share) = throughput(&[line(10.0, 0.5), line(2.5, 0.5)], 10);
        assert!((all - 4.0).abs() < 1e-12);
        assert!((step - 5.0).abs() < 1e-12);
        assert!((share - 0.2).abs() < 1e-12);
    }
}
