//! A small seeded PRNG (SplitMix64) for augmentations, synthetic scenes, data order and drop-path.
//!
//! Streams are derived from `(seed, purpose, indices)` with [`Rng::derive`], so nothing random has to be
//! saved in a checkpoint: iteration `it` draws the same numbers whether or not the run was resumed.

/// SplitMix64 (Steele, Lea & Flood 2014): 64-bit state, full period, good enough statistics for
/// augmentation sampling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// An independent stream for `seed` and a path of indices (e.g. `[purpose, iteration, sample]`).
    pub fn derive(seed: u64, path: &[u64]) -> Self {
        let mut state = mix(seed ^ 0x6A09_E667_F3BC_C909);
        for &p in path {
            state = mix(state ^ mix(p.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        }
        Rng { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Uniform integer in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `true` with probability `p` (`rand < p`, as `RandomApply` and friends).
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Normal with mean 0 and standard deviation `std` (Box-Muller).
    pub fn normal(&mut self, std: f64) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::derive(1, &[2, 3]);
        let mut y = Rng::derive(1, &[2, 4]);
        assert_ne!(x.next_u64(), y.next_u64());
        assert_eq!(
            Rng::derive(1, &[2, 3]).next_u64(),
            Rng::derive(1, &[2, 3]).next_u64()
        );
    }

    #[test]
    fn uniform_values_stay_in_range_with_the_right_mean() {
        let mut rng = Rng::new(42);
        let n = 20_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            sum += u;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
        assert!((0..1000).all(|_| rng.below(3) < 3));
        let mut v: Vec<usize> = (0..10).collect();
        rng.shuffle(&mut v);
        v.sort_unstable();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    }
}
