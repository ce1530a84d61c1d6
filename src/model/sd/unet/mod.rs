//! Stable Diffusion's denoising UNet (diffusers `UNet2DConditionModel`, SD 1.x/2.x), run only as
//! far as the requested feature taps: DIFT (Tang et al. 2023) reads the output of `up_blocks[i]`,
//! SD-DINO (Zhang et al. 2023) the output of layer 1 of `up_blocks[0..3]`.

pub mod config;
pub mod embedding;
pub mod transformer;

use crate::model::kernels::conv2d_forward;
use std::fmt;
use std::path::Path;

use crate::model::sd::group_norm::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

pub use config::UnetConfig;
use embedding::TimeEmbedding;
use transformer::{Transformer2D, TransformerSpec};

use super::layers::{Downsample, ResnetBlock, ResnetSpec, Upsample, conv3x3};
use super::load::{ConfigJson, SdLoadError, weights_file};
use super::weights::{SafetensorsFile, WeightsError};

/// A feature the UNet can return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnetTap {
    /// Output of `up_blocks[u]`, after its upsampler (DIFT's `up_ft_index`).
    UpBlock(usize),
    /// Output of layer 1 of `up_blocks[u]` (after `resnets[1]` and `attentions[1]`): SD-DINO's
    /// s5, s4, s3 for u = 0, 1, 2 (LDM `output_blocks[3u + 2]` inputs).
    UpBlockLayer1(usize),
    /// The predicted noise (after `conv_out`).
    Output,
}

impl fmt::Display for UnetTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnetTap::UpBlock(u) => write!(f, "up_blocks[{u}]"),
            UnetTap::UpBlockLayer1(u) => write!(f, "layer 1 of up_blocks[{u}]"),
            UnetTap::Output => write!(f, "the UNet output"),
        }
    }
}

/// How much of the up path is needed: `full` whole up blocks, then `partial` layers of the next
/// one (without its upsampler), then optionally `conv_norm_out` / `conv_out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Extent {
    full: usize,
    partial: usize,
    head: bool,
}

impl Extent {
    fn of(tap: UnetTap, levels: usize) -> Extent {
        match tap {
            UnetTap::UpBlock(u) => Extent {
                full: u + 1,
                partial: 0,
                head: false,
            },
            UnetTap::UpBlockLayer1(u) => Extent {
                full: u,
                partial: 2,
                head: false,
            },
            UnetTap::Output => Extent {
                full: levels,
                partial: 0,
                head: true,
            },
        }
    }

    fn covering(taps: &[UnetTap], levels: usize) -> Extent {
        taps.iter()
            .map(|&tap| Extent::of(tap, levels))
            .max()
            .unwrap_or(Extent {
                full: 0,
                partial: 0,
                head: false,
            })
    }

    /// Layers of up block `u` this extent runs, and whether it runs its upsampler.
    fn up_block(&self, u: usize) -> (Option<usize>, bool) {
        if u < self.full {
            (None, true)
        } else if u == self.full && self.partial > 0 {
            (Some(self.partial), false)
        } else {
            (Some(0), false)
        }
    }
}

/// A resnet and, in cross-attention blocks, its transformer.
#[derive(Debug)]
struct Layer {
    resnet: ResnetBlock,
    attention: Option<Transformer2D>,
}

impl Layer {
    fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let x = self.resnet.forward(x, Some(temb));
        match &self.attention {
            Some(attention) => attention.forward(x, context),
            None => x,
        }
    }
}

#[derive(Debug)]
struct DownBlock {
    layers: Vec<Layer>,
    downsample: Option<Downsample>,
}

#[derive(Debug)]
struct MidBlock {
    resnet0: ResnetBlock,
    attention: Transformer2D,
    resnet1: ResnetBlock,
}

#[derive(Debug)]
struct UpBlock {
    /// The loaded layers: all of them, or the first few when no later layer is needed.
    layers: Vec<Layer>,
    upsample: Option<Upsample>,
}

#[derive(Debug)]
struct OutputHead {
    norm: GroupNorm,
    conv: Conv2d,
}

/// What [`Unet::load`] read of the up path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedUpBlock {
    pub layers: usize,
    pub upsampler: bool,
}

/// Every intermediate output of one forward pass, as far as the model was loaded.
#[derive(Clone, Debug)]
pub struct UnetTrace {
    /// `[B, 4 * block_out_channels[0]]`.
    pub time_embedding: Tensor<2>,
    /// Output of each down block (after its downsampler).
    pub down_blocks: Vec<Tensor<4>>,
    pub mid: Tensor<4>,
    /// Output of each up block that was loaded whole.
    pub up_blocks: Vec<Tensor<4>>,
    /// Output of layer 1 of each up block loaded that far.
    pub up_layer1: Vec<Tensor<4>>,
    /// The UNet's output, when `conv_out` was loaded.
    pub output: Option<Tensor<4>>,
}

/// A forward input that does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum UnetInputError {
    #[error("the latent has {found} channels, the UNet takes {expected}")]
    LatentChannels { expected: usize, found: usize },
    #[error("the text context is {found} wide, the UNet's cross-attention takes {expected}")]
    ContextWidth { expected: usize, found: usize },
    #[error(
        "batch sizes differ: {latent} latents, {timesteps} timesteps, {context} contexts \
         (timesteps and contexts may also be 1)"
    )]
    Batch {
        latent: usize,
        timesteps: usize,
        context: usize,
    },
    #[error("{0} was not loaded (load the UNet with it among the taps)")]
    NotLoaded(UnetTap),
}

/// Asked between a pass's layers with the share done; `false` stops the pass.
pub type KeepGoing<'a> = dyn FnMut(f32) -> bool + 'a;

/// Where an output was produced during a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    Down(usize),
    Mid,
    Up(usize),
    UpLayer1(usize),
    Output,
}

#[derive(Debug)]
pub struct Unet {
    config: UnetConfig,
    time_embedding: TimeEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid: MidBlock,
    up_blocks: Vec<UpBlock>,
    head: Option<OutputHead>,
    loaded: Extent,
}

impl Unet {
    /// Loads a diffusers `unet/` folder (`config.json` and `diffusion_pytorch_model.safetensors`
    /// or `diffusion_pytorch_model.fp16.safetensors`), reading only the weights `taps` need.
    pub fn load(dir: &Path, device: &Device, taps: &[UnetTap]) -> Result<Self, SdLoadError> {
        Self::load_files(&dir.join("config.json"), &weights_file(dir)?, device, taps)
    }

    pub fn load_files(
        config: &Path,
        weights: &Path,
        device: &Device,
        taps: &[UnetTap],
    ) -> Result<Self, SdLoadError> {
        let config = UnetConfig::from_json(&ConfigJson::read(config)?)?;
        let levels = config.levels();
        if let Some(tap) = taps.iter().find(|tap| match tap {
            UnetTap::UpBlock(u) | UnetTap::UpBlockLayer1(u) => *u >= levels,
            UnetTap::Output => false,
        }) {
            return Err(SdLoadError::TapOutOfRange {
                path: weights.to_path_buf(),
                tap: tap.to_string(),
                levels,
            });
        }
        let file = SafetensorsFile::open(weights)?;
        Ok(Self::read(
            &file,
            config,
            Extent::covering(taps, levels),
            device,
        )?)
    }

    fn read(
        file: &SafetensorsFile,
        config: UnetConfig,
        extent: Extent,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let widths = &config.block_out_channels;
        let levels = widths.len();
        let temb = config.time_embed_dim();
        let resnet = |prefix: &str, inputs, outputs| {
            ResnetBlock::load(
                file,
                prefix,
                ResnetSpec {
                    inputs,
                    outputs,
                    temb: Some(temb),
                    groups: config.norm_num_groups,
                    eps: config.norm_eps,
                },
                device,
            )
        };
        let transformer = |prefix: &str, channels, heads| {
            Transformer2D::load(
                file,
                prefix,
                TransformerSpec {
                    channels,
                    heads,
                    context: config.cross_attention_dim,
                    groups: config.norm_num_groups,
                    linear_projection: config.use_linear_projection,
                },
                device,
            )
        };

        let time_embedding = TimeEmbedding::load(
            file,
            widths[0],
            temb,
            config.flip_sin_to_cos,
            config.freq_shift,
            device,
        )?;
        let conv_in = conv3x3(file, "conv_in", [config.in_channels, widths[0]], 1, device)?;
        // Widths of the skip connections, pushed as the down path produces them.
        let mut skips = vec![widths[0]];
        let mut channels = widths[0];
        let mut down_blocks = Vec::with_capacity(levels);
        for (i, &width) in widths.iter().enumerate() {
            let last = i + 1 == levels;
            let mut layers = Vec::with_capacity(config.layers_per_block);
            for j in 0..config.layers_per_block {
                let prefix = format!("down_blocks.{i}");
                layers.push(Layer {
                    resnet: resnet(&format!("{prefix}.resnets.{j}"), channels, width)?,
                    attention: (!last)
                        .then(|| {
                            transformer(&format!("{prefix}.attentions.{j}"), width, config.heads[i])
                        })
                        .transpose()?,
                });
                channels = width;
                skips.push(width);
            }
            let downsample = (!last)
                .then(|| {
                    Downsample::load_unet(
                        file,
                        &format!("down_blocks.{i}.downsamplers.0"),
                        width,
                        device,
                    )
                })
                .transpose()?;
            if !last {
                skips.push(width);
            }
            down_blocks.push(DownBlock { layers, downsample });
        }
        let deepest = widths[levels - 1];
        let heads_deepest = config.heads[levels - 1];
        let mid = MidBlock {
            resnet0: resnet("mid_block.resnets.0", deepest, deepest)?,
            attention: transformer("mid_block.attentions.0", deepest, heads_deepest)?,
            resnet1: resnet("mid_block.resnets.1", deepest, deepest)?,
        };

        let mut up_blocks = Vec::new();
        for u in 0..levels {
            let (layer_count, upsampler) = extent.up_block(u);
            let all_layers = config.layers_per_block + 1;
            let layer_count = layer_count.unwrap_or(all_layers);
            if layer_count == 0 {
                break;
            }
            let width = widths[levels - 1 - u];
            let heads = config.heads[levels - 1 - u];
            let mut layers = Vec::with_capacity(layer_count);
            for j in 0..layer_count {
                let skip = skips.pop().unwrap_or(0);
                let prefix = format!("up_blocks.{u}");
                layers.push(Layer {
                    resnet: resnet(&format!("{prefix}.resnets.{j}"), channels + skip, width)?,
                    attention: (u > 0)
                        .then(|| transformer(&format!("{prefix}.attentions.{j}"), width, heads))
                        .transpose()?,
                });
                channels = width;
            }
            let upsample = (upsampler && u + 1 < levels)
                .then(|| {
                    Upsample::load(file, &format!("up_blocks.{u}.upsamplers.0"), width, device)
                })
                .transpose()?;
            up_blocks.push(UpBlock { layers, upsample });
        }
        let head = extent
            .head
            .then(|| -> Result<OutputHead, WeightsError> {
                Ok(OutputHead {
                    norm: file.group_norm(
                        "conv_norm_out",
                        config.norm_num_groups,
                        widths[0],
                        config.norm_eps,
                        device,
                    )?,
                    conv: conv3x3(
                        file,
                        "conv_out",
                        [widths[0], config.out_channels],
                        1,
                        device,
                    )?,
                })
            })
            .transpose()?;
        Ok(Unet {
            config,
            time_embedding,
            conv_in,
            down_blocks,
            mid,
            up_blocks,
            head,
            loaded: extent,
        })
    }

    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// The up-path layers that were read from the file (an up block absent from the list was not).
    pub fn loaded_up_blocks(&self) -> Vec<LoadedUpBlock> {
        self.up_blocks
            .iter()
            .map(|b| LoadedUpBlock {
                layers: b.layers.len(),
                upsampler: b.upsample.is_some(),
            })
            .collect()
    }

    /// Whether `conv_norm_out` / `conv_out` were read.
    pub fn has_output_head(&self) -> bool {
        self.head.is_some()
    }

    /// The time embedding `[len(t), 4 * block_out_channels[0]]` of float timesteps.
    pub fn time_embedding(&self, timesteps: &[f32], device: &Device) -> Tensor<2> {
        self.time_embedding.forward(timesteps, device)
    }

    /// The requested taps, in order, for latents `[B, 4, h, w]` at `timesteps` (one per latent, or
    /// one for all) with text `context` `[B or 1, S, cross_attention_dim]`. The pass stops after
    /// the last up-block layer a tap needs.
    pub fn forward(
        &self,
        latent: Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
        taps: &[UnetTap],
    ) -> Result<Vec<Tensor<4>>, UnetInputError> {
        Ok(self
            .forward_cancellable(latent, timesteps, context, taps, &mut |_| true)?
            .unwrap_or_default())
    }

    /// [`Unet::forward`] that asks `keep_going` after every layer, with the share of the pass
    /// done; `None` when it answered `false` (a UNet pass at full size takes seconds to minutes
    /// on a CPU, too long to wait for between passes).
    pub fn forward_cancellable(
        &self,
        latent: Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
        taps: &[UnetTap],
        keep_going: &mut KeepGoing<'_>,
    ) -> Result<Option<Vec<Tensor<4>>>, UnetInputError> {
        let levels = self.config.levels();
        let extent = Extent::covering(taps, levels);
        if let Some(&tap) = taps
            .iter()
            .find(|&&tap| Extent::of(tap, levels) > self.loaded)
        {
            return Err(UnetInputError::NotLoaded(tap));
        }
        let mut found: Vec<Option<Tensor<4>>> = vec![None; taps.len()];
        let finished = self.run(
            latent,
            timesteps,
            context,
            extent,
            &mut |point, x| {
                let tap = match point {
                    Point::Up(u) => UnetTap::UpBlock(u),
                    Point::UpLayer1(u) => UnetTap::UpBlockLayer1(u),
                    Point::Output => UnetTap::Output,
                    Point::Down(_) | Point::Mid => return,
                };
                for (slot, _) in found.iter_mut().zip(taps).filter(|(_, t)| **t == tap) {
                    *slot = Some(x.clone());
                }
            },
            keep_going,
        )?;
        // Every tap lies inside the extent run, so every slot is filled.
        Ok(finished.map(|_| found.into_iter().flatten().collect()))
    }

    /// Every intermediate output, as far as the model was loaded.
    pub fn trace(
        &self,
        latent: Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
    ) -> Result<UnetTrace, UnetInputError> {
        let mut down_blocks = Vec::new();
        let mut mid = None;
        let mut up_blocks = Vec::new();
        let mut up_layer1 = Vec::new();
        let mut output = None;
        let time_embedding = self.run(
            latent,
            timesteps,
            context,
            self.loaded,
            &mut |point, x| {
                let x = x.clone();
                match point {
                    Point::Down(_) => down_blocks.push(x),
                    Point::Mid => mid = Some(x),
                    Point::Up(_) => up_blocks.push(x),
                    Point::UpLayer1(_) => up_layer1.push(x),
                    Point::Output => output = Some(x),
                }
            },
            &mut |_| true,
        )?;
        let (Some(time_embedding), Some(mid)) = (time_embedding, mid) else {
            unreachable!("an uncancelled pass runs the mid block");
        };
        Ok(UnetTrace {
            time_embedding,
            down_blocks,
            mid,
            up_blocks,
            up_layer1,
            output,
        })
    }

    /// Checks the inputs and broadcasts the context to the latents' batch.
    fn check_inputs(
        &self,
        latent: &Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
    ) -> Result<(Vec<f32>, Tensor<3>), UnetInputError> {
        let [b, c, _, _] = latent.dims();
        if c != self.config.in_channels {
            return Err(UnetInputError::LatentChannels {
                expected: self.config.in_channels,
                found: c,
            });
        }
        let [cb, s, width] = context.dims();
        if width != self.config.cross_attention_dim {
            return Err(UnetInputError::ContextWidth {
                expected: self.config.cross_attention_dim,
                found: width,
            });
        }
        let batch_ok = |n: usize| n == b || n == 1;
        if !batch_ok(timesteps.len()) || !batch_ok(cb) || b == 0 {
            return Err(UnetInputError::Batch {
                latent: b,
                timesteps: timesteps.len(),
                context: cb,
            });
        }
        let timesteps = match timesteps.len() {
            1 => vec![timesteps[0]; b],
            _ => timesteps.to_vec(),
        };
        let context = match cb {
            1 if b > 1 => context.expand([b, s, width]),
            _ => context,
        };
        Ok((timesteps, context))
    }

    fn run(
        &self,
        latent: Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
        extent: Extent,
        record: &mut dyn FnMut(Point, &Tensor<4>),
        keep_going: &mut KeepGoing<'_>,
    ) -> Result<Option<Tensor<2>>, UnetInputError> {
        let (timesteps, context) = self.check_inputs(&latent, timesteps, context)?;
        let total = self.layers_in(extent) as f32;
        let mut done = 0.0;
        let mut step = move || {
            done += 1.0;
            keep_going(done / total)
        };
        let device = latent.device();
        let temb = self.time_embedding.forward(&timesteps, &device);
        let temb_act = silu(temb.clone());

        let mut x = conv2d_forward(&self.conv_in, latent);
        let mut skips = vec![x.clone()];
        for (i, block) in self.down_blocks.iter().enumerate() {
            for layer in &block.layers {
                x = layer.forward(x, &temb_act, &context);
                skips.push(x.clone());
                if !step() {
                    return Ok(None);
                }
            }
            if let Some(down) = &block.downsample {
                x = down.forward(x);
                skips.push(x.clone());
            }
            record(Point::Down(i), &x);
        }
        x = self.mid.resnet0.forward(x, Some(&temb_act));
        x = self.mid.attention.forward(x, &context);
        x = self.mid.resnet1.forward(x, Some(&temb_act));
        record(Point::Mid, &x);
        if !step() {
            return Ok(None);
        }

        for (u, block) in self.up_blocks.iter().enumerate() {
            let (layers, upsample) = extent.up_block(u);
            let layers = layers.unwrap_or(block.layers.len());
            if layers == 0 {
                break;
            }
            for (j, layer) in block.layers.iter().take(layers).enumerate() {
                let Some(skip) = skips.pop() else { break };
                x = layer.forward(Tensor::cat(vec![x, skip], 1), &temb_act, &context);
                if j == 1 {
                    record(Point::UpLayer1(u), &x);
                }
                if !step() {
                    return Ok(None);
                }
            }
            if !upsample {
                break;
            }
            if let (Some(up), Some(next)) = (&block.upsample, skips.last()) {
                let [_, _, h, w] = next.dims();
                x = up.forward(x, [h, w]);
            }
            record(Point::Up(u), &x);
        }
        if extent.head
            && let Some(head) = &self.head
        {
            x = conv2d_forward(&head.conv, head.norm.forward_silu(x));
            record(Point::Output, &x);
        }
        Ok(Some(temb))
    }

    /// How many layers (down, mid, up) a pass over `extent` runs: the denominator of its progress.
    fn layers_in(&self, extent: Extent) -> usize {
        let down: usize = self.down_blocks.iter().map(|b| b.layers.len()).sum();
        let mut up = 0;
        for (u, block) in self.up_blocks.iter().enumerate() {
            let (layers, upsample) = extent.up_block(u);
            let layers = layers.unwrap_or(block.layers.len());
            if layers == 0 {
                break;
            }
            up += layers.min(block.layers.len());
            if !upsample {
                break;
            }
        }
        (down + 1 + up).max(1)
    }
}
