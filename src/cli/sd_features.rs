//! `dinoscope sd-features`: Stable Diffusion features of an image (DIFT or SD-DINO preset), or the
//! co-PCA'd SD-DINO descriptors of a pair, as float32 arrays `[C, h, w]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::analysis::features::FeatureMap;
use crate::analysis::sd_features::{
    FeatureSource, Placed, Placement, PosteriorChoice, SD_DINO_DINO_SIZE, SD_DINO_PCA_DIMS,
    SdCaches, SdFeatureSettings, SdImageFeatures, SdPreset, SdSession, dino_placed, fuse_set,
    sd_descriptors,
};
use crate::arrays::{read_npy, transpose, write_npy};
use crate::model::backend;
use crate::model::download::hub::hub_cache_dir;
use crate::model::preprocess::load_rgb;
use crate::model::raw_tensor::RawTensor;
use crate::model::save::serialize_safetensors;
use crate::model::sd::{resolve_sd_model, sd_cache_dir};
use crate::model::{ComputeDevice, DeviceChoice, Vit};
use image::RgbImage;

#[derive(Args, Debug)]
pub struct SdFeaturesArgs {
    /// SD model: a diffusers folder, a hub id (`org/name`) in the Hugging Face cache, or a
    /// catalogue id (`sd15`, `sd21`, `sd21_base`; `dinoscope download` fetches them).
    #[arg(long)]
    pub sd: String,
    /// The image; give `--image` twice for SD-DINO's co-PCA'd pair.
    #[arg(long, required = true, num_args = 1)]
    pub image: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = SdPreset::Dift)]
    pub preset: SdPreset,
    #[command(flatten)]
    pub knobs: SdKnobs,
    /// The noises `[E, 4, s/8, s/8]` (`s` the UNet input side: `--size`, or SD-DINO's 512 px
    /// window) as `.npy`, instead of drawing them from the seed: reproduces a Python run exactly.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Output: `.npy` for one map `[C, h, w]`; `.safetensors` for SD-DINO's taps `s5`, `s4`, `s3`
    /// of one image, or the pair's co-PCA'd maps `a` and `b`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub caches: SdCacheArgs,
}

/// The knobs of SD feature extraction; unset ones keep the preset's value.
#[derive(Args, Debug, Clone, Default)]
pub struct SdKnobs {
    /// Side of the square SD input in pixels (a multiple of 64; DIFT 768, SD-DINO 960).
    #[arg(long)]
    pub size: Option<u32>,
    /// Diffusion timestep (DIFT 261, SD-DINO 100).
    #[arg(long = "t")]
    pub timestep: Option<usize>,
    /// DIFT's tap: the output of this up block (default 1).
    #[arg(long)]
    pub up_block: Option<usize>,
    /// Noises averaged per image (DIFT 8, SD-DINO 1).
    #[arg(long)]
    pub ensemble: Option<usize>,
    /// Text prompt (default: the empty prompt), e.g. "a photo of a cat".
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Latent the VAE gives the UNet (DIFT `sample`, SD-DINO `mean`).
    #[arg(long, value_enum)]
    pub posterior: Option<PosteriorChoice>,
    /// SD-DINO: one pass over the whole input instead of the four 512 px windows.
    #[arg(long)]
    pub no_windows: bool,
}

impl SdKnobs {
    pub fn settings(&self, preset: SdPreset) -> SdFeatureSettings {
        let mut s = SdFeatureSettings::preset(preset);
        s.size = self.size.unwrap_or(s.size);
        s.timestep = self.timestep.unwrap_or(s.timestep);
        s.up_block = self.up_block.unwrap_or(s.up_block);
        s.ensemble = self.ensemble.unwrap_or(s.ensemble);
        s.prompt = self.prompt.clone().unwrap_or(s.prompt);
        s.seed = self.seed.unwrap_or(s.seed);
        s.posterior = self.posterior.unwrap_or(s.posterior);
        s.windows &= !self.no_windows;
        s
    }
}

/// Where models are found and results cached.
#[derive(Args, Debug, Clone, Default)]
pub struct SdCacheArgs {
    /// Hugging Face hub cache to find `--sd` ids in (default: `$HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    #[arg(long)]
    pub hf_cache: Option<PathBuf>,
    /// Cache of prompt embeddings and per-image features (default: `$DINOSCOPE_SD_CACHE`, else
    /// `$XDG_CACHE_HOME/dinoscope/sd`, else `~/.cache/dinoscope/sd`).
    #[arg(long)]
    pub sd_cache: Option<PathBuf>,
    /// Keep nothing on disk.
    #[arg(long)]
    pub no_sd_cache: bool,
}

impl SdCacheArgs {
    /// Opens the `--sd` model with `settings` on `device`, reporting what it found on stderr.
    pub fn session(
        &self,
        sd: &str,
        settings: SdFeatureSettings,
        device: &ComputeDevice,
    ) -> Result<SdSession> {
        let found = resolve_sd_model(sd, self.hf_cache.clone().or_else(hub_cache_dir).as_deref())?;
        eprintln!(
            "SD model: {} ({}), {}",
            found.id,
            found.folder.version.description(),
            device.description
        );
        let caches = match (
            self.no_sd_cache,
            self.sd_cache.clone().or_else(sd_cache_dir),
        ) {
            (false, Some(dir)) => SdCaches::on_disk(&dir),
            _ => SdCaches::in_memory(),
        };
        Ok(SdSession::new(
            found.folder,
            settings,
            caches,
            &device.device,
        )?)
    }
}

/// Stable Diffusion descriptors instead of, or fused with, the model's (SD-DINO, DIFT).
#[derive(Args, Debug)]
pub struct SdSourceArgs {
    /// `dino`: the model's descriptors as set above; `sd`: Stable Diffusion's (`--sd`); `fused`:
    /// SD's fused with the model's last-block tokens of the image placed as SD places it, at
    /// `--dino-size` (SD-DINO: DINOv2-B/14 at 840 px).
    #[arg(long, value_enum, default_value_t = FeatureSource::Dino)]
    pub features: FeatureSource,
    /// SD model for `--features sd|fused`: a diffusers folder, a cached hub id or `sd15`/`sd21`.
    #[arg(long, required_if_eq_any = [("features", "sd"), ("features", "fused")])]
    pub sd: Option<String>,
    #[arg(long, value_enum, default_value_t = SdPreset::SdDino)]
    pub sd_preset: SdPreset,
    #[command(flatten)]
    pub knobs: SdKnobs,
    /// Side of the square the model sees for `--features fused` (rounded down to its patch).
    #[arg(long, default_value_t = SD_DINO_DINO_SIZE)]
    pub dino_size: u32,
    #[command(flatten)]
    pub caches: SdCacheArgs,
}

/// The ViT side of a fusion: its `layer` tokens at `size`, weighted `[sd, dino]`.
#[derive(Clone, Copy)]
pub struct DinoSide<'a> {
    pub vit: &'a Vit,
    pub size: u32,
    pub layer: usize,
    pub weights: [f32; 2],
}

/// The images' SD descriptors (co-PCA over all of them for SD-DINO) placed on their pixels, fused
/// with the ViT's tokens of the same placement when `dino` is given.
pub fn placed_descriptors(
    session: &mut SdSession,
    paths: &[&Path],
    images: &[RgbImage],
    dino: Option<DinoSide<'_>>,
) -> Result<Vec<Placed>> {
    let placement = Placement::of(session.settings().preset);
    let mut features = Vec::with_capacity(images.len());
    for (path, image) in paths.iter().zip(images) {
        features.push(
            session
                .features(image, &mut stage_printer(path))
                .with_context(|| format!("{}: SD features", path.display()))?,
        );
    }
    let sd = sd_descriptors(&features, SD_DINO_PCA_DIMS)?;
    let Some(dino) = dino else {
        return Ok(sd);
    };
    let mut tokens = Vec::with_capacity(sd.len());
    for (image, path) in images.iter().zip(paths) {
        tokens.push(
            dino_placed(dino.vit, image, placement, dino.size, dino.layer)
                .with_context(|| format!("{}: DINO tokens", path.display()))?,
        );
    }
    Ok(fuse_set(&sd, &tokens, dino.weights)?)
}

/// Prints each new stage on stderr; never cancels.
pub fn stage_printer(image: &Path) -> impl FnMut(f32, &str) -> bool + '_ {
    let mut last = String::new();
    move |done, what| {
        if what != last {
            eprintln!("{}: {:>3.0}% {what}", image.display(), done * 100.0);
            last = what.to_string();
        }
        true
    }
}

pub fn run(args: &SdFeaturesArgs) -> Result<()> {
    let settings = args.knobs.settings(args.preset);
    let extension = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match (args.preset, args.image.len(), extension.as_str()) {
        (_, n, _) if n > 2 => bail!("give one --image, or two for SD-DINO's pair"),
        (SdPreset::Dift, 2, _) => {
            bail!("DIFT describes one image at a time; give one --image (SD-DINO takes a pair)")
        }
        (SdPreset::Dift, 1, "npy") => {}
        (SdPreset::Dift, _, _) => bail!("{}: DIFT writes one `.npy`", args.out.display()),
        (SdPreset::SdDino, _, "safetensors") => {}
        (SdPreset::SdDino, _, _) => bail!(
            "{}: SD-DINO writes several maps; give a `.safetensors` output",
            args.out.display()
        ),
    }
    let noise = match &args.noise {
        Some(path) => Some(read_npy(path).with_context(|| format!("--noise {}", path.display()))?),
        None => None,
    };
    let images = args
        .image
        .iter()
        .map(|path| load_rgb(path).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let device = backend::select(args.device)?;
    let mut session = args.caches.session(&args.sd, settings, &device)?;
    let mut features = Vec::new();
    for (path, image) in args.image.iter().zip(&images) {
        let mut progress = stage_printer(path);
        let computed = match &noise {
            Some((_, values)) => session.features_with_noise(image, values, &mut progress),
            None => session.features(image, &mut progress),
        };
        features.push(computed.with_context(|| path.display().to_string())?);
    }
    if let Some(problem) = session.cache_problem() {
        eprintln!("warning: {problem}");
    }
    write_output(&args.out, &features)
}

/// `[cells, C]` as `[C, rows, cols]`.
fn channels_first(map: &FeatureMap) -> RawTensor {
    RawTensor {
        shape: vec![map.dim, map.grid.rows, map.grid.cols],
        data: transpose(&map.data, map.grid.len(), map.dim),
    }
}

fn write_output(out: &Path, features: &[SdImageFeatures]) -> Result<()> {
    let tensors: Vec<(String, RawTensor)> = match features {
        [SdImageFeatures::Dift { map, .. }] => {
            let t = channels_first(map);
            write_npy(out, &t.shape, &t.data)?;
            eprintln!("wrote {} {:?}", out.display(), t.shape);
            return Ok(());
        }
        [SdImageFeatures::SdDino(taps)] => [
            ("s5", &taps.taps.s5),
            ("s4", &taps.taps.s4),
            ("s3", &taps.taps.s3),
        ]
        .into_iter()
        .map(|(name, map)| (name.to_string(), channels_first(map)))
        .collect(),
        _ => sd_descriptors(features, SD_DINO_PCA_DIMS)?
            .iter()
            .zip(["a", "b"])
            .map(|(placed, name)| (name.to_string(), channels_first(&placed.map)))
            .collect(),
    };
    let mut metadata = HashMap::new();
    for (feature, name) in features.iter().zip(["a", "b"]) {
        if let SdImageFeatures::SdDino(taps) = feature {
            let l = &taps.letterbox;
            metadata.insert(
                format!("letterbox_{name}"),
                format!(
                    "canvas {} scaled {}x{} offset {},{} original {}x{}",
                    l.canvas,
                    l.scaled.0,
                    l.scaled.1,
                    l.offset.0,
                    l.offset.1,
                    l.original.0,
                    l.original.1
                ),
            );
        }
    }
    let bytes = serialize_safetensors(&tensors, metadata)?;
    crate::atomic_file::write(out, &bytes).with_context(|| out.display().to_string())?;
    for (name, t) in &tensors {
        eprintln!("wrote {} {name} {:?}", out.display(), t.shape);
    }
    Ok(())
}
