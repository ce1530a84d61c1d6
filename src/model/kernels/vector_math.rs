//! Element-wise math written so the compiler vectorises it, and the run-time choice of instruction
//! set for such loops. The arithmetic is the same for every instruction set (no fused multiply-adds
//! are introduced), so results do not depend on the machine.

/// `e^x` for `x <= 88`, to about 2 ulp; inputs below -87 give about 1.6e-38 (never a subnormal).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to the nearest integer n without a rounding call and leaves n in
    // the low bits of the sum, from where 2^n is assembled with integer operations only (a float
    // to integer conversion would not vectorise).
    const ROUND: f32 = 12_582_912.0;
    const ROUND_BITS_MINUS_BIAS: u32 = 0x4B40_0000 - 127;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(ROUND_BITS_MINUS_BIAS) << 23);
    poly * scale
}

/// Sum of `a[i] * b[i]` in 16 interleaved partial sums, so the compiler can vectorise it.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..16 {
            lanes[i] += ca[i] * cb[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Sum in 16 interleaved partial sums, so the compiler can vectorise it.
#[inline(always)]
pub(super) fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Largest value (`-inf` for none), in 16 interleaved lanes so the compiler can vectorise it.
#[inline(always)]
pub(super) fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for i in 0..16 {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// `$name(args)` runs `$body` compiled for AVX-512F or AVX2 when the CPU has them, for the
/// baseline target otherwise.
macro_rules! dispatched {
    ($name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(super) use dispatched;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_plain_ones() {
        for len in [0, 1, 15, 16, 17, 100] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain_sum: f32 = a.iter().sum();
            let plain_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let plain_max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert!((sum(&a) - plain_sum).abs() < 1e-5);
            assert!((dot(&a, &b) - plain_dot).abs() < 1e-5);
            assert_eq!(max(&a), plain_max);
        }
    }

    #[test]
    fn exp_is_accurate_over_the_clamped_range() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 2e-38);
    }
}
