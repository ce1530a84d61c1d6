//! Convolutional building blocks shared by the UNet and the VAE encoder (diffusers `resnet.py`,
//! `downsampling.py`, `upsampling.py`).

use crate::model::kernels::conv2d_forward;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};

use super::group_norm::GroupNorm;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::weights::{SafetensorsFile, WeightsError};
use crate::model::kernels::linear_forward;

/// `ResnetBlock2D` (pre-activation, output scale 1): `shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + temb)))`.
#[derive(burn::module::Module, Debug)]
pub struct ResnetBlock {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// The UNet's per-block projection of the (SiLU'd) time embedding; the VAE has none.
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// 1x1 convolution where the width changes.
    pub conv_shortcut: Option<Conv2d>,
}

/// Widths and normalisation of a [`ResnetBlock`].
#[derive(Clone, Copy, Debug)]
pub struct ResnetSpec {
    pub inputs: usize,
    pub outputs: usize,
    /// Width of the time embedding, for the UNet.
    pub temb: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

/// A 3x3 convolution with padding 1 (`stride` 1 or 2).
pub fn conv3x3(
    file: &SafetensorsFile,
    prefix: &str,
    channels: [usize; 2],
    stride: usize,
    device: &Device,
) -> Result<Conv2d, WeightsError> {
    file.conv2d(
        prefix,
        channels,
        3,
        stride,
        PaddingConfig2d::Explicit(1, 1, 1, 1),
        device,
    )
}

impl ResnetBlock {
    pub fn load(
        file: &SafetensorsFile,
        prefix: &str,
        spec: ResnetSpec,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let ResnetSpec {
            inputs,
            outputs,
            temb,
            groups,
            eps,
        } = spec;
        let p = |name: &str| format!("{prefix}.{name}");
        Ok(ResnetBlock {
            norm1: file.group_norm(&p("norm1"), groups, inputs, eps, device)?,
            conv1: conv3x3(file, &p("conv1"), [inputs, outputs], 1, device)?,
            time_emb_proj: temb
                .map(|t| file.linear(&p("time_emb_proj"), [t, outputs], true, device))
                .transpose()?,
            norm2: file.group_norm(&p("norm2"), groups, outputs, eps, device)?,
            conv2: conv3x3(file, &p("conv2"), [outputs, outputs], 1, device)?,
            conv_shortcut: (inputs != outputs)
                .then(|| {
                    file.conv2d(
                        &p("conv_shortcut"),
                        [inputs, outputs],
                        1,
                        1,
                        PaddingConfig2d::Valid,
                        device,
                    )
                })
                .transpose()?,
        })
    }

    /// `x` `[B, C, H, W]`; `temb_act` is `silu(time embedding)` `[B, T]` for the UNet.
    pub fn forward(&self, x: Tensor<4>, temb_act: Option<&Tensor<2>>) -> Tensor<4> {
        let h = conv2d_forward(&self.conv1, self.norm1.forward_silu(x.clone()));
        let h = match (&self.time_emb_proj, temb_act) {
            (Some(proj), Some(temb)) => {
                let [b, c] = [h.dims()[0], h.dims()[1]];
                h + linear_forward(proj, temb.clone()).reshape([b, c, 1, 1])
            }
            _ => h,
        };
        let h = conv2d_forward(&self.conv2, self.norm2.forward_silu(h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv2d_forward(conv, x),
            None => x,
        };
        shortcut + h
    }
}

/// `Downsample2D` with a convolution: the UNet's pads 1 on every side; the VAE's
/// (`padding=0` in diffusers) pads only the right and bottom by 1, then convolves with stride 2.
#[derive(burn::module::Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
}

impl Downsample {
    pub fn load_unet(
        file: &SafetensorsFile,
        prefix: &str,
        channels: usize,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        Ok(Downsample {
            conv: conv3x3(file, &format!("{prefix}.conv"), [channels; 2], 2, device)?,
        })
    }

    pub fn load_vae(
        file: &SafetensorsFile,
        prefix: &str,
        channels: usize,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        Ok(Downsample {
            conv: file.conv2d(
                &format!("{prefix}.conv"),
                [channels; 2],
                3,
                2,
                // (top, left, bottom, right)
                PaddingConfig2d::Explicit(0, 0, 1, 1),
                device,
            )?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d_forward(&self.conv, x)
    }
}

/// `Upsample2D` with a convolution: nearest-neighbour resize, then a 3x3 convolution.
#[derive(burn::module::Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
}

impl Upsample {
    pub fn load(
        file: &SafetensorsFile,
        prefix: &str,
        channels: usize,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        Ok(Upsample {
            conv: conv3x3(file, &format!("{prefix}.conv"), [channels; 2], 1, device)?,
        })
    }

    /// Resizes `x` to `size` (twice its size unless the latent is not a multiple of the UNet's
    /// total stride; diffusers then passes the next skip's size) and convolves.
    pub fn forward(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        conv2d_forward(&self.conv, nearest_resize(x, size))
    }
}

/// Nearest-neighbour resize as PyTorch's `interpolate(mode="nearest")`: output index `i` reads
/// input `min(floor(i * in / out), in - 1)`, the scale computed in f32. Doubling is exact replication.
pub fn nearest_resize(x: Tensor<4>, [out_h, out_w]: [usize; 2]) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if out_h == 2 * h && out_w == 2 * w {
        return x
            .reshape([b, c, h, 1, w, 1])
            .expand([b, c, h, 2, w, 2])
            .reshape([b, c, out_h, out_w]);
    }
    let device = x.device();
    let indices = |inputs: usize, outputs: usize| {
        let scale = inputs as f32 / outputs as f32;
        let values: Vec<i64> = (0..outputs)
            .map(|i| (((i as f32) * scale).floor() as usize).min(inputs - 1) as i64)
            .collect();
        Tensor::<1, Int>::from_data(TensorData::new(values, [outputs]), &device)
    };
    x.select(2, indices(h, out_h)).select(3, indices(w, out_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(x: Tensor<4>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn nearest_doubling_replicates_every_value_exactly() {
        let device = Device::flex();
        let data: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * 0.37 - 1.1).collect();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [1, 2, 3, 4]), &device);
        let y = values(nearest_resize(x, [6, 8]));
        for c in 0..2 {
            for i in 0..6 {
                for j in 0..8 {
                    assert_eq!(y[c * 48 + i * 8 + j], data[c * 12 + (i / 2) * 4 + j / 2]);
                }
            }
        }
    }

    #[test]
    fn nearest_to_an_odd_size_follows_pytorch() {
        // torch.nn.functional.interpolate(arange(3).view(1,1,1,3), size=(1,5), mode="nearest")
        // -> [0, 0, 1, 1, 2].
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(vec![0f32, 1., 2.], [1, 1, 1, 3]), &device);
        assert_eq!(values(nearest_resize(x, [1, 5])), [0., 0., 1., 1., 2.]);
    }

    #[test]
    fn vae_downsample_pads_right_and_bottom_only() {
        let device = Device::flex();
        // A conv whose only tap is the top-left kernel cell: output (i, j) reads padded input
        // (2i, 2j), i.e. input (2i, 2j) since the pad is after the data.
        let mut weight = vec![0f32; 9];
        weight[0] = 1.0;
        let conv = Conv2d {
            weight: burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [1, 1, 3, 3]),
                &device,
            )),
            bias: None,
            stride: [2, 2],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(0, 0, 1, 1),
        };
        let down = Downsample { conv };
        // 7x6 -> padded 8x7 -> floor((8 - 3) / 2) + 1 = 3 rows, floor((7 - 3) / 2) + 1 = 3 cols.
        let data: Vec<f32> = (0..42).map(|i| i as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 1, 7, 6]), &device);
        let y = down.forward(x);
        assert_eq!(y.dims(), [1, 1, 3, 3]);
        assert_eq!(values(y), [0., 2., 4., 12., 14., 16., 24., 26., 28.]);
        // SD's 512 px image: 512 -> 256 -> 128 -> 64.
        let x = Tensor::<4>::zeros([1, 1, 64, 64], &device);
        assert_eq!(down.forward(x).dims(), [1, 1, 32, 32]);
    }
}
