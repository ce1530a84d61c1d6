//! Gaussian filtering in a feature space with the permutohedral lattice (Adams, Baek & Davis,
//! "Fast High-Dimensional Filtering Using the Permutohedral Lattice", Eurographics 2010): splat
//! each point onto the vertices of its enclosing simplex, blur along the d + 1 lattice axes with
//! a [1/2 1 1/2] kernel, slice back. The rounding, barycentric weights, blur and the final
//! `1 / (1 + 2^-d)` scale follow `permutohedral.cpp` of Krähenbühl's dense CRF code as wrapped by
//! pydensecrf, in single precision like it, so the CRF sees the same filter.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

use super::RefineError;

/// Most feature dimensions a lattice takes (the bilateral kernel of a colour image has 5).
pub const MAX_DIM: usize = 8;

/// Largest lattice coordinate kept, with room for the simplex offsets and neighbours.
const KEY_LIMIT: f32 = (i16::MAX - 2 * MAX_DIM as i16 - 2) as f32;

/// Lattice keys are the first `d` coordinates of a vertex (the last one follows from the sum),
/// padded with zeros.
type Key = [i16; MAX_DIM];

/// A multiply-rotate hash (as rustc's FxHash) for lattice keys: the table sees millions of
/// lookups per image, and SipHash made building the lattice the slowest part of the CRF.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyTable = HashMap<Key, u32, BuildHasherDefault<KeyHasher>>;

/// A lattice built for a set of points; it filters any number of values per point.
#[derive(Clone, Debug)]
pub struct Lattice {
    points: usize,
    dim: usize,
    /// Lattice vertex of each point's `d + 1` simplex corners (`points x (d + 1)`), counted
    /// from 1: row 0 of the value buffers is a vertex that stays zero.
    offsets: Vec<u32>,
    barycentric: Vec<f32>,
    vertices: usize,
    /// Neighbours of each vertex along each axis (`(d + 1) x vertices`, counted from 1), 0 when
    /// the neighbour holds no point mass: the blur then reads the zero row without a branch.
    neighbours: Vec<[u32; 2]>,
}

impl Lattice {
    /// Builds the lattice of `points` points whose `dim` features are in `features`
    /// (point-major), already divided by the kernel's standard deviations.
    pub fn new(features: &[f32], dim: usize) -> Result<Lattice, RefineError> {
        if dim == 0 || dim > MAX_DIM || !features.len().is_multiple_of(dim) {
            return Err(RefineError::FeatureShape {
                len: features.len(),
                dim,
            });
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(RefineError::NonFinite("lattice features"));
        }
        let points = features.len() / dim;
        let d = dim;
        let mut table =
            KeyTable::with_capacity_and_hasher(points * (d + 1) / 4, Default::default());
        let mut keys: Vec<Key> = Vec::new();
        let mut offsets = vec![0u32; points * (d + 1)];
        let mut barycentric = vec![0f32; points * (d + 1)];

        // canonical[r][i]: the simplex vertex of remainder r, coordinate of rank i.
        let canonical: Vec<Vec<i32>> = (0..=d)
            .map(|r| {
                (0..=d)
                    .map(|i| {
                        if i <= d - r {
                            r as i32
                        } else {
                            r as i32 - (d as i32 + 1)
                        }
                    })
                    .collect()
            })
            .collect();
        // Expected standard deviation of the filter (p. 6 of Adams et al.); diagonal of E (p. 5).
        let inv_std_dev = ((2.0f64 / 3.0).sqrt() * (d as f64 + 1.0)) as f32;
        let scale: Vec<f32> = (0..d)
            .map(|i| (1.0 / (((i + 2) * (i + 1)) as f64).sqrt() * f64::from(inv_std_dev)) as f32)
            .collect();
        let down = 1.0f32 / (d as f32 + 1.0);
        let up = d as f32 + 1.0;
        let mut elevated = vec![0f32; d + 1];
        let mut rem0 = vec![0f32; d + 1];
        let mut rank = vec![0i32; d + 1];
        let mut bary = vec![0f32; d + 2];
        let mut key: Key = [0; MAX_DIM];

        for k in 0..points {
            let f = &features[k * d..(k + 1) * d];
            // Elevate onto the hyperplane: y = E p.
            let mut sm = 0f32;
            for j in (1..=d).rev() {
                let cf = f[j - 1] * scale[j - 1];
                elevated[j] = sm - j as f32 * cf;
                sm += cf;
            }
            elevated[0] = sm;
            // Nearest remainder-0 point by rounding each coordinate to a multiple of d + 1.
            let mut sum = 0i32;
            for i in 0..=d {
                let v = down * elevated[i];
                let hi = v.ceil() * up;
                let lo = v.floor() * up;
                let r = if hi - elevated[i] < elevated[i] - lo {
                    hi
                } else {
                    lo
                };
                // Keys are i16, as in permutohedral.cpp: far-out features would wrap around.
                if r.abs() > KEY_LIMIT {
                    return Err(RefineError::FeaturesTooLarge);
                }
                rem0[i] = r;
                sum = (sum as f32 + r * down) as i32;
            }
            // Rank of each coordinate's residual: where it sits in the sorted order.
            rank.iter_mut().for_each(|r| *r = 0);
            for i in 0..d {
                let di = elevated[i] - rem0[i];
                for j in i + 1..=d {
                    if di < elevated[j] - rem0[j] {
                        rank[i] += 1;
                    } else {
                        rank[j] += 1;
                    }
                }
            }
            // Bring the point back onto the plane if the rounding moved it off.
            for i in 0..=d {
                rank[i] += sum;
                if rank[i] < 0 {
                    rank[i] += d as i32 + 1;
                    rem0[i] += d as f32 + 1.0;
                } else if rank[i] > d as i32 {
                    rank[i] -= d as i32 + 1;
                    rem0[i] -= d as f32 + 1.0;
                }
            }
            // Barycentric coordinates (p. 10 of Adams et al.).
            bary.iter_mut().for_each(|b| *b = 0.0);
            for i in 0..=d {
                let v = (elevated[i] - rem0[i]) * down;
                let r = rank[i] as usize;
                bary[d - r] += v;
                bary[d - r + 1] -= v;
            }
            bary[0] += 1.0 + bary[d + 1];
            for remainder in 0..=d {
                for i in 0..d {
                    key[i] = (rem0[i] as i32 + canonical[remainder][rank[i] as usize]) as i16;
                }
                let next = keys.len() as u32;
                let index = *table.entry(key).or_insert_with(|| {
                    keys.push(key);
                    next
                });
                offsets[k * (d + 1) + remainder] = index + 1;
                barycentric[k * (d + 1) + remainder] = bary[remainder];
            }
        }

        let vertices = keys.len();
        // Millions of read-only lookups: the one part of building worth spreading over threads.
        let neighbours: Vec<[u32; 2]> = (0..=d)
            .into_par_iter()
            .flat_map_iter(|axis| {
                let table = &table;
                keys.iter().map(move |key| {
                    let mut n1: Key = [0; MAX_DIM];
                    let mut n2: Key = [0; MAX_DIM];
                    for k in 0..d {
                        n1[k] = key[k] - 1;
                        n2[k] = key[k] + 1;
                    }
                    if axis < d {
                        n1[axis] = key[axis] + d as i16;
                        n2[axis] = key[axis] - d as i16;
                    }
                    let find = |key: &Key| table.get(key).map_or(0, |&i| i + 1);
                    [find(&n1), find(&n2)]
                })
            })
            .collect();
        Ok(Lattice {
            points,
            dim,
            offsets,
            barycentric,
            vertices,
            neighbours,
        })
    }

    pub fn points(&self) -> usize {
        self.points
    }

    /// Filters `values` (`channels` values per point, point-major) and returns the result in
    /// the same layout.
    pub fn filter(&self, values: &[f32], channels: usize) -> Vec<f32> {
        let d = self.dim;
        let c = channels;
        let rows = self.vertices + 1;
        let mut lattice = vec![0f32; rows * c];
        for i in 0..self.points {
            let v = &values[i * c..(i + 1) * c];
            for j in 0..=d {
                let o = self.offsets[i * (d + 1) + j] as usize;
                let w = self.barycentric[i * (d + 1) + j];
                for (dst, &src) in lattice[o * c..(o + 1) * c].iter_mut().zip(v) {
                    *dst += w * src;
                }
            }
        }
        let mut blurred = vec![0f32; rows * c];
        for axis in 0..=d {
            let neighbours = &self.neighbours[axis * self.vertices..(axis + 1) * self.vertices];
            for (v, (out, &[n1, n2])) in
                blurred[c..].chunks_exact_mut(c).zip(neighbours).enumerate()
            {
                let old = &lattice[(v + 1) * c..(v + 2) * c];
                let a = &lattice[n1 as usize * c..(n1 as usize + 1) * c];
                let b = &lattice[n2 as usize * c..(n2 as usize + 1) * c];
                for k in 0..c {
                    out[k] = old[k] + 0.5 * (a[k] + b[k]);
                }
            }
            std::mem::swap(&mut lattice, &mut blurred);
        }
        let alpha = 1.0 / (1.0 + 2f32.powi(-(d as i32)));
        let mut out = vec![0f32; self.points * c];
        for i in 0..self.points {
            let dst = &mut out[i * c..(i + 1) * c];
            for j in 0..=d {
                let o = self.offsets[i * (d + 1) + j] as usize;
                let w = self.barycentric[i * (d + 1) + j];
                // The SSE path (more than 2 values) folds alpha into the weight, the scalar path
                // applies it after: the same rounding as pydensecrf either way.
                let values = &lattice[o * c..(o + 1) * c];
                if c > 2 {
                    let w = w * alpha;
                    dst.iter_mut().zip(values).for_each(|(x, &v)| *x += w * v);
                } else {
                    dst.iter_mut()
                        .zip(values)
                        .for_each(|(x, &v)| *x += w * v * alpha);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Brute-force Gaussian filter `sum_j exp(-|f_i - f_j|^2 / 2) v_j`.
    fn brute_force(features: &[f32], dim: usize, values: &[f32]) -> Vec<f32> {
        let n = features.len() / dim;
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let d2: f32 = (0..dim)
                            .map(|k| (features[i * dim + k] - features[j * dim + k]).powi(2))
                            .sum();
                        (-0.5 * d2).exp() * values[j]
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn approximates_a_brute_force_gaussian_filter() {
        let mut rng = Rng::new(2010);
        for (dim, spread) in [(2usize, 6.0), (3, 4.0), (5, 3.0)] {
            let n = 400;
            let features: Vec<f32> = (0..n * dim)
                .map(|_| rng.range(0.0, spread) as f32)
                .collect();
            // A smooth signal over the feature space, so that a normalised filter keeps it.
            let values: Vec<f32> = features
                .chunks_exact(dim)
                .map(|f| (f[0] * 0.7).sin() + (f[dim - 1] * 0.4).cos())
                .collect();
            let ones = vec![1f32; n];
            let lattice = Lattice::new(&features, dim).unwrap();
            let (fast, fast_norm) = (lattice.filter(&values, 1), lattice.filter(&ones, 1));
            let (exact, exact_norm) = (
                brute_force(&features, dim, &values),
                brute_force(&features, dim, &ones),
            );
            // The lattice kernel is a piecewise-linear stand-in for the Gaussian with its own
            // scale (about 0.3 of it in 5-D); the CRF uses the normalised filter, so compare that.
            // Points are dense enough for the lattice to see structure (sparse ones are blurred
            // less faithfully, as Adams et al. note).
            let mut max_error = 0f32;
            let mut mean_error = 0f32;
            for i in 0..n {
                let e = (fast[i] / fast_norm[i] - exact[i] / exact_norm[i]).abs();
                max_error = max_error.max(e);
                mean_error += e / n as f32;
            }
            // Measured: mean 0.015, max 0.06 on a signal of range 4.
            assert!(
                mean_error < 0.03 && max_error < 0.1,
                "dim {dim}: normalised filter error mean {mean_error} max {max_error}"
            );
        }
    }

    #[test]
    fn isolated_points_see_only_themselves() {
        // Far apart in feature space: a point's output moves only with its own input.
        let far = [0.0f32, 0.0, 100.0, 0.0, 0.0, 100.0];
        let lattice = Lattice::new(&far, 2).unwrap();
        let base = lattice.filter(&[1.0, 2.0, 3.0], 1);
        let bumped = lattice.filter(&[1.0, 5.0, 3.0], 1);
        assert!(base.iter().all(|&x| x > 0.0));
        assert_eq!((base[0], base[2]), (bumped[0], bumped[2]));
    }

    #[test]
    fn features_beyond_the_key_range_are_refused() {
        assert!(matches!(
            Lattice::new(&[0.0, 0.0, 20000.0, 0.0], 2),
            Err(RefineError::FeaturesTooLarge)
        ));
        assert!(Lattice::new(&[0.0, 0.0, 2000.0, 0.0], 2).is_ok());
    }

    #[test]
    fn filters_several_channels_independently() {
        let features: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37) % 3.0).collect();
        let lattice = Lattice::new(&features, 2).unwrap();
        let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..20).map(|i| (20 - i) as f32).collect();
        let both: Vec<f32> = a.iter().zip(&b).flat_map(|(&x, &y)| [x, y]).collect();
        let joint = lattice.filter(&both, 2);
        let (fa, fb) = (lattice.filter(&a, 1), lattice.filter(&b, 1));
        for i in 0..20 {
            assert!((joint[2 * i] - fa[i]).abs() < 1e-5);
            assert!((joint[2 * i + 1] - fb[i]).abs() < 1e-5);
        }
        assert!(matches!(
            Lattice::new(&[1.0, 2.0, 3.0], 2),
            Err(RefineError::FeatureShape { .. })
        ));
    }
}
