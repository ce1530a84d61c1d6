//! 2-D convolution (NCHW, one group, square kernel, any stride, explicit and possibly asymmetric
//! zero padding) as im2col in bands of output rows, each band one `gemm` onto the bias.
//!
//! burn's CPU backend runs Stable Diffusion's convolutions at 55-70 % of PyTorch's speed on the
//! same two cores (128-512 channels, 3x3); the VAE encoder at 768 px is almost only such
//! convolutions. Here the band's columns are gathered in parallel and the product is one large
//! `gemm` (depth `C k k`), which runs at PyTorch's speed.

use rayon::prelude::*;

use crate::linalg::{View, gemm_block};

/// Values of one band's column buffer (16 MiB): large enough for efficient products, small
/// enough to stay out of the way of memory at 768 px inputs.
const BAND_VALUES: usize = 1 << 22;

/// Zero padding added on each side of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub outputs: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl ConvShape {
    /// Output `(height, width)`; `None` when the kernel does not fit the padded input.
    pub fn output_size(&self) -> Option<(usize, usize)> {
        let p = self.padding;
        let padded = (
            self.height + p.top + p.bottom,
            self.width + p.left + p.right,
        );
        if self.kernel == 0 || self.stride == 0 || padded.0 < self.kernel || padded.1 < self.kernel
        {
            return None;
        }
        Some((
            (padded.0 - self.kernel) / self.stride + 1,
            (padded.1 - self.kernel) / self.stride + 1,
        ))
    }
}

/// `x` `[N, C, H, W]` convolved with `weight` `[O, C, k, k]` plus `bias` `[O]`: `[N, O, Ho, Wo]`.
pub fn forward(shape: &ConvShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let ConvShape {
        batch,
        channels,
        height,
        width,
        outputs,
        kernel,
        ..
    } = *shape;
    let Some((out_h, out_w)) = shape.output_size() else {
        return Vec::new();
    };
    let input_plane = height * width;
    let plane = out_h * out_w;
    let depth = channels * kernel * kernel;
    assert_eq!(x.len(), batch * channels * input_plane, "conv input size");
    assert_eq!(weight.len(), outputs * depth, "conv weight size");
    assert_eq!(bias.len(), outputs, "conv bias size");
    let mut out = vec![0.0f32; batch * outputs * plane];
    if plane == 0 || outputs == 0 {
        return out;
    }
    let weights = View::new(weight, outputs, depth);
    let band_rows = (BAND_VALUES / (depth * out_w).max(1)).clamp(1, out_h);
    let mut columns = vec![0.0f32; depth * band_rows * out_w];
    for (image, result) in x
        .chunks_exact(channels * input_plane)
        .zip(out.chunks_exact_mut(outputs * plane))
    {
        for (row, b) in result.chunks_exact_mut(plane).zip(bias) {
            row.fill(*b);
        }
        let mut first = 0;
        while first < out_h {
            let rows = band_rows.min(out_h - first);
            let cells = rows * out_w;
            let band = &mut columns[..depth * cells];
            band.par_chunks_mut(cells)
                .enumerate()
                .for_each(|(d, dst)| gather(shape, image, d, first, out_w, dst));
            gemm_block(
                &mut result[first * out_w..],
                plane,
                true,
                1.0,
                1.0,
                weights,
                View::new(band, depth, cells),
            );
            first += rows;
        }
    }
    out
}

/// Row `d` (channel, kernel row, kernel column) of the band's columns: for each output cell from
/// row `first` on, the input value that kernel tap sees (0 in the padding).
fn gather(shape: &ConvShape, image: &[f32], d: usize, first: usize, out_w: usize, dst: &mut [f32]) {
    let k = shape.kernel;
    let (c, ky, kx) = (d / (k * k), (d / k) % k, d % k);
    let (h, w, s) = (shape.height, shape.width, shape.stride);
    let (top, left) = (shape.padding.top, shape.padding.left);
    let channel = &image[c * h * w..(c + 1) * h * w];
    for (i, line) in dst.chunks_exact_mut(out_w).enumerate() {
        let y = (first + i) * s + ky;
        if y < top || y - top >= h {
            line.fill(0.0);
            continue;
        }
        let source = &channel[(y - top) * w..(y - top + 1) * w];
        // Output column j reads input column j * s + kx - left, when inside the image.
        let start = left.saturating_sub(kx).div_ceil(s).min(out_w);
        let end = (w + left)
            .saturating_sub(kx)
            .div_ceil(s)
            .clamp(start, out_w);
        line[..start].fill(0.0);
        line[end..].fill(0.0);
        if start == end {
            continue;
        }
        let from = start * s + kx - left;
        if s == 1 {
            line[start..end].copy_from_slice(&source[from..from + (end - start)]);
        } else {
            for (v, x) in line[start..end]
                .iter_mut()
                .zip(source[from..].iter().step_by(s))
            {
                *v = *x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn naive(shape: &ConvShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow) = shape.output_size().unwrap();
        let (c, h, w, k, s) = (
            shape.channels,
            shape.height,
            shape.width,
            shape.kernel,
            shape.stride,
        );
        let mut out = Vec::new();
        for n in 0..shape.batch {
            for (o, b) in bias.iter().enumerate() {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut acc = *b as f64;
                        for ci in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let y = (r * s + ky) as isize - shape.padding.top as isize;
                                    let xx = (q * s + kx) as isize - shape.padding.left as isize;
                                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                        continue;
                                    }
                                    let xi = ((n * c + ci) * h + y as usize) * w + xx as usize;
                                    let wi = ((o * c + ci) * k + ky) * k + kx;
                                    acc += x[xi] as f64 * weight[wi] as f64;
                                }
                            }
                        }
                        out.push(acc as f32);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_for_every_stride_padding_and_kernel() {
        let pad = |top, left, bottom, right| Padding {
            top,
            left,
            bottom,
            right,
        };
        let cases = [
            // SD's 3x3 convolutions, the VAE's downsample (right and bottom padding only), 1x1
            // shortcuts, an odd stride and a kernel wider than the padded width's remainder.
            (2, 5, 9, 11, 4, 3, 1, pad(1, 1, 1, 1)),
            (1, 3, 10, 7, 6, 3, 2, pad(0, 0, 1, 1)),
            (1, 8, 6, 5, 3, 1, 1, pad(0, 0, 0, 0)),
            (1, 2, 13, 12, 3, 5, 3, pad(2, 1, 0, 2)),
            (1, 1, 4, 4, 1, 4, 1, pad(0, 0, 0, 0)),
        ];
        for (i, &(batch, channels, height, width, outputs, kernel, stride, padding)) in
            cases.iter().enumerate()
        {
            let shape = ConvShape {
                batch,
                channels,
                height,
                width,
                outputs,
                kernel,
                stride,
                padding,
            };
            let x = super::super::test_values(batch * channels * height * width, i as u64, -2.0);
            let weight = super::super::test_values(
                outputs * channels * kernel * kernel,
                100 + i as u64,
                -2.0,
            );
            let bias = super::super::test_values(outputs, 200 + i as u64, -2.0);
            let ours = forward(&shape, &x, &weight, &bias);
            let theirs = naive(&shape, &x, &weight, &bias);
            assert_eq!(ours.len(), theirs.len(), "case {i}");
            let worst = ours
                .iter()
                .zip(&theirs)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs() / b.abs().max(1.0)));
            assert!(worst < 1e-5, "case {i}: {worst}");
        }
    }

    #[test]
    fn bands_split_large_outputs_without_changing_them() {
        // A 1 x 1 kernel over 1,100 x 4,000 pixels: bands of 1,048 rows, so two of them.
        let shape = ConvShape {
            batch: 1,
            channels: 1,
            height: 1100,
            width: 4000,
            outputs: 2,
            kernel: 1,
            stride: 1,
            padding: Padding {
                top: 0,
                left: 0,
                bottom: 0,
                right: 0,
            },
        };
        let x = super::super::test_values(1100 * 4000, 7, -2.0);
        let out = forward(&shape, &x, &[2.0, -1.0], &[0.5, 0.0]);
        assert!(
            out[..x.len()]
                .iter()
                .zip(&x)
                .all(|(o, v)| *o == 2.0 * v + 0.5)
        );
        assert!(out[x.len()..].iter().zip(&x).all(|(o, v)| *o == -v));
    }
}
