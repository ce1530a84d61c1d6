//! NumPy's legacy `RandomState`: the Mersenne Twister (Matsumoto & Nishimura 1998) seeded with an
//! integer, and `permutation`, exactly as `numpy.random.RandomState(seed).permutation(n)` draws
//! it, so that splits made with scikit-learn's `random_state` are reproduced index for index.

const N: usize = 624;
const M: usize = 397;

/// MT19937 in NumPy's legacy seeding (`mt19937_seed`: the Knuth initialisation of the state
/// from a 32-bit seed).
pub struct RandomState {
    state: [u32; N],
    position: usize,
}

impl RandomState {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let previous = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(i as u32);
        }
        RandomState { state, position: N }
    }

    fn regenerate(&mut self) {
        let mix = |upper: u32, lower: u32| (upper & 0x8000_0000) | (lower & 0x7fff_ffff);
        for i in 0..N {
            let y = mix(self.state[i], self.state[(i + 1) % N]);
            let twisted = (y >> 1) ^ if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[i] = self.state[(i + M) % N] ^ twisted;
        }
        self.position = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.position >= N {
            self.regenerate();
        }
        let mut y = self.state[self.position];
        self.position += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` by masked rejection (NumPy's `random_interval`).
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let value = self.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `RandomState.permutation(n)`: `arange(n)` shuffled by Fisher-Yates from the last element
    /// down.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut values: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u32) as usize;
            values.swap(i, j);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outputs_match_the_reference_mersenne_twister() {
        // The reference implementation's `init_genrand(5489)` stream (mt19937ar.c's default seed).
        let mut rng = RandomState::new(5489);
        let first: Vec<u32> = (0..3).map(|_| rng.next_u32()).collect();
        assert_eq!(first, [3_499_211_612, 581_869_302, 3_890_346_734]);
    }

    #[test]
    fn permutations_match_numpy() {
        // `numpy.random.RandomState(42).permutation(10)` and `RandomState(0).permutation(5)`.
        assert_eq!(
            RandomState::new(42).permutation(10),
            [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]
        );
        assert_eq!(RandomState::new(0).permutation(5), [2, 0, 1, 3, 4]);
    }
}
