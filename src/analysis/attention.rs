//! Attention views: CLS or query-patch attention per head, head mean and mass-thresholded masks.

use burn::tensor::Tensor;

use crate::model::host::{HostReadError, f32_values};
use crate::model::{Grid, Vit};

/// Attention of one query token over the patch grid, per head.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMaps {
    pub heads: usize,
    pub grid: Grid,
    /// `[heads, rows * cols]`, row-major; weights of the patch keys (CLS / register keys dropped,
    /// no renormalisation, as in `visualize_attention.py`).
    pub values: Vec<f32>,
}

/// Which token's attention row to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    Cls,
    /// A patch by its grid position.
    Patch {
        row: usize,
        col: usize,
    },
}

impl AttentionMaps {
    pub fn head(&self, head: usize) -> &[f32] {
        let n = self.grid.len();
        &self.values[head * n..(head + 1) * n]
    }

    /// Mean over heads, `[rows * cols]`.
    pub fn head_mean(&self) -> Vec<f32> {
        let n = self.grid.len();
        (0..n)
            .map(|i| {
                (0..self.heads).map(|h| self.values[h * n + i]).sum::<f32>() / self.heads as f32
            })
            .collect()
    }
}

/// Attention of `query` in block `layer` for one preprocessed image `[1, 3, H, W]`.
///
/// Only the requested query row is computed.
pub fn attention_maps(
    vit: &Vit,
    image: Tensor<4>,
    layer: usize,
    query: Query,
    stride: usize,
) -> Result<AttentionMaps, HostReadError> {
    let prefix = vit.config().prefix_tokens();
    let [_, _, h, w] = image.dims();
    let grid = Grid::for_image(h, w, vit.config().patch_size, stride);
    let row = match (query, grid) {
        (Query::Patch { row, col }, Some(g)) => {
            prefix + row.min(g.rows - 1) * g.cols + col.min(g.cols - 1)
        }
        _ => 0,
    };
    let (probs, grid) = vit.attention_rows(image, layer, &[row], stride);
    let [_, heads, _, tokens] = probs.dims();
    let values = f32_values(
        probs
            .reshape([heads, tokens])
            .narrow(1, prefix, tokens - prefix),
    )?;
    Ok(AttentionMaps {
        heads,
        grid,
        values,
    })
}

/// The smallest set of largest values whose share of the total mass reaches `keep` (DINO's
/// thresholded attention): sort ascending, normalise, cumulative sum, keep entries with `c > 1 - keep`.
pub fn mass_mask(values: &[f32], keep: f32) -> Vec<bool> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let total: f32 = values.iter().sum();
    let mut mask = vec![false; values.len()];
    let mut cumulative = 0f32;
    for &i in &order {
        cumulative += values[i] / total;
        mask[i] = cumulative > 1.0 - keep;
    }
    mask
}

/// Attention rollout (Abnar & Zuidema): the product over blocks of `0.5 * A + 0.5 * I`, each
/// head-averaged and row-normalised; returns the CLS row over patches, `[rows * cols]`.
pub fn rollout(
    vit: &Vit,
    image: Tensor<4>,
    stride: usize,
) -> Result<(Vec<f32>, Grid), HostReadError> {
    let prefix = vit.config().prefix_tokens();
    let (mut x, grid) = vit.embed(image, stride);
    let tokens = x.dims()[1];
    let device = x.device();
    let identity = Tensor::<2>::eye(tokens, &device);
    let mut joint = identity.clone();
    for block in &vit.blocks {
        let probs = block
            .attention_probs(&x)
            .mean_dim(1)
            .reshape([tokens, tokens]);
        let mixed = (probs + identity.clone()).div_scalar(2.0);
        let mixed = mixed.clone() / mixed.sum_dim(1);
        joint = mixed.matmul(joint);
        x = block.forward(x);
    }
    let row = f32_values(joint.narrow(0, 0, 1).narrow(1, prefix, tokens - prefix))?;
    Ok((row, grid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_mask_keeps_the_largest_values_up_to_the_share() {
        // Mass shares 0.5, 0.3, 0.15, 0.05: keeping 60% needs the top two.
        let mask = mass_mask(&[0.15, 0.5, 0.05, 0.3], 0.6);
        assert_eq!(mask, vec![false, true, false, true]);
        let all = mass_mask(&[0.15, 0.5, 0.05, 0.3], 1.0);
        assert!(all.iter().all(|&m| m));
        let top = mass_mask(&[0.15, 0.5, 0.05, 0.3], 0.4);
        assert_eq!(top, vec![false, true, false, false]);
    }

    #[test]
    fn head_mean_averages_heads() {
        let maps = AttentionMaps {
            heads: 2,
            grid: Grid {
                rows: 1,
                cols: 2,
                patch: 8,
                stride: 8,
            },
            values: vec![1.0, 3.0, 3.0, 5.0],
        };
        assert_eq!(maps.head_mean(), vec![2.0, 4.0]);
        assert_eq!(maps.head(1), &[3.0, 5.0]);
    }
}
