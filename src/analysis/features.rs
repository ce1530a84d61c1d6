//! Dense descriptors as in dino-vit-features' `ViTExtractor` (`extractor.py`; Amir et al., "Deep ViT
//! Features as Dense Visual Descriptors", ECCVW 2022):
//! a block's facet on a (possibly overlapping) patch grid, the log-binning descriptor and the
//! CLS-attention saliency map.

use crate::analysis::attention::{Query, attention_maps};
use crate::analysis::colormap::normalize_min_max;
use crate::model::host::{HostReadError, f32_values};
use crate::model::{Facet, Grid, PreparedImage, Vit};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureError {
    #[error("layer {layer} does not exist: the model has {depth} blocks (0-based)")]
    LayerOutOfRange { layer: usize, depth: usize },
    #[error("stride {stride} must be between 1 and the patch size {patch} and divide it")]
    BadStride { stride: usize, patch: usize },
    #[error("attention head {head} does not exist: the model has {heads} heads")]
    HeadOutOfRange { head: usize, heads: usize },
    #[error("an image of {width}x{height} is smaller than one {patch}-pixel patch")]
    ImageTooSmall {
        width: usize,
        height: usize,
        patch: usize,
    },
    #[error(transparent)]
    HostRead(#[from] HostReadError),
}

/// Dense descriptors of one image on its patch grid.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    pub grid: Grid,
    /// Channels per descriptor.
    pub dim: usize,
    /// `[grid.len(), dim]`, patches row-major.
    pub data: Vec<f32>,
    /// `(width, height)` of the image the model saw: what patch centres are measured in.
    pub image_size: (usize, usize),
}

impl FeatureMap {
    pub fn len(&self) -> usize {
        self.grid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grid.is_empty()
    }

    /// Descriptor of patch `index` (row-major).
    pub fn descriptor(&self, index: usize) -> &[f32] {
        &self.data[index * self.dim..(index + 1) * self.dim]
    }

    /// A copy with every descriptor scaled to unit L2 norm (zero vectors stay zero).
    pub fn normalized(&self) -> FeatureMap {
        let mut out = self.clone();
        l2_normalize_rows(&mut out.data, self.dim);
        out
    }
}

/// Scales each `dim`-long row of `data` to unit L2 norm in place; all-zero rows are left alone.
pub fn l2_normalize_rows(data: &mut [f32], dim: usize) {
    if dim == 0 {
        return;
    }
    for row in data.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// Which descriptor to extract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorSpec {
    /// 0-based block index.
    pub layer: usize,
    pub facet: Facet,
    /// Patch-embedding stride; `None` uses the patch size (no overlap).
    pub stride: Option<usize>,
    /// Log-binning with hierarchy 2 (17 bins, `17 * D` channels).
    pub log_bin: bool,
}

impl DescriptorSpec {
    /// dino-vit-features' extractor default: layer 11 key, stride 4, no binning.
    pub fn amir_default() -> Self {
        DescriptorSpec {
            layer: 11,
            facet: Facet::Key,
            stride: Some(4),
            log_bin: false,
        }
    }
}

/// Checks a layer and stride against the model; returns the stride to use.
pub fn check_spec(vit: &Vit, layer: usize, stride: Option<usize>) -> Result<usize, FeatureError> {
    let config = vit.config();
    if layer >= config.depth {
        return Err(FeatureError::LayerOutOfRange {
            layer,
            depth: config.depth,
        });
    }
    let patch = config.patch_size;
    let stride = stride.unwrap_or(patch);
    if stride == 0 || stride > patch || !patch.is_multiple_of(stride) {
        return Err(FeatureError::BadStride { stride, patch });
    }
    Ok(stride)
}

fn grid_of(vit: &Vit, image: &PreparedImage, stride: usize) -> Result<Grid, FeatureError> {
    let patch = vit.config().patch_size;
    Grid::for_image(image.height(), image.width(), patch, stride).ok_or(
        FeatureError::ImageTooSmall {
            width: image.width(),
            height: image.height(),
            patch,
        },
    )
}

/// Descriptors of `spec` for one prepared image (CLS and registers dropped).
pub fn extract(
    vit: &Vit,
    image: &PreparedImage,
    spec: DescriptorSpec,
) -> Result<FeatureMap, FeatureError> {
    let stride = check_spec(vit, spec.layer, spec.stride)?;
    grid_of(vit, image, stride)?;
    let outputs = vit.layer_outputs(image.to_tensor(&vit.device()), spec.layer, stride);
    let descriptors = outputs.descriptors(spec.facet);
    let [_, n, dim] = descriptors.dims();
    let data = f32_values(descriptors)?;
    debug_assert_eq!(data.len(), n * dim);
    let map = FeatureMap {
        grid: outputs.grid,
        dim,
        data,
        image_size: (image.width(), image.height()),
    };
    Ok(if spec.log_bin { log_bin(&map, 2) } else { map })
}

/// The log-binning descriptor (§1.4): for each cell, `3^k`-box-averaged maps sampled on a 3x3
/// lattice of spacing `3^k` (all 9 samples at level 0, the 8 off-centre ones above), borders
/// clamped. Output has `(1 + 8 * hierarchy) * dim` channels, bins in that order, row-major.
pub fn log_bin(map: &FeatureMap, hierarchy: usize) -> FeatureMap {
    let (rows, cols, dim) = (map.grid.rows, map.grid.cols, map.dim);
    let bins = 1 + 8 * hierarchy;
    let pooled: Vec<Vec<f32>> = (0..hierarchy)
        .map(|k| box_average(&map.data, rows, cols, dim, 3usize.pow(k as u32) / 2))
        .collect();
    let mut data = vec![0f32; rows * cols * bins * dim];
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    for (cell, out) in data.chunks_exact_mut(bins * dim).enumerate() {
        let (y, x) = ((cell / cols) as isize, (cell % cols) as isize);
        let mut bin = 0;
        for (k, level) in pooled.iter().enumerate() {
            let step = 3isize.pow(k as u32);
            for dy in [-step, 0, step] {
                for dx in [-step, 0, step] {
                    if k > 0 && dy == 0 && dx == 0 {
                        continue;
                    }
                    let source = clamp(y + dy, rows) * cols + clamp(x + dx, cols);
                    out[bin * dim..(bin + 1) * dim]
                        .copy_from_slice(&level[source * dim..(source + 1) * dim]);
                    bin += 1;
                }
            }
        }
    }
    FeatureMap {
        grid: map.grid,
        dim: bins * dim,
        data,
        image_size: map.image_size,
    }
}

/// Mean over the `(2r+1)^2` window of each cell, counting only cells inside the grid
/// (`AvgPool2d(count_include_pad=False)`), via per-channel integral images.
fn box_average(data: &[f32], rows: usize, cols: usize, dim: usize, radius: usize) -> Vec<f32> {
    if radius == 0 {
        return data.to_vec();
    }
    // Integral image in f64 so long sums keep f32 accuracy: `(rows+1) x (cols+1) x dim`.
    let stride_row = (cols + 1) * dim;
    let mut integral = vec![0f64; (rows + 1) * stride_row];
    for y in 0..rows {
        for x in 0..cols {
            for c in 0..dim {
                let above = integral[y * stride_row + (x + 1) * dim + c];
                let left = integral[(y + 1) * stride_row + x * dim + c];
                let diagonal = integral[y * stride_row + x * dim + c];
                integral[(y + 1) * stride_row + (x + 1) * dim + c] =
                    data[(y * cols + x) * dim + c] as f64 + above + left - diagonal;
            }
        }
    }
    let mut out = vec![0f32; rows * cols * dim];
    for y in 0..rows {
        let (y0, y1) = (y.saturating_sub(radius), (y + radius + 1).min(rows));
        for x in 0..cols {
            let (x0, x1) = (x.saturating_sub(radius), (x + radius + 1).min(cols));
            let count = ((y1 - y0) * (x1 - x0)) as f64;
            for c in 0..dim {
                let sum = integral[y1 * stride_row + x1 * dim + c]
                    - integral[y0 * stride_row + x1 * dim + c]
                    - integral[y1 * stride_row + x0 * dim + c]
                    + integral[y0 * stride_row + x0 * dim + c];
                out[(y * cols + x) * dim + c] = (sum / count) as f32;
            }
        }
    }
    out
}

/// Heads averaged for saliency: dino-vit-features' 0, 2, 4, 5 for DINO ViT-S/8 (heads 1 and 3
/// attend to the background there), every head for other models (its issue #13).
pub fn default_saliency_heads(vit: &Vit) -> Vec<usize> {
    let c = vit.config();
    if c.patch_size == 8 && c.dim == 384 && c.heads == 6 && c.registers == 0 {
        vec![0, 2, 4, 5]
    } else {
        (0..c.heads).collect()
    }
}

/// Saliency (§1.5): the CLS attention row of the last block over the patches, averaged over
/// `heads` and min-max normalised to [0, 1]. Length `grid.len()`.
pub fn saliency(
    vit: &Vit,
    image: &PreparedImage,
    stride: Option<usize>,
    heads: &[usize],
) -> Result<(Vec<f32>, Grid), FeatureError> {
    let layer = vit.config().depth - 1;
    let stride = check_spec(vit, layer, stride)?;
    grid_of(vit, image, stride)?;
    let total = vit.config().heads;
    if let Some(&head) = heads.iter().find(|&&h| h >= total) {
        return Err(FeatureError::HeadOutOfRange { head, heads: total });
    }
    let maps = attention_maps(
        vit,
        image.to_tensor(&vit.device()),
        layer,
        Query::Cls,
        stride,
    )?;
    let n = maps.grid.len();
    let mut mean = vec![0f32; n];
    for &h in heads {
        mean.iter_mut().zip(maps.head(h)).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut()
        .for_each(|m| *m /= heads.len().max(1) as f32);
    Ok((normalize_min_max(&mean), maps.grid))
}

/// Nearest-neighbour resampling of a grid map to another grid (`F.interpolate(mode="nearest")`:
/// source index `floor(i * src / dst)`).
pub fn resize_nearest(values: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let ((fr, fc), (tr, tc)) = (from, to);
    let mut out = Vec::with_capacity(tr * tc);
    for y in 0..tr {
        let sy = (y * fr / tr).min(fr - 1);
        for x in 0..tc {
            let sx = (x * fc / tc).min(fc - 1);
            out.push(values[sy * fc + sx]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: usize, cols: usize) -> Grid {
        Grid {
            rows,
            cols,
            patch: 8,
            stride: 4,
        }
    }

    fn ramp_map(rows: usize, cols: usize, dim: usize) -> FeatureMap {
        FeatureMap {
            grid: grid(rows, cols),
            dim,
            data: (0..rows * cols * dim).map(|i| i as f32).collect(),
            image_size: (0, 0),
        }
    }

    #[test]
    fn box_average_counts_only_cells_inside_the_grid() {
        // 3x3 grid of one channel holding 0..9; the corner averages its 2x2 neighbourhood.
        let data: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let out = box_average(&data, 3, 3, 1, 1);
        assert_eq!(out[0], (0.0 + 1.0 + 3.0 + 4.0) / 4.0);
        assert_eq!(out[4], 4.0);
        assert_eq!(out[5], (1.0 + 2.0 + 4.0 + 5.0 + 7.0 + 8.0) / 6.0);
    }

    #[test]
    fn log_bin_has_17_bins_in_reference_order() {
        let map = ramp_map(5, 6, 2);
        let binned = log_bin(&map, 2);
        assert_eq!(binned.dim, 34);
        // Centre cell (2, 3): bin 4 is the cell itself, bin 0 its upper-left neighbour.
        let d = binned.descriptor(2 * 6 + 3);
        assert_eq!(&d[8..10], map.descriptor(2 * 6 + 3));
        assert_eq!(&d[0..2], map.descriptor(6 + 2));
        // Corner (0, 0): the upper-left sample clamps to the corner itself.
        assert_eq!(&binned.descriptor(0)[0..2], map.descriptor(0));
    }

    #[test]
    fn nearest_resize_matches_torch_indexing() {
        let v = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(
            resize_nearest(&v, (2, 2), (4, 4)),
            vec![
                0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 3.0, 3.0
            ]
        );
    }
}
