//! The UNet's `config.json` (diffusers `UNet2DConditionModel`), restricted to the Stable Diffusion
//! 1.x/2.x architecture: cross-attention down blocks then one plain block, mirrored on the way up.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::sd::load::{ConfigJson, SdLoadError};

const CROSS_DOWN: &str = "CrossAttnDownBlock2D";
const PLAIN_DOWN: &str = "DownBlock2D";
const CROSS_UP: &str = "CrossAttnUpBlock2D";
const PLAIN_UP: &str = "UpBlock2D";

/// An int or one int per level, as diffusers accepts for `attention_head_dim`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum PerLevel {
    One(usize),
    Each(Vec<usize>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct UnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub sample_size: Option<usize>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    /// Attention heads per level (down block order). Diffusers' `attention_head_dim` key holds the
    /// number of heads for these models, not their width (diffusers issue #2011).
    pub heads: Vec<usize>,
    pub cross_attention_dim: usize,
    /// `proj_in` / `proj_out` are `Linear` (SD 2.x) rather than 1x1 convolutions (SD 1.x).
    pub use_linear_projection: bool,
    /// Scores in f32 under f16 inference; everything here computes in f32 already.
    pub upcast_attention: bool,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

impl UnetConfig {
    pub fn read(path: &Path) -> Result<Self, SdLoadError> {
        Self::from_json(&ConfigJson::read(path)?)
    }

    pub fn from_json(c: &ConfigJson) -> Result<Self, SdLoadError> {
        c.expect_one_of("_class_name", &[json!("UNet2DConditionModel")])?;
        let block_out_channels: Vec<usize> = c.require("block_out_channels")?;
        let levels = block_out_channels.len();
        if levels < 2 || block_out_channels.contains(&0) {
            return Err(c.error(
                "block_out_channels",
                "expected at least two non-zero widths",
            ));
        }
        let down: Vec<String> = c.require("down_block_types")?;
        let expected_down: Vec<&str> = (0..levels)
            .map(|i| {
                if i + 1 < levels {
                    CROSS_DOWN
                } else {
                    PLAIN_DOWN
                }
            })
            .collect();
        if down != expected_down {
            return Err(c.error(
                "down_block_types",
                format!("{down:?} is not a Stable Diffusion UNet (expected {expected_down:?})"),
            ));
        }
        let up: Vec<String> = c.require("up_block_types")?;
        let expected_up: Vec<&str> = (0..levels)
            .map(|i| if i == 0 { PLAIN_UP } else { CROSS_UP })
            .collect();
        if up != expected_up {
            return Err(c.error(
                "up_block_types",
                format!("{up:?} is not a Stable Diffusion UNet (expected {expected_up:?})"),
            ));
        }
        // Diffusers itself refuses a `num_attention_heads` entry (the naming issue above), so a
        // file that sets it was not written for UNet2DConditionModel's SD path.
        if c.get::<Value>("num_attention_heads")?.is_some() {
            return Err(c.error(
                "num_attention_heads",
                "set, which diffusers' UNet2DConditionModel refuses; Stable Diffusion configs give \
                 the head count as `attention_head_dim`",
            ));
        }
        let heads = match c.get_or("attention_head_dim", PerLevel::One(8))? {
            PerLevel::One(n) => vec![n; levels],
            PerLevel::Each(list) => list,
        };
        if heads.len() != levels {
            return Err(c.error(
                "attention_head_dim",
                format!("{} entries for {levels} levels", heads.len()),
            ));
        }
        for (&h, &width) in heads.iter().zip(&block_out_channels) {
            if h == 0 || width % h != 0 {
                return Err(c.error(
                    "attention_head_dim",
                    format!("{h} heads do not divide a width of {width}"),
                ));
            }
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
        for (key, allowed) in [
            ("mid_block_type", vec![json!("UNetMidBlock2DCrossAttn")]),
            ("act_fn", vec![json!("silu")]),
            ("transformer_layers_per_block", vec![json!(1)]),
            ("only_cross_attention", vec![json!(false)]),
            ("dual_cross_attention", vec![json!(false)]),
            ("class_embed_type", vec![Value::Null]),
            ("addition_embed_type", vec![Value::Null]),
            ("encoder_hid_dim", vec![Value::Null]),
            ("encoder_hid_dim_type", vec![Value::Null]),
            ("time_cond_proj_dim", vec![Value::Null]),
            ("timestep_post_act", vec![Value::Null]),
            ("time_embedding_act_fn", vec![Value::Null]),
            ("time_embedding_dim", vec![Value::Null]),
            ("time_embedding_type", vec![json!("positional")]),
            ("resnet_time_scale_shift", vec![json!("default")]),
            ("center_input_sample", vec![json!(false)]),
            ("conv_in_kernel", vec![json!(3)]),
            ("conv_out_kernel", vec![json!(3)]),
            ("downsample_padding", vec![json!(1)]),
            ("mid_block_scale_factor", vec![json!(1), json!(1.0)]),
            ("cross_attention_norm", vec![Value::Null]),
            ("num_class_embeds", vec![Value::Null]),
        ] {
            c.expect_one_of(key, &allowed)?;
        }
        let layers_per_block = c.get_or("layers_per_block", 2)?;
        if layers_per_block == 0 {
            return Err(c.error("layers_per_block", "0"));
        }
        Ok(UnetConfig {
            in_channels: c.get_or("in_channels", 4)?,
            out_channels: c.get_or("out_channels", 4)?,
            sample_size: c.get("sample_size")?,
            block_out_channels,
            layers_per_block,
            heads,
            cross_attention_dim: c.get_or("cross_attention_dim", 1280)?,
            use_linear_projection: c.get_or("use_linear_projection", false)?,
            upcast_attention: c.get_or("upcast_attention", false)?,
            norm_num_groups,
            norm_eps: c.get_or("norm_eps", 1e-5)?,
            flip_sin_to_cos: c.get_or("flip_sin_to_cos", true)?,
            freq_shift: c.get_or("freq_shift", 0.0)?,
        })
    }

    /// Width of the time embedding: four times the first level's.
    pub fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }

    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }
}
