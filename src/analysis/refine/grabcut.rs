//! GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004) initialised from a mask, with the energy of
//! OpenCV's `cv::grabCut` (`modules/imgproc/src/grabcut.cpp`): five-component colour GMMs for
//! foreground and background, an 8-neighbour contrast-sensitive smoothness term with gamma 50
//! (diagonals weighted 1/sqrt 2) and beta = 1 / (2 * mean squared colour difference), hard labels
//! held by links of weight 9 * gamma, and a Boykov-Kolmogorov min cut per iteration.

use super::RefineError;
use super::gmm::{COMPONENTS, Gmm, Learner};
use super::maxflow::Graph;

/// Smoothness weight, OpenCV's `gamma`.
pub const GAMMA: f64 = 50.0;

/// A pixel's label in the GrabCut mask; the discriminants are OpenCV's `GC_*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Label {
    Background = 0,
    Foreground = 1,
    ProbableBackground = 2,
    ProbableForeground = 3,
}

impl Label {
    pub fn is_foreground(self) -> bool {
        matches!(self, Label::Foreground | Label::ProbableForeground)
    }

    fn is_probable(self) -> bool {
        matches!(self, Label::ProbableBackground | Label::ProbableForeground)
    }

    /// From OpenCV's mask value.
    pub fn from_code(code: u8) -> Option<Label> {
        match code {
            0 => Some(Label::Background),
            1 => Some(Label::Foreground),
            2 => Some(Label::ProbableBackground),
            3 => Some(Label::ProbableForeground),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrabCutConfig {
    /// OpenCV's `iterCount` (the reference uses 5).
    pub iterations: usize,
    /// Seed of the k-means that initialises the colour models.
    pub seed: u64,
}

impl Default for GrabCutConfig {
    fn default() -> Self {
        GrabCutConfig {
            iterations: 5,
            seed: 0,
        }
    }
}

/// Runs GrabCut on a `width x height` RGB image (row-major, 3 bytes a pixel), updating the
/// probable labels of `mask` in place. Fails, as OpenCV throws, when the mask has no
/// foreground or no background pixel or a colour model is degenerate; `mask` is then unchanged.
pub fn grabcut(
    rgb: &[u8],
    width: usize,
    height: usize,
    mask: &mut [Label],
    config: &GrabCutConfig,
) -> Result<(), RefineError> {
    let n = width * height;
    if rgb.len() != 3 * n || mask.len() != n {
        return Err(RefineError::SizeMismatch {
            width,
            height,
            pixels: rgb.len() / 3,
            labels: mask.len(),
        });
    }
    if n == 0 {
        return Err(RefineError::EmptyRegion);
    }
    let colors: Vec<[f64; 3]> = rgb
        .chunks_exact(3)
        .map(|p| [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])])
        .collect();
    let mut work = mask.to_vec();
    let (mut background, mut foreground) = initial_models(&colors, &work, config.seed)?;
    if config.iterations == 0 {
        return Ok(());
    }
    let weights = NeighbourWeights::new(&colors, width, height);
    let lambda = 9.0 * GAMMA;
    let mut components = vec![0usize; n];
    for _ in 0..config.iterations {
        for ((component, &color), &label) in components.iter_mut().zip(&colors).zip(&work) {
            let model = if label.is_foreground() {
                &foreground
            } else {
                &background
            };
            *component = model.nearest_component(color);
        }
        (background, foreground) = learn(&colors, &work, &components)?;
        let mut graph = build_graph(&colors, &work, &background, &foreground, &weights, lambda);
        graph.max_flow();
        for (i, label) in work.iter_mut().enumerate() {
            if label.is_probable() {
                *label = if graph.in_source_segment(i) {
                    Label::ProbableForeground
                } else {
                    Label::ProbableBackground
                };
            }
        }
    }
    mask.copy_from_slice(&work);
    Ok(())
}

/// The background and foreground models seeded by k-means (OpenCV's `initGMMs`).
fn initial_models(
    colors: &[[f64; 3]],
    mask: &[Label],
    seed: u64,
) -> Result<(Gmm, Gmm), RefineError> {
    let (fg, bg): (Vec<_>, Vec<_>) = colors
        .iter()
        .zip(mask)
        .partition(|(_, label)| label.is_foreground());
    if fg.is_empty() || bg.is_empty() {
        return Err(RefineError::EmptyRegion);
    }
    let bg: Vec<[f64; 3]> = bg.into_iter().map(|(c, _)| *c).collect();
    let fg: Vec<[f64; 3]> = fg.into_iter().map(|(c, _)| *c).collect();
    Ok((
        Gmm::from_kmeans(&bg, seed)?,
        Gmm::from_kmeans(&fg, seed.wrapping_add(1))?,
    ))
}

/// Refits both models from the pixels' components (OpenCV's `learnGMMs`).
fn learn(
    colors: &[[f64; 3]],
    mask: &[Label],
    components: &[usize],
) -> Result<(Gmm, Gmm), RefineError> {
    let mut background = Learner::default();
    let mut foreground = Learner::default();
    for ((&color, &label), &component) in colors.iter().zip(mask).zip(components) {
        let learner = if label.is_foreground() {
            &mut foreground
        } else {
            &mut background
        };
        learner.add(component.min(COMPONENTS - 1), color);
    }
    Ok((background.finish()?, foreground.finish()?))
}

/// Smoothness weights to the left, up-left, up and up-right neighbours of each pixel.
struct NeighbourWeights {
    width: usize,
    left: Vec<f64>,
    up_left: Vec<f64>,
    up: Vec<f64>,
    up_right: Vec<f64>,
}

fn squared_distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| (a[i] - b[i]) * (a[i] - b[i])).sum()
}

impl NeighbourWeights {
    fn new(colors: &[[f64; 3]], width: usize, height: usize) -> Self {
        let beta = beta(colors, width, height);
        let diagonal = GAMMA / std::f64::consts::SQRT_2;
        let n = width * height;
        let mut weights = NeighbourWeights {
            width,
            left: vec![0.0; n],
            up_left: vec![0.0; n],
            up: vec![0.0; n],
            up_right: vec![0.0; n],
        };
        let weight =
            |gamma: f64, a: [f64; 3], b: [f64; 3]| gamma * (-beta * squared_distance(a, b)).exp();
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let c = colors[i];
                if x > 0 {
                    weights.left[i] = weight(GAMMA, c, colors[i - 1]);
                }
                if x > 0 && y > 0 {
                    weights.up_left[i] = weight(diagonal, c, colors[i - width - 1]);
                }
                if y > 0 {
                    weights.up[i] = weight(GAMMA, c, colors[i - width]);
                }
                if x + 1 < width && y > 0 {
                    weights.up_right[i] = weight(diagonal, c, colors[i - width + 1]);
                }
            }
        }
        weights
    }
}

/// 1 / (2 * mean squared colour difference over all 8-neighbour pairs), 0 for a flat image
/// (OpenCV's `calcBeta`).
fn beta(colors: &[[f64; 3]], width: usize, height: usize) -> f64 {
    let mut sum = 0.0;
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let c = colors[i];
            if x > 0 {
                sum += squared_distance(c, colors[i - 1]);
            }
            if x > 0 && y > 0 {
                sum += squared_distance(c, colors[i - width - 1]);
            }
            if y > 0 {
                sum += squared_distance(c, colors[i - width]);
            }
            if x + 1 < width && y > 0 {
                sum += squared_distance(c, colors[i - width + 1]);
            }
        }
    }
    let (w, h) = (width as f64, height as f64);
    let pairs = 4.0 * w * h - 3.0 * w - 3.0 * h + 2.0;
    if sum <= f64::EPSILON || pairs <= 0.0 {
        0.0
    } else {
        1.0 / (2.0 * sum / pairs)
    }
}

/// The GrabCut graph: source = foreground. Probable pixels get the models' negative
/// log-likelihoods, fixed ones a link of `lambda` to their side.
fn build_graph(
    colors: &[[f64; 3]],
    mask: &[Label],
    background: &Gmm,
    foreground: &Gmm,
    weights: &NeighbourWeights,
    lambda: f64,
) -> Graph {
    let n = colors.len();
    let width = weights.width;
    let mut graph = Graph::with_capacity(n, 4 * n);
    for i in 0..n {
        let node = graph.add_node();
        let (source, sink) = match mask[i] {
            Label::ProbableBackground | Label::ProbableForeground => (
                neg_log(background.density(colors[i])),
                neg_log(foreground.density(colors[i])),
            ),
            Label::Background => (0.0, lambda),
            Label::Foreground => (lambda, 0.0),
        };
        graph.add_terminal_weights(node, source, sink);
        let x = i % width;
        let y = i / width;
        if x > 0 {
            graph.add_edge(node, node - 1, weights.left[i], weights.left[i]);
        }
        if x > 0 && y > 0 {
            let w = weights.up_left[i];
            graph.add_edge(node, node - width - 1, w, w);
        }
        if y > 0 {
            graph.add_edge(node, node - width, weights.up[i], weights.up[i]);
        }
        if x + 1 < width && y > 0 {
            let w = weights.up_right[i];
            graph.add_edge(node, node - width + 1, w, w);
        }
    }
    graph
}

/// `-ln p`, kept finite: a colour both models rule out would otherwise give inf - inf.
fn neg_log(p: f64) -> f64 {
    const CAP: f64 = 1e6;
    if p > 0.0 { (-p.ln()).min(CAP) } else { CAP }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bright square on a dark, slightly noisy background.
    fn square_image(size: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(size * size * 3);
        for y in 0..size {
            for x in 0..size {
                let inside =
                    (size / 4..3 * size / 4).contains(&x) && (size / 4..3 * size / 4).contains(&y);
                let noise = ((x * 7 + y * 13) % 11) as u8;
                let base = if inside { 200 } else { 40 };
                rgb.extend([base + noise, base - noise, base + noise / 2]);
            }
        }
        rgb
    }

    #[test]
    fn recovers_a_square_from_a_loose_mask() {
        let size = 32;
        let rgb = square_image(size);
        // Sure background at the border, the rest probable foreground: the model must cut away
        // the dark ring between the border and the square.
        let mut mask: Vec<Label> = (0..size * size)
            .map(|i| {
                let (x, y) = (i % size, i / size);
                if x < 3 || y < 3 || x >= size - 3 || y >= size - 3 {
                    Label::Background
                } else {
                    Label::ProbableForeground
                }
            })
            .collect();
        grabcut(&rgb, size, size, &mut mask, &GrabCutConfig::default()).unwrap();
        for y in 0..size {
            for x in 0..size {
                let inside =
                    (size / 4..3 * size / 4).contains(&x) && (size / 4..3 * size / 4).contains(&y);
                assert_eq!(
                    mask[y * size + x].is_foreground(),
                    inside,
                    "pixel ({x}, {y})"
                );
            }
        }
    }

    #[test]
    fn a_mask_without_background_fails_and_stays() {
        let rgb = square_image(8);
        let mut mask = vec![Label::ProbableForeground; 64];
        let result = grabcut(&rgb, 8, 8, &mut mask, &GrabCutConfig::default());
        assert!(matches!(result, Err(RefineError::EmptyRegion)));
        assert!(mask.iter().all(|&l| l == Label::ProbableForeground));
        let mut short = vec![Label::Background; 3];
        assert!(matches!(
            grabcut(&rgb, 8, 8, &mut short, &GrabCutConfig::default()),
            Err(RefineError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn beta_is_the_inverse_of_twice_the_mean_squared_difference() {
        // Two columns: black and white; 2x2 pairs: 2 horizontal (diff 3*255^2), 2 diagonal
        // (diff 3*255^2) and 2 vertical (0), over 4*4 - 6 - 6 + 2 = 6 pairs.
        let colors = [[0.0; 3], [255.0; 3], [0.0; 3], [255.0; 3]];
        let mean = 4.0 * 3.0 * 255.0 * 255.0 / 6.0;
        assert!((beta(&colors, 2, 2) - 1.0 / (2.0 * mean)).abs() < 1e-15);
        assert_eq!(beta(&[[5.0; 3]; 4], 2, 2), 0.0);
    }
}
