//! Analyses of a model's dense outputs: attention views, descriptors, PCA, clustering,
//! co-segmentation and correspondences, and their rendering.

pub mod attention;
pub mod colormap;
pub mod coords;
pub mod features;
pub mod kmeans;
pub mod pca;
pub mod pca_rgb;
pub mod progress;
