//! Reading classes out of frozen features: embedding a labelled folder, the train / test split,
//! DINO's weighted k-NN, multinomial logistic regression, and the report of a read-out.

pub mod embed;
pub mod feature_cache;
pub mod knn;
pub mod logistic;
pub mod numpy_random;
pub mod report;
pub mod split;
