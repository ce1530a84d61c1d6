//! Stable Diffusion descriptors, alone or fused with DINO's, placed on each image's pixels so the
//! correspondence code can match them. SD-DINO (Zhang et al., "A Tale of Two Features", NeurIPS
//! 2023; Junyi42/sd-dino `pck_spair_pascal.py`): the co-PCA of the images' s5/s4/s3 taps, and the
//! DINO tokens of the image letterboxed the same way (840 px for DINOv2-B/14), each L2-normalised
//! per cell and concatenated with equal weights. DIFT (Tang et al., NeurIPS 2023): the up-block
//! output of the squashed image as it is.

use std::borrow::Borrow;

use image::RgbImage;

use super::co_pca::{CoPcaError, co_pca};
use super::extract::SdImageFeatures;
use super::image::{Letterbox, squash};
use super::settings::SdPreset;
use crate::analysis::coords::PixelMap;
use crate::analysis::features::{DescriptorSpec, FeatureError, FeatureMap, extract};
use crate::analysis::fusion::{FusionError, fuse_maps};
use crate::model::preprocess::{ImageLoadError, PreparedImage, Resize, prepare};
use crate::model::{Facet, Vit};

/// sd-dino's DINOv2 input side: 840 px, 60 x 60 tokens of a /14 model, the s3 grid's size.
pub const SD_DINO_DINO_SIZE: u32 = 840;

/// Side of the square best buddies' saliency is computed on for SD descriptors: dino-vit-features'
/// 224 px load size. Saliency is a coarse foreground mask, and at SD's side the ViT would form
/// attention matrices of gigabytes.
pub const SD_SALIENCY_SIDE: u32 = 224;

/// Which descriptors a correspondence matches.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum FeatureSource {
    /// The ViT's own descriptors.
    #[default]
    Dino,
    /// Stable Diffusion's (DIFT or SD-DINO preset).
    Sd,
    /// SD-DINO's fusion of both.
    Fused,
}

/// Descriptors and where their cells lie on the original image.
#[derive(Clone, Debug)]
pub struct Placed {
    pub map: FeatureMap,
    pub pixels: PixelMap,
}

/// How an image is fitted on a square model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Aspect kept, centred on black (SD-DINO).
    Letterbox,
    /// Stretched to the square (DIFT).
    Squash,
}

impl Placement {
    pub fn of(preset: SdPreset) -> Self {
        match preset {
            SdPreset::Dift => Placement::Squash,
            SdPreset::SdDino => Placement::Letterbox,
        }
    }

    /// The image on a `size` square, with the scale and offset of its pixels there.
    pub fn canvas(self, image: &RgbImage, size: u32) -> (RgbImage, (f64, f64), (f64, f64)) {
        let (width, height) = image.dimensions();
        match self {
            Placement::Letterbox => {
                let letterbox = Letterbox::new((width, height), size);
                let (scale, offset) = letterbox_geometry(&letterbox);
                (letterbox.apply(image), scale, offset)
            }
            Placement::Squash => (
                squash(image, size, size),
                (
                    size as f64 / width.max(1) as f64,
                    size as f64 / height.max(1) as f64,
                ),
                (0.0, 0.0),
            ),
        }
    }
}

fn letterbox_geometry(letterbox: &Letterbox) -> ((f64, f64), (f64, f64)) {
    let (ow, oh) = letterbox.original;
    (
        (
            letterbox.scaled.0 as f64 / ow.max(1) as f64,
            letterbox.scaled.1 as f64 / oh.max(1) as f64,
        ),
        (letterbox.offset.0 as f64, letterbox.offset.1 as f64),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("the images' SD features come from different presets")]
    MixedPresets,
    #[error("{dino} images' DINO tokens for {sd} images' SD descriptors")]
    Counts { sd: usize, dino: usize },
    #[error(transparent)]
    CoPca(#[from] CoPcaError),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    #[error(transparent)]
    Fusion(#[from] FusionError),
}

/// The set's SD descriptors: DIFT maps as they are; SD-DINO taps co-PCA'd over the whole set to
/// `pca_dims` (s5, s4, s3) components.
pub fn sd_descriptors<F: Borrow<SdImageFeatures>>(
    images: &[F],
    pca_dims: [usize; 3],
) -> Result<Vec<Placed>, DescriptorError> {
    let mut dift = Vec::new();
    let mut taps = Vec::new();
    for image in images {
        match image.borrow() {
            SdImageFeatures::Dift { map, original } => dift.push((map, *original)),
            SdImageFeatures::SdDino(t) => taps.push(t),
        }
    }
    if !dift.is_empty() && !taps.is_empty() {
        return Err(DescriptorError::MixedPresets);
    }
    if !dift.is_empty() {
        return Ok(dift
            .into_iter()
            .map(|(map, (width, height))| Placed {
                pixels: PixelMap::placed(
                    map.grid,
                    (
                        map.image_size.0 as f64 / width.max(1) as f64,
                        map.image_size.1 as f64 / height.max(1) as f64,
                    ),
                    (0.0, 0.0),
                ),
                map: map.clone(),
            })
            .collect());
    }
    let sets: Vec<_> = taps.iter().map(|t| &t.taps).collect();
    let maps = co_pca(&sets, pca_dims)?;
    Ok(maps
        .into_iter()
        .zip(&taps)
        .map(|(map, t)| {
            let (scale, offset) = letterbox_geometry(&t.letterbox);
            Placed {
                pixels: PixelMap::placed(map.grid, scale, offset),
                map,
            }
        })
        .collect())
}

/// DINO's side of the fusion: `layer`'s tokens (patch stride) of the image placed on a square the
/// way the SD side placed it, `size` rounded down to a multiple of the patch so that the tokens
/// cover the whole square.
pub fn dino_placed(
    vit: &Vit,
    image: &RgbImage,
    placement: Placement,
    size: u32,
    layer: usize,
) -> Result<Placed, DescriptorError> {
    let patch = vit.config().patch_size.max(1);
    let size = size - size % patch as u32;
    let (canvas, scale, offset) = placement.canvas(image, size);
    let cells = (size as usize / patch).pow(2);
    let prepared = prepare(&canvas, Resize::None, patch, cells.max(1))?;
    let spec = DescriptorSpec {
        layer,
        facet: Facet::Token,
        stride: None,
        log_bin: false,
    };
    let map = extract(vit, &prepared, spec)?;
    Ok(Placed {
        pixels: PixelMap::placed(map.grid, scale, offset),
        map,
    })
}

/// The ViT's saliency input for an image's SD descriptors: the image placed as SD placed it, on a
/// square of [`SD_SALIENCY_SIDE`] rounded down to the patch, so its tokens cover the same area as
/// the descriptors' cells.
pub fn saliency_input(
    image: &RgbImage,
    placement: Placement,
    patch: usize,
) -> Result<PreparedImage, ImageLoadError> {
    let patch = patch.max(1);
    let side = SD_SALIENCY_SIDE - SD_SALIENCY_SIDE % patch as u32;
    let (canvas, _, _) = placement.canvas(image, side);
    prepare(&canvas, Resize::None, patch, usize::MAX)
}

/// Each image's fused descriptors ([`fuse_placed`]) of a set: `sd[i]` with `dino[i]`.
pub fn fuse_set<D: Borrow<Placed>>(
    sd: &[Placed],
    dino: &[D],
    weights: [f32; 2],
) -> Result<Vec<Placed>, DescriptorError> {
    if sd.len() != dino.len() {
        return Err(DescriptorError::Counts {
            sd: sd.len(),
            dino: dino.len(),
        });
    }
    sd.iter()
        .zip(dino)
        .map(|(s, d)| fuse_placed(s, d.borrow(), weights))
        .collect()
}

/// One image's fused descriptors `[w_sd * sd / |sd|, w_dino * dino / |dino|]` on the finer grid.
pub fn fuse_placed(
    sd: &Placed,
    dino: &Placed,
    weights: [f32; 2],
) -> Result<Placed, DescriptorError> {
    let map = fuse_maps(&sd.map, &dino.map, weights)?;
    let pixels = if map.grid == dino.map.grid && map.image_size == dino.map.image_size {
        dino.pixels
    } else {
        sd.pixels
    };
    Ok(Placed { map, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grid;

    fn placed(value: f32) -> Placed {
        let grid = Grid {
            rows: 1,
            cols: 2,
            patch: 1,
            stride: 1,
        };
        Placed {
            map: FeatureMap {
                grid,
                dim: 2,
                data: vec![value, 0.0, 0.0, value],
                image_size: (2, 1),
            },
            pixels: PixelMap::identity(grid),
        }
    }

    #[test]
    fn a_set_fuses_image_by_image_and_refuses_unequal_counts() {
        let sd = [placed(3.0), placed(-2.0)];
        let dino = [placed(1.0), placed(5.0)];
        let fused = fuse_set(&sd, &dino, [1.0, 2.0]).unwrap();
        for ((f, s), d) in fused.iter().zip(&sd).zip(&dino) {
            let one = fuse_placed(s, d, [1.0, 2.0]).unwrap();
            assert_eq!(f.map.data, one.map.data);
        }
        let err = fuse_set(&sd, &dino[..1], [1.0, 1.0]).unwrap_err();
        assert!(matches!(err, DescriptorError::Counts { sd: 2, dino: 1 }));
    }
}
