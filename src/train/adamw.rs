//! AdamW with PyTorch's arithmetic and DINO's two parameter groups.
//!
//! burn's `AdamW` is the same algorithm (decoupled decay `p *= 1 - lr * wd`, bias-corrected moments,
//! epsilon added to the bias-corrected square root) but has one weight decay for the whole module and a
//! default epsilon of 1e-5 instead of 1e-8; DINO needs a scheduled decay on one group and none on the other,
//! and gradient clipping / last-layer freezing decided per parameter. So the update is written here, op for
//! op as `torch.optim.AdamW` (single-tensor path): state keyed by parameter id, created at a parameter's
//! first real update (a parameter whose gradient is dropped is skipped entirely, decay included, as in
//! PyTorch when `p.grad is None`).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::params::{clip_gradient, is_last_layer, is_regularized, replace_value};

/// What one optimizer step uses besides the gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWSettings {
    pub lr: f64,
    /// Applied to the regularised group only (see [`is_regularized`]).
    pub weight_decay: f64,
    /// Per-parameter gradient-norm clipping (`--clip_grad`; `None` or 0 disables it).
    pub clip_grad: Option<f64>,
    /// Drop the gradients of `last_layer` parameters (the first `freeze_last_layer` epochs).
    pub freeze_last_layer: bool,
}

#[derive(Clone, Debug)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
    step: i32,
}

#[derive(Clone, Debug)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    state: HashMap<ParamId, Moments>,
}

impl Default for AdamW {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    fn default() -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            state: HashMap::new(),
        }
    }
}

impl AdamW {
    /// Number of steps taken by the parameter `id` (0 if it was never updated).
    pub fn steps_of(&self, id: ParamId) -> i32 {
        self.state.get(&id).map_or(0, |m| m.step)
    }

    /// Updates every trainable parameter of `module` that has a gradient in `grads` (removing it there).
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &mut Gradients,
        settings: &AdamWSettings,
    ) -> M {
        let mut mapper = Update {
            optim: self,
            grads,
            settings,
            path: Vec::new(),
        };
        module.map(&mut mapper)
    }

    /// The state of every parameter of `module` that has one, keyed by the parameter's module path
    /// (`backbone.blocks.0.attn.qkv.weight`, ...): flattened first and second moments (burn layout) and
    /// the step count. Paths, unlike parameter ids, survive rebuilding the module from saved tensors.
    pub fn export<M: Module>(&self, module: &M) -> Vec<AdamWEntry> {
        param_paths(module)
            .into_iter()
            .filter_map(|(path, id)| {
                self.state.get(&id).map(|m| AdamWEntry {
                    path,
                    exp_avg: m.exp_avg.clone(),
                    exp_avg_sq: m.exp_avg_sq.clone(),
                    step: m.step,
                })
            })
            .collect()
    }

    /// Restores state saved by [`Self::export`] onto `module`'s parameters (matched by path). Returns
    /// the paths of entries that match no parameter of `module` or whose size differs.
    pub fn import<M: Module>(&mut self, module: &M, entries: Vec<AdamWEntry>) -> Vec<String> {
        let ids: HashMap<String, (ParamId, usize)> = param_sizes(module)
            .into_iter()
            .map(|(path, id, size)| (path, (id, size)))
            .collect();
        let mut unmatched = Vec::new();
        for entry in entries {
            match ids.get(&entry.path) {
                Some(&(id, size))
                    if entry.exp_avg.dims()[0] == size && entry.exp_avg_sq.dims()[0] == size =>
                {
                    self.state.insert(
                        id,
                        Moments {
                            exp_avg: entry.exp_avg,
                            exp_avg_sq: entry.exp_avg_sq,
                            step: entry.step,
                        },
                    );
                }
                _ => unmatched.push(entry.path),
            }
        }
        unmatched
    }

    fn update(
        &mut self,
        id: ParamId,
        param: Tensor<1>,
        grad: Tensor<1>,
        lr: f64,
        weight_decay: f64,
    ) -> Tensor<1> {
        let moments = self.state.remove(&id).unwrap_or_else(|| Moments {
            exp_avg: grad.zeros_like(),
            exp_avg_sq: grad.zeros_like(),
            step: 0,
        });
        let step = moments.step + 1;
        let param = if weight_decay != 0.0 {
            param.mul_scalar(1.0 - lr * weight_decay)
        } else {
            param
        };
        // exp_avg.lerp_(grad, 1 - beta1)
        let exp_avg =
            moments.exp_avg.clone() + (grad.clone() - moments.exp_avg).mul_scalar(1.0 - self.beta1);
        let exp_avg_sq =
            moments.exp_avg_sq.mul_scalar(self.beta2) + grad.square().mul_scalar(1.0 - self.beta2);
        let bias_correction1 = 1.0 - self.beta1.powi(step);
        let bias_correction2 = 1.0 - self.beta2.powi(step);
        let step_size = lr / bias_correction1;
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bias_correction2.sqrt())
            .add_scalar(self.eps);
        let param = param - (exp_avg.clone() / denom).mul_scalar(step_size);
        self.state.insert(
            id,
            Moments {
                exp_avg,
                exp_avg_sq,
                step,
            },
        );
        param
    }
}

/// One parameter's AdamW state (see [`AdamW::export`]).
#[derive(Clone, Debug)]
pub struct AdamWEntry {
    pub path: String,
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
    pub step: i32,
}

#[derive(Default)]
struct Paths {
    path: Vec<String>,
    found: Vec<(String, ParamId, usize)>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let size = param.val().dims().iter().product();
        self.found.push((self.path.join("."), param.id, size));
    }
}

fn param_sizes<M: Module>(module: &M) -> Vec<(String, ParamId, usize)> {
    let mut paths = Paths::default();
    module.visit(&mut paths);
    paths.found
}

/// `(module path, id)` of every float parameter of `module`, in visiting order.
pub fn param_paths<M: Module>(module: &M) -> Vec<(String, ParamId)> {
    param_sizes(module)
        .into_iter()
        .map(|(path, id, _)| (path, id))
        .collect()
}

struct Update<'a> {
    optim: &'a mut AdamW,
    grads: &'a mut Gradients,
    settings: &'a AdamWSettings,
    path: Vec<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.is_require_grad() {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        // Removed even when dropped below, so nothing stale is left in `grads`.
        let grad = tensor.grad_remove(self.grads);
        let grad = match grad {
            Some(grad) if !(self.settings.freeze_last_layer && is_last_layer(&self.path)) => grad,
            _ => return Param::from_mapped_value(id, tensor, mapper),
        };
        let grad = match self.settings.clip_grad {
            Some(clip) if clip > 0.0 => clip_gradient(grad, clip),
            _ => grad,
        };
        let dims = tensor.dims();
        let weight_decay = if is_regularized(&self.path, D) {
            self.settings.weight_decay
        } else {
            0.0
        };
        let updated = self.optim.update(
            id,
            tensor.clone().inner().flatten::<1>(0, D - 1),
            grad.flatten::<1>(0, D - 1),
            self.settings.lr,
            weight_decay,
        );
        let tensor = replace_value(&tensor, updated.reshape(dims));
        Param::from_mapped_value(id, tensor, mapper)
    }
}
