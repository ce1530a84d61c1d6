//! `Transformer2DModel` as Stable Diffusion uses it: GroupNorm, `proj_in`, one
//! `BasicTransformerBlock` (self-attention, cross-attention on the text, GEGLU feed-forward),
//! `proj_out`, plus the input.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};

use crate::model::sd::group_norm::GroupNorm;
use burn::tensor::{Device, Tensor};

use crate::model::kernels::{gelu, layer_norm_forward};
use crate::model::sd::attention::{AttentionNames, AttentionSpec, MultiHeadAttention, per_token};
use crate::model::sd::weights::{SafetensorsFile, WeightsError};

/// GroupNorm epsilon of `Transformer2DModel` (fixed in diffusers, whatever `norm_eps` says).
const GROUP_NORM_EPS: f64 = 1e-6;
/// LayerNorm epsilon of `BasicTransformerBlock`.
const LAYER_NORM_EPS: f64 = 1e-5;

/// Shape of one transformer.
#[derive(Clone, Copy, Debug)]
pub struct TransformerSpec {
    pub channels: usize,
    pub heads: usize,
    pub context: usize,
    pub groups: usize,
    /// `proj_in`/`proj_out` are `Linear` `[C, C]`; otherwise 1x1 convolutions `[C, C, 1, 1]`.
    pub linear_projection: bool,
}

#[derive(burn::module::Module, Debug)]
pub struct FeedForward {
    /// `ff.net.0.proj`: `C -> 8C`, value half then gate half.
    pub proj: Linear,
    /// `ff.net.2`: `4C -> C`.
    pub out: Linear,
}

impl FeedForward {
    /// GEGLU (Shazeer 2020) with the exact erf GELU, as diffusers `GEGLU`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = per_token(&self.proj, x);
        let inner = h.dims()[2] / 2;
        let value = h.clone().narrow(2, 0, inner);
        let gate = h.narrow(2, inner, inner);
        per_token(&self.out, value * gelu(gate))
    }
}

#[derive(burn::module::Module, Debug)]
pub struct TransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: MultiHeadAttention,
    pub norm2: LayerNorm,
    pub attn2: MultiHeadAttention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl TransformerBlock {
    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let ln =
            |norm: &LayerNorm, x: &Tensor<3>| layer_norm_forward(norm, LAYER_NORM_EPS, x.clone());
        let x = self.attn1.forward(ln(&self.norm1, &x), None) + x;
        let x = self.attn2.forward(ln(&self.norm2, &x), Some(context)) + x;
        self.ff.forward(ln(&self.norm3, &x)) + x
    }
}

#[derive(burn::module::Module, Debug)]
pub struct Transformer2D {
    pub norm: GroupNorm,
    /// A 1x1 convolution on the channels is this same product on the tokens.
    pub proj_in: Linear,
    pub block: TransformerBlock,
    pub proj_out: Linear,
}

/// A `Linear` `[C, C]` or a 1x1 `Conv2d` `[C, C, 1, 1]` with bias, as a burn `Linear` on tokens.
fn projection(
    file: &SafetensorsFile,
    prefix: &str,
    channels: usize,
    conv: bool,
    device: &Device,
) -> Result<Linear, WeightsError> {
    if !conv {
        return file.linear(prefix, [channels, channels], true, device);
    }
    let weight = file
        .tensor::<4>(
            &format!("{prefix}.weight"),
            [channels, channels, 1, 1],
            device,
        )?
        .reshape([channels, channels]);
    let bias = file.tensor::<1>(&format!("{prefix}.bias"), [channels], device)?;
    Ok(Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: Some(Param::from_tensor(bias)),
    })
}

impl Transformer2D {
    pub fn load(
        file: &SafetensorsFile,
        prefix: &str,
        spec: TransformerSpec,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let c = spec.channels;
        let p = |name: &str| format!("{prefix}.{name}");
        let b = |name: &str| format!("{prefix}.transformer_blocks.0.{name}");
        let attention = |name: &str, context| {
            MultiHeadAttention::load(
                file,
                &b(name),
                AttentionSpec {
                    names: AttentionNames::Current,
                    channels: c,
                    context,
                    heads: spec.heads,
                    qkv_bias: false,
                },
                device,
            )
        };
        let ln = |name: &str| file.layer_norm(&b(name), c, LAYER_NORM_EPS, device);
        Ok(Transformer2D {
            norm: file.group_norm(&p("norm"), spec.groups, c, GROUP_NORM_EPS, device)?,
            proj_in: projection(file, &p("proj_in"), c, !spec.linear_projection, device)?,
            block: TransformerBlock {
                norm1: ln("norm1")?,
                attn1: attention("attn1", None)?,
                norm2: ln("norm2")?,
                attn2: attention("attn2", Some(spec.context))?,
                norm3: ln("norm3")?,
                ff: FeedForward {
                    proj: file.linear(&b("ff.net.0.proj"), [c, 8 * c], true, device)?,
                    out: file.linear(&b("ff.net.2"), [4 * c, c], true, device)?,
                },
            },
            proj_out: projection(file, &p("proj_out"), c, !spec.linear_projection, device)?,
        })
    }

    /// `x` `[B, C, H, W]`, `context` `[B, S, D]`.
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let tokens = per_token(&self.proj_in, tokens);
        let tokens = self.block.forward(tokens, context);
        let y = per_token(&self.proj_out, tokens)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        y + x
    }
}
