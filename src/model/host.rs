//! Reading tensor values back to the host. One helper and one policy for every caller: a tensor
//! whose values cannot be read as `f32` is an error, never an empty or default vector.

use burn::tensor::{Tensor, TensorData};

use super::checkpoint::RawTensor;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read tensor values back as f32: {0}")]
pub struct HostReadError(String);

/// The values of `data` as `f32` (other float types converted).
pub fn data_f32(data: TensorData) -> Result<Vec<f32>, HostReadError> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| HostReadError(format!("{e:?}")))
}

/// The values of `tensor`, row-major. A device that failed to compute them (a GPU out of memory or
/// over a buffer limit) is an error here, not a panic.
pub fn f32_values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, HostReadError> {
    let data = tensor
        .try_into_data()
        .map_err(|e| HostReadError(format!("the device failed to compute them: {e}")))?;
    data_f32(data)
}

/// `tensor` with its shape, as stored in checkpoints.
pub fn raw_tensor<const D: usize>(tensor: Tensor<D>) -> Result<RawTensor, HostReadError> {
    Ok(RawTensor {
        shape: tensor.dims().to_vec(),
        data: f32_values(tensor)?,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    #[test]
    fn values_come_back_row_major_with_their_shape() {
        let t = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::flex());
        let raw = raw_tensor(t).unwrap();
        assert_eq!(raw.shape, vec![2, 3]);
        assert_eq!(raw.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let doubles = TensorData::new(vec![1.5f64, -2.0], [2]);
        assert_eq!(data_f32(doubles).unwrap(), vec![1.5, -2.0]);
    }
}
