//! Backbone + DINO head, run on a list of crops (`utils.MultiCropWrapper`).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::head::{DinoHead, DinoHeadConfig, HeadError};
use crate::model::checkpoint::{CheckpointProblem, RawTensor, StateDict};
use crate::model::config::VitConfig;
use crate::model::host::HostReadError;
use crate::model::load::build;
use crate::model::save::official_tensors;
use crate::model::vit::Vit;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no crops given")]
    NoCrops,
    #[error("backbone: {0}")]
    Backbone(#[from] CheckpointProblem),
    #[error(transparent)]
    Head(#[from] HeadError),
}

#[derive(Module, Debug)]
pub struct DinoNetwork {
    pub backbone: Vit,
    pub head: DinoHead,
}

impl DinoNetwork {
    /// `[N, out_dim]` head outputs for crops `[B, 3, h_i, w_i]`, rows in crop order. Consecutive crops of
    /// the same size go through the backbone in one batch; the head runs once on all CLS features.
    pub fn forward_crops(&self, crops: &[Tensor<4>]) -> Result<Tensor<2>, NetworkError> {
        self.forward_crops_with(crops, &mut |vit, batch| vit.forward(batch))
    }

    /// [`Self::forward_crops`] with stochastic depth in the backbone (the student during training):
    /// rate `drop_path_rate` at the last block, `uniform` draws `U[0, 1)` numbers.
    pub fn forward_crops_drop_path(
        &self,
        crops: &[Tensor<4>],
        drop_path_rate: f64,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Result<Tensor<2>, NetworkError> {
        self.forward_crops_with(crops, &mut |vit, batch| {
            vit.forward_drop_path(batch, drop_path_rate, uniform)
        })
    }

    fn forward_crops_with(
        &self,
        crops: &[Tensor<4>],
        backbone: &mut dyn FnMut(&Vit, Tensor<4>) -> Tensor<2>,
    ) -> Result<Tensor<2>, NetworkError> {
        let mut features = Vec::new();
        let mut start = 0;
        while start < crops.len() {
            let size = |c: &Tensor<4>| (c.dims()[2], c.dims()[3]);
            let first = size(&crops[start]);
            let end = start
                + crops[start..]
                    .iter()
                    .take_while(|c| size(c) == first)
                    .count();
            let batch = Tensor::cat(crops[start..end].to_vec(), 0);
            features.push(backbone(&self.backbone, batch));
            start = end;
        }
        if features.is_empty() {
            return Err(NetworkError::NoCrops);
        }
        Ok(self.head.forward(Tensor::cat(features, 0)))
    }

    /// Builds the network from tensors under official names: `backbone.*` (DINO backbone names) and
    /// `head.*` (DINOHead names), as in a DINO training checkpoint's `teacher` entry.
    pub fn from_tensors(
        tensors: &BTreeMap<String, RawTensor>,
        config: VitConfig,
        head: &DinoHeadConfig,
        device: &Device,
    ) -> Result<Self, NetworkError> {
        let backbone = StateDict {
            tensors: tensors
                .iter()
                .filter_map(|(name, t)| {
                    name.strip_prefix("backbone.")
                        .map(|n| (n.to_string(), t.clone()))
                })
                .collect(),
            ..StateDict::default()
        };
        Ok(DinoNetwork {
            backbone: build(&backbone, config, device)?,
            head: DinoHead::from_tensors(tensors, "head.", head, device)?,
        })
    }

    /// All tensors under official names and PyTorch layouts (`backbone.*`, `head.*`).
    pub fn official_tensors(&self) -> Result<Vec<(String, RawTensor)>, HostReadError> {
        let mut out: Vec<_> = official_tensors(&self.backbone)?
            .into_iter()
            .map(|(n, t)| (format!("backbone.{n}"), t))
            .collect();
        out.extend(
            self.head
                .official_tensors()?
                .into_iter()
                .map(|(n, t)| (format!("head.{n}"), t)),
        );
        Ok(out)
    }
}
