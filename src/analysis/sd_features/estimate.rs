//! What a Stable Diffusion feature run will cost, before it starts: the floating-point work of
//! each VAE and UNet pass counted from the configs (diffusers' `UNet2DConditionModel` and
//! `AutoencoderKL` encoder layer by layer), divided by the device's measured speed, and the memory
//! of the weights read plus the largest activations alive at once.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

use super::settings::{SdFeatureSettings, SdPreset};
use super::windows::Windows;
use crate::model::sd::unet::UnetTap;
use crate::model::sd::{UnetConfig, VaeConfig};

/// Tokens of the text context (CLIP's 77).
const CONTEXT_TOKENS: f64 = 77.0;
/// Bytes of one f32.
const F32: f64 = 4.0;
/// Score block the chunked attention keeps at once (`model::sd::attention`).
const ATTENTION_BLOCK_BYTES: f64 = 32.0 * 1024.0 * 1024.0;

/// The cost of extracting one image's features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdCost {
    pub vae_passes: usize,
    pub unet_passes: usize,
    /// Floating-point operations of all passes (multiply and add counted apart).
    pub flop: f64,
    /// Bytes of the f32 weights the run reads (UNet up to the taps, VAE encoder).
    pub weight_bytes: f64,
    /// Bytes of the largest set of activations alive at once (UNet skips and one layer's
    /// temporaries, or the VAE at full resolution, whichever is larger).
    pub activation_bytes: f64,
}

impl SdCost {
    pub fn peak_bytes(&self) -> f64 {
        self.weight_bytes + self.activation_bytes
    }

    /// Seconds at `gflops` sustained.
    pub fn seconds(&self, gflops: f64) -> f64 {
        self.flop / (gflops.max(1e-3) * 1e9)
    }
}

/// One image's cost under `settings` with these networks.
pub fn estimate(unet: &UnetConfig, vae: &VaeConfig, settings: &SdFeatureSettings) -> SdCost {
    let side = settings.pass_size() as f64;
    let per_pass = match settings.preset {
        SdPreset::Dift => 1,
        SdPreset::SdDino => {
            let size = settings.size as usize;
            Windows::new(size, size, settings.pass_size() as usize)
                .origins
                .len()
        }
    };
    let vae_passes = per_pass;
    let unet_passes = per_pass * settings.ensemble;
    let (vae_flop, vae_weights, vae_activations) = vae_cost(vae, side);
    let taps = settings.unet_taps();
    let unet_pass = unet_cost(unet, side / 8.0, &taps);
    SdCost {
        vae_passes,
        unet_passes,
        flop: vae_passes as f64 * vae_flop + unet_passes as f64 * unet_pass.flop,
        weight_bytes: vae_weights + unet_pass.weights,
        activation_bytes: vae_activations.max(unet_pass.activations),
    }
}

/// A device's sustained f32 matrix-product speed in GFLOP/s: the upper end of what convolutions
/// and attention reach, measured in about a tenth of a second.
pub fn matmul_gflops(device: &Device) -> f64 {
    const N: usize = 512;
    let a: Tensor<2> = Tensor::random([N, N], Distribution::Default, device);
    let b: Tensor<2> = Tensor::random([N, N], Distribution::Default, device);
    // The first product pays for kernel compilation and thread start-up.
    let _ = a.clone().matmul(b.clone()).into_data();
    let start = Instant::now();
    let reps = 4;
    for _ in 0..reps {
        let _ = a.clone().matmul(b.clone()).into_data();
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    reps as f64 * 2.0 * (N * N * N) as f64 / seconds / 1e9
}

#[derive(Default)]
struct PassCost {
    flop: f64,
    weights: f64,
    activations: f64,
}

/// Work and parameters of layers, counted as they run.
#[derive(Default)]
struct Tally {
    flop: f64,
    params: f64,
    /// Largest temporary of one layer, in values.
    peak_temporary: f64,
}

impl Tally {
    fn conv(&mut self, cin: f64, cout: f64, kernel: f64, out_pixels: f64) {
        self.flop += 2.0 * kernel * kernel * cin * cout * out_pixels;
        self.params += kernel * kernel * cin * cout + cout;
        self.temporary(cout * out_pixels);
    }

    fn linear(&mut self, cin: f64, cout: f64, rows: f64) {
        self.flop += 2.0 * cin * cout * rows;
        self.params += cin * cout + cout;
        self.temporary(cout * rows);
    }

    fn temporary(&mut self, values: f64) {
        self.peak_temporary = self.peak_temporary.max(values);
    }

    /// A ResNet block `cin -> cout` at `pixels` (two 3x3 convolutions, a 1x1 shortcut when the
    /// widths differ, the time-embedding projection when `temb` is given).
    fn resnet(&mut self, cin: f64, cout: f64, pixels: f64, temb: Option<f64>) {
        self.conv(cin, cout, 3.0, pixels);
        self.conv(cout, cout, 3.0, pixels);
        if cin != cout {
            self.conv(cin, cout, 1.0, pixels);
        }
        if let Some(t) = temb {
            self.linear(t, cout, 1.0);
        }
        self.params += 2.0 * (cin + cout);
    }

    /// Scaled dot-product attention of `queries` over `keys` tokens, `width` channels in all.
    fn attention(&mut self, queries: f64, keys: f64, width: f64) {
        self.flop += 4.0 * queries * keys * width;
        self.temporary((queries * keys).min(ATTENTION_BLOCK_BYTES / F32));
    }

    /// SD's spatial transformer at width `c` over `tokens` (proj in/out, self-attention,
    /// cross-attention to the text, GEGLU feed-forward).
    fn transformer(&mut self, c: f64, tokens: f64, context_width: f64) {
        self.linear(c, c, tokens);
        self.linear(c, 3.0 * c, tokens);
        self.attention(tokens, tokens, c);
        self.linear(c, c, tokens);
        self.linear(c, c, tokens);
        self.linear(context_width, 2.0 * c, CONTEXT_TOKENS);
        self.attention(tokens, CONTEXT_TOKENS, c);
        self.linear(c, c, tokens);
        self.linear(c, 8.0 * c, tokens);
        self.linear(4.0 * c, c, tokens);
        self.linear(c, c, tokens);
        self.params += 2.0 * 4.0 * c;
    }
}

/// The VAE encoder at a `side` x `side` image: (flop, weight bytes, activation bytes).
fn vae_cost(vae: &VaeConfig, side: f64) -> (f64, f64, f64) {
    let widths: Vec<f64> = vae.block_out_channels.iter().map(|&c| c as f64).collect();
    let mut t = Tally::default();
    let mut res = side * side;
    let first = widths.first().copied().unwrap_or(0.0);
    t.conv(vae.in_channels as f64, first, 3.0, res);
    let mut cin = first;
    for (i, &c) in widths.iter().enumerate() {
        for _ in 0..vae.layers_per_block {
            t.resnet(cin, c, res, None);
            cin = c;
        }
        if i + 1 < widths.len() {
            res /= 4.0;
            t.conv(c, c, 3.0, res);
        }
    }
    t.resnet(cin, cin, res, None);
    t.linear(cin, 3.0 * cin, res);
    t.attention(res, res, cin);
    t.linear(cin, cin, res);
    t.resnet(cin, cin, res, None);
    let latent = 2.0 * vae.latent_channels as f64;
    t.conv(cin, latent, 3.0, res);
    t.conv(latent, latent, 1.0, res);
    // The input, the first block's output and two of its temporaries at full resolution.
    let activations = F32 * (3.0 * first * side * side + t.peak_temporary);
    (t.flop, F32 * t.params, activations)
}

/// One UNet pass over a `latent` x `latent` input up to the last of `taps`.
fn unet_cost(unet: &UnetConfig, latent: f64, taps: &[UnetTap]) -> PassCost {
    let widths: Vec<f64> = unet.block_out_channels.iter().map(|&c| c as f64).collect();
    let levels = widths.len();
    let context = unet.cross_attention_dim as f64;
    let temb = widths.first().copied().unwrap_or(0.0) * 4.0;
    let mut t = Tally::default();
    t.linear(widths[0], temb, 1.0);
    t.linear(temb, temb, 1.0);
    let mut pixels = latent * latent;
    t.conv(unet.in_channels as f64, widths[0], 3.0, pixels);
    let mut skips = vec![widths[0] * pixels];
    let mut cin = widths[0];
    for (i, &c) in widths.iter().enumerate() {
        let cross = i + 1 < levels;
        for _ in 0..unet.layers_per_block {
            t.resnet(cin, c, pixels, Some(temb));
            if cross {
                t.transformer(c, pixels, context);
            }
            cin = c;
            skips.push(c * pixels);
        }
        if i + 1 < levels {
            pixels /= 4.0;
            t.conv(c, c, 3.0, pixels);
            skips.push(c * pixels);
        }
    }
    t.resnet(cin, cin, pixels, Some(temb));
    t.transformer(cin, pixels, context);
    t.resnet(cin, cin, pixels, Some(temb));

    let (full, partial) = taps.iter().fold((0, 0), |(f, p), tap| match *tap {
        UnetTap::UpBlock(u) => (f.max(u + 1), p),
        UnetTap::UpBlockLayer1(u) if u >= f => (u, 2),
        UnetTap::UpBlockLayer1(_) => (f, p),
        UnetTap::Output => (levels, 0),
    });
    let skip_values: f64 = skips.iter().sum();
    let reversed: Vec<f64> = widths.iter().rev().copied().collect();
    let mut prev = reversed[0];
    for u in 0..levels {
        let layers = if u < full {
            unet.layers_per_block + 1
        } else if u == full {
            partial
        } else {
            0
        };
        if layers == 0 {
            break;
        }
        let out = reversed[u];
        let input = reversed[(u + 1).min(levels - 1)];
        let last = unet.layers_per_block;
        for j in 0..layers {
            let skip = if j == last { input } else { out };
            let resnet_in = if j == 0 { prev } else { out };
            t.resnet(resnet_in + skip, out, pixels, Some(temb));
            if u > 0 {
                t.transformer(out, pixels, context);
            }
        }
        prev = out;
        if u < full && u + 1 < levels {
            pixels *= 4.0;
            t.conv(out, out, 3.0, pixels);
        }
    }
    PassCost {
        flop: t.flop,
        weights: F32 * t.params,
        // The skips wait for the way up; a layer's largest temporary lives beside two copies of
        // its input.
        activations: F32 * (skip_values + 3.0 * t.peak_temporary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> UnetConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let config = serde_json::json!({
            "_class_name": "UNet2DConditionModel",
            "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D"],
            "attention_head_dim": 8,
            "cross_attention_dim": 768,
            "in_channels": 4,
            "out_channels": 4,
            "layers_per_block": 2,
        });
        std::fs::write(&path, config.to_string()).unwrap();
        UnetConfig::read(&path).unwrap()
    }

    fn sd_vae() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            use_quant_conv: true,
        }
    }

    #[test]
    fn a_whole_sd15_pass_counts_its_published_size() {
        // SD 1.5's UNet has 859.5 M parameters; a whole pass at 64 x 64 is commonly quoted at
        // about 0.8 TFLOP (diffusers / torch profiler figures: ~ 400 GMAC).
        let whole = unet_cost(&sd15(), 64.0, &[UnetTap::Output]);
        let params = whole.weights / F32;
        assert!((params / 859.5e6 - 1.0).abs() < 0.02, "{params}");
        assert!((0.6e12..1.0e12).contains(&whole.flop), "{}", whole.flop);
        // The VAE encoder: 34.2 M parameters.
        let (_, vae_weights, _) = vae_cost(&sd_vae(), 512.0);
        let vae_params = vae_weights / F32;
        assert!((vae_params / 34.2e6 - 1.0).abs() < 0.03, "{vae_params}");
    }

    #[test]
    fn presets_count_their_passes_and_stop_at_their_taps() {
        let (unet, vae) = (sd15(), sd_vae());
        let dift = estimate(&unet, &vae, &SdFeatureSettings::dift());
        assert_eq!((dift.vae_passes, dift.unet_passes), (1, 8));
        let sd_dino = estimate(&unet, &vae, &SdFeatureSettings::sd_dino());
        assert_eq!((sd_dino.vae_passes, sd_dino.unet_passes), (4, 4));
        let whole = unet_cost(&unet, 64.0, &[UnetTap::Output]);
        let taps = unet_cost(&unet, 64.0, &SdFeatureSettings::sd_dino().unet_taps());
        assert!(taps.flop < whole.flop && taps.weights < whole.weights);
        // SD-DINO reads layer 1 of up block 2: about 800 M of the 860 M parameters.
        assert!(
            (taps.weights / F32 / 1e6 - 800.0).abs() < 40.0,
            "{}",
            taps.weights
        );
        assert!(dift.peak_bytes() > dift.weight_bytes);
        assert!((dift.seconds(100.0) - dift.flop / 1e11).abs() < 1e-9);
    }
}
