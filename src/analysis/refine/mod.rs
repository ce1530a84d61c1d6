//! Pixel-level refinement of patch-level segmentations, as dino-vit-features (Amir et al.,
//! ShirAmir/dino-vit-features) does it: GrabCut after co-segmentation ([`mask`], [`grabcut`]).
//! Pure algorithms on RGB buffers; the co-segmentation code decides when to call them.

pub mod color_kmeans;
pub mod gmm;
pub mod grabcut;
pub mod mask;
pub mod maxflow;

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
}
