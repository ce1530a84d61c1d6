//! Analyses of a model's dense outputs: attention views, descriptors, PCA, clustering,
//! co-segmentation, correspondences and token norms, and their rendering.

pub mod attention;
pub mod colormap;
pub mod coords;
pub mod correspond;
pub mod coseg;
pub mod embedding_map;
pub mod features;
pub mod figure;
pub mod figure_presets;
pub mod fusion;
pub mod kmeans;
pub mod live;
pub mod match_explain;
pub mod overlay;
pub mod pca;
pub mod pca_rgb;
pub mod pck;
pub mod progress;
pub mod readout;
pub mod refine;
pub mod sd_features;
pub mod seg_metrics;
pub mod similarity;
pub mod spair;
pub mod stereo;
pub mod token_norms;
