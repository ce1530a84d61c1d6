//! SD-DINO's joint ("co") PCA of a pair's (or a set's) Stable Diffusion taps (Junyi42/sd-dino
//! `utils_correspondence.co_pca`): per tap, one PCA fitted to both images' cells together, then
//! `[s3 | up(s4 | up(s5))]` on the finest grid, each `up` bilinear with `align_corners=False`.
//! The reference fits with `torch.pca_lowrank`; this is the exact decomposition it approximates,
//! equal up to each component's sign, which flips the same channel in both images and so leaves
//! every distance between them unchanged.

use crate::analysis::features::FeatureMap;
use crate::analysis::fusion::resize_bilinear;
use crate::analysis::pca::Pca;

/// One image's three taps, coarsest first: s5 (stride 64), s4 (32), s3 (16).
#[derive(Clone, Debug)]
pub struct SdTaps {
    pub s5: FeatureMap,
    pub s4: FeatureMap,
    pub s3: FeatureMap,
}

impl SdTaps {
    fn levels(&self) -> [&FeatureMap; 3] {
        [&self.s5, &self.s4, &self.s3]
    }
}

/// sd-dino's defaults: 256 components for each of s5, s4, s3.
pub const SD_DINO_PCA_DIMS: [usize; 3] = [256, 256, 256];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoPcaError {
    #[error("the two images' {tap} maps differ: {a:?} vs {b:?} cells x channels")]
    Mismatch {
        tap: &'static str,
        a: (usize, usize, usize),
        b: (usize, usize, usize),
    },
    #[error("cannot reduce {tap} to {dims} components")]
    Dims { tap: &'static str, dims: usize },
}

const TAP_NAMES: [&str; 3] = ["s5", "s4", "s3"];

/// The images' descriptors on the s3 grid: `dims[2] + dims[1] + dims[0]` channels, s3 first.
/// Each tap's PCA is fitted to the cells of every image together: for a pair exactly sd-dino's;
/// for a larger set one shared basis, so that any two of its images can be compared. A tap with
/// fewer cells (of all images together) or channels than asked keeps as many components as its
/// rank allows.
pub fn co_pca(images: &[&SdTaps], dims: [usize; 3]) -> Result<Vec<FeatureMap>, CoPcaError> {
    let mut reduced: Vec<Vec<FeatureMap>> = vec![Vec::new(); images.len()];
    let Some(first) = images.first() else {
        return Ok(Vec::new());
    };
    for (level, &wanted) in dims.iter().enumerate() {
        let tap = TAP_NAMES[level];
        let shape = |m: &FeatureMap| (m.grid.rows, m.grid.cols, m.dim);
        let reference = first.levels()[level];
        for other in &images[1..] {
            let map = other.levels()[level];
            if shape(map) != shape(reference) {
                return Err(CoPcaError::Mismatch {
                    tap,
                    a: shape(reference),
                    b: shape(map),
                });
            }
        }
        if wanted == 0 {
            return Err(CoPcaError::Dims { tap, dims: wanted });
        }
        let joint: Vec<f32> = images
            .iter()
            .flat_map(|taps| taps.levels()[level].data.iter().copied())
            .collect();
        let pca = Pca::fit(&joint, reference.dim, wanted);
        for (out, taps) in reduced.iter_mut().zip(images) {
            let map = taps.levels()[level];
            out.push(FeatureMap {
                dim: pca.n_components(),
                data: pca.transform(&map.data),
                ..map.clone()
            });
        }
    }
    Ok(reduced.iter().map(|levels| stack_levels(levels)).collect())
}

/// `[s3 | up(s4 | up(s5))]` from the reduced `[s5, s4, s3]`.
fn stack_levels(levels: &[FeatureMap]) -> FeatureMap {
    let [s5, s4, s3] = [&levels[0], &levels[1], &levels[2]];
    let s5_up = upsample_to(s5, s4);
    let s45 = concat(s4, &s5_up);
    let s45_up = upsample_to(&s45, s3);
    concat(s3, &s45_up)
}

/// `map` resampled to `target`'s grid (bilinear, `align_corners=False`).
fn upsample_to(map: &FeatureMap, target: &FeatureMap) -> FeatureMap {
    FeatureMap {
        data: resize_bilinear(
            &map.data,
            map.dim,
            (map.grid.rows, map.grid.cols),
            (target.grid.rows, target.grid.cols),
        ),
        grid: target.grid,
        image_size: target.image_size,
        dim: map.dim,
    }
}

/// Per-cell channel concatenation `[first | second]` of two maps on the same grid.
fn concat(first: &FeatureMap, second: &FeatureMap) -> FeatureMap {
    let dim = first.dim + second.dim;
    let mut data = Vec::with_capacity(first.grid.len() * dim);
    for (x, y) in first
        .data
        .chunks_exact(first.dim)
        .zip(second.data.chunks_exact(second.dim))
    {
        data.extend_from_slice(x);
        data.extend_from_slice(y);
    }
    FeatureMap {
        dim,
        data,
        ..first.clone()
    }
}
