//! NumPy's summation order (`pairwise_sum` in numpy/_core/src/umath/loops_utils.h.src), which
//! `np.sum` uses on contiguous float arrays: reproducing scikit-learn's t-SNE to the bit needs its
//! sums to round the same way (see the parent module).

use std::ops::Add;

/// Sums taken in NumPy's order; f32 sums stay in f32 as NumPy's do.
pub(super) trait Summand: Copy + Send + Sync + Add<Output = Self> {
    const ZERO: Self;
}

impl Summand for f32 {
    const ZERO: f32 = 0.0;
}

impl Summand for f64 {
    const ZERO: f64 = 0.0;
}

/// NumPy's `PW_BLOCKSIZE`.
const BLOCK: usize = 128;
/// Halves at least this long are summed on two rayon tasks; the order of additions is unchanged.
const PARALLEL_FROM: usize = 1 << 16;

/// `np.sum(values)`: the reduction's identity plus the pairwise sum.
pub(super) fn numpy_sum<T: Summand>(values: &[T]) -> T {
    T::ZERO + pairwise(values)
}

fn pairwise<T: Summand>(a: &[T]) -> T {
    let n = a.len();
    if n < 8 {
        a.iter().fold(T::ZERO, |sum, &v| sum + v)
    } else if n <= BLOCK {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let whole = n - n % 8;
        for chunk in a[8..whole].chunks_exact(8) {
            r.iter_mut().zip(chunk).for_each(|(r, &v)| *r = *r + v);
        }
        let sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[whole..].iter().fold(sum, |sum, &v| sum + v)
    } else {
        let half = n / 2;
        let (left, right) = a.split_at(half - half % 8);
        if n >= PARALLEL_FROM {
            let (l, r) = rayon::join(|| pairwise(left), || pairwise(right));
            l + r
        } else {
            pairwise(left) + pairwise(right)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_for_representable_sums_of_every_shape() {
        // Integers are summed exactly in any order: this checks that nothing is dropped or doubled
        // on any of the three paths (short, one block, halves), including the parallel halves.
        for n in [0, 1, 7, 8, 9, 127, 128, 129, 1000, 200_003] {
            let values: Vec<f64> = (0..n).map(|i| (i % 17) as f64).collect();
            assert_eq!(numpy_sum(&values), values.iter().sum::<f64>(), "{n}");
        }
    }

    #[test]
    fn rounds_as_numpy() {
        // Values from NumPy 2.4: np.sum(np.float32([1e8] + [1] * k)); adding left to right in f32
        // loses every 1 (half an ulp of 1e8 is 4), the accumulators and halves keep some.
        for (ones, numpy) in [(15, 100_000_008.0), (299, 100_000_288.0)] {
            let mut values = vec![1e8f32];
            values.extend(std::iter::repeat_n(1.0, ones));
            assert_eq!(numpy_sum(&values), numpy, "{ones}");
            assert_eq!(values.iter().sum::<f32>(), 100_000_000.0);
        }
    }
}
