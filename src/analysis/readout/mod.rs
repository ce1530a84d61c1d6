//! Reading classes out of frozen features: embedding a labelled folder or list, the train / test split,
//! DINO's weighted k-NN, multinomial logistic regression, and the report of a read-out.

pub mod embed;
pub mod feature_cache;
pub mod image_list;
pub mod knn;
pub mod logistic;
pub mod numpy_random;
pub mod report;
pub mod split;
