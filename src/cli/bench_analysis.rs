//! `dinoscope bench-analysis`: times the dense analyses on ViT-S/8 stride-4 features (random
//! weights, as `bench`), and writes the features it used so `tools/bench_analysis_torch.py` times
//! PyTorch / scikit-learn / faiss on identical data (`tools/bench_analysis.sh` runs both).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{expand_image_paths, open_image};
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::{BuddySide, ImageDescriptors, find_best_buddies, query_point};
use crate::analysis::coseg::{CosegConfig, cosegment};
use crate::analysis::features::{
    DescriptorSpec, FeatureMap, default_saliency_heads, extract, saliency,
};
use crate::analysis::similarity::Score;
use crate::arrays::write_npy;
use crate::model::config::Arch;
use crate::model::{DeviceChoice, Facet, PreparedImage, Resize, Vit, backend};

#[derive(Args, Debug)]
pub struct BenchAnalysisArgs {
    /// At least six images: the first two make the 224x224 pair, the first six the co-segmentation set.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Where the features for the PyTorch side are written.
    #[arg(long)]
    pub data_out: PathBuf,
    #[arg(long, default_value_t = 3, value_parser = super::timed_iterations)]
    pub iters: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

fn median_ms(iters: usize, mut run: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn save(map: &FeatureMap, path: PathBuf) -> Result<()> {
    Ok(write_npy(&path, &[map.len(), map.dim], &map.data)?)
}

pub fn run(args: &BenchAnalysisArgs) -> Result<()> {
    let paths = expand_image_paths(&args.images)?;
    if paths.len() < 6 {
        bail!(
            "bench-analysis needs at least 6 images, got {}",
            paths.len()
        );
    }
    let compute = backend::select(args.device)?;
    let vit = Vit::init(Arch::VitS8.config(), &compute.device);
    let patch = vit.config().patch_size;
    let square = Resize::Exact {
        width: 224,
        height: 224,
    };
    let pair: Vec<PreparedImage> = paths[..2]
        .iter()
        .map(|p| open_image(p, square, patch))
        .collect::<Result<_>>()?;
    let spec = |layer, log_bin| DescriptorSpec {
        layer,
        facet: Facet::Key,
        stride: Some(4),
        log_bin,
    };
    let heads = default_saliency_heads(&vit);
    std::fs::create_dir_all(&args.data_out)
        .with_context(|| format!("{}: cannot create directory", args.data_out.display()))?;
    let mut keys = Vec::new();
    let mut binned = Vec::new();
    let mut saliencies = Vec::new();
    for (image, name) in pair.iter().zip(["a", "b"]) {
        let k = extract(&vit, image, spec(11, false))?;
        let b = extract(&vit, image, spec(9, true))?;
        let (s, _) = saliency(&vit, image, Some(4), &heads)?;
        save(&k, args.data_out.join(format!("keys_{name}.npy")))?;
        save(&b, args.data_out.join(format!("binned_{name}.npy")))?;
        write_npy(
            &args.data_out.join(format!("saliency_{name}.npy")),
            &[s.len()],
            &s,
        )?;
        keys.push(k);
        binned.push(b);
        saliencies.push(s);
    }
    let pixels: Vec<PixelMap> = pair
        .iter()
        .zip(&keys)
        .map(|(image, map)| PixelMap::new(map.grid, image))
        .collect();

    let source = ImageDescriptors::new(&keys[0], pixels[0], Score::Cosine);
    let target = ImageDescriptors::new(&keys[1], pixels[1], Score::Cosine);
    let mut click = 0;
    let point_query = median_ms(200, || {
        let point = pixels[0].patch_center(click % keys[0].len());
        click += 7;
        std::hint::black_box(query_point(&source, point, &[&target]));
    });
    println!("name=point_query median_ms={point_query:.4}");

    let side = |i: usize| BuddySide {
        features: &binned[i],
        saliency: &saliencies[i],
        pixels: pixels[i],
    };
    let mut pairs = 0;
    let buddies = median_ms(args.iters, || {
        pairs = find_best_buddies(side(0), side(1), 0.05, 10, Score::Cosine)
            .pairs
            .len();
    });
    println!("name=best_buddies median_ms={buddies:.2} pairs={pairs}");

    let set: Vec<PreparedImage> = paths[..6]
        .iter()
        .map(|p| open_image(p, Resize::ShortSide(224), patch))
        .collect::<Result<_>>()?;
    let config = CosegConfig::default();
    let mut failure = None;
    let coseg = median_ms(args.iters, || {
        if let Err(e) = cosegment(&vit, &set, &config, &mut |_, _| true) {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        bail!("co-segmentation failed: {e}");
    }
    println!(
        "name=coseg6 median_ms={coseg:.1} device=\"{}\"",
        compute.description
    );
    Ok(())
}
