//! Pixel-level refinement of patch-level segmentations, as dino-vit-features (Amir et al.,
//! ShirAmir/dino-vit-features) does it: GrabCut after co-segmentation ([`mask`], [`grabcut`](mod@grabcut)),
//! a fully connected CRF after part co-segmentation ([`densecrf`]). Pure algorithms on RGB
//! buffers; the co-segmentation code decides when to call them.

pub mod color_kmeans;
pub mod densecrf;
pub mod gmm;
pub mod grabcut;
pub mod lattice;
pub mod mask;
pub mod maxflow;

pub use densecrf::{CrfConfig, CrfOutput, dense_crf};
pub use grabcut::{GrabCutConfig, Label, grabcut};
pub use mask::{MaskRefinement, refine_mask};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RefineError {
    #[error("image is {width}x{height} but has {pixels} pixels and {labels} mask labels")]
    SizeMismatch {
        width: usize,
        height: usize,
        pixels: usize,
        labels: usize,
    },
    #[error("the mask has no foreground or no background pixel")]
    EmptyRegion,
    #[error("a colour model has a singular covariance")]
    SingularColorModel,
    #[error("{len} feature values do not split into points of dimension {dim} (1 to 8)")]
    FeatureShape { len: usize, dim: usize },
    #[error(
        "lattice features too far from the origin for 16-bit lattice keys (an image tens of thousands of pixels a side, or standard deviations too small)"
    )]
    FeaturesTooLarge,
    #[error("{0} hold a NaN or an infinity")]
    NonFinite(&'static str),
    #[error(
        "image is {width}x{height} with {labels} labels, but has {pixels} pixels and {unary} unary energies"
    )]
    UnaryShape {
        width: usize,
        height: usize,
        labels: usize,
        pixels: usize,
        unary: usize,
    },
    #[error("the CRF needs at least one label")]
    NoLabels,
    #[error("{0} must be a positive number")]
    InvalidSetting(&'static str),
}
