//! Analyses of a model's dense outputs: attention views and their rendering.

pub mod attention;
pub mod colormap;
