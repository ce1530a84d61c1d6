//! The GrabCut step of dino-vit-features' co-segmentation (`cosegmentation.py`): the binary mask
//! at image size is eroded with a 7 x 7 square to give sure foreground, its complement eroded the
//! same way gives sure background, everything else is probable foreground; GrabCut runs from
//! there and the foreground is what ends sure or probable foreground. When GrabCut fails (a mask
//! with no foreground, say), the reference keeps the unrefined mask, and so does this.

use super::RefineError;
use super::grabcut::{GrabCutConfig, Label, grabcut};

/// Side of the square structuring element.
pub const EROSION_SIZE: usize = 7;

/// A refined mask and, when GrabCut failed and the input mask was kept, why.
#[derive(Clone, Debug)]
pub struct MaskRefinement {
    pub mask: Vec<bool>,
    pub failure: Option<RefineError>,
}

/// Refines a `width x height` foreground `mask` (row-major) against the RGB image.
pub fn refine_mask(
    rgb: &[u8],
    width: usize,
    height: usize,
    mask: &[bool],
    config: &GrabCutConfig,
) -> MaskRefinement {
    if mask.len() != width * height {
        return MaskRefinement {
            mask: mask.to_vec(),
            failure: Some(RefineError::SizeMismatch {
                width,
                height,
                pixels: rgb.len() / 3,
                labels: mask.len(),
            }),
        };
    }
    let mut labels = initial_labels(mask, width, height);
    match grabcut(rgb, width, height, &mut labels, config) {
        Ok(()) => MaskRefinement {
            mask: labels.iter().map(|l| l.is_foreground()).collect(),
            failure: None,
        },
        Err(error) => MaskRefinement {
            mask: mask.to_vec(),
            failure: Some(error),
        },
    }
}

/// Sure foreground where the eroded mask holds, sure background where the eroded complement
/// holds, probable foreground elsewhere.
pub fn initial_labels(mask: &[bool], width: usize, height: usize) -> Vec<Label> {
    let sure_fg = erode(mask, width, height, EROSION_SIZE);
    let inverted: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let sure_bg = erode(&inverted, width, height, EROSION_SIZE);
    sure_fg
        .iter()
        .zip(&sure_bg)
        .map(|(&fg, &bg)| {
            if fg {
                Label::Foreground
            } else if bg {
                Label::Background
            } else {
                Label::ProbableForeground
            }
        })
        .collect()
}

/// Binary erosion with a `size x size` square centred on each pixel. Outside the image counts as
/// set, so the border does not erode (OpenCV's default border value for `erode`).
pub fn erode(mask: &[bool], width: usize, height: usize, size: usize) -> Vec<bool> {
    let before = size / 2;
    let after = size - 1 - before;
    let window = |i: usize, len: usize| i.saturating_sub(before)..(i + after + 1).min(len);
    let mut rows = vec![false; mask.len()];
    for y in 0..height {
        let row = &mask[y * width..(y + 1) * width];
        for x in 0..width {
            rows[y * width + x] = row[window(x, width)].iter().all(|&m| m);
        }
    }
    let mut out = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = window(y, height).all(|yy| rows[yy * width + x]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erosion_shrinks_by_half_the_square_but_not_at_the_border() {
        // A 20 x 10 mask, set on columns 5..15: erodes to 8..12; an all-set mask stays all set.
        let (w, h) = (20, 10);
        let mask: Vec<bool> = (0..w * h).map(|i| (5..15).contains(&(i % w))).collect();
        let eroded = erode(&mask, w, h, 7);
        for (i, &e) in eroded.iter().enumerate() {
            assert_eq!(e, (8..12).contains(&(i % w)), "pixel {i}");
        }
        assert!(erode(&vec![true; w * h], w, h, 7).iter().all(|&e| e));
    }

    #[test]
    fn labels_have_a_probable_band_around_the_edge() {
        let (w, h) = (20, 10);
        let mask: Vec<bool> = (0..w * h).map(|i| (5..15).contains(&(i % w))).collect();
        let labels = initial_labels(&mask, w, h);
        let row: Vec<Label> = labels[..w].to_vec();
        assert_eq!(row[0], Label::Background);
        assert_eq!(row[1], Label::Background);
        assert_eq!(row[2], Label::ProbableForeground);
        assert_eq!(row[7], Label::ProbableForeground);
        assert_eq!(row[8], Label::Foreground);
        assert_eq!(row[12], Label::ProbableForeground);
        assert_eq!(row[18], Label::Background);
    }

    #[test]
    fn an_empty_mask_falls_back_to_itself() {
        let rgb = vec![7u8; 3 * 64];
        let mask = vec![false; 64];
        let out = refine_mask(&rgb, 8, 8, &mask, &GrabCutConfig::default());
        assert_eq!(out.mask, mask);
        assert_eq!(out.failure, Some(RefineError::EmptyRegion));
    }
}
