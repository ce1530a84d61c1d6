//! Multi-head attention of the UNet's transformer blocks and the VAE's mid block (diffusers
//! `Attention`): `softmax(q kᵀ / sqrt(head_dim)) v`, queries taken in blocks so the score matrix of
//! all queries is never formed (SD 2.1 at 768 px: 9,216 latent tokens x 5 heads, 1.6 GiB of scores).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

use super::weights::{SafetensorsFile, WeightsError};
use crate::model::kernels::{linear_forward, self_attention};

/// Bytes of scores one query block may form: far under wgpu's 128 MiB binding limit.
pub const SCORE_BUDGET_BYTES: usize = 32 << 20;

/// Query rows per block so that `batch_heads x rows x keys` f32 scores fit in `budget` bytes.
pub fn query_block_rows(batch_heads: usize, keys: usize, budget: usize) -> usize {
    (budget / (4 * batch_heads.max(1) * keys.max(1))).max(1)
}

/// `softmax(q kᵀ / sqrt(head_dim)) v` for `q` `[B, heads, Tq, d]`, `k`, `v` `[B, heads, Tk, d]`,
/// in query blocks whose scores fit `budget` bytes.
pub fn chunked_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, budget: usize) -> Tensor<4> {
    let [b, heads, queries, head_dim] = q.dims();
    let keys = k.dims()[2];
    let rows = query_block_rows(b * heads, keys, budget);
    let options = AttentionModuleOptions {
        scale: Some((head_dim as f64).powf(-0.5)),
        softcap: None,
        is_causal: false,
    };
    if queries <= rows {
        return attention(q, k, v, None, None, options);
    }
    let blocks = (0..queries)
        .step_by(rows)
        .map(|start| {
            let n = rows.min(queries - start);
            attention(
                q.clone().narrow(2, start, n),
                k.clone(),
                v.clone(),
                None,
                None,
                options,
            )
        })
        .collect();
    Tensor::cat(blocks, 2)
}

/// `layer` on every token of `[B, T, C]` as one `[B*T, C]` product.
pub fn per_token(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, c] = x.dims();
    let y = linear_forward(layer, x.reshape([b * t, c]));
    let width = y.dims()[1];
    y.reshape([b, t, width])
}

/// `[B, T, heads*d]` -> `[B, heads, T, d]`.
fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, t, c] = x.dims();
    x.reshape([b, t, heads, c / heads]).swap_dims(1, 2)
}

/// Where the names of an attention layer's projections come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionNames {
    /// `to_q`, `to_k`, `to_v`, `to_out.0` (diffusers since 0.14).
    Current,
    /// `query`, `key`, `value`, `proj_attn` (older VAE files).
    Legacy,
}

impl AttentionNames {
    fn of(self) -> [&'static str; 4] {
        match self {
            AttentionNames::Current => ["to_q", "to_k", "to_v", "to_out.0"],
            AttentionNames::Legacy => ["query", "key", "value", "proj_attn"],
        }
    }
}

/// The shape of a diffusers `Attention` layer.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSpec {
    pub names: AttentionNames,
    /// Token width.
    pub channels: usize,
    /// Context width for cross-attention; `None` for self-attention.
    pub context: Option<usize>,
    pub heads: usize,
    /// Whether q, k and v have biases (the VAE's do, the UNet's do not).
    pub qkv_bias: bool,
}

/// A diffusers `Attention`: self-attention with q, k, v fused into one projection, or
/// cross-attention (q from the tokens, k and v fused, from the context).
#[derive(burn::module::Module, Debug)]
pub struct MultiHeadAttention {
    /// Self: `[C, 3C]` (q | k | v). Cross: `[C, C]` (q).
    pub input: Linear,
    /// Cross only: `[context, 2C]` (k | v).
    pub context: Option<Linear>,
    pub output: Linear,
    heads: usize,
}

/// A projection weight as PyTorch `[out, in]`, or `[out, in, 1, 1]` (a 1x1 convolution).
fn projection_weight(
    file: &SafetensorsFile,
    name: &str,
    [inputs, outputs]: [usize; 2],
    device: &Device,
) -> Result<Tensor<2>, WeightsError> {
    match file.shape(name).map(<[usize]>::len) {
        Some(4) => Ok(file
            .tensor::<4>(name, [outputs, inputs, 1, 1], device)?
            .reshape([outputs, inputs])),
        _ => file.tensor::<2>(name, [outputs, inputs], device),
    }
}

/// `[out, in]` weights stacked along the output as a burn `Linear` (`[in, sum of outs]`), with the
/// biases stacked likewise, or zeros where the layers have none (the fused kernel wants one).
fn stacked_linear(weights: Vec<Tensor<2>>, biases: Option<Vec<Tensor<1>>>) -> Linear {
    let weight = Tensor::cat(weights, 0);
    let [outputs, _] = weight.dims();
    let bias = match biases {
        Some(biases) => Tensor::cat(biases, 0),
        None => Tensor::zeros([outputs], &weight.device()),
    };
    Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: Some(Param::from_tensor(bias)),
    }
}

impl MultiHeadAttention {
    /// Loads `{prefix}.{to_q,to_k,to_v,to_out.0}` (or the legacy names).
    pub fn load(
        file: &SafetensorsFile,
        prefix: &str,
        spec: AttentionSpec,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let AttentionSpec {
            names,
            channels,
            context,
            heads,
            qkv_bias,
        } = spec;
        let [q, k, v, out] = names.of().map(|n| format!("{prefix}.{n}"));
        let kv_width = context.unwrap_or(channels);
        let weight = |name: &str, inputs| {
            projection_weight(file, &format!("{name}.weight"), [inputs, channels], device)
        };
        let bias = |name: &str| file.tensor::<1>(&format!("{name}.bias"), [channels], device);
        let biases = |names: &[&String]| -> Result<Option<Vec<Tensor<1>>>, WeightsError> {
            match qkv_bias {
                true => Ok(Some(
                    names.iter().map(|n| bias(n)).collect::<Result<_, _>>()?,
                )),
                false => Ok(None),
            }
        };
        let (input, context) = match context {
            None => (
                stacked_linear(
                    vec![
                        weight(&q, channels)?,
                        weight(&k, channels)?,
                        weight(&v, channels)?,
                    ],
                    biases(&[&q, &k, &v])?,
                ),
                None,
            ),
            Some(_) => (
                stacked_linear(vec![weight(&q, channels)?], biases(&[&q])?),
                Some(stacked_linear(
                    vec![weight(&k, kv_width)?, weight(&v, kv_width)?],
                    biases(&[&k, &v])?,
                )),
            ),
        };
        let output = Linear {
            weight: Param::from_tensor(weight(&out, channels)?.transpose()),
            bias: Some(Param::from_tensor(bias(&out)?)),
        };
        Ok(MultiHeadAttention {
            input,
            context,
            output,
            heads,
        })
    }

    /// Tokens `[B, T, C]` attending to themselves, or to `context` `[B, S, D]` for cross-attention.
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let [b, t, c] = x.dims();
        let heads = self.heads;
        let out = match &self.context {
            Some(kv_layer) => {
                // Without a context a cross-attention layer attends to the tokens, as in diffusers.
                let kv = per_token(kv_layer, context.unwrap_or(&x).clone());
                let q = split_heads(per_token(&self.input, x), heads);
                let k = split_heads(kv.clone().narrow(2, 0, c), heads);
                let v = split_heads(kv.narrow(2, c, c), heads);
                chunked_attention(q, k, v, SCORE_BUDGET_BYTES)
                    .swap_dims(1, 2)
                    .reshape([b, t, c])
            }
            None => self_attention(per_token(&self.input, x), heads, |qkv| {
                let [q, k, v] =
                    [0, 1, 2].map(|i| split_heads(qkv.clone().narrow(2, i * c, c), heads));
                chunked_attention(q, k, v, SCORE_BUDGET_BYTES)
                    .swap_dims(1, 2)
                    .reshape([b, t, c])
            }),
        };
        per_token(&self.output, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn query_blocks_fit_the_budget() {
        // SD 2.1 at 768 px, level 0: 5 heads over 9,216 tokens.
        let rows = query_block_rows(5, 9216, SCORE_BUDGET_BYTES);
        assert!(5 * rows * 9216 * 4 <= SCORE_BUDGET_BYTES);
        assert!(rows >= 128, "{rows}");
        assert_eq!(query_block_rows(1000, 1_000_000, 1024), 1);
    }

    #[test]
    fn chunked_attention_equals_the_whole_score_matrix() {
        let device = Device::flex();
        let q = Tensor::<4>::random([2, 3, 50, 8], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([2, 3, 37, 8], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([2, 3, 37, 8], Distribution::Normal(0.0, 1.0), &device);
        // Closed form with one score matrix.
        let scores = q
            .clone()
            .matmul(k.clone().swap_dims(2, 3))
            .mul_scalar(8f64.powf(-0.5));
        let expected = softmax(scores, 3).matmul(v.clone());
        // 7 query rows per block: 8 blocks, the last one partial.
        let budget = 4 * 2 * 3 * 37 * 7;
        assert_eq!(query_block_rows(6, 37, budget), 7);
        let chunked = chunked_attention(q.clone(), k.clone(), v.clone(), budget);
        assert_eq!(chunked.dims(), [2, 3, 50, 8]);
        assert!(max_abs_diff(chunked, expected.clone()) < 1e-5);
        let whole = chunked_attention(q, k, v, usize::MAX / 2);
        assert!(max_abs_diff(whole, expected) < 1e-5);
    }
}
