//! The colour model of GrabCut (Rother, Kolmogorov & Blake, "GrabCut: Interactive Foreground
//! Extraction using Iterated Graph Cuts", SIGGRAPH 2004): a mixture of full-covariance Gaussians
//! over RGB, fitted by hard assignment. The arithmetic follows OpenCV's `GMM` class in
//! `modules/imgproc/src/grabcut.cpp`: densities without the `(2 pi)^(-3/2)` factor (it cancels in
//! the cut), and 0.01 added to the diagonal of a near-singular covariance.

use super::RefineError;
use super::color_kmeans::kmeans_labels;

/// Components per model, OpenCV's `componentsCount`.
pub const COMPONENTS: usize = 5;
/// Lloyd iterations of the k-means that seeds the components (OpenCV's `kMeansItCount`).
const KMEANS_ITERATIONS: usize = 10;
/// Determinant below which the covariance is regularised, and by how much.
const SINGULAR_DETERMINANT: f64 = 1e-6;
const SINGULAR_FIX: f64 = 0.01;

#[derive(Clone, Copy, Debug, Default)]
struct Component {
    weight: f64,
    mean: [f64; 3],
    inverse: [[f64; 3]; 3],
    /// `1 / sqrt(det(cov))`.
    norm: f64,
}

/// A colour Gaussian mixture. Components with no samples have weight 0 and density 0.
#[derive(Clone, Debug)]
pub struct Gmm {
    components: [Component; COMPONENTS],
}

/// Running sums for one model's components.
#[derive(Clone, Debug, Default)]
pub struct Learner {
    counts: [usize; COMPONENTS],
    sums: [[f64; 3]; COMPONENTS],
    products: [[[f64; 3]; 3]; COMPONENTS],
}

impl Learner {
    pub fn add(&mut self, component: usize, color: [f64; 3]) {
        self.counts[component] += 1;
        for i in 0..3 {
            self.sums[component][i] += color[i];
            for j in 0..3 {
                self.products[component][i][j] += color[i] * color[j];
            }
        }
    }

    /// The mixture of the samples added so far.
    pub fn finish(&self) -> Result<Gmm, RefineError> {
        let total: usize = self.counts.iter().sum();
        if total == 0 {
            return Err(RefineError::EmptyRegion);
        }
        let mut components = [Component::default(); COMPONENTS];
        for (c, component) in components.iter_mut().enumerate() {
            let n = self.counts[c];
            if n == 0 {
                continue;
            }
            let inv_n = 1.0 / n as f64;
            let mean = self.sums[c].map(|s| s * inv_n);
            let mut cov = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    cov[i][j] = self.products[c][i][j] * inv_n - mean[i] * mean[j];
                }
            }
            let mut det = determinant(&cov);
            if det <= SINGULAR_DETERMINANT {
                for (i, row) in cov.iter_mut().enumerate() {
                    row[i] += SINGULAR_FIX;
                }
                det = determinant(&cov);
            }
            if det.is_nan() || det <= f64::EPSILON {
                return Err(RefineError::SingularColorModel);
            }
            *component = Component {
                weight: n as f64 / total as f64,
                mean,
                inverse: inverse(&cov, det),
                norm: 1.0 / det.sqrt(),
            };
        }
        Ok(Gmm { components })
    }
}

impl Gmm {
    /// Seeds the components by k-means of `colors` and fits them (OpenCV's `initGMMs`; OpenCV
    /// seeds with k-means++ too, but from its own random stream).
    pub fn from_kmeans(colors: &[[f64; 3]], seed: u64) -> Result<Gmm, RefineError> {
        if colors.is_empty() {
            return Err(RefineError::EmptyRegion);
        }
        let points: Vec<[f32; 3]> = colors
            .iter()
            .map(|c| [c[0] as f32, c[1] as f32, c[2] as f32])
            .collect();
        let labels = kmeans_labels(&points, COMPONENTS, KMEANS_ITERATIONS, seed);
        let mut learner = Learner::default();
        for (color, &label) in colors.iter().zip(&labels) {
            learner.add(label.min(COMPONENTS - 1), *color);
        }
        learner.finish()
    }

    /// Density of one component, without its weight.
    pub fn component_density(&self, c: usize, color: [f64; 3]) -> f64 {
        let component = &self.components[c];
        if component.weight <= 0.0 {
            return 0.0;
        }
        let d = [
            color[0] - component.mean[0],
            color[1] - component.mean[1],
            color[2] - component.mean[2],
        ];
        let inv = &component.inverse;
        let mut mahalanobis = 0.0;
        for i in 0..3 {
            mahalanobis += d[i] * (d[0] * inv[0][i] + d[1] * inv[1][i] + d[2] * inv[2][i]);
        }
        component.norm * (-0.5 * mahalanobis).exp()
    }

    /// Mixture density.
    pub fn density(&self, color: [f64; 3]) -> f64 {
        (0..COMPONENTS)
            .map(|c| self.components[c].weight * self.component_density(c, color))
            .sum()
    }

    /// The component under which `color` is most likely (weights left out, as in OpenCV).
    pub fn nearest_component(&self, color: [f64; 3]) -> usize {
        let mut best = 0;
        let mut max = 0.0;
        for c in 0..COMPONENTS {
            let p = self.component_density(c, color);
            if p > max {
                best = c;
                max = p;
            }
        }
        best
    }
}

fn determinant(c: &[[f64; 3]; 3]) -> f64 {
    c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
        - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
        + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0])
}

fn inverse(c: &[[f64; 3]; 3], det: f64) -> [[f64; 3]; 3] {
    let k = 1.0 / det;
    [
        [
            (c[1][1] * c[2][2] - c[1][2] * c[2][1]) * k,
            -(c[0][1] * c[2][2] - c[0][2] * c[2][1]) * k,
            (c[0][1] * c[1][2] - c[0][2] * c[1][1]) * k,
        ],
        [
            -(c[1][0] * c[2][2] - c[1][2] * c[2][0]) * k,
            (c[0][0] * c[2][2] - c[0][2] * c[2][0]) * k,
            -(c[0][0] * c[1][2] - c[0][2] * c[1][0]) * k,
        ],
        [
            (c[1][0] * c[2][1] - c[1][1] * c[2][0]) * k,
            -(c[0][0] * c[2][1] - c[0][1] * c[2][0]) * k,
            (c[0][0] * c[1][1] - c[0][1] * c[1][0]) * k,
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let c = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let inv = inverse(&c, determinant(&c));
        for (i, row) in c.iter().enumerate() {
            for j in 0..3 {
                let v: f64 = row
                    .iter()
                    .zip(&inv)
                    .map(|(a, inv_row)| a * inv_row[j])
                    .sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn a_single_colour_gets_the_singular_fix() {
        let mut learner = Learner::default();
        for _ in 0..10 {
            learner.add(0, [10.0, 20.0, 30.0]);
        }
        let gmm = learner.finish().unwrap();
        // cov = 0.01 I: density at the mean is 1 / sqrt(1e-6).
        assert!((gmm.density([10.0, 20.0, 30.0]) - 1000.0).abs() < 1e-6);
        assert_eq!(gmm.nearest_component([0.0, 0.0, 0.0]), 0);
    }

    #[test]
    fn two_clusters_get_separate_components() {
        let colors: Vec<[f64; 3]> = (0..200)
            .map(|i| {
                let base = if i % 2 == 0 { 20.0 } else { 220.0 };
                [
                    base + (i % 7) as f64,
                    base - (i % 5) as f64,
                    base + (i % 3) as f64,
                ]
            })
            .collect();
        let gmm = Gmm::from_kmeans(&colors, 1).unwrap();
        let dark = gmm.nearest_component([22.0, 18.0, 21.0]);
        let light = gmm.nearest_component([222.0, 218.0, 221.0]);
        assert_ne!(dark, light);
        assert!(gmm.density([22.0, 18.0, 21.0]) > gmm.density([120.0, 120.0, 120.0]));
        assert!(matches!(
            Gmm::from_kmeans(&[], 1),
            Err(RefineError::EmptyRegion)
        ));
    }
}
