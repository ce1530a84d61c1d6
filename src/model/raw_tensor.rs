//! A tensor as read from a checkpoint file: its shape and its values converted to f32.

#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}
