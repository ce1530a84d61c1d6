//! The encoder half of Stable Diffusion's VAE (diffusers `AutoencoderKL`: `encoder` and
//! `quant_conv`): an image in `[-1, 1]` to the mean and log-variance of its latent posterior.
//! The decoder's weights are never read.

use crate::model::kernels::conv2d_forward;
use std::path::Path;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use super::group_norm::GroupNorm;
use burn::tensor::{Device, Tensor};
use serde_json::json;

use super::attention::{AttentionNames, AttentionSpec, MultiHeadAttention};
use super::layers::{Downsample, ResnetBlock, ResnetSpec, conv3x3};
use super::load::{ConfigJson, SdLoadError, weights_file};
use super::weights::{SafetensorsFile, WeightsError};

/// GroupNorm epsilon of every norm in the encoder (diffusers `Encoder`).
const NORM_EPS: f64 = 1e-6;
/// diffusers `DiagonalGaussianDistribution` clamps the log-variance to this range.
const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    /// Latents are `scaling_factor * z` (0.18215 for SD 1.x/2.x).
    pub scaling_factor: f32,
    pub use_quant_conv: bool,
}

impl VaeConfig {
    pub fn read(path: &Path) -> Result<Self, SdLoadError> {
        Self::from_json(&ConfigJson::read(path)?)
    }

    pub fn from_json(c: &ConfigJson) -> Result<Self, SdLoadError> {
        c.expect_one_of("_class_name", &[json!("AutoencoderKL")])?;
        let block_out_channels: Vec<usize> = c.require("block_out_channels")?;
        if block_out_channels.is_empty() || block_out_channels.contains(&0) {
            return Err(c.error("block_out_channels", "expected non-zero widths"));
        }
        let down: Vec<String> = c.require("down_block_types")?;
        if down.len() != block_out_channels.len() || down.iter().any(|t| t != "DownEncoderBlock2D")
        {
            return Err(c.error(
                "down_block_types",
                format!(
                    "{down:?} is not a Stable Diffusion VAE encoder (expected DownEncoderBlock2D \
                     for each of the {} levels)",
                    block_out_channels.len()
                ),
            ));
        }
        let norm_num_groups: usize = c.get_or("norm_num_groups", 32)?;
        if norm_num_groups == 0 || block_out_channels.iter().any(|w| w % norm_num_groups != 0) {
            return Err(c.error(
                "norm_num_groups",
                format!(
                    "{norm_num_groups} groups do not divide every width {block_out_channels:?}"
                ),
            ));
        }
        c.expect_one_of("act_fn", &[json!("silu")])?;
        c.expect_one_of("mid_block_add_attention", &[json!(true)])?;
        c.expect_one_of("use_post_quant_conv", &[json!(true), json!(false)])?;
        let layers_per_block: usize = c.get_or("layers_per_block", 1)?;
        if layers_per_block == 0 {
            return Err(c.error("layers_per_block", "0"));
        }
        Ok(VaeConfig {
            in_channels: c.get_or("in_channels", 3)?,
            latent_channels: c.get_or("latent_channels", 4)?,
            block_out_channels,
            layers_per_block,
            norm_num_groups,
            scaling_factor: c.get_or("scaling_factor", 0.18215)?,
            use_quant_conv: c.get_or("use_quant_conv", true)?,
        })
    }
}

/// The latent posterior of a batch of images, `[B, latent_channels, H/8, W/8]` each.
#[derive(Clone, Debug)]
pub struct Posterior {
    pub mean: Tensor<4>,
    /// Clamped to `[-30, 20]`.
    pub logvar: Tensor<4>,
    pub scaling_factor: f32,
}

impl Posterior {
    /// Splits `quant_conv`'s output `[B, 2L, h, w]` into the mean (first `L` channels) and the
    /// log-variance (the rest), clamped as diffusers does.
    pub fn from_moments(moments: Tensor<4>, scaling_factor: f32) -> Posterior {
        let latent = moments.dims()[1] / 2;
        Posterior {
            mean: moments.clone().narrow(1, 0, latent),
            logvar: moments
                .narrow(1, latent, latent)
                .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1),
            scaling_factor,
        }
    }

    /// The UNet's latent from the mean: `scaling_factor * mean` (SD-DINO).
    pub fn latent_mean(&self) -> Tensor<4> {
        self.mean.clone().mul_scalar(self.scaling_factor)
    }

    /// The UNet's latent from a sample: `scaling_factor * (mean + exp(logvar / 2) * eps)` with
    /// `eps` ~ N(0, 1) of the mean's shape (DIFT).
    pub fn latent_sample(&self, eps: Tensor<4>) -> Tensor<4> {
        let std = self.logvar.clone().mul_scalar(0.5).exp();
        (self.mean.clone() + std * eps).mul_scalar(self.scaling_factor)
    }
}

#[derive(Debug)]
struct DownBlock {
    resnets: Vec<ResnetBlock>,
    downsample: Option<Downsample>,
}

#[derive(Debug)]
pub struct VaeEncoder {
    config: VaeConfig,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_resnet0: ResnetBlock,
    mid_norm: GroupNorm,
    mid_attention: MultiHeadAttention,
    mid_resnet1: ResnetBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl VaeEncoder {
    /// Loads the encoder of a diffusers `vae/` folder (`config.json` and
    /// `diffusion_pytorch_model.safetensors` or its `.fp16` variant).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, SdLoadError> {
        Self::load_files(&dir.join("config.json"), &weights_file(dir)?, device)
    }

    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, SdLoadError> {
        let config = VaeConfig::read(config)?;
        let file = SafetensorsFile::open(weights)?;
        Ok(Self::read(&file, config, device)?)
    }

    fn read(
        file: &SafetensorsFile,
        config: VaeConfig,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let widths = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let resnet = |prefix: &str, inputs, outputs| {
            ResnetBlock::load(
                file,
                prefix,
                ResnetSpec {
                    inputs,
                    outputs,
                    temb: None,
                    groups,
                    eps: NORM_EPS,
                },
                device,
            )
        };
        let conv_in = conv3x3(
            file,
            "encoder.conv_in",
            [config.in_channels, widths[0]],
            1,
            device,
        )?;
        let mut channels = widths[0];
        let mut down_blocks = Vec::with_capacity(widths.len());
        for (i, &width) in widths.iter().enumerate() {
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let inputs = if j == 0 { channels } else { width };
                    resnet(
                        &format!("encoder.down_blocks.{i}.resnets.{j}"),
                        inputs,
                        width,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            channels = width;
            let downsample = (i + 1 < widths.len())
                .then(|| {
                    Downsample::load_vae(
                        file,
                        &format!("encoder.down_blocks.{i}.downsamplers.0"),
                        width,
                        device,
                    )
                })
                .transpose()?;
            down_blocks.push(DownBlock {
                resnets,
                downsample,
            });
        }
        let attention = "encoder.mid_block.attentions.0";
        let names = match file.contains(&format!("{attention}.query.weight")) {
            true => AttentionNames::Legacy,
            false => AttentionNames::Current,
        };
        let doubled = 2 * config.latent_channels;
        Ok(VaeEncoder {
            conv_in,
            down_blocks,
            mid_resnet0: resnet("encoder.mid_block.resnets.0", channels, channels)?,
            mid_norm: file.group_norm(
                &format!("{attention}.group_norm"),
                groups,
                channels,
                NORM_EPS,
                device,
            )?,
            // One head as wide as the deepest level (diffusers' `attention_head_dim` default).
            mid_attention: MultiHeadAttention::load(
                file,
                attention,
                AttentionSpec {
                    names,
                    channels,
                    context: None,
                    heads: 1,
                    qkv_bias: true,
                },
                device,
            )?,
            mid_resnet1: resnet("encoder.mid_block.resnets.1", channels, channels)?,
            conv_norm_out: file.group_norm(
                "encoder.conv_norm_out",
                groups,
                channels,
                NORM_EPS,
                device,
            )?,
            conv_out: conv3x3(file, "encoder.conv_out", [channels, doubled], 1, device)?,
            quant_conv: config
                .use_quant_conv
                .then(|| {
                    file.conv2d(
                        "quant_conv",
                        [doubled, doubled],
                        1,
                        1,
                        PaddingConfig2d::Valid,
                        device,
                    )
                })
                .transpose()?,
            config,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The posterior of images `[B, 3, H, W]` in `[-1, 1]`.
    pub fn encode(&self, image: Tensor<4>) -> Posterior {
        let mut x = conv2d_forward(&self.conv_in, image);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(down) = &block.downsample {
                x = down.forward(x);
            }
        }
        x = self.mid_resnet0.forward(x, None);
        x = self.mid_attention_forward(x);
        x = self.mid_resnet1.forward(x, None);
        x = conv2d_forward(&self.conv_out, self.conv_norm_out.forward_silu(x));
        if let Some(quant) = &self.quant_conv {
            x = conv2d_forward(quant, x);
        }
        Posterior::from_moments(x, self.config.scaling_factor)
    }

    /// Single-head self-attention over all positions, plus the input.
    fn mid_attention_forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = self
            .mid_norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let y = self
            .mid_attention
            .forward(tokens, None)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        y + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn moments_split_into_mean_and_clamped_logvar() {
        let device = Device::flex();
        // [1, 4, 1, 2]: mean channels 0-1, logvar channels 2-3.
        let values = vec![1.0f32, -2.0, 3.0, 4.0, -50.0, 0.5, 25.0, -30.0];
        let moments = Tensor::<4>::from_data(TensorData::new(values, [1, 4, 1, 2]), &device);
        let p = Posterior::from_moments(moments, 0.5);
        let v = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v(p.mean.clone()), [1.0, -2.0, 3.0, 4.0]);
        assert_eq!(v(p.logvar.clone()), [-30.0, 0.5, 20.0, -30.0]);
        assert_eq!(v(p.latent_mean()), [0.5, -1.0, 1.5, 2.0]);
        let eps = Tensor::<4>::ones([1, 2, 1, 2], &device);
        let sample = v(p.latent_sample(eps));
        let expected = [
            1.0 + (-15f32).exp(),
            -2.0 + 0.25f32.exp(),
            3.0 + 10f32.exp(),
            4.0 + (-15f32).exp(),
        ];
        for (s, e) in sample.iter().zip(expected) {
            assert!((s - 0.5 * e).abs() <= 1e-6 * e.abs().max(1.0), "{s} vs {e}");
        }
    }
}
