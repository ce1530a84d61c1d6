//! The PCA view's "Paper figure" preset: DINOv2's PCA figure (a row of images over a row of their
//! colourings, the background removed by the sign of the first component, one colour PCA fitted
//! on the foreground patches of all images; `analysis::figure_presets`), shown in place of the
//! image pairs and exported as one PNG.

use image::RgbImage;

use super::job::PcaResult;
use crate::analysis::figure_presets::dinov2_pca_figure;
use crate::analysis::sd_features::FeatureSource;
use crate::app::state::PcaSettings;
use crate::model::Facet;

/// The export id of the figure.
pub const EXPORT_ID: &str = "figure";

/// The preset's options: every image in one joint fit of the last block's output tokens at the
/// patch stride, foreground by a positive first-component score.
pub fn apply_preset(pca: &mut PcaSettings) {
    pca.all_images = true;
    pca.joint = true;
    pca.layer = None;
    pca.facet = Facet::Token;
    pca.stride = None;
    pca.foreground = true;
    pca.positive_score = true;
    pca.features = FeatureSource::Dino;
}

/// The figure of `result`: its images in a row over their colourings.
pub fn compose(result: &PcaResult) -> RgbImage {
    let images: Vec<&RgbImage> = result.images.iter().map(|i| i.picture.as_ref()).collect();
    let colorings: Vec<&RgbImage> = result.images.iter().map(|i| &i.colored).collect();
    dinov2_pca_figure(&images, &colorings)
}
