//! `DINOHead`: MLP -> L2 normalisation -> weight-normalised prototypes layer.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::model::checkpoint::RawTensor;
use crate::model::host::{HostReadError, raw_tensor as host};
use crate::model::kernels::{gelu, linear_forward};

/// Shape of a [`DinoHead`]; the defaults are `main_dino.py`'s.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DinoHeadConfig {
    pub in_dim: usize,
    /// Number of prototypes (`out_dim`, 65536 by default).
    pub out_dim: usize,
    /// Linear layers in the MLP (at least 1).
    pub nlayers: usize,
    pub hidden_dim: usize,
    pub bottleneck_dim: usize,
    /// Fix the weight-norm magnitude `g` at 1 (not trained).
    pub norm_last_layer: bool,
}

impl DinoHeadConfig {
    /// The official head on top of an `in_dim` backbone: 3 layers, 2048 hidden, 256 bottleneck.
    pub fn new(in_dim: usize, out_dim: usize) -> Self {
        DinoHeadConfig {
            in_dim,
            out_dim,
            nlayers: 3,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            norm_last_layer: true,
        }
    }

    /// `(in, out)` widths of the MLP's Linear layers.
    fn mlp_widths(&self) -> Vec<(usize, usize)> {
        let n = self.nlayers.max(1);
        if n == 1 {
            return vec![(self.in_dim, self.bottleneck_dim)];
        }
        let mut widths = vec![(self.in_dim, self.hidden_dim)];
        widths.extend((0..n - 2).map(|_| (self.hidden_dim, self.hidden_dim)));
        widths.push((self.hidden_dim, self.bottleneck_dim));
        widths
    }

    /// Official names of the MLP's Linear layers (`mlp` alone for one layer, `mlp.0`, `mlp.2`, ... else).
    fn mlp_names(&self) -> Vec<String> {
        let n = self.nlayers.max(1);
        if n == 1 {
            return vec!["mlp".into()];
        }
        (0..n).map(|i| format!("mlp.{}", 2 * i)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeadError {
    #[error("head tensor `{name}` is missing")]
    Missing { name: String },
    #[error("head tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
}

#[derive(Module, Debug)]
pub struct DinoHead {
    /// Linear layers, erf GELU between them; weights `[in, out]`.
    pub mlp: Vec<Linear>,
    /// Weight-norm direction `weight_v`, `[out_dim, bottleneck]` (PyTorch layout: one row per prototype).
    pub last_layer_v: Param<Tensor<2>>,
    /// Weight-norm magnitude `weight_g`, `[out_dim, 1]`; frozen at 1 with `norm_last_layer`.
    pub last_layer_g: Param<Tensor<2>>,
}

fn linear(weight: Tensor<2>, bias: Tensor<1>) -> Linear {
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}

fn magnitude(g: Tensor<2>, norm_last_layer: bool) -> Param<Tensor<2>> {
    let param = Param::from_tensor(g);
    if norm_last_layer {
        param.set_require_grad(false)
    } else {
        param
    }
}

impl DinoHead {
    /// A freshly initialised head: MLP weights N(0, 0.02) (the official truncation at ±2 never triggers),
    /// zero biases; `weight_v` as PyTorch's default Linear init U(±1/sqrt(bottleneck)); `g` = 1.
    pub fn init(config: &DinoHeadConfig, device: &Device) -> Self {
        let mlp = config
            .mlp_widths()
            .into_iter()
            .map(|(i, o)| {
                linear(
                    Tensor::random([i, o], Distribution::Normal(0.0, 0.02), device),
                    Tensor::zeros([o], device),
                )
            })
            .collect();
        let bound = 1.0 / (config.bottleneck_dim as f64).sqrt();
        let v = Tensor::random(
            [config.out_dim, config.bottleneck_dim],
            Distribution::Uniform(-bound, bound),
            device,
        );
        DinoHead {
            mlp,
            last_layer_v: Param::from_tensor(v),
            last_layer_g: magnitude(
                Tensor::ones([config.out_dim, 1], device),
                config.norm_last_layer,
            ),
        }
    }

    /// Builds a head from tensors under the official names (`{prefix}mlp.0.weight`, ...,
    /// `{prefix}last_layer.weight_g`, `{prefix}last_layer.weight_v`) in PyTorch layouts.
    pub fn from_tensors(
        tensors: &BTreeMap<String, RawTensor>,
        prefix: &str,
        config: &DinoHeadConfig,
        device: &Device,
    ) -> Result<Self, HeadError> {
        let fetch = |name: &str, shape: &[usize]| -> Result<TensorData, HeadError> {
            let name = format!("{prefix}{name}");
            let raw = tensors
                .get(&name)
                .ok_or_else(|| HeadError::Missing { name: name.clone() })?;
            if raw.shape != shape || raw.data.len() != shape.iter().product::<usize>() {
                return Err(HeadError::Shape {
                    name,
                    found: raw.shape.clone(),
                    expected: shape.to_vec(),
                });
            }
            Ok(TensorData::new(raw.data.clone(), shape.to_vec()))
        };
        let mut mlp = Vec::new();
        for (name, (i, o)) in config.mlp_names().iter().zip(config.mlp_widths()) {
            let weight = Tensor::<2>::from_data(fetch(&format!("{name}.weight"), &[o, i])?, device);
            let bias = Tensor::<1>::from_data(fetch(&format!("{name}.bias"), &[o])?, device);
            mlp.push(linear(weight.transpose(), bias));
        }
        let (k, b) = (config.out_dim, config.bottleneck_dim);
        let g = Tensor::from_data(fetch("last_layer.weight_g", &[k, 1])?, device);
        let v = Tensor::from_data(fetch("last_layer.weight_v", &[k, b])?, device);
        Ok(DinoHead {
            mlp,
            last_layer_v: Param::from_tensor(v),
            last_layer_g: magnitude(g, config.norm_last_layer),
        })
    }

    /// The head's tensors under official names and PyTorch layouts, in `named_parameters()` order.
    pub fn official_tensors(&self) -> Result<Vec<(String, RawTensor)>, HostReadError> {
        let names = if self.mlp.len() == 1 {
            vec!["mlp".to_string()]
        } else {
            (0..self.mlp.len())
                .map(|i| format!("mlp.{}", 2 * i))
                .collect()
        };
        let mut out = Vec::new();
        for (name, layer) in names.iter().zip(&self.mlp) {
            out.push((
                format!("{name}.weight"),
                host(layer.weight.val().transpose())?,
            ));
            if let Some(bias) = &layer.bias {
                out.push((format!("{name}.bias"), host(bias.val())?));
            }
        }
        out.push(("last_layer.weight_g".into(), host(self.last_layer_g.val())?));
        out.push(("last_layer.weight_v".into(), host(self.last_layer_v.val())?));
        Ok(out)
    }

    /// The effective prototypes `W[r, :] = g[r] * v[r, :] / ||v[r, :]||`, `[out_dim, bottleneck]`.
    pub fn last_layer_weight(&self) -> Tensor<2> {
        let v = self.last_layer_v.val();
        let norm = v.clone().square().sum_dim(1).sqrt();
        v * (self.last_layer_g.val() / norm)
    }

    /// `[N, in_dim]` backbone features -> `[N, out_dim]` prototype scores.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.mlp.len().saturating_sub(1);
        let mut x = x;
        for (i, layer) in self.mlp.iter().enumerate() {
            x = linear_forward(layer, x);
            if i < last {
                x = gelu(x);
            }
        }
        // F.normalize: x / max(||x||, eps).
        let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        (x / norm).matmul(self.last_layer_weight().transpose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> DinoHeadConfig {
        DinoHeadConfig {
            nlayers: 3,
            hidden_dim: 12,
            bottleneck_dim: 6,
            ..DinoHeadConfig::new(8, 10)
        }
    }

    #[test]
    fn init_shapes_and_frozen_magnitude() {
        let device = Device::flex().autodiff();
        let head = DinoHead::init(&small(), &device);
        assert_eq!(head.mlp.len(), 3);
        assert!(!head.last_layer_g.val().is_require_grad());
        assert!(head.last_layer_v.val().is_require_grad());
        let y = head.forward(Tensor::random([4, 8], Distribution::Default, &device));
        assert_eq!(y.dims(), [4, 10]);
        // Unit-norm input rows and unit-norm prototypes: every score is a cosine.
        let max = y.abs().max().into_scalar::<f32>();
        assert!(max <= 1.0 + 1e-5, "{max}");
    }

    #[test]
    fn official_tensors_round_trip() {
        let device = Device::flex();
        for nlayers in [1, 2, 4] {
            let config = DinoHeadConfig {
                nlayers,
                norm_last_layer: false,
                ..small()
            };
            let head = DinoHead::init(&config, &device);
            let tensors: BTreeMap<_, _> = head.official_tensors().unwrap().into_iter().collect();
            let again = DinoHead::from_tensors(&tensors, "", &config, &device).unwrap();
            let again: BTreeMap<_, _> = again.official_tensors().unwrap().into_iter().collect();
            assert_eq!(tensors, again);
            assert!(again.contains_key("last_layer.weight_g"));
        }
    }

    #[test]
    fn wrong_shapes_are_reported() {
        let device = Device::flex();
        let head = DinoHead::init(&small(), &device);
        let tensors: BTreeMap<_, _> = head.official_tensors().unwrap().into_iter().collect();
        let wider = DinoHeadConfig {
            out_dim: 11,
            ..small()
        };
        let err = DinoHead::from_tensors(&tensors, "", &wider, &device).unwrap_err();
        assert!(matches!(err, HeadError::Shape { .. }), "{err}");
        let err = DinoHead::from_tensors(&tensors, "head.", &small(), &device).unwrap_err();
        assert_eq!(
            err,
            HeadError::Missing {
                name: "head.mlp.0.weight".into()
            }
        );
    }
}
