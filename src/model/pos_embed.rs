//! Exact re-implementation of the positional-table resampling of the official DINO and DINOv2 code.
//!
//! The official models call `torch.nn.functional.interpolate` on the `[1, D, M, M]` patch table. Two
//! variants exist (`interpolate_pos_encoding` in each repository's `vision_transformer.py`):
//! - DINO v1 and DINOv2 without registers: bicubic (Keys A = -0.75), `scale_factor = (n + 0.1) / M`,
//!   so the source step is `M / (n + 0.1)`, not `M / n`, and taps outside the table replicate the edge.
//! - DINOv2 with registers: antialiased bicubic (PIL-style, a = -0.5) with `size = n`; taps are truncated
//!   at the borders and the weights renormalised.
//!
//! The interpolation weights are computed on the host in f64; the table itself is resampled on the
//! model's device as two small matrix products (see [`axis_matrix`]).

use super::config::PosEmbedMode;

/// One output sample: the input indices it reads and their weights.
struct Taps {
    indices: Vec<usize>,
    weights: Vec<f64>,
}

fn cubic_near(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic_far(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// PyTorch's non-antialiased bicubic (`align_corners=False`) with source step `step`.
fn bicubic_taps(input: usize, output: usize, step: f64) -> Vec<Taps> {
    const A: f64 = -0.75;
    let last = input as i64 - 1;
    (0..output)
        .map(|o| {
            let src = (o as f64 + 0.5) * step - 0.5;
            let i0 = (src.floor() as i64).min(last);
            let t = (src - i0 as f64).clamp(0.0, 1.0);
            let weights = vec![
                cubic_far(t + 1.0, A),
                cubic_near(t, A),
                cubic_near(1.0 - t, A),
                cubic_far(2.0 - t, A),
            ];
            let indices = (0..4)
                .map(|k| (i0 - 1 + k).clamp(0, last) as usize)
                .collect();
            Taps { indices, weights }
        })
        .collect()
}

/// PyTorch's antialiased bicubic (`antialias=True`, `align_corners=False`, PIL's filter with a = -0.5).
fn antialiased_bicubic_taps(input: usize, output: usize) -> Vec<Taps> {
    const A: f64 = -0.5;
    let filter = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            cubic_near(x, A)
        } else if x < 2.0 {
            cubic_far(x, A)
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv_scale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            // `as i64` truncates toward zero, exactly like the C++ static_cast.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let indices: Vec<usize> = (lo..hi).collect();
            let mut weights: Vec<f64> = indices
                .iter()
                .map(|&j| filter((j as f64 - center + 0.5) * inv_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps { indices, weights }
        })
        .collect()
}

fn axis_taps(mode: PosEmbedMode, input: usize, output: usize) -> Vec<Taps> {
    match mode {
        PosEmbedMode::BicubicOffset => {
            bicubic_taps(input, output, input as f64 / (output as f64 + 0.1))
        }
        PosEmbedMode::BicubicAntialias => antialiased_bicubic_taps(input, output),
    }
}

/// Whether the official code keeps the stored table as it is: same token count *and* a square image.
pub fn keeps_stored_table(grid: usize, out_h: usize, out_w: usize, square_image: bool) -> bool {
    out_h * out_w == grid * grid && square_image
}

/// Dense `[output, input]` row-major matrix that resamples one axis of the table.
///
/// The 2-D resampling is separable: `out = R · T · Cᵀ` per channel, with `R` for the rows and `C`
/// for the columns. Expressing it as matrices lets it run on the model's device and stay
/// differentiable for training.
pub fn axis_matrix(mode: PosEmbedMode, input: usize, output: usize) -> Vec<f32> {
    let mut matrix = vec![0f64; output * input];
    for (o, taps) in axis_taps(mode, input, output).into_iter().enumerate() {
        for (i, w) in taps.indices.into_iter().zip(taps.weights) {
            matrix[o * input + i] += w;
        }
    }
    matrix.into_iter().map(|w| w as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host reference: applies the two axis matrices to a `[grid*grid, dim]` table.
    fn resample(
        table: &[f32],
        grid: usize,
        dim: usize,
        oh: usize,
        ow: usize,
        mode: PosEmbedMode,
    ) -> Vec<f32> {
        let r = axis_matrix(mode, grid, oh);
        let c = axis_matrix(mode, grid, ow);
        let mut out = vec![0f32; oh * ow * dim];
        for y in 0..oh {
            for x in 0..ow {
                for i in 0..grid {
                    for j in 0..grid {
                        let w = r[y * grid + i] * c[x * grid + j];
                        for d in 0..dim {
                            out[(y * ow + x) * dim + d] += w * table[(i * grid + j) * dim + d];
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn stored_table_is_kept_only_for_square_images_with_the_same_count() {
        assert!(keeps_stored_table(4, 4, 4, true));
        assert!(!keeps_stored_table(4, 4, 4, false));
        assert!(!keeps_stored_table(4, 5, 5, true));
    }

    #[test]
    fn offset_mode_moves_samples_even_for_the_native_size() {
        // scale_factor (4 + 0.1)/4 makes the step 4/4.1, so the identity is not reproduced.
        let m = axis_matrix(PosEmbedMode::BicubicOffset, 4, 4);
        assert!((m[0] - 1.0).abs() > 1e-4 || (m[15] - 1.0).abs() > 1e-4);
    }

    #[test]
    fn antialias_mode_is_the_identity_at_the_native_size() {
        let m = axis_matrix(PosEmbedMode::BicubicAntialias, 5, 5);
        for o in 0..5 {
            for i in 0..5 {
                let expected = if o == i { 1.0 } else { 0.0 };
                assert!((m[o * 5 + i] - expected).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn rows_sum_to_one() {
        for (i, o) in [(4, 3), (4, 9), (37, 60), (37, 16), (14, 14)] {
            for mode in [PosEmbedMode::BicubicOffset, PosEmbedMode::BicubicAntialias] {
                let m = axis_matrix(mode, i, o);
                for row in m.chunks(i) {
                    let s: f32 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{mode:?} {i}->{o}: {s}");
                }
            }
        }
    }

    #[test]
    fn known_pytorch_weights_for_upsampling_4_to_9_with_offset() {
        // src(0) = 0.5 * 4/9.1 - 0.5 = -0.28022; i0 = -1, t = 0.71978: taps -2..1 clamp to 0,0,0,1.
        let m = axis_matrix(PosEmbedMode::BicubicOffset, 4, 9);
        let t: f64 = 0.5 * 4.0 / 9.1 - 0.5 + 1.0;
        let a = -0.75;
        let w3 = cubic_far(2.0 - t, a);
        assert!((m[1] as f64 - w3).abs() < 1e-6, "{} vs {w3}", m[1]);
        assert!((m[0] as f64 - (1.0 - w3)).abs() < 1e-6);
    }

    #[test]
    fn linear_ramp_keeps_its_slope_away_from_the_borders() {
        // Bicubic reproduces linear functions exactly where no edge tap is clamped.
        let ramp: Vec<f32> = (0..64).map(|i| (i % 8) as f32).collect();
        let out = resample(&ramp, 8, 1, 8, 16, PosEmbedMode::BicubicAntialias);
        for (x, &value) in out.iter().enumerate().take(12).skip(4) {
            let expected = (x as f64 + 0.5) * 0.5 - 0.5;
            assert!((value as f64 - expected).abs() < 1e-5, "{x}: {value}");
        }
    }

    #[test]
    fn constant_table_stays_constant() {
        let table = vec![2.5f32; 5 * 5 * 3];
        for mode in [PosEmbedMode::BicubicOffset, PosEmbedMode::BicubicAntialias] {
            let out = resample(&table, 5, 3, 7, 3, mode);
            assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5));
        }
    }
}
