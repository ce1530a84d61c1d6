//! The two recipes end to end: image -> VAE encoder (once per image or window) -> noised latent
//! -> UNet up to the last tap -> feature maps. DIFT follows Tsingularity/dift `SDFeaturizer`,
//! except that the VAE runs once for the whole ensemble rather than once per copy (the copies are
//! identical); SD-DINO follows Junyi42/sd-dino through ODISE's `slide_forward` and `LdmExtractor`,
//! with the empty prompt in place of ODISE's learned implicit captioner.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::co_pca::SdTaps;
use super::image::{Letterbox, squash, to_signed_unit};
use super::settings::{PosteriorChoice, SdFeatureSettings, SdPreset, SdSettingsError};
use super::windows::{OverlapMean, Windows};
use crate::analysis::features::FeatureMap;
use crate::analysis::progress::{Cancelled, Progress, report};
use crate::model::Grid;
use crate::model::host::{HostReadError, f32_values};
use crate::model::sd::schedule::{NoiseSchedule, ScheduleError};
use crate::model::sd::unet::{KeepGoing, Unet, UnetInputError, UnetTap};
use crate::model::sd::vae::{Posterior, VaeEncoder};
use crate::model::sd::{SdFolder, SdLoadError};
use crate::rng::Rng;

/// The networks a recipe runs.
#[derive(Debug)]
pub struct SdNetworks {
    pub unet: Unet,
    pub vae: VaeEncoder,
}

impl SdNetworks {
    /// The folder's UNet, read only as far as `settings`' taps, and its VAE encoder.
    pub fn load(
        folder: &SdFolder,
        settings: &SdFeatureSettings,
        device: &Device,
    ) -> Result<SdNetworks, SdLoadError> {
        Ok(SdNetworks {
            unet: Unet::load_files(
                &folder.unet.config,
                &folder.unet.weights,
                device,
                &settings.unet_taps(),
            )?,
            vae: VaeEncoder::load_files(&folder.vae.config, &folder.vae.weights, device)?,
        })
    }
}

/// Where the noise of the noised latents comes from.
#[derive(Clone, Copy, Debug)]
pub enum NoiseSource<'a> {
    /// Drawn from the settings' seed.
    Seeded,
    /// Given, to reproduce a run made elsewhere: `[E, 4, h/8, w/8]` of the UNet pass's input, one
    /// per ensemble member (SD-DINO shares each member's noise across its windows, as ODISE does).
    Injected(&'a [f32]),
}

#[derive(Debug, thiserror::Error)]
pub enum SdFeatureError {
    #[error(transparent)]
    Settings(#[from] SdSettingsError),
    #[error(
        "the given noise has {found} values; {ensemble} x 4 x {side} x {side} = {expected} are needed"
    )]
    NoiseShape {
        found: usize,
        expected: usize,
        ensemble: usize,
        side: usize,
    },
    #[error("the UNet cannot run this input: {0}")]
    Unet(#[from] UnetInputError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Host(#[from] HostReadError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error("the windows left part of the input without features")]
    Uncovered,
}

/// One image's Stable Diffusion output, before the set-wide step.
#[derive(Clone, Debug)]
pub enum SdImageFeatures {
    /// DIFT's map of the squashed input, and the original `(width, height)`.
    Dift {
        map: FeatureMap,
        original: (u32, u32),
    },
    /// SD-DINO's taps of the letterboxed input.
    SdDino(SdDinoTaps),
}

/// SD-DINO's taps of one image and where the image lies on the letterboxed input.
#[derive(Clone, Debug)]
pub struct SdDinoTaps {
    pub taps: SdTaps,
    pub letterbox: Letterbox,
}

/// The preset's features of one image: DIFT's map or SD-DINO's taps.
pub fn sd_image_features(
    nets: &SdNetworks,
    image: &RgbImage,
    context: &Tensor<3>,
    settings: &SdFeatureSettings,
    noise: NoiseSource<'_>,
    progress: &mut Progress<'_>,
) -> Result<SdImageFeatures, SdFeatureError> {
    Ok(match settings.preset {
        SdPreset::Dift => SdImageFeatures::Dift {
            map: dift(nets, image, context, settings, noise, progress)?,
            original: image.dimensions(),
        },
        SdPreset::SdDino => {
            SdImageFeatures::SdDino(sd_dino(nets, image, context, settings, noise, progress)?)
        }
    })
}

/// DIFT's features of `image`: the squashed `size x size` input's `up_block` output, averaged
/// over the ensemble; `[cells, channels]` with one cell per `size / rows` pixels of the input.
pub fn dift(
    nets: &SdNetworks,
    image: &RgbImage,
    context: &Tensor<3>,
    settings: &SdFeatureSettings,
    noise: NoiseSource<'_>,
    progress: &mut Progress<'_>,
) -> Result<FeatureMap, SdFeatureError> {
    settings.validate()?;
    let size = settings.size;
    let device = context.device();
    let input = squash(image, size, size);
    let passes = settings.ensemble as f32 + 1.0;
    report(progress, 0.0, "VAE encoder")?;
    let posterior = nets.vae.encode(image_tensor(&input, &device));
    let noises = Noises::new(settings, noise, size as usize / 8)?;
    let tap = settings.unet_taps();
    let mut sum: Option<Tensor<4>> = None;
    for member in 0..settings.ensemble {
        let what = format!("UNet pass {} of {}", member + 1, settings.ensemble);
        let start = member as f32 + 1.0;
        report(progress, start / passes, &what)?;
        let mut within = |done: f32| progress((start + done) / passes, &what);
        let features = unet_pass(
            nets,
            &posterior,
            &noises,
            settings,
            member,
            context,
            &tap,
            &mut within,
        )?
        .remove(0);
        sum = Some(match sum {
            Some(s) => s + features,
            None => features,
        });
    }
    let mean = sum
        .map(|s| s.div_scalar(settings.ensemble as f32))
        .ok_or(SdSettingsError::Ensemble)?;
    report(progress, 1.0, "done")?;
    feature_map(mean, (size as usize, size as usize))
}

/// SD-DINO's taps s5, s4, s3 of `image` letterboxed to `size`: per window (or once over the whole
/// input), the posterior latent noised at the timestep, the UNet's layer-1 outputs of up blocks
/// 0, 1 and 2, averaged over the ensemble and over overlapping windows.
pub fn sd_dino(
    nets: &SdNetworks,
    image: &RgbImage,
    context: &Tensor<3>,
    settings: &SdFeatureSettings,
    noise: NoiseSource<'_>,
    progress: &mut Progress<'_>,
) -> Result<SdDinoTaps, SdFeatureError> {
    settings.validate()?;
    let size = settings.size as usize;
    let device = context.device();
    let letterbox = Letterbox::new(image.dimensions(), settings.size);
    let canvas = letterbox.apply(image);
    let windows = Windows::new(size, size, settings.pass_size() as usize);
    let noises = Noises::new(settings, noise, windows.crop / 8)?;
    let taps = settings.unet_taps();
    let mut means: Vec<OverlapMean> = Vec::new();
    let steps = (windows.origins.len() * (settings.ensemble + 1)) as f32;
    let mut step = 0.0;
    for (index, &(x, y)) in windows.origins.iter().enumerate() {
        let window = format!("window {} of {}", index + 1, windows.origins.len());
        report(progress, step / steps, &format!("VAE encoder, {window}"))?;
        step += 1.0;
        let crop = image::imageops::crop_imm(
            &canvas,
            x as u32,
            y as u32,
            windows.crop as u32,
            windows.crop as u32,
        )
        .to_image();
        let posterior = nets.vae.encode(image_tensor(&crop, &device));
        let mut sums: Option<Vec<Tensor<4>>> = None;
        for member in 0..settings.ensemble {
            let what = format!("UNet, {window}");
            report(progress, step / steps, &what)?;
            let start = step;
            let mut within = |done: f32| progress((start + done) / steps, &what);
            let out = unet_pass(
                nets,
                &posterior,
                &noises,
                settings,
                member,
                context,
                &taps,
                &mut within,
            )?;
            step += 1.0;
            sums = Some(match sums {
                Some(s) => s.into_iter().zip(out).map(|(a, b)| a + b).collect(),
                None => out,
            });
        }
        for (level, tap) in sums.into_iter().flatten().enumerate() {
            let tap = tap.div_scalar(settings.ensemble as f32);
            let [_, dim, rows, cols] = tap.dims();
            if means.len() == level {
                means.push(OverlapMean::new((size, size), windows.crop / rows, dim));
            }
            let cells = channels_last(tap)?;
            means[level].add((x, y), rows, cols, &cells);
        }
    }
    report(progress, 1.0, "done")?;
    let mut maps = means.into_iter().filter_map(OverlapMean::finish);
    match (maps.next(), maps.next(), maps.next()) {
        (Some(s5), Some(s4), Some(s3)) => Ok(SdDinoTaps {
            taps: SdTaps { s5, s4, s3 },
            letterbox,
        }),
        _ => Err(SdFeatureError::Uncovered),
    }
}

/// One ensemble member's UNet pass: its clean latent, noised at the timestep, through the UNet to
/// `taps`, asking `keep_going` between layers.
#[allow(clippy::too_many_arguments)]
fn unet_pass(
    nets: &SdNetworks,
    posterior: &Posterior,
    noises: &Noises<'_>,
    settings: &SdFeatureSettings,
    member: usize,
    context: &Tensor<3>,
    taps: &[UnetTap],
    keep_going: &mut KeepGoing<'_>,
) -> Result<Vec<Tensor<4>>, SdFeatureError> {
    let device = context.device();
    let latent = noises.latent(posterior, settings.posterior, member, &device);
    let noised = NoiseSchedule::stable_diffusion().add_noise(
        latent,
        noises.noise(member, &device),
        settings.timestep,
    )?;
    nets.unet
        .forward_cancellable(
            noised,
            &[settings.timestep as f32],
            context.clone(),
            taps,
            keep_going,
        )?
        .ok_or(SdFeatureError::Cancelled(Cancelled))
}

/// The per-member noises: drawn from the seed, or sliced from injected values.
struct Noises<'a> {
    injected: Option<&'a [f32]>,
    seed: u64,
    side: usize,
}

impl<'a> Noises<'a> {
    fn new(
        settings: &SdFeatureSettings,
        source: NoiseSource<'a>,
        side: usize,
    ) -> Result<Self, SdFeatureError> {
        let injected = match source {
            NoiseSource::Seeded => None,
            NoiseSource::Injected(values) => {
                let expected = settings.ensemble * 4 * side * side;
                if values.len() != expected {
                    return Err(SdFeatureError::NoiseShape {
                        found: values.len(),
                        expected,
                        ensemble: settings.ensemble,
                        side,
                    });
                }
                Some(values)
            }
        };
        Ok(Noises {
            injected,
            seed: settings.seed,
            side,
        })
    }

    fn len(&self) -> usize {
        4 * self.side * self.side
    }

    fn tensor(&self, values: Vec<f32>, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(values, [1, 4, self.side, self.side]),
            device,
        )
    }

    fn drawn(&self, member: usize, stream: u64, device: &Device) -> Tensor<4> {
        let mut rng = Rng::derive(self.seed, &[member as u64, stream]);
        let values = (0..self.len()).map(|_| rng.normal(1.0) as f32).collect();
        self.tensor(values, device)
    }

    /// The noise added to member `member`'s latent.
    fn noise(&self, member: usize, device: &Device) -> Tensor<4> {
        match self.injected {
            Some(values) => {
                let n = self.len();
                self.tensor(values[member * n..(member + 1) * n].to_vec(), device)
            }
            None => self.drawn(member, 0, device),
        }
    }

    /// The UNet's clean latent for member `member`.
    fn latent(
        &self,
        posterior: &Posterior,
        choice: PosteriorChoice,
        member: usize,
        device: &Device,
    ) -> Tensor<4> {
        match choice {
            PosteriorChoice::Mean => posterior.latent_mean(),
            PosteriorChoice::Sample => posterior.latent_sample(self.drawn(member, 1, device)),
        }
    }
}

/// `[1, 3, h, w]` in `[-1, 1]`.
fn image_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    Tensor::from_data(TensorData::new(to_signed_unit(image), [1, 3, h, w]), device)
}

/// `[1, C, h, w]` as `[h * w, C]` cells.
fn channels_last(tensor: Tensor<4>) -> Result<Vec<f32>, HostReadError> {
    let [_, c, h, w] = tensor.dims();
    f32_values(tensor.permute([0, 2, 3, 1]).reshape([h * w, c]))
}

/// A `[1, C, h, w]` output of a `(width, height)` input as a feature map.
fn feature_map(
    tensor: Tensor<4>,
    (width, height): (usize, usize),
) -> Result<FeatureMap, SdFeatureError> {
    let [_, dim, rows, cols] = tensor.dims();
    let stride = height / rows.max(1);
    Ok(FeatureMap {
        grid: Grid {
            rows,
            cols,
            patch: stride,
            stride,
        },
        dim,
        data: channels_last(tensor)?,
        image_size: (width, height),
    })
}
