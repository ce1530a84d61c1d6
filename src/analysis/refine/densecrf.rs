//! Fully connected CRF over the pixels of an image with Gaussian edge potentials, solved by mean
//! field (Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
//! Potentials", NIPS 2011). The message passing is a Gaussian filter in a feature space, done on a
//! permutohedral lattice. Semantics of pydensecrf's `DenseCRF2D` (lucasb-eyer/pydensecrf over
//! Krähenbühl's code): a Gaussian kernel on (x, y) / sxy and a bilateral kernel on
//! (x / sxy, y / sxy, r / srgb, g / srgb, b / srgb), diagonal, symmetric normalisation
//! (`D^-1/2 K D^-1/2` with `D` the kernel's row sums), Potts compatibilities, and the update
//! `Q = softmax(-U + sum_k w_k K_k Q)`, all in single precision.

use super::RefineError;
use super::lattice::Lattice;

/// Settings of the CRF; `Default` gives the ones dino-vit-features' part co-segmentation uses.
#[derive(Clone, Debug, PartialEq)]
pub struct CrfConfig {
    /// Spatial standard deviation (pixels) and Potts weight of the Gaussian kernel.
    pub gaussian_sxy: f32,
    pub gaussian_compat: f32,
    /// Spatial and colour standard deviations and Potts weight of the bilateral kernel.
    pub bilateral_sxy: f32,
    pub bilateral_srgb: f32,
    pub bilateral_compat: f32,
    /// Mean-field iterations.
    pub iterations: usize,
}

impl Default for CrfConfig {
    fn default() -> Self {
        CrfConfig {
            gaussian_sxy: 3.0,
            gaussian_compat: 50.0,
            bilateral_sxy: 5.0,
            bilateral_srgb: 13.0,
            bilateral_compat: 15.0,
            iterations: 10,
        }
    }
}

/// The result of inference.
#[derive(Clone, Debug)]
pub struct CrfOutput {
    pub labels: usize,
    /// Marginals, pixel-major (`pixels x labels`).
    pub marginals: Vec<f32>,
}

impl CrfOutput {
    /// The most likely label of each pixel (the first on a tie, as numpy's argmax).
    pub fn argmax(&self) -> Vec<usize> {
        self.marginals
            .chunks_exact(self.labels)
            .map(|q| {
                let mut best = 0;
                for (l, &v) in q.iter().enumerate() {
                    if v > q[best] {
                        best = l;
                    }
                }
                best
            })
            .collect()
    }
}

/// One pairwise term: a normalised lattice filter and its Potts weight.
struct Kernel {
    lattice: Lattice,
    /// `1 / sqrt(row sum)` per pixel.
    norm: Vec<f32>,
    weight: f32,
}

impl Kernel {
    fn new(features: &[f32], dim: usize, weight: f32) -> Result<Kernel, RefineError> {
        let lattice = Lattice::new(features, dim)?;
        let ones = vec![1f32; lattice.points()];
        let norm = lattice
            .filter(&ones, 1)
            .into_iter()
            .map(|s| 1.0 / (s + 1e-20).sqrt())
            .collect();
        Ok(Kernel {
            lattice,
            norm,
            weight,
        })
    }

    /// Adds `weight * D^-1/2 K D^-1/2 q` to `acc` (`labels` values per pixel).
    fn add_message(&self, q: &[f32], labels: usize, acc: &mut [f32]) {
        let scaled: Vec<f32> = q
            .chunks_exact(labels)
            .zip(&self.norm)
            .flat_map(|(row, &n)| row.iter().map(move |&v| v * n))
            .collect();
        let filtered = self.lattice.filter(&scaled, labels);
        for ((dst, row), &n) in acc
            .chunks_exact_mut(labels)
            .zip(filtered.chunks_exact(labels))
            .zip(&self.norm)
        {
            for (d, &v) in dst.iter_mut().zip(row) {
                *d += self.weight * (v * n);
            }
        }
    }
}

/// Mean-field inference on a `width x height` RGB image (row-major, 3 bytes a pixel) with
/// `unary` energies (pixel-major, `pixels x labels`; lower is more likely).
pub fn dense_crf(
    rgb: &[u8],
    width: usize,
    height: usize,
    unary: &[f32],
    labels: usize,
    config: &CrfConfig,
) -> Result<CrfOutput, RefineError> {
    let n = width * height;
    if labels == 0 {
        return Err(RefineError::NoLabels);
    }
    if rgb.len() != 3 * n || unary.len() != n * labels {
        return Err(RefineError::UnaryShape {
            width,
            height,
            labels,
            pixels: rgb.len() / 3,
            unary: unary.len(),
        });
    }
    if unary.iter().any(|v| !v.is_finite()) {
        return Err(RefineError::NonFinite("unary energies"));
    }
    check_std("gaussian sxy", config.gaussian_sxy)?;
    check_std("bilateral sxy", config.bilateral_sxy)?;
    check_std("bilateral srgb", config.bilateral_srgb)?;
    let (gaussian, bilateral) = rayon::join(
        || {
            Kernel::new(
                &gaussian_features(width, height, config.gaussian_sxy),
                2,
                config.gaussian_compat,
            )
        },
        || {
            Kernel::new(
                &bilateral_features(rgb, width, height, config),
                5,
                config.bilateral_compat,
            )
        },
    );
    let kernels = [gaussian?, bilateral?];
    let mut q = vec![0f32; n * labels];
    let negative_unary: Vec<f32> = unary.iter().map(|&u| -u).collect();
    softmax_rows(&negative_unary, labels, &mut q);
    let mut scores = vec![0f32; n * labels];
    for _ in 0..config.iterations {
        scores.copy_from_slice(&negative_unary);
        for kernel in &kernels {
            kernel.add_message(&q, labels, &mut scores);
        }
        softmax_rows(&scores, labels, &mut q);
    }
    Ok(CrfOutput {
        labels,
        marginals: q,
    })
}

fn check_std(name: &'static str, value: f32) -> Result<(), RefineError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(RefineError::InvalidSetting(name))
    }
}

fn gaussian_features(width: usize, height: usize, sxy: f32) -> Vec<f32> {
    let mut features = Vec::with_capacity(2 * width * height);
    for y in 0..height {
        for x in 0..width {
            features.extend([x as f32 / sxy, y as f32 / sxy]);
        }
    }
    features
}

fn bilateral_features(rgb: &[u8], width: usize, height: usize, config: &CrfConfig) -> Vec<f32> {
    let (sxy, srgb) = (config.bilateral_sxy, config.bilateral_srgb);
    let mut features = Vec::with_capacity(5 * width * height);
    for y in 0..height {
        for x in 0..width {
            let p = &rgb[3 * (y * width + x)..3 * (y * width + x) + 3];
            features.extend([
                x as f32 / sxy,
                y as f32 / sxy,
                f32::from(p[0]) / srgb,
                f32::from(p[1]) / srgb,
                f32::from(p[2]) / srgb,
            ]);
        }
    }
    features
}

/// Row-wise softmax with the row maximum subtracted first (pydensecrf's `expAndNormalize`).
fn softmax_rows(input: &[f32], labels: usize, out: &mut [f32]) {
    for (src, dst) in input.chunks_exact(labels).zip(out.chunks_exact_mut(labels)) {
        let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s - max).exp();
        }
        let sum = eigen_sum(dst);
        for d in dst.iter_mut() {
            *d /= sum;
        }
    }
}

/// Sum in the order of Eigen's vectorised reduction (4-lane SSE packets summed lane-wise, then
/// the lanes as (0 + 2) + (1 + 3), then the tail), the order pydensecrf's normalisation uses;
/// with Potts weights of 50 the iterations amplify even last-bit differences at label edges.
fn eigen_sum(values: &[f32]) -> f32 {
    let packets = values.len() / 4;
    if packets == 0 {
        return values.iter().sum();
    }
    let mut lanes = [0f32; 4];
    lanes.copy_from_slice(&values[..4]);
    for p in 1..packets {
        for (lane, &v) in lanes.iter_mut().zip(&values[4 * p..4 * p + 4]) {
            *lane += v;
        }
    }
    let mut sum = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
    for &v in &values[4 * packets..] {
        sum += v;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_iterations_the_marginals_are_the_unary_softmax() {
        let rgb = vec![0u8; 3 * 4];
        let unary = [0.0, 1.0, 2.0, 0.0, 1.0, 1.0, 3.0, 0.0];
        let config = CrfConfig {
            iterations: 0,
            ..CrfConfig::default()
        };
        let out = dense_crf(&rgb, 2, 2, &unary, 2, &config).unwrap();
        let p = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((out.marginals[0] - p).abs() < 1e-6);
        assert_eq!(out.argmax(), [0, 1, 0, 1]);
    }

    #[test]
    fn smoothing_flips_an_isolated_pixel_on_a_flat_image() {
        let (w, h) = (9, 9);
        let rgb = vec![128u8; 3 * w * h];
        let mut unary = Vec::new();
        for i in 0..w * h {
            // Everyone prefers label 0 a little, the centre pixel prefers label 1 a little.
            if i == 40 {
                unary.extend([0.5, 0.0]);
            } else {
                unary.extend([0.0, 0.5]);
            }
        }
        let out = dense_crf(&rgb, w, h, &unary, 2, &CrfConfig::default()).unwrap();
        assert!(out.argmax().iter().all(|&l| l == 0));
        let sums_to_one = out
            .marginals
            .chunks_exact(2)
            .all(|q| (q[0] + q[1] - 1.0).abs() < 1e-5);
        assert!(sums_to_one);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let rgb = vec![0u8; 12];
        let config = CrfConfig::default();
        assert!(matches!(
            dense_crf(&rgb, 2, 2, &[0.0; 7], 2, &config),
            Err(RefineError::UnaryShape { .. })
        ));
        assert!(matches!(
            dense_crf(&rgb, 2, 2, &[], 0, &config),
            Err(RefineError::NoLabels)
        ));
        let mut unary = [0.0f32; 8];
        unary[3] = f32::NAN;
        assert!(matches!(
            dense_crf(&rgb, 2, 2, &unary, 2, &config),
            Err(RefineError::NonFinite(_))
        ));
        let bad = CrfConfig {
            bilateral_srgb: 0.0,
            ..config
        };
        assert!(matches!(
            dense_crf(&rgb, 2, 2, &[0.0; 8], 2, &bad),
            Err(RefineError::InvalidSetting(_))
        ));
    }
}
