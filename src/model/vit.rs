//! The ViT backbone shared by DINO and DINOv2, with the intermediate outputs the analyses need.
//!
//! Semantics follow the official code (facebookresearch/dino `vision_transformer.py`, facebookresearch/dinov2
//! `dinov2/models/vision_transformer.py` and `dinov2/layers/`): pre-norm blocks, LayerNorm
//! eps 1e-6, erf GELU, fused `qkv` (Q|K|V blocks, heads contiguous), optional LayerScale and SwiGLU,
//! tokens ordered `[CLS, registers.., patches row-major]` with the positional table added before the
//! registers are inserted.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{FfnKind, VitConfig};
use super::kernels::{conv2d_with_bias, gelu, layer_norm_forward, linear_forward, self_attention};
use super::pos_embed::{axis_matrix, keeps_stored_table};
use crate::rng::Rng;

/// The patch grid an image produced: `rows x cols` patches taken every `stride` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    pub patch: usize,
    pub stride: usize,
}

impl Grid {
    /// Grid of an `height x width` image: `1 + (side - patch) / stride` patches per axis.
    pub fn for_image(height: usize, width: usize, patch: usize, stride: usize) -> Option<Grid> {
        if height < patch || width < patch || stride == 0 {
            return None;
        }
        Some(Grid {
            rows: 1 + (height - patch) / stride,
            cols: 1 + (width - patch) / stride,
            patch,
            stride,
        })
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a block's attention sees: the q, k or v projections, or the block's output tokens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Facet {
    Token,
    Query,
    Key,
    Value,
}

/// Outputs of one block for a batch of images.
#[derive(Clone, Debug)]
pub struct LayerOutputs {
    /// Block output `[B, T, D]` (not final-normed), all tokens.
    pub tokens: Tensor<3>,
    /// `qkv` projection of the block's normed input, `[B, T, 3D]`.
    pub qkv: Tensor<3>,
    pub heads: usize,
    pub prefix_tokens: usize,
    pub grid: Grid,
}

impl LayerOutputs {
    /// Per-head q, k or v of all tokens, `[B, heads, T, head_dim]`.
    ///
    /// # Panics
    /// For [`Facet::Token`], which has no heads.
    pub fn per_head(&self, facet: Facet) -> Tensor<4> {
        let [b, t, d3] = self.qkv.dims();
        let d = d3 / 3;
        let index = match facet {
            Facet::Query => 0,
            Facet::Key => 1,
            Facet::Value => 2,
            Facet::Token => panic!("the token facet has no heads"),
        };
        self.qkv
            .clone()
            .narrow(2, index * d, d)
            .reshape([b, t, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    /// Patch descriptors `[B, N, D]` (CLS and registers dropped) in dino-vit-features' channel order:
    /// q/k/v facets are laid out head-minor (`channel = dim_index * heads + head`), tokens as they are.
    pub fn descriptors(&self, facet: Facet) -> Tensor<3> {
        let prefix = self.prefix_tokens;
        match facet {
            Facet::Token => {
                let [b, t, d] = self.tokens.dims();
                self.tokens.clone().slice([0..b, prefix..t, 0..d])
            }
            _ => {
                let per_head = self.per_head(facet);
                let [b, h, t, hd] = per_head.dims();
                per_head
                    .slice([0..b, 0..h, prefix..t, 0..hd])
                    .permute([0, 2, 3, 1])
                    .reshape([b, t - prefix, hd * h])
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    heads: usize,
}

impl Attention {
    /// `[B, T, D]` -> `[B, heads, T, head_dim]` q, k, v.
    fn split_heads(&self, qkv: Tensor<3>) -> [Tensor<4>; 3] {
        let [b, t, d3] = qkv.dims();
        let hd = d3 / 3 / self.heads;
        let qkv = qkv
            .reshape([b, t, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]);
        [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, self.heads, t, hd]))
    }

    fn forward_qkv(&self, qkv: Tensor<3>) -> Tensor<3> {
        let out = self_attention(qkv, self.heads, |qkv| {
            let [b, t, d3] = qkv.dims();
            let [q, k, v] = self.split_heads(qkv);
            attend(q, k, v).swap_dims(1, 2).reshape([b, t, d3 / 3])
        });
        per_token(&self.proj, out)
    }
}

/// Queries per call of burn's attention op on devices other than the CPU.
const QUERY_BLOCK: usize = 256;

/// `softmax(q kᵀ / sqrt(hd)) v` with burn's attention op: the path for devices other than the CPU,
/// which runs [`self_attention`]'s kernel instead. Queries go in blocks, as on the CPU: where burn
/// cannot run a fused kernel it forms the `[B, heads, queries, T]` scores, and for all `T` queries
/// at dense-feature lengths that matrix outgrows a GPU buffer (3 heads at 3,601 tokens: 156 MB,
/// over wgpu's 128 MiB binding limit) or its memory.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let tokens = q.dims()[2];
    if tokens <= QUERY_BLOCK {
        return attend_block(q, k, v);
    }
    let blocks = (0..tokens)
        .step_by(QUERY_BLOCK)
        .map(|start| {
            let rows = QUERY_BLOCK.min(tokens - start);
            attend_block(q.clone().narrow(2, start, rows), k.clone(), v.clone())
        })
        .collect();
    Tensor::cat(blocks, 2)
}

fn attend_block(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let head_dim = q.dims()[3];
    let options = AttentionModuleOptions {
        scale: Some((head_dim as f64).powf(-0.5)),
        softcap: None,
        is_causal: false,
    };
    attention(q, k, v, None, None, options)
}

fn attention_probs(q: Tensor<4>, k_t: Tensor<4>, head_dim: usize) -> Tensor<4> {
    let scale = (head_dim as f64).powf(-0.5);
    softmax(q.matmul(k_t).mul_scalar(scale), 3)
}

/// `layer` on every token as one `[B*T, D]` matrix product. burn keeps a `[B, T, D]` input as `B`
/// products of `T` rows when merging would not make the output squarer (as for `T = 65` tokens at 64 px).
fn per_token(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = linear_forward(layer, x.reshape([b * t, d]));
    let width = y.dims()[1];
    y.reshape([b, t, width])
}

/// MLP (`fc1 -> GELU -> fc2`) or SwiGLU (`w12 -> silu(x1) * x2 -> w3`).
#[derive(Module, Debug)]
pub struct FeedForward {
    pub input: Linear,
    pub output: Linear,
    gated: bool,
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = per_token(&self.input, x);
        let hidden = if self.gated {
            let width = hidden.dims()[2] / 2;
            let gate = hidden.clone().narrow(2, 0, width);
            silu(gate) * hidden.narrow(2, width, width)
        } else {
            gelu(hidden)
        };
        per_token(&self.output, hidden)
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Option<Param<Tensor<1>>>,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
    pub ls2: Option<Param<Tensor<1>>>,
    /// Epsilon of `norm1` and `norm2` (burn's `LayerNorm` keeps its own private).
    norm_eps: f64,
}

fn layer_scale(x: Tensor<3>, gamma: &Option<Param<Tensor<1>>>) -> Tensor<3> {
    match gamma {
        Some(g) => x * g.val().unsqueeze::<3>(),
        None => x,
    }
}

/// Per-sample Bernoulli keep mask (kept with probability `1 - drop`), survivors scaled by `1 / (1 - drop)`.
fn drop_path(y: Tensor<3>, drop: f64, uniform: &mut dyn FnMut() -> f64) -> Tensor<3> {
    let b = y.dims()[0];
    let keep = 1.0 - drop;
    let scale = if keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 };
    let mask: Vec<f32> = (0..b)
        .map(|_| if uniform() < keep { scale } else { 0.0 })
        .collect();
    let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, 1, 1]), &y.device());
    y * mask
}

impl Block {
    fn qkv(&self, x: &Tensor<3>) -> Tensor<3> {
        per_token(
            &self.attn.qkv,
            layer_norm_forward(&self.norm1, self.norm_eps, x.clone()),
        )
    }

    /// Finishes the block from its input and that input's `qkv` projection.
    fn forward_with_qkv(&self, x: Tensor<3>, qkv: Tensor<3>) -> Tensor<3> {
        let x = x + layer_scale(self.attn.forward_qkv(qkv), &self.ls1);
        let y = self
            .mlp
            .forward(layer_norm_forward(&self.norm2, self.norm_eps, x.clone()));
        x + layer_scale(y, &self.ls2)
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let qkv = self.qkv(&x);
        self.forward_with_qkv(x, qkv)
    }

    /// Training forward with stochastic depth (DINO's `DropPath`): each residual branch is dropped for
    /// a whole sample with probability `drop`, survivors are scaled by `1 / (1 - drop)`. `uniform` draws
    /// `U[0, 1)` numbers (two per sample: attention branch, then MLP branch). `drop <= 0` is [`Self::forward`].
    pub fn forward_drop_path(
        &self,
        x: Tensor<3>,
        drop: f64,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Tensor<3> {
        if drop <= 0.0 {
            return self.forward(x);
        }
        let y = layer_scale(self.attn.forward_qkv(self.qkv(&x)), &self.ls1);
        let x = x + drop_path(y, drop, uniform);
        let normed = layer_norm_forward(&self.norm2, self.norm_eps, x.clone());
        let y = layer_scale(self.mlp.forward(normed), &self.ls2);
        x + drop_path(y, drop, uniform)
    }

    /// Full attention probabilities `[B, heads, T, T]` of this block for input tokens `x`.
    pub fn attention_probs(&self, x: &Tensor<3>) -> Tensor<4> {
        let [q, k, _] = self.attn.split_heads(self.qkv(x));
        let head_dim = q.dims()[3];
        attention_probs(q, k.swap_dims(2, 3), head_dim)
    }
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// `[D, 3, p, p]`
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct Vit {
    pub cls_token: Param<Tensor<3>>,
    pub pos_embed: Param<Tensor<3>>,
    pub register_tokens: Option<Param<Tensor<3>>>,
    pub mask_token: Option<Param<Tensor<2>>>,
    pub patch_embed: PatchEmbed,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    #[module(skip)]
    config: VitConfig,
}

/// Building blocks from already-shaped weights (used by the checkpoint loader and by [`Vit::init`]).
pub struct VitParts {
    pub cls_token: Tensor<3>,
    pub pos_embed: Tensor<3>,
    pub register_tokens: Option<Tensor<3>>,
    pub mask_token: Option<Tensor<2>>,
    pub patch_weight: Tensor<4>,
    pub patch_bias: Tensor<1>,
    pub blocks: Vec<BlockParts>,
    pub norm: (Tensor<1>, Tensor<1>),
}

/// One block's weights; Linear weights are `[in, out]`.
pub struct BlockParts {
    pub norm1: (Tensor<1>, Tensor<1>),
    pub qkv: (Tensor<2>, Tensor<1>),
    pub proj: (Tensor<2>, Tensor<1>),
    pub ls1: Option<Tensor<1>>,
    pub norm2: (Tensor<1>, Tensor<1>),
    pub ffn_in: (Tensor<2>, Tensor<1>),
    pub ffn_out: (Tensor<2>, Tensor<1>),
    pub ls2: Option<Tensor<1>>,
}

/// Draws the N(0, 0.02) initial weights: from burn's global RNG, or from a seeded stream.
struct InitNormal<'a> {
    device: &'a Device,
    rng: Option<Rng>,
}

impl InitNormal<'_> {
    fn draw<const D: usize>(&mut self, shape: [usize; D]) -> Tensor<D> {
        match &mut self.rng {
            None => Tensor::random(
                shape,
                burn::tensor::Distribution::Normal(0.0, 0.02),
                self.device,
            ),
            Some(rng) => {
                let n = shape.iter().product();
                let values: Vec<f32> = (0..n).map(|_| rng.normal(0.02) as f32).collect();
                Tensor::from_data(TensorData::new(values, shape), self.device)
            }
        }
    }
}

fn linear(weight: Tensor<2>, bias: Tensor<1>) -> Linear {
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}

fn layer_norm((gamma, beta): (Tensor<1>, Tensor<1>), eps: f64) -> LayerNorm {
    let mut norm = LayerNormConfig::new(gamma.dims()[0])
        .with_epsilon(eps)
        .init(&gamma.device());
    norm.gamma = Param::from_tensor(gamma);
    norm.beta = Some(Param::from_tensor(beta));
    norm
}

impl Vit {
    /// Assembles a model from weights whose shapes the caller has checked against `config`.
    pub fn from_parts(config: VitConfig, parts: VitParts) -> Self {
        let eps = config.layer_norm_eps;
        let gated = matches!(config.ffn, FfnKind::SwiGlu { .. });
        let blocks = parts
            .blocks
            .into_iter()
            .map(|b| Block {
                norm1: layer_norm(b.norm1, eps),
                attn: Attention {
                    qkv: linear(b.qkv.0, b.qkv.1),
                    proj: linear(b.proj.0, b.proj.1),
                    heads: config.heads,
                },
                ls1: b.ls1.map(Param::from_tensor),
                norm2: layer_norm(b.norm2, eps),
                mlp: FeedForward {
                    input: linear(b.ffn_in.0, b.ffn_in.1),
                    output: linear(b.ffn_out.0, b.ffn_out.1),
                    gated,
                },
                ls2: b.ls2.map(Param::from_tensor),
                norm_eps: eps,
            })
            .collect();
        Vit {
            cls_token: Param::from_tensor(parts.cls_token),
            pos_embed: Param::from_tensor(parts.pos_embed),
            register_tokens: parts.register_tokens.map(Param::from_tensor),
            mask_token: parts.mask_token.map(Param::from_tensor),
            patch_embed: PatchEmbed {
                weight: Param::from_tensor(parts.patch_weight),
                bias: Param::from_tensor(parts.patch_bias),
            },
            blocks,
            norm: layer_norm(parts.norm, eps),
            config,
        }
    }

    /// A freshly initialised model (normal std 0.02 weights, zero biases, unit norms; LayerScale 1e-5).
    pub fn init(config: VitConfig, device: &Device) -> Self {
        Self::init_with(config, InitNormal { device, rng: None })
    }

    /// [`Vit::init`] with weights drawn from `seed` instead of burn's global RNG: the same model
    /// every time, whatever else draws random numbers meanwhile.
    pub fn init_seeded(config: VitConfig, seed: u64, device: &Device) -> Self {
        let rng = Some(Rng::derive(seed, &[0x5EED]));
        Self::init_with(config, InitNormal { device, rng })
    }

    fn init_with(config: VitConfig, mut normal: InitNormal) -> Self {
        let device = normal.device;
        let d = config.dim;
        let p = config.patch_size;
        let zeros = |n: usize| Tensor::<1>::zeros([n], device);
        let ones = |n: usize| Tensor::<1>::ones([n], device);
        let ffn_widths = match config.ffn {
            FfnKind::Mlp { hidden } => (hidden, hidden),
            FfnKind::SwiGlu { hidden } => (2 * hidden, hidden),
        };
        let gamma = || {
            config
                .layer_scale
                .then(|| Tensor::<1>::full([d], 1e-5, device))
        };
        let blocks = (0..config.depth)
            .map(|_| BlockParts {
                norm1: (ones(d), zeros(d)),
                qkv: (normal.draw([d, 3 * d]), zeros(3 * d)),
                proj: (normal.draw([d, d]), zeros(d)),
                ls1: gamma(),
                norm2: (ones(d), zeros(d)),
                ffn_in: (normal.draw([d, ffn_widths.0]), zeros(ffn_widths.0)),
                ffn_out: (normal.draw([ffn_widths.1, d]), zeros(d)),
                ls2: gamma(),
            })
            .collect();
        let grid = config.pos_grid;
        let parts = VitParts {
            cls_token: normal.draw([1, 1, d]),
            pos_embed: normal.draw([1, 1 + grid * grid, d]),
            register_tokens: (config.registers > 0).then(|| normal.draw([1, config.registers, d])),
            mask_token: None,
            patch_weight: normal.draw([d, 3, p, p]),
            patch_bias: zeros(d),
            blocks,
            norm: (ones(d), zeros(d)),
        };
        Vit::from_parts(config, parts)
    }

    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.cls_token.val().device()
    }

    /// Positional table for a grid, `[1, 1 + N, D]`, resampled exactly as the official code does.
    pub fn positional_table(&self, grid: Grid, square_image: bool) -> Tensor<3> {
        let table = self.pos_embed.val();
        let m = self.config.pos_grid;
        let d = self.config.dim;
        if keeps_stored_table(m, grid.rows, grid.cols, square_image) {
            return table;
        }
        let device = table.device();
        let mode = self.config.pos_mode;
        let axis = |n: usize| {
            Tensor::<2>::from_data(TensorData::new(axis_matrix(mode, m, n), [n, m]), &device)
        };
        let cls = table.clone().narrow(1, 0, 1);
        let patches = table.narrow(1, 1, m * m).reshape([m, m * d]);
        // Rows: [gh, M] x [M, M*D] -> [gh, M, D]; then columns on [gh*D, M] x [M, gw].
        let by_rows = axis(grid.rows).matmul(patches).reshape([grid.rows, m, d]);
        let by_cols = by_rows
            .swap_dims(1, 2)
            .reshape([grid.rows * d, m])
            .matmul(axis(grid.cols).transpose())
            .reshape([grid.rows, d, grid.cols])
            .swap_dims(1, 2)
            .reshape([1, grid.len(), d]);
        Tensor::cat(vec![cls, by_cols], 1)
    }

    /// Patch-embeds `[B, 3, H, W]` images with the given stride and assembles the token sequence.
    ///
    /// Returns `[B, 1 + R + N, D]` and the patch grid.
    pub fn embed(&self, images: Tensor<4>, stride: usize) -> (Tensor<3>, Grid) {
        let [b, _, h, w] = images.dims();
        let p = self.config.patch_size;
        let d = self.config.dim;
        let grid = Grid::for_image(h, w, p, stride).unwrap_or(Grid {
            rows: 0,
            cols: 0,
            patch: p,
            stride,
        });
        let patches = conv2d_with_bias(
            images,
            self.patch_embed.weight.val(),
            self.patch_embed.bias.val(),
            stride,
            [0; 4],
        )
        .reshape([b, d, grid.len()])
        .swap_dims(1, 2);
        let cls = self.cls_token.val().repeat_dim(0, b);
        let tokens = Tensor::cat(vec![cls, patches], 1) + self.positional_table(grid, h == w);
        let tokens = match &self.register_tokens {
            Some(registers) => {
                let t = tokens.dims()[1];
                Tensor::cat(
                    vec![
                        tokens.clone().narrow(1, 0, 1),
                        registers.val().repeat_dim(0, b),
                        tokens.narrow(1, 1, t - 1),
                    ],
                    1,
                )
            }
            None => tokens,
        };
        (tokens, grid)
    }

    /// Final-normed CLS embedding `[B, D]` (the official `model(x)`).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let tokens = self.forward_tokens(images, self.config.patch_size).0;
        let [b, _, d] = tokens.dims();
        tokens.narrow(1, 0, 1).reshape([b, d])
    }

    /// Training forward with stochastic depth: final-normed CLS `[B, D]` where block `i` drops its
    /// residual branches with rate `linspace(0, drop_path_rate, depth)[i]` (DINO v1). `uniform` draws
    /// `U[0, 1)` numbers. With a zero rate this is [`Self::forward`].
    pub fn forward_drop_path(
        &self,
        images: Tensor<4>,
        drop_path_rate: f64,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Tensor<2> {
        if drop_path_rate <= 0.0 {
            return self.forward(images);
        }
        let (mut x, _) = self.embed(images, self.config.patch_size);
        let depth = self.blocks.len();
        for (i, block) in self.blocks.iter().enumerate() {
            let rate = if depth > 1 {
                drop_path_rate * i as f64 / (depth - 1) as f64
            } else {
                0.0
            };
            x = block.forward_drop_path(x, rate, uniform);
        }
        let tokens = layer_norm_forward(&self.norm, self.config.layer_norm_eps, x);
        let [b, _, d] = tokens.dims();
        tokens.narrow(1, 0, 1).reshape([b, d])
    }

    /// All tokens after the last block and the final norm, `[B, T, D]`.
    pub fn forward_tokens(&self, images: Tensor<4>, stride: usize) -> (Tensor<3>, Grid) {
        let (mut x, grid) = self.embed(images, stride);
        for block in &self.blocks {
            x = block.forward(x);
        }
        (
            layer_norm_forward(&self.norm, self.config.layer_norm_eps, x),
            grid,
        )
    }

    /// Runs blocks `0..=layer` and returns that block's output and `qkv` projection.
    pub fn layer_outputs(&self, images: Tensor<4>, layer: usize, stride: usize) -> LayerOutputs {
        let (mut x, grid) = self.embed(images, stride);
        for block in &self.blocks[..layer] {
            x = block.forward(x);
        }
        let block = &self.blocks[layer];
        let qkv = block.qkv(&x);
        let tokens = block.forward_with_qkv(x, qkv.clone());
        LayerOutputs {
            tokens,
            qkv,
            heads: self.config.heads,
            prefix_tokens: self.config.prefix_tokens(),
            grid,
        }
    }

    /// Attention probabilities of block `layer` for the query tokens `rows` only: `[B, heads, rows, T]`.
    ///
    /// Token 0 is CLS; patches start at `prefix_tokens()`. Only the requested rows of the score
    /// matrix are formed, so large grids stay cheap.
    pub fn attention_rows(
        &self,
        images: Tensor<4>,
        layer: usize,
        rows: &[usize],
        stride: usize,
    ) -> (Tensor<4>, Grid) {
        let (mut x, grid) = self.embed(images, stride);
        for block in &self.blocks[..layer] {
            x = block.forward(x);
        }
        let block = &self.blocks[layer];
        let [q, k, _] = block.attn.split_heads(block.qkv(&x));
        let device = q.device();
        let index = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
            &device,
        );
        let hd = self.config.head_dim();
        (
            attention_probs(q.select(2, index), k.swap_dims(2, 3), hd),
            grid,
        )
    }
}
