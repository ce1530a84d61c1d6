//! Embedding maps: many descriptors (patches, images) laid out in the plane, by a linear PCA
//! projection or by exact t-SNE, both as scikit-learn computes them.

mod joint;
mod numpy_sum;
mod tsne;

pub use joint::Condensed;
pub use tsne::{MAX_EXACT_POINTS, Tsne, TsneConfig, TsneError, tsne, tsne_joint_probabilities};

use crate::analysis::pca;

/// Projection of the `dim`-long rows of `features` on their first two principal components, as
/// scikit-learn's `PCA(2).fit_transform` (its sign convention). A second coordinate the data
/// cannot have (one row, or `dim == 1`) is 0.
pub fn pca_2d(features: &[f32], dim: usize) -> Vec<[f32; 2]> {
    let rows = features.len().checked_div(dim).unwrap_or(0);
    let projected = pca::fit_transform(features, dim, 2);
    let components = projected.len().checked_div(rows).unwrap_or(0);
    (0..rows)
        .map(|r| {
            let mut point = [0f32; 2];
            for (c, value) in point.iter_mut().enumerate().take(components) {
                *value = projected[r * components + c] as f32;
            }
            point
        })
        .collect()
}
