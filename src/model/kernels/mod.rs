//! Operations burn's CPU backend (Flex) runs slowly, replaced by direct kernels through burn
//! backend extensions: exact GELU, linear layers (`x W + b`), LayerNorm and self-attention from the
//! packed `qkv` projection. The GPU backend (Cube) and anything the kernels do not cover (other dtypes,
//! negative strides) keep burn's own implementation, and autodiff gets hand-written backward steps.

mod affine;
mod attention;
mod conv;
mod gelu;
mod group_norm;
mod layer_norm;
mod vector_math;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Cube, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Shape, Slice, Tensor, TensorData};

use crate::linalg::View;
use crate::model::reduce::SAFE_AXIS;
use attention::Packed;
use conv::{ConvShape, Padding};

#[backend_extension(Autodiff, Flex, Cube)]
pub trait FusedOps: Backend {
    /// Exact (erf) GELU, `x Φ(x)`.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad * gelu'(x)`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// `x W + b` for `x`: `[m, k]`, `W`: `[k, n]`, `b`: `[n]`.
    fn affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let n = bias.shape()[0];
        let bias = Self::float_reshape(bias, Shape::new([1, n]));
        Self::float_add(Self::float_matmul(x, weight), bias)
    }

    /// `grad Wᵀ`.
    fn affine_grad_input(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(grad, Self::float_swap_dims(weight, 0, 1))
    }

    /// `xᵀ grad`.
    fn affine_grad_weight(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(Self::float_swap_dims(x, 0, 1), grad)
    }

    /// NCHW convolution with one group and no dilation: `weight` `[O, C, k, k]`, `bias` `[O]`,
    /// `padding` as (top, left, bottom, right).
    fn conv2d_nchw(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), conv_options(stride, padding))
    }

    /// GroupNorm of `[B, C, H, W]` over `groups` groups with per-channel `gamma` and `beta`,
    /// followed by SiLU when `silu`.
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        group_norm_ops::<Self>(x, gamma, beta, groups, epsilon, silu)
    }

    /// Column sums of `grad`, over at most [`SAFE_AXIS`] rows at a time (burn's wgpu reduction
    /// goes wrong past about 2^16 rows; see `model::reduce`).
    fn affine_grad_bias(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let (m, n) = (grad.shape()[0], grad.shape()[1]);
        let rows = |start: usize, end: usize| {
            let slices = [
                Slice::new(start as isize, Some(end as isize), 1),
                Slice::full(),
            ];
            Self::float_sum_dim(Self::float_slice(grad.clone(), &slices), 0)
        };
        let mut total = rows(0, m.min(SAFE_AXIS));
        let mut start = SAFE_AXIS;
        while start < m {
            let end = m.min(start + SAFE_AXIS);
            total = Self::float_add(total, rows(start, end));
            start = end;
        }
        Self::float_reshape(total, Shape::new([n]))
    }
}

/// burn's options for [`FusedOps::conv2d_nchw`]: one group, no dilation, padding as (top, left,
/// bottom, right).
fn conv_options(stride: usize, [top, left, bottom, right]: [usize; 4]) -> ConvOptions<2> {
    ConvOptions::new_with_padding([stride; 2], [(top, bottom), (left, right)], [1, 1], 1)
}

/// [`FusedOps::group_norm`] in burn's operations. The statistics are reduced along each row, then
/// over the rows (rows of equal length make the mean of row means the group's mean): burn's wgpu
/// reductions go wrong past about 2^16 values (see `model::reduce`), which one pass over a group
/// reaches in SD's VAE at 256 px.
fn group_norm_ops<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> FloatTensor<B> {
    let dims = x.shape();
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let grouped = B::float_reshape(x, Shape::new([b, groups, c / groups * h, w]));
    let mean = B::float_mean_dim(B::float_mean_dim(grouped.clone(), 3), 2);
    let centred = B::float_sub(grouped, mean);
    let squares = B::float_mul(centred.clone(), centred.clone());
    let variance = B::float_mean_dim(B::float_mean_dim(squares, 3), 2);
    let deviation = B::float_sqrt(B::float_add_scalar(variance, epsilon.into()));
    let normalised = B::float_reshape(B::float_div(centred, deviation), Shape::new([b, c, h, w]));
    let per_channel = |t: FloatTensor<B>| B::float_reshape(t, Shape::new([1, c, 1, 1]));
    let out = B::float_add(
        B::float_mul(normalised, per_channel(gamma)),
        per_channel(beta),
    );
    if silu {
        B::float_mul(out.clone(), B::sigmoid(out))
    } else {
        out
    }
}

impl FusedOps for Cube {}

/// The `f32` values of a contiguous tensor that starts at the beginning of its storage.
fn contiguous_f32(tensor: &FlexTensor) -> Option<&[f32]> {
    if tensor.dtype() == DType::F32 {
        tensor.as_slice::<f32>()
    } else {
        None
    }
}

/// Whether `tensor` can be overwritten: not shared, contiguous, `f32`, from offset 0.
fn writable_f32(tensor: &FlexTensor) -> bool {
    tensor.dtype() == DType::F32
        && tensor.is_unique()
        && tensor.layout().is_contiguous()
        && tensor.layout().start_offset() == 0
}

fn with_values_of(like: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

/// A 2-D `f32` tensor with non-negative strides as a matrix view.
fn matrix(tensor: &FlexTensor) -> Option<View<'_, f32>> {
    let layout = tensor.layout();
    let shape = layout.shape();
    if tensor.dtype() != DType::F32 || shape.num_dims() != 2 {
        return None;
    }
    let strides = layout.strides();
    let row_stride = usize::try_from(strides[0]).ok()?;
    let col_stride = usize::try_from(strides[1]).ok()?;
    let data = tensor.storage::<f32>().get(layout.start_offset()..)?;
    View::strided(data, shape[0], shape[1], row_stride, col_stride)
}

fn from_matrix(values: Vec<f32>, rows: usize, cols: usize) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, [rows, cols]))
}

impl FusedOps for Flex {
    fn gelu_exact(mut x: FlexTensor) -> FlexTensor {
        if writable_f32(&x) {
            let n = x.layout().num_elements();
            gelu::gelu_in_place(&mut x.storage_mut::<f32>()[..n]);
            return x;
        }
        let Some(values) = contiguous_f32(&x) else {
            return Flex::gelu(x);
        };
        let mut out = vec![0.0; values.len()];
        gelu::gelu_into(values, &mut out);
        with_values_of(&x, out)
    }

    fn gelu_exact_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(values), Some(incoming)) = (contiguous_f32(&x), contiguous_f32(&grad)) else {
            return Flex::gelu_backward(x, grad);
        };
        if values.len() != incoming.len() {
            return Flex::gelu_backward(x, grad);
        }
        let mut out = vec![0.0; values.len()];
        gelu::gelu_backward_into(values, incoming, &mut out);
        with_values_of(&x, out)
    }

    fn affine(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let inputs = (matrix(&x), matrix(&weight), contiguous_f32(&bias));
        match inputs {
            (Some(xm), Some(wm), Some(b)) if xm.cols() == wm.rows() && b.len() == wm.cols() => {
                from_matrix(affine::affine(xm, wm, b), xm.rows(), wm.cols())
            }
            _ => {
                let n = bias.shape()[0];
                let bias = Flex::float_reshape(bias, Shape::new([1, n]));
                Flex::float_add(Flex::float_matmul(x, weight), bias)
            }
        }
    }

    fn conv2d_nchw(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        if let Some(out) = conv_kernel(&x, &weight, &bias, stride, padding) {
            return out;
        }
        Flex::conv2d(x, weight, Some(bias), conv_options(stride, padding))
    }

    fn group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let fits = shape.num_dims() == 4
            && groups > 0
            && shape[1].is_multiple_of(groups)
            && gamma.layout().shape().num_elements() == shape[1]
            && beta.layout().shape().num_elements() == shape[1];
        let values = (
            contiguous_f32(&x),
            contiguous_f32(&gamma),
            contiguous_f32(&beta),
        );
        if let (true, (Some(values), Some(g), Some(b))) = (fits, values) {
            let groups = group_norm::Groups {
                dims: [shape[0], shape[1], shape[2], shape[3]],
                groups,
            };
            let out = group_norm::forward(groups, values, g, b, epsilon, silu);
            return FlexTensor::from_data(TensorData::new(out, shape));
        }
        group_norm_ops::<Flex>(x, gamma, beta, groups, epsilon, silu)
    }

    fn affine_grad_input(grad: FlexTensor, weight: FlexTensor) -> FlexTensor {
        match (matrix(&grad), matrix(&weight)) {
            (Some(g), Some(w)) if g.cols() == w.cols() => {
                from_matrix(crate::linalg::matmul(g, w.t(), 1.0), g.rows(), w.rows())
            }
            _ => Flex::float_matmul(grad, Flex::float_swap_dims(weight, 0, 1)),
        }
    }

    fn affine_grad_weight(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        match (matrix(&x), matrix(&grad)) {
            (Some(xm), Some(g)) if xm.rows() == g.rows() => {
                from_matrix(crate::linalg::matmul(xm.t(), g, 1.0), xm.cols(), g.cols())
            }
            _ => Flex::float_matmul(Flex::float_swap_dims(x, 0, 1), grad),
        }
    }

    fn affine_grad_bias(grad: FlexTensor) -> FlexTensor {
        match matrix(&grad) {
            Some(g) => {
                let sums = affine::column_sums(g);
                let n = sums.len();
                FlexTensor::from_data(TensorData::new(sums, [n]))
            }
            None => {
                let n = grad.shape()[1];
                Flex::float_reshape(Flex::float_sum_dim(grad, 0), Shape::new([n]))
            }
        }
    }
}

/// [`conv::forward`] on contiguous `f32` inputs with a square kernel (`None`: anything else).
fn conv_kernel(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    stride: usize,
    [top, left, bottom, right]: [usize; 4],
) -> Option<FlexTensor> {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    if xs.num_dims() != 4 || ws.num_dims() != 4 || ws[1] != xs[1] || ws[2] != ws[3] {
        return None;
    }
    let shape = ConvShape {
        batch: xs[0],
        channels: xs[1],
        height: xs[2],
        width: xs[3],
        outputs: ws[0],
        kernel: ws[2],
        stride,
        padding: Padding {
            top,
            left,
            bottom,
            right,
        },
    };
    let (out_h, out_w) = shape.output_size()?;
    let (xv, wv, bv) = (
        contiguous_f32(x)?,
        contiguous_f32(weight)?,
        contiguous_f32(bias)?,
    );
    if bv.len() != shape.outputs {
        return None;
    }
    let out = conv::forward(&shape, xv, wv, bv);
    Some(FlexTensor::from_data(TensorData::new(
        out,
        [shape.batch, shape.outputs, out_h, out_w],
    )))
}

/// Kernels for Flex only (see [`self_attention`] and [`layer_norm_forward`] for other devices).
#[backend_extension(Autodiff, Flex)]
pub trait FlexOps: Backend {
    /// LayerNorm over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma + beta`.
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// `softmax(q kᵀ / sqrt(head_dim)) v` per head, from `[B, T, 3D]` packed projections to
    /// `[B, T, D]`.
    fn packed_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;
}

/// The values of `tensor` as contiguous `f32`s (copied only when not already so).
///
/// A backend operation cannot return an error, and burn only hands these kernels float tensors,
/// which always convert to `f32`: a failure here is a broken invariant, reported loudly rather
/// than computed on as an empty vector.
fn f32_values(tensor: FlexTensor) -> Vec<f32> {
    match contiguous_f32(&tensor) {
        Some(values) => values.to_vec(),
        None => crate::model::host::data_f32(tensor.into_data())
            .unwrap_or_else(|e| panic!("CPU kernel input: {e}")),
    }
}

/// `f` on the `f32` values of `tensor`, copied first only when they are not contiguous `f32`s.
fn with_f32<R>(tensor: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match contiguous_f32(tensor) {
        Some(values) => f(values),
        None => f(&f32_values(tensor.clone())),
    }
}

fn packed_shape(qkv: &FlexTensor, heads: usize) -> Packed {
    let shape = qkv.layout().shape();
    assert!(
        shape.num_dims() == 3 && heads > 0 && shape[2].is_multiple_of(3 * heads),
        "packed attention: qkv of shape {shape:?} with {heads} heads"
    );
    Packed {
        batch: shape[0],
        tokens: shape[1],
        heads,
        head_dim: shape[2] / (3 * heads),
    }
}

impl FlexOps for Flex {
    fn layer_norm_rows(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let dims = x.layout().shape().clone();
        let out = with_f32(&x, |x| {
            with_f32(&gamma, |gamma| {
                with_f32(&beta, |beta| {
                    layer_norm::forward(x, gamma, beta, epsilon as f32)
                })
            })
        });
        FlexTensor::from_data(TensorData::new(out, dims))
    }

    fn packed_attention(qkv: FlexTensor, heads: usize) -> FlexTensor {
        let shape = packed_shape(&qkv, heads);
        let out = match contiguous_f32(&qkv) {
            Some(values) => attention::forward(shape, values),
            None => attention::forward(shape, &f32_values(qkv)),
        };
        FlexTensor::from_data(TensorData::new(
            out,
            [shape.batch, shape.tokens, shape.width()],
        ))
    }
}

/// The gradient with respect to `qkv` of [`FlexOps::packed_attention`], given the gradient
/// `grad` of its output.
fn packed_attention_backward(qkv: FlexTensor, grad: FlexTensor, heads: usize) -> FlexTensor {
    let shape = packed_shape(&qkv, heads);
    let dims = [shape.batch, shape.tokens, 3 * shape.width()];
    let grad = f32_values(grad);
    let out = match contiguous_f32(&qkv) {
        Some(values) => attention::backward(shape, values, &grad),
        None => attention::backward(shape, &f32_values(qkv), &grad),
    };
    FlexTensor::from_data(TensorData::new(out, dims))
}

#[derive(Debug)]
struct LayerNormBackward {
    epsilon: f64,
}

impl Backward<Flex, 3> for LayerNormBackward {
    /// The forward input and gamma.
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma) = ops.state;
        let dims = x.layout().shape().clone();
        let width = gamma.layout().shape()[0];
        let eps = self.epsilon as f32;
        let (dx, dgamma, dbeta) = with_f32(&x, |x| {
            with_f32(&gamma, |gamma| {
                with_f32(&grad, |grad| layer_norm::backward(x, gamma, grad, eps))
            })
        });
        if let Some(node) = beta_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(dbeta, [width])),
            );
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(dgamma, [width])),
            );
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, dims)));
        }
    }
}

#[derive(Debug)]
struct AttentionBackward {
    heads: usize,
}

impl Backward<Flex, 1> for AttentionBackward {
    /// The forward input.
    type State = FlexTensor;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let grad = packed_attention_backward(ops.state, grad, self.heads);
            grads.register::<Flex>(parent.id, grad);
        }
    }
}

impl<C: CheckpointStrategy> FlexOps for Autodiff<Flex, C> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let backward = LayerNormBackward { epsilon };
        match backward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.primitive().clone(), gamma.primitive().clone());
                let out =
                    Flex::layer_norm_rows(x.clone(), gamma.clone(), beta.into_primitive(), epsilon);
                prep.finish((x, gamma), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::layer_norm_rows(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }

    fn packed_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        let backward = AttentionBackward { heads };
        match backward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = qkv.primitive().clone();
                prep.finish(input.clone(), Flex::packed_attention(input, heads))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::packed_attention(qkv.into_primitive(), heads))
            }
        }
    }
}

/// Whether [`self_attention`] runs the CPU kernels for tensors on `device`.
fn on_flex(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

#[derive(Debug)]
struct GeluExactBackward;

impl<B: FusedOps> Backward<B, 1> for GeluExactBackward {
    /// The forward input.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, B::gelu_exact_backward(ops.state, grad));
        }
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluExactBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The input stays shared with the saved state, so it is not overwritten.
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::gelu_exact(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }

    fn affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match AffineBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let out = B::affine(x.clone(), weight.clone(), bias.into_primitive());
                prep.finish((x, weight), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::affine(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}

#[derive(Debug)]
struct AffineBackward;

impl<B: FusedOps> Backward<B, 3> for AffineBackward {
    /// The forward input and weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, B::affine_grad_bias(grad.clone()));
        }
        if let Some(node) = weight_node {
            grads.register::<B>(node.id, B::affine_grad_weight(x, grad.clone()));
        }
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::affine_grad_input(grad, weight));
        }
    }
}

/// Exact GELU (as `torch.nn.GELU()`), differentiable, on any device.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_exact(x.into_dispatch()))
}

/// `layer` on the rows of `x` (`[m, in]` -> `[m, out]`), differentiable, on any device.
pub fn linear_forward(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let Some(bias) = &layer.bias else {
        return layer.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::affine(
        x.into_dispatch(),
        layer.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
    ))
}

/// GroupNorm of `x` (`[B, C, H, W]`) with `gamma` and `beta` `[C]`, then SiLU when `silu`; one
/// two-pass kernel on the CPU, burn's operations elsewhere.
pub fn group_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        silu,
    ))
}

/// `conv` applied to `x` (`[N, C, H, W]`); on the CPU the banded im2col kernel of
/// [`conv::forward`] for explicit padding, one group and no dilation (else, and on other devices,
/// `conv.forward`).
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let (PaddingConfig2d::Explicit(top, left, bottom, right), Some(bias)) =
        (&conv.padding, &conv.bias)
    else {
        return conv.forward(x);
    };
    let [stride_y, stride_x] = conv.stride;
    if conv.groups != 1 || conv.dilation != [1, 1] || stride_y != stride_x {
        return conv.forward(x);
    }
    conv2d_with_bias(
        x,
        conv.weight.val(),
        bias.val(),
        stride_y,
        [*top, *left, *bottom, *right],
    )
}

/// `x` (`[N, C, H, W]`) convolved with `weight` (`[O, C, k, k]`) plus `bias` (`[O]`), one group,
/// no dilation, `padding` as (top, left, bottom, right); on the CPU the banded im2col kernel of
/// [`conv::forward`].
pub fn conv2d_with_bias(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: [usize; 4],
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::conv2d_nchw(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// Multi-head self-attention from packed `[B, T, 3D]` projections (`[q | k | v]` per token, each
/// `heads x head_dim`) to `[B, T, D]`, differentiable. On the CPU this is one fused kernel; on other
/// devices, `fallback` (burn's own operations).
pub fn self_attention(
    qkv: Tensor<3>,
    heads: usize,
    fallback: impl FnOnce(Tensor<3>) -> Tensor<3>,
) -> Tensor<3> {
    if !on_flex(&qkv.device()) || qkv.dtype() != DType::F32 {
        return fallback(qkv);
    }
    Tensor::from_dispatch(<Dispatch as FlexOps>::packed_attention(
        qkv.into_dispatch(),
        heads,
    ))
}

/// `norm` applied over the last dimension of `x`, differentiable. `epsilon` must be the one `norm`
/// was configured with (burn keeps it private): on the CPU the LayerNorm kernel uses it, on other
/// devices `norm.forward` runs.
pub fn layer_norm_forward<const D: usize>(
    norm: &LayerNorm,
    epsilon: f64,
    x: Tensor<D>,
) -> Tensor<D> {
    let Some(beta) = &norm.beta else {
        return norm.forward(x);
    };
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return norm.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as FlexOps>::layer_norm_rows(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon,
    ))
}

/// Deterministic test inputs in `[lo, lo + 4)` (an LCG, so the kernels' tests need no RNG setup).
#[cfg(test)]
fn test_values(len: usize, seed: u64, lo: f32) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 + lo
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation;
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn matches_burn_gelu_on_every_layout() {
        let device = Device::flex();
        let x = Tensor::<3>::random([4, 33, 70], Distribution::Normal(0.0, 3.0), &device);
        // Contiguous and shared (allocating path), then unique (in place), then a strided view.
        let shared = gelu(x.clone());
        assert!(max_abs_diff(shared, activation::gelu(x.clone())) < 2e-6);
        let unique = gelu(x.clone() * 1.0);
        assert!(max_abs_diff(unique, activation::gelu(x.clone())) < 2e-6);
        let strided = x.clone().swap_dims(1, 2);
        assert!(max_abs_diff(gelu(strided.clone()), activation::gelu(strided)) < 2e-6);
        // The input a shared call reads is left as it was.
        let before = x.clone().into_data();
        let _ = gelu(x.clone());
        x.into_data().assert_eq(&before, true);
    }

    #[test]
    fn gradients_match_burn_gelu() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([37, 129], Distribution::Normal(0.0, 2.0), &device);
        let weights = Tensor::<2>::random([37, 129], Distribution::Default, &device);
        let ours = x.clone().require_grad();
        let theirs = x.require_grad();
        let grads_ours = (gelu(ours.clone()) * weights.clone()).sum().backward();
        let grads_theirs = (activation::gelu(theirs.clone()) * weights)
            .sum()
            .backward();
        let a = ours.grad(&grads_ours).unwrap();
        let b = theirs.grad(&grads_theirs).unwrap();
        assert!(max_abs_diff(a, b) < 2e-6);
    }

    #[test]
    fn linear_matches_burn_with_gradients_and_on_strided_input() {
        use burn::module::Module;
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(48, 20).init(&device);
        let x = Tensor::<2>::random([70, 48], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<2>::random([70, 20], Distribution::Default, &device);
        let ours = x.clone().require_grad();
        let theirs = x.require_grad();
        let out_ours = linear_forward(&layer, ours.clone());
        let out_theirs = layer.forward(theirs.clone());
        assert!(max_abs_diff(out_ours.clone(), out_theirs.clone()) < 1e-5);
        let grads_ours = (out_ours * weights.clone()).sum().backward();
        let grads_theirs = (out_theirs * weights).sum().backward();
        let pairs = [
            (ours.grad(&grads_ours), theirs.grad(&grads_theirs)),
            (
                layer.weight.grad(&grads_ours),
                layer.weight.grad(&grads_theirs),
            ),
        ];
        for (a, b) in pairs {
            assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-5);
        }
        let bias = layer.bias.as_ref().unwrap();
        let (a, b) = (bias.grad(&grads_ours), bias.grad(&grads_theirs));
        assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-5);

        // A transposed view as input, without autodiff.
        let inner = layer.valid();
        let x_t = Tensor::<2>::random([48, 70], Distribution::Default, &Device::flex());
        let a = linear_forward(&inner, x_t.clone().transpose());
        let b = inner.forward(x_t.transpose());
        assert!(max_abs_diff(a, b) < 1e-5);
    }

    /// burn's attention on the packed layout, as `Attention::forward_qkv` falls back to.
    fn burn_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
        use burn::tensor::activation::softmax;
        let [b, t, d3] = qkv.dims();
        let hd = d3 / 3 / heads;
        let qkv = qkv.reshape([b, t, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, heads, t, hd]));
        let probs = softmax(
            q.matmul(k.swap_dims(2, 3))
                .mul_scalar((hd as f64).powf(-0.5)),
            3,
        );
        probs.matmul(v).swap_dims(1, 2).reshape([b, t, d3 / 3])
    }

    #[test]
    fn self_attention_matches_burn_with_gradients() {
        let device = Device::flex().autodiff();
        let qkv = Tensor::<3>::random([5, 17, 36], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<3>::random([5, 17, 12], Distribution::Default, &device);
        let ours = qkv.clone().require_grad();
        let theirs = qkv.require_grad();
        let out_ours = self_attention(ours.clone(), 2, |_| unreachable!("Flex runs the kernel"));
        let out_theirs = burn_attention(theirs.clone(), 2);
        assert!(max_abs_diff(out_ours.clone(), out_theirs.clone()) < 1e-5);
        let grads_ours = (out_ours * weights.clone()).sum().backward();
        let grads_theirs = (out_theirs * weights).sum().backward();
        let (a, b) = (ours.grad(&grads_ours), theirs.grad(&grads_theirs));
        assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-5);

        // Without autodiff, and on a strided (swapped-back) input.
        let plain = Tensor::<3>::random([2, 36, 9], Distribution::Default, &Device::flex());
        let strided = plain.swap_dims(1, 2);
        let a = self_attention(strided.clone(), 3, |_| unreachable!("Flex runs the kernel"));
        assert!(max_abs_diff(a, burn_attention(strided, 3)) < 1e-5);
    }

    #[test]
    fn convolution_matches_burn_on_the_cpu_and_with_autodiff() {
        use burn::nn::conv::Conv2dConfig;
        // SD's 3x3 convolutions, the VAE's downsample (right and bottom padding) and 1x1 shortcuts.
        for (channels, kernel, stride, padding, size) in [
            (
                [5, 7],
                3,
                1,
                PaddingConfig2d::Explicit(1, 1, 1, 1),
                [13, 10],
            ),
            ([4, 6], 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [9, 12]),
            ([6, 3], 1, 1, PaddingConfig2d::Explicit(0, 0, 0, 0), [7, 5]),
        ] {
            let config = Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding);
            let dims = [2, channels[0], size[0], size[1]];
            let device = Device::flex();
            let conv = config.init(&device);
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let ours = conv2d_forward(&conv, x.clone());
            assert!(max_abs_diff(ours, conv.forward(x)) < 1e-5);
            // Autodiff tensors take burn's differentiable convolution.
            let device = Device::flex().autodiff();
            let conv = config.init(&device);
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let x = x.require_grad();
            let out = conv2d_forward(&conv, x.clone());
            assert!(max_abs_diff(out.clone(), conv.forward(x.clone())) < 1e-5);
            let grads = out.sum().backward();
            assert!(x.grad(&grads).is_some());
        }
    }

    #[test]
    fn layer_norm_matches_burn_with_gradients() {
        use burn::nn::LayerNormConfig;
        let device = Device::flex().autodiff();
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-6).init(&device);
        norm.gamma = burn::module::Param::from_tensor(Tensor::random(
            [24],
            Distribution::Normal(1.0, 0.5),
            &device,
        ));
        let x = Tensor::<3>::random([3, 130, 24], Distribution::Normal(0.5, 2.0), &device);
        let weights = Tensor::<3>::random([3, 130, 24], Distribution::Default, &device);
        let ours = x.clone().require_grad();
        let theirs = x.require_grad();
        let out_ours = layer_norm_forward(&norm, 1e-6, ours.clone());
        let out_theirs = norm.forward(theirs.clone());
        assert!(max_abs_diff(out_ours.clone(), out_theirs.clone()) < 1e-5);
        let grads_ours = (out_ours * weights.clone()).sum().backward();
        let grads_theirs = (out_theirs * weights).sum().backward();
        let (a, b) = (ours.grad(&grads_ours), theirs.grad(&grads_theirs));
        assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-4);
        let (a, b) = (norm.gamma.grad(&grads_ours), norm.gamma.grad(&grads_theirs));
        assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-3);
        let beta = norm.beta.as_ref().unwrap();
        let (a, b) = (beta.grad(&grads_ours), beta.grad(&grads_theirs));
        assert!(max_abs_diff(a.unwrap(), b.unwrap()) < 1e-3);
    }
}
