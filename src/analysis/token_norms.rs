//! Token norms and register attention (Darcet et al., "Vision Transformers Need Registers",
//! ICLR 2024): the L2 norm of every token of a block's output, the high-norm outlier patches that
//! DINOv2 without registers grows in its later blocks, and, for register models, the attention
//! that CLS and every patch pay to each register token.
//!
//! Norms are of the block's output tokens before the final LayerNorm (the residual stream), as
//! Darcet et al. measure them (their Fig. 3 and §2.1).

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::model::host::{HostReadError, f32_values};
use crate::model::{Facet, Grid, LayerOutputs, PreparedImage, Vit};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenNormError {
    #[error("block {block} does not exist: the model has {depth} blocks (0-based)")]
    BlockOutOfRange { block: usize, depth: usize },
    #[error("the model has no register tokens")]
    NoRegisters,
    #[error("an image of {width}x{height} is smaller than one {patch}-pixel patch")]
    ImageTooSmall {
        width: usize,
        height: usize,
        patch: usize,
    },
    #[error(transparent)]
    HostRead(#[from] HostReadError),
}

/// L2 norms of one block's output tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenNorms {
    pub block: usize,
    pub grid: Grid,
    /// CLS first, then the registers (`1 + registers` values).
    pub prefix: Vec<f32>,
    /// Patches, `[rows * cols]` row-major.
    pub patches: Vec<f32>,
}

impl TokenNorms {
    pub fn cls(&self) -> f32 {
        self.prefix[0]
    }

    /// Norms of the register tokens (empty without registers).
    pub fn registers(&self) -> &[f32] {
        &self.prefix[1..]
    }
}

/// Attention of CLS and every patch to each register token at one block.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterAttention {
    pub block: usize,
    pub heads: usize,
    pub registers: usize,
    pub grid: Grid,
    /// `[heads, 1 + rows * cols, registers]`: query CLS first, then the patches row-major; the
    /// softmax over all keys, so a row sums to the share of attention that goes to registers.
    pub values: Vec<f32>,
}

impl RegisterAttention {
    /// Query rows per head: CLS and the patches.
    pub fn queries(&self) -> usize {
        1 + self.grid.len()
    }

    /// Head `head`'s `[1 + rows * cols, registers]`.
    pub fn head(&self, head: usize) -> &[f32] {
        let n = self.queries() * self.registers;
        &self.values[head * n..(head + 1) * n]
    }

    /// Mean over heads, `[1 + rows * cols, registers]`.
    pub fn head_mean(&self) -> Vec<f32> {
        let n = self.queries() * self.registers;
        (0..n)
            .map(|i| {
                (0..self.heads).map(|h| self.values[h * n + i]).sum::<f32>() / self.heads as f32
            })
            .collect()
    }

    /// What CLS pays to each register in `map` (a head or the mean): `[registers]`.
    pub fn cls_row(map: &[f32], registers: usize) -> &[f32] {
        &map[..registers]
    }

    /// What every patch pays to register `register` in `map` (a head or the mean): `[rows * cols]`.
    pub fn patch_map(&self, map: &[f32], register: usize) -> Vec<f32> {
        (0..self.grid.len())
            .map(|p| map[(1 + p) * self.registers + register])
            .collect()
    }
}

/// A block's token norms and, for register models, its register attention.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockTokens {
    pub norms: TokenNorms,
    pub registers: Option<RegisterAttention>,
}

fn check_block(vit: &Vit, block: usize) -> Result<(), TokenNormError> {
    let depth = vit.config().depth;
    if block >= depth {
        return Err(TokenNormError::BlockOutOfRange { block, depth });
    }
    Ok(())
}

fn check_image(vit: &Vit, image: &PreparedImage) -> Result<(), TokenNormError> {
    let patch = vit.config().patch_size;
    match Grid::for_image(image.height(), image.width(), patch, patch) {
        Some(_) => Ok(()),
        None => Err(TokenNormError::ImageTooSmall {
            width: image.width(),
            height: image.height(),
            patch,
        }),
    }
}

/// Norms of the tokens `[1, T, D]` of one image.
fn norms_of(
    tokens: Tensor<3>,
    block: usize,
    grid: Grid,
    prefix: usize,
) -> Result<TokenNorms, HostReadError> {
    let mut values = f32_values((tokens.clone() * tokens).sum_dim(2).sqrt())?;
    let patches = values.split_off(prefix.min(values.len()));
    Ok(TokenNorms {
        block,
        grid,
        prefix: values,
        patches,
    })
}

/// Query rows per softmax: bounds the `[heads, rows, T]` scores at dense-image token counts.
const QUERY_BLOCK: usize = 256;

/// Register attention from a block's `qkv`: `softmax(q kᵀ / sqrt(hd))` over all keys, formed in
/// blocks of query rows; the register columns kept, the register query rows dropped.
fn registers_of(
    outputs: &LayerOutputs,
    block: usize,
    registers: usize,
) -> Result<RegisterAttention, HostReadError> {
    let q = outputs.per_head(Facet::Query);
    let k_t = outputs.per_head(Facet::Key).swap_dims(2, 3);
    let [_, heads, tokens, head_dim] = q.dims();
    let scale = (head_dim as f64).powf(-0.5);
    let blocks = (0..tokens)
        .step_by(QUERY_BLOCK)
        .map(|start| {
            let rows = QUERY_BLOCK.min(tokens - start);
            let scores = q.clone().narrow(2, start, rows).matmul(k_t.clone());
            softmax(scores.mul_scalar(scale), 3).narrow(3, 1, registers)
        })
        .collect();
    let all = f32_values(Tensor::cat(blocks, 2))?;
    // Rows 1..=registers are the registers' own queries.
    let prefix = 1 + registers;
    let per_head = tokens * registers;
    let values = all
        .chunks_exact(per_head)
        .flat_map(|head| {
            head[..registers]
                .iter()
                .chain(&head[prefix * registers..])
                .copied()
        })
        .collect();
    Ok(RegisterAttention {
        block,
        heads,
        registers,
        grid: outputs.grid,
        values,
    })
}

/// Token norms of block `block` of one image, and its register attention when the model has
/// registers: one forward pass up to the block.
pub fn block_tokens(
    vit: &Vit,
    image: &PreparedImage,
    block: usize,
) -> Result<BlockTokens, TokenNormError> {
    check_block(vit, block)?;
    check_image(vit, image)?;
    let config = vit.config();
    let outputs = vit.layer_outputs(image.to_tensor(&vit.device()), block, config.patch_size);
    let registers = match config.registers {
        0 => None,
        r => Some(registers_of(&outputs, block, r)?),
    };
    let norms = norms_of(outputs.tokens, block, outputs.grid, config.prefix_tokens())?;
    Ok(BlockTokens { norms, registers })
}

/// Token norms of block `block` of one image.
pub fn token_norms(
    vit: &Vit,
    image: &PreparedImage,
    block: usize,
) -> Result<TokenNorms, TokenNormError> {
    check_block(vit, block)?;
    check_image(vit, image)?;
    let config = vit.config();
    let outputs = vit.layer_outputs(image.to_tensor(&vit.device()), block, config.patch_size);
    Ok(norms_of(
        outputs.tokens,
        block,
        outputs.grid,
        config.prefix_tokens(),
    )?)
}

/// Token norms of every block of one image, in one forward pass.
pub fn all_token_norms(
    vit: &Vit,
    image: &PreparedImage,
) -> Result<Vec<TokenNorms>, TokenNormError> {
    check_image(vit, image)?;
    let prefix = vit.config().prefix_tokens();
    let (mut x, grid) = vit.embed(image.to_tensor(&vit.device()), vit.config().patch_size);
    let mut out = Vec::with_capacity(vit.blocks.len());
    for (block, layer) in vit.blocks.iter().enumerate() {
        x = layer.forward(x);
        out.push(norms_of(x.clone(), block, grid, prefix)?);
    }
    Ok(out)
}

/// The attention CLS and every patch pay to each register token at block `block`.
pub fn register_attention(
    vit: &Vit,
    image: &PreparedImage,
    block: usize,
) -> Result<RegisterAttention, TokenNormError> {
    block_tokens(vit, image, block)?
        .registers
        .ok_or(TokenNormError::NoRegisters)
}

/// Iglewicz and Hoaglin's cut-off for the modified z-score `0.6745 (x - median) / MAD`.
pub const MODIFIED_Z_CUTOFF: f32 = 3.5;

/// The default outlier threshold of a set of norms: `median + 3.5 / 0.6745 * MAD` (about
/// `median + 5.19 MAD`), i.e. a modified z-score above 3.5 (Iglewicz & Hoaglin, "How to Detect and
/// Handle Outliers", 1993). Darcet et al. use a fixed norm of 150, which fits ViT-g only; norms
/// scale with the model, so a rule relative to the image's own norm distribution is used
/// instead. The median and MAD hardly move with the few artifact tokens (about 2% of the patches,
/// their §2.1), so these do not raise the bar that singles them out. `NaN` for no norms.
pub fn suggested_threshold(norms: &[f32]) -> f32 {
    let median = median(norms.to_vec());
    let mad = median_of_deviations(norms, median);
    median + MODIFIED_Z_CUTOFF / 0.6745 * mad
}

fn median_of_deviations(values: &[f32], center: f32) -> f32 {
    median(values.iter().map(|v| (v - center).abs()).collect())
}

fn median(mut values: Vec<f32>) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    values.sort_by(f32::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Which norms are outliers: strictly above `threshold`.
pub fn outliers(norms: &[f32], threshold: f32) -> Vec<bool> {
    norms.iter().map(|&n| n > threshold).collect()
}

/// Counts of values in equal bins between their extremes.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub low: f32,
    /// Width of every bin.
    pub width: f32,
    pub counts: Vec<usize>,
}

impl Histogram {
    /// `bins` bins from the smallest to the largest value, the largest in the last bin (no
    /// bins for no finite values).
    pub fn of(values: &[f32], bins: usize) -> Histogram {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (low, high) = finite
            .clone()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if bins == 0 || low > high {
            return Histogram {
                low: 0.0,
                width: 1.0,
                counts: Vec::new(),
            };
        }
        let width = ((high - low) / bins as f32).max(f32::EPSILON * high.abs().max(1.0));
        let mut counts = vec![0; bins];
        for v in finite {
            counts[(((v - low) / width) as usize).min(bins - 1)] += 1;
        }
        Histogram { low, width, counts }
    }

    /// Edges of bin `bin`.
    pub fn bin(&self, bin: usize) -> (f32, f32) {
        let low = self.low + bin as f32 * self.width;
        (low, low + self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_threshold_singles_out_a_few_large_norms() {
        // 50 norms around 10, two artifacts far above.
        let mut norms: Vec<f32> = (0..50).map(|i| 9.0 + (i % 5) as f32 * 0.5).collect();
        norms.extend([80.0, 95.0]);
        let t = suggested_threshold(&norms);
        assert!(t > 11.0 && t < 80.0, "threshold {t}");
        assert_eq!(outliers(&norms, t).iter().filter(|&&o| o).count(), 2);
        // Median 3, MAD 1: 3 + 3.5 / 0.6745.
        let t = suggested_threshold(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((t - (3.0 + 3.5 / 0.6745)).abs() < 1e-5);
        // Equal norms: nothing stands out.
        assert!(
            outliers(&[2.0; 4], suggested_threshold(&[2.0; 4]))
                .iter()
                .all(|o| !o)
        );
        assert!(suggested_threshold(&[]).is_nan());
    }

    #[test]
    fn histogram_bins_cover_every_value() {
        let h = Histogram::of(&[1.0, 2.0, 3.0, 31.0, f32::NAN], 30);
        assert_eq!(h.counts.len(), 30);
        assert_eq!(h.counts.iter().sum::<usize>(), 4);
        assert!((h.width - 1.0).abs() < 1e-6);
        assert_eq!(h.counts[29], 1, "the largest value falls in the last bin");
        assert_eq!(h.bin(2), (3.0, 4.0));
        assert!(Histogram::of(&[], 30).counts.is_empty());
        assert_eq!(Histogram::of(&[5.0; 3], 4).counts, vec![3, 0, 0, 0]);
    }

    #[test]
    fn register_rows_and_maps_index_queries_then_registers() {
        let grid = Grid {
            rows: 1,
            cols: 2,
            patch: 14,
            stride: 14,
        };
        // 2 heads, 3 queries (CLS, 2 patches), 2 registers.
        let attn = RegisterAttention {
            block: 0,
            heads: 2,
            registers: 2,
            grid,
            values: vec![
                0.1, 0.2, 0.3, 0.4, 0.5, 0.6, // head 0
                0.3, 0.4, 0.5, 0.6, 0.7, 0.8, // head 1
            ],
        };
        let mean = attn.head_mean();
        for (m, want) in mean.iter().zip([0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) {
            assert!((m - want).abs() < 1e-6);
        }
        assert_eq!(RegisterAttention::cls_row(attn.head(1), 2), &[0.3, 0.4]);
        assert_eq!(attn.patch_map(attn.head(0), 1), vec![0.4, 0.6]);
    }
}
