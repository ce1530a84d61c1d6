//! Every knob of SD feature extraction, with DIFT's and SD-DINO's published defaults as presets.

use serde::{Deserialize, Serialize};

use crate::model::sd::UnetTap;

/// Which reference recipe the settings follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum SdPreset {
    /// DIFT (Tang et al. 2023): SD 2.1, 768 px squashed, t = 261, output of up block 1, an
    /// ensemble of 8 noises averaged.
    Dift,
    /// SD-DINO (Zhang et al. 2023): SD 1.5, 960 px letterboxed, four overlapping 512 px windows,
    /// t = 100, one fixed noise, taps s5 / s4 / s3.
    SdDino,
}

/// Which latent the VAE posterior gives the UNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum PosteriorChoice {
    /// `scaling_factor * mean` (SD-DINO).
    Mean,
    /// `scaling_factor * (mean + std * eps)`, a fresh `eps` per ensemble member (DIFT).
    Sample,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SdFeatureSettings {
    pub preset: SdPreset,
    /// Side of the square SD input in pixels (a multiple of 64).
    pub size: u32,
    /// Diffusion timestep of the noised latent (0..=999).
    pub timestep: usize,
    /// DIFT's tap: the output of this up block (0..=3). SD-DINO always taps layer 1 of up
    /// blocks 0, 1 and 2.
    pub up_block: usize,
    /// Noises per image whose features are averaged.
    pub ensemble: usize,
    /// Seed of the drawn noises.
    pub seed: u64,
    /// Text prompt ("" = the unconditional embedding both references use by default).
    pub prompt: String,
    /// SD-DINO's 512 px sliding windows; off runs one pass over the whole input.
    pub windows: bool,
    pub posterior: PosteriorChoice,
}

/// Largest SD input side: its latent has (1408 / 8)^2 = 30,976 tokens, within the 2^15 that
/// burn's wgpu reductions (softmax over all keys) get right (`model::reduce`).
pub const MAX_SIZE: u32 = 1408;

/// Side of SD-DINO's windows (ODISE's `backbone_in_size`).
pub const WINDOW: u32 = 512;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SdSettingsError {
    #[error("the SD input size must be a positive multiple of 64 pixels, not {0}")]
    Size(u32),
    #[error("the SD input size can be at most {MAX_SIZE} pixels, not {0}")]
    TooLarge(u32),
    #[error("the timestep must be between 0 and 999, not {0}")]
    Timestep(usize),
    #[error("the ensemble needs at least one noise")]
    Ensemble,
    #[error("up block {0} does not exist (SD has up blocks 0 to 3)")]
    UpBlock(usize),
}

impl SdFeatureSettings {
    pub fn dift() -> Self {
        SdFeatureSettings {
            preset: SdPreset::Dift,
            size: 768,
            timestep: 261,
            up_block: 1,
            ensemble: 8,
            seed: 0,
            prompt: String::new(),
            windows: false,
            posterior: PosteriorChoice::Sample,
        }
    }

    pub fn sd_dino() -> Self {
        SdFeatureSettings {
            preset: SdPreset::SdDino,
            size: 960,
            timestep: 100,
            up_block: 1,
            ensemble: 1,
            seed: 42,
            prompt: String::new(),
            windows: true,
            posterior: PosteriorChoice::Mean,
        }
    }

    pub fn preset(preset: SdPreset) -> Self {
        match preset {
            SdPreset::Dift => Self::dift(),
            SdPreset::SdDino => Self::sd_dino(),
        }
    }

    pub fn validate(&self) -> Result<(), SdSettingsError> {
        if self.size == 0 || !self.size.is_multiple_of(64) {
            return Err(SdSettingsError::Size(self.size));
        }
        if self.size > MAX_SIZE {
            return Err(SdSettingsError::TooLarge(self.size));
        }
        if self.timestep > 999 {
            return Err(SdSettingsError::Timestep(self.timestep));
        }
        if self.ensemble == 0 {
            return Err(SdSettingsError::Ensemble);
        }
        if self.up_block > 3 {
            return Err(SdSettingsError::UpBlock(self.up_block));
        }
        Ok(())
    }

    /// The UNet outputs the preset reads: DIFT's up block, or SD-DINO's s5 / s4 / s3 (layer 1
    /// of up blocks 0, 1 and 2).
    pub fn unet_taps(&self) -> Vec<UnetTap> {
        match self.preset {
            SdPreset::Dift => vec![UnetTap::UpBlock(self.up_block)],
            SdPreset::SdDino => (0..3).map(UnetTap::UpBlockLayer1).collect(),
        }
    }

    /// Side of each UNet pass's input: the window, or the whole input.
    pub fn pass_size(&self) -> u32 {
        match self.preset {
            SdPreset::SdDino if self.windows => WINDOW.min(self.size),
            _ => self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_bad_values_are_named() {
        assert_eq!(SdFeatureSettings::dift().validate(), Ok(()));
        assert_eq!(SdFeatureSettings::sd_dino().validate(), Ok(()));
        assert_eq!(SdFeatureSettings::sd_dino().pass_size(), 512);
        let bad = |edit: fn(&mut SdFeatureSettings)| {
            let mut s = SdFeatureSettings::dift();
            edit(&mut s);
            s.validate().unwrap_err()
        };
        assert_eq!(bad(|s| s.size = 700), SdSettingsError::Size(700));
        assert_eq!(bad(|s| s.size = 1472), SdSettingsError::TooLarge(1472));
        assert_eq!(bad(|s| s.timestep = 1000), SdSettingsError::Timestep(1000));
        assert_eq!(bad(|s| s.ensemble = 0), SdSettingsError::Ensemble);
        assert_eq!(bad(|s| s.up_block = 4), SdSettingsError::UpBlock(4));
    }
}
