//! Dense-correspondence accuracy on a rectified stereo pair with ground-truth disparity: left pixel
//! `(x, y)` corresponds to right pixel `(x - d, y)`. Points are sampled on a regular grid of the left
//! image, matched into the right image, and scored with PCK and the end-point error.

use std::path::{Path, PathBuf};

use crate::analysis::pck::{count_correct, distance};

#[derive(Debug, thiserror::Error)]
pub enum StereoError {
    #[error(transparent)]
    Array(#[from] crate::arrays::ArrayFileError),
    #[error("{}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error(
        "{}: the disparity map is {width}x{height} but the left image is {image_width}x{image_height}",
        path.display()
    )]
    SizeMismatch {
        path: PathBuf,
        width: usize,
        height: usize,
        image_width: usize,
        image_height: usize,
    },
}

/// A disparity map, `height x width` row-major; NaN or infinite where unknown.
#[derive(Clone, Debug, PartialEq)]
pub struct Disparity {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl Disparity {
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }
}

/// Reads a 2-D disparity array from `.npy` or `.npz` (`arr_0`, or its only array).
pub fn load_disparity(path: &Path) -> Result<Disparity, StereoError> {
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (shape, values) = if is_npz {
        crate::arrays::read_npz(path, "arr_0")
    } else {
        crate::arrays::read_npy(path)
    }?;
    match shape[..] {
        [height, width] if height > 0 && width > 0 => Ok(Disparity {
            width,
            height,
            values,
        }),
        _ => Err(StereoError::Format {
            path: path.to_path_buf(),
            detail: format!("expected a 2-D [height, width] disparity array, got shape {shape:?}"),
        }),
    }
}

/// Checks that `disparity` (read from `path`) covers a left image of `size = (width, height)`.
pub fn check_size(disparity: &Disparity, path: &Path, size: (u32, u32)) -> Result<(), StereoError> {
    let (image_width, image_height) = (size.0 as usize, size.1 as usize);
    if (disparity.width, disparity.height) != (image_width, image_height) {
        return Err(StereoError::SizeMismatch {
            path: path.to_path_buf(),
            width: disparity.width,
            height: disparity.height,
            image_width,
            image_height,
        });
    }
    Ok(())
}

/// Left points and their true right positions, pixel-index `(x, y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StereoPoints {
    pub left: Vec<(f64, f64)>,
    pub right: Vec<(f64, f64)>,
}

/// Grid points `(step/2 + i*step, step/2 + j*step)` with a finite disparity whose right position
/// lies inside the image, and for which `keep` (e.g. a foreground test) holds.
pub fn sample_points(
    disparity: &Disparity,
    step: usize,
    keep: impl Fn(usize, usize) -> bool,
) -> StereoPoints {
    let step = step.max(1);
    let mut points = StereoPoints {
        left: Vec::new(),
        right: Vec::new(),
    };
    for y in (step / 2..disparity.height).step_by(step) {
        for x in (step / 2..disparity.width).step_by(step) {
            let d = disparity.at(x, y) as f64;
            let right_x = x as f64 - d;
            let inside = (0.0..=(disparity.width - 1) as f64).contains(&right_x);
            if d.is_finite() && inside && keep(x, y) {
                points.left.push((x as f64, y as f64));
                points.right.push((right_x, y as f64));
            }
        }
    }
    points
}

/// What `eval-pck --stereo` reports.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StereoReport {
    pub points: usize,
    /// `(threshold in pixels, share of points with error < threshold)`.
    pub pck_pixels: Vec<(f64, f64)>,
    /// `(alpha, share with error < alpha * max(H, W))`.
    pub pck_alpha: Vec<(f64, f64)>,
    /// `max(H, W)` of the left image, the length the alphas scale.
    pub normalizer: f64,
    pub median_error: f64,
    pub mean_error: f64,
}

/// Median of `values` (mean of the two middle ones for an even count; 0 when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Scores predicted right positions against the truth.
pub fn stereo_report(
    predicted: &[(f64, f64)],
    truth: &[(f64, f64)],
    image_size: (u32, u32),
    pixel_thresholds: &[f64],
    alphas: &[f64],
) -> StereoReport {
    let errors: Vec<f64> = predicted
        .iter()
        .zip(truth)
        .map(|(&p, &t)| distance(p, t))
        .collect();
    let n = errors.len().max(1) as f64;
    let share = |threshold: f64| count_correct(&errors, threshold) as f64 / n;
    let normalizer = image_size.0.max(image_size.1) as f64;
    StereoReport {
        points: errors.len(),
        pck_pixels: pixel_thresholds.iter().map(|&t| (t, share(t))).collect(),
        pck_alpha: alphas.iter().map(|&a| (a, share(a * normalizer))).collect(),
        normalizer,
        median_error: median(&errors),
        mean_error: errors.iter().sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disparity(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> Disparity {
        Disparity {
            width,
            height,
            values: (0..height)
                .flat_map(|y| (0..width).map(move |x| (x, y)))
                .map(|(x, y)| f(x, y))
                .collect(),
        }
    }

    #[test]
    fn sampling_skips_unknown_and_out_of_view_disparities() {
        // Disparity 3 everywhere except NaN in column 5 and inf at (3, 3).
        let d = disparity(10, 6, |x, y| match (x, y) {
            (5, _) => f32::NAN,
            (3, 3) => f32::INFINITY,
            _ => 3.0,
        });
        let points = sample_points(&d, 2, |_, _| true);
        // Columns 1, 3, 5, 7, 9 on rows 1, 3, 5: column 1 leaves the view (1 - 3 < 0), column 5
        // is unknown, (3, 3) is infinite.
        assert_eq!(points.left.len(), 3 * 3 - 1);
        assert!(!points.left.contains(&(3.0, 3.0)));
        assert!(points.left.iter().all(|&(x, _)| x == 3.0 || x >= 7.0));
        assert_eq!(points.right[0], (0.0, 1.0));
        let only_top = sample_points(&d, 2, |_, y| y < 2);
        assert_eq!(only_top.left.len(), 3);
    }

    #[test]
    fn report_uses_strict_thresholds_and_the_median() {
        let truth = [(0.0, 0.0); 4];
        let predicted = [(1.0, 0.0), (0.0, 2.0), (3.0, 4.0), (0.0, 0.5)];
        let r = stereo_report(&predicted, &truth, (100, 50), &[1.0, 2.0], &[0.05]);
        assert_eq!(r.pck_pixels, vec![(1.0, 0.25), (2.0, 0.5)]);
        // 0.05 * 100 = 5: the error of exactly 5 is not below it.
        assert_eq!(r.pck_alpha, vec![(0.05, 0.75)]);
        assert_eq!(r.median_error, 1.5);
        assert_eq!(r.normalizer, 100.0);
    }
}
