//! dinoscope: see what self-supervised Vision Transformers (DINO, DINOv2) see.
//!
//! Layers, lowest first: [`model`] (ViT, checkpoints, preprocessing, devices) -> [`analysis`]
//! (attention, features...) -> [`cli`]. Lower layers never use higher ones. [`video`] (frame
//! sources and recording) knows no model, only `model::preprocess`'s image decoding.

pub mod analysis;
pub mod app;
pub mod arrays;
pub mod atomic_file;
pub mod cli;
pub mod image_files;
pub mod linalg;
pub mod model;
pub mod panics;
pub mod rng;
pub mod train;
pub mod video;
