//! Reading classes out of frozen features: the train / test split, DINO's weighted k-NN.

pub mod knn;
pub mod numpy_random;
pub mod split;
