//! Convolutions on burn's Flex CPU backend.
//!
//! For `Autodiff<Flex>` (training) and, for the transposed convolution, plain `Flex` (sampling,
//! evaluation), with f32, groups = 1 and dilation = 1, the ops here replace three slow paths of
//! burn 0.21 on Flex, each found with perf on `cargo xtask bench --cases conv-b64`:
//!
//! * **weight gradients** ([`im2col`]). burn computes ∂L/∂W as a second convolution over
//!   batch-and-channel-swapped views, which Flex first copies element by element (a third of
//!   the step). Here it is one matrix product, ∂L/∂W = G·cols(x), with G the output gradient as
//!   `[O, N·Ho·Wo]` and cols(x) the im2col patches `[N·Ho·Wo, C·kh·kw]`, gathered and
//!   multiplied block by block so the patch matrix never exists whole (for the 64×64 output
//!   layer it would be 300 MB);
//! * **transposed convolutions** ([`transposed`]; the decoder's forward pass, and every
//!   convolution's ∂L/∂x): Flex's runs the images one after another and adds through a function
//!   pointer per element; here images run in parallel, one GEMM and one col2im each, and
//!   stride-1 cases are ordinary convolutions with the kernel flipped.
//!
//! The forward convolution itself is Flex's; this module records it as its own autodiff op so
//! the backward pass above runs. Every other case hands its inputs back to burn's path.

mod im2col;
mod transposed;

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
use burn::tensor::{DType, Shape, TensorData, TensorMetadata, TensorPrimitive};
use burn::tensor::{Tensor, backend::Backend};

use self::im2col::{channels_first, patches_product};
use self::transposed::transposed_conv;
use crate::dispatch::{
    AutodiffFlex as Ad, contiguous, count, dims, flex_primitive, flex_tensor, is_autodiff_flex,
    is_flex, same_type,
};

/// The inputs of a convolution, handed back when the fast path declines.
pub(crate) type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

fn supported(x: &Tensor<impl Backend, 4>, dilation: [usize; 2], groups: usize) -> bool {
    dilation == [1, 1] && groups == 1 && x.dtype() == DType::F32
}

/// `conv2d(x, W, b)` recorded as this module's op when `B` is `Autodiff<Flex>`, f32, dilation
/// 1 and groups 1 (the forward value is Flex's own convolution); otherwise the inputs back.
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: &ConvOptions<2>,
) -> Result<Tensor<B, 4>, Inputs<B>> {
    if !is_autodiff_flex::<B>() || !supported(&x, options.dilation, options.groups) {
        return Err((x, weight, bias));
    }
    let x = same_type::<_, Tensor<Ad, 4>>(x).into_primitive().tensor();
    let w = same_type::<_, Tensor<Ad, 4>>(weight)
        .into_primitive()
        .tensor();
    let out = match bias.map(same_type::<_, Tensor<Ad, 1>>) {
        None => {
            let y = Flex::conv2d(
                x.primitive.clone(),
                w.primitive.clone(),
                None,
                options.clone(),
            );
            let kind = Conv2dNoBias
                .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
                .compute_bound()
                .stateful();
            record(kind, &x, &w, options.clone(), y)
        }
        Some(b) => {
            let b = b.into_primitive().tensor();
            let y = Flex::conv2d(
                x.primitive.clone(),
                w.primitive.clone(),
                Some(b.primitive),
                options.clone(),
            );
            let kind = Conv2dWithBias
                .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
                .compute_bound()
                .stateful();
            record(kind, &x, &w, options.clone(), y)
        }
    };
    Ok(same_type::<Tensor<Ad, 4>, _>(Tensor::from_primitive(
        TensorPrimitive::Float(out),
    )))
}

/// `conv_transpose2d(x, W)` by [`transposed_conv`] when `B` is `Flex` or `Autodiff<Flex>`
/// (recorded as this module's op), f32, no bias, dilation 1 and groups 1; otherwise the inputs
/// back.
pub(crate) fn conv_transpose2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: &ConvTransposeOptions<2>,
) -> Result<Tensor<B, 4>, Inputs<B>> {
    let flex = is_flex::<B>();
    if !(flex || is_autodiff_flex::<B>())
        || bias.is_some()
        || !supported(&x, options.dilation, options.groups)
    {
        return Err((x, weight, bias));
    }
    let output = |x: &FlexTensor, w: &FlexTensor| {
        let [_, _, h, wd] = dims(&x.shape());
        let [_, _, kh, kw] = dims(&w.shape());
        let side = |len: usize, k: usize, axis: usize| {
            ((len - 1) * options.stride[axis] + k + options.padding_out[axis])
                .saturating_sub(2 * options.padding[axis])
        };
        let geometry = Geometry::new(options.stride, options.padding);
        transposed_conv(x, w, geometry, [side(h, kh, 0), side(wd, kw, 1)])
    };
    if flex {
        // Inference (sampling, evaluation): the same kernel, nothing recorded.
        let x = flex_primitive(same_type::<_, Tensor<Flex, 4>>(x));
        let w = flex_primitive(same_type::<_, Tensor<Flex, 4>>(weight));
        return Ok(same_type(flex_tensor::<4>(output(&x, &w))));
    }
    let x = same_type::<_, Tensor<Ad, 4>>(x).into_primitive().tensor();
    let w = same_type::<_, Tensor<Ad, 4>>(weight)
        .into_primitive()
        .tensor();
    let y = output(&x.primitive, &w.primitive);
    let kind = ConvTranspose2dNoBias
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful();
    let out = record(kind, &x, &w, options.clone(), y);
    Ok(same_type::<Tensor<Ad, 4>, _>(Tensor::from_primitive(
        TensorPrimitive::Float(out),
    )))
}

/// Registers a prepared op with forward value `y`; when tracked, `x` and `w` are kept for
/// its backward pass, with the convolution's options.
fn record<Op, O, const N: usize>(
    kind: OpsKind<Op, Flex, (NodeId, NodeId, O), NoCheckpointing, N>,
    x: &FloatTensor<Ad>,
    w: &FloatTensor<Ad>,
    options: O,
    y: FlexTensor,
) -> FloatTensor<Ad>
where
    Op: Backward<Flex, N, State = (NodeId, NodeId, O)>,
    O: Clone + Send + std::fmt::Debug + 'static,
{
    match kind {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(x), prep.checkpoint(w), options);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Stride and symmetric padding of the convolution whose patches are gathered.
#[derive(Clone, Copy)]
struct Geometry {
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Geometry {
    fn new(stride: [usize; 2], padding: [usize; 2]) -> Self {
        Self { stride, padding }
    }
}

#[derive(Debug)]
struct Conv2dNoBias;
#[derive(Debug)]
struct Conv2dWithBias;
#[derive(Debug)]
struct ConvTranspose2dNoBias;

impl Backward<Flex, 2> for Conv2dNoBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let parents = [node_x.map(|n| n.id), node_w.map(|n| n.id)];
        conv2d_backward(parents, grad, ops.state, grads, checkpointer);
    }
}

impl Backward<Flex, 3> for Conv2dWithBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, bias_grad(&grad));
        }
        let parents = [node_x.map(|n| n.id), node_w.map(|n| n.id)];
        conv2d_backward(parents, grad, ops.state, grads, checkpointer);
    }
}

/// ∂L/∂x ([`transposed_conv`]) and ∂L/∂W (blocked im2col GEMM) of `conv2d(x, W)`, for
/// the parents `[x, W]` that require them.
fn conv2d_backward(
    [x_node, w_node]: [Option<NodeId>; 2],
    grad: FlexTensor,
    (x_state, w_state, options): (NodeId, NodeId, ConvOptions<2>),
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
    let w = checkpointer.retrieve_node_output::<FlexTensor>(w_state);
    let geometry = Geometry::new(options.stride, options.padding);
    if let Some(id) = w_node {
        grads.register::<Flex>(id, conv_weight_grad(&x, &grad, &w.shape(), geometry));
    }
    if let Some(id) = x_node {
        // ∂L/∂x is the transposed convolution of the output gradient with W, cut to x's size.
        let [_, _, h, wd] = dims(&x.shape());
        grads.register::<Flex>(id, transposed_conv(&grad, &w, geometry, [h, wd]));
    }
}

impl Backward<Flex, 2> for ConvTranspose2dNoBias {
    type State = (NodeId, NodeId, ConvTransposeOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let w = checkpointer.retrieve_node_output::<FlexTensor>(w_state);
        if let Some(node) = node_w {
            let geometry = Geometry::new(options.stride, options.padding);
            grads.register::<Flex>(
                node.id,
                conv_transpose_weight_grad(&x, &grad, &w.shape(), geometry),
            );
        }
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, Flex::conv_transpose2d_x_backward(w, grad, options));
        }
    }
}

/// ∂L/∂W for `y = conv2d(x, W)`: W is `[O, C, kh, kw]`, and ∂L/∂W = G · cols(x) with
/// G = ∂L/∂y as `[O, N·Ho·Wo]` and cols(x) the patches of x under the convolution's own
/// geometry, `[N·Ho·Wo, C·kh·kw]`.
fn conv_weight_grad(
    x: &FlexTensor,
    grad: &FlexTensor,
    weight_shape: &Shape,
    geometry: Geometry,
) -> FloatTensor<Flex> {
    // Counted here, in the backward pass: on the thread that runs `backward()`.
    count(|c| &mut c.conv_weight_grad);
    let [o, c, kh, kw] = dims(weight_shape);
    let [_, _, ho, wo] = dims(&grad.shape());
    let g = channels_first(grad);
    let dw = patches_product(&g, o, x, [ho, wo], [kh, kw], geometry);
    FlexTensor::from_data(TensorData::new(dw, [o, c, kh, kw]))
}

/// ∂L/∂W for `y = conv_transpose2d(x, W)`: W is `[Ci, Co, kh, kw]`, and
/// y[n, co, s·i + ky − p, s·j + kx − p] += x[n, ci, i, j] · W[ci, co, ky, kx], so
/// ∂L/∂W = X · cols(G) with X as `[Ci, N·H·W]` and cols(G) the patches of the output
/// gradient at the input positions, `[N·H·W, Co·kh·kw]` (stride s, padding p).
fn conv_transpose_weight_grad(
    x: &FlexTensor,
    grad: &FlexTensor,
    weight_shape: &Shape,
    geometry: Geometry,
) -> FloatTensor<Flex> {
    // Counted here, in the backward pass: on the thread that runs `backward()`.
    count(|c| &mut c.conv_weight_grad);
    let [ci, co, kh, kw] = dims(weight_shape);
    let [_, _, h, w] = dims(&x.shape());
    let xs = channels_first(x);
    let dw = patches_product(&xs, ci, grad, [h, w], [kh, kw], geometry);
    FlexTensor::from_data(TensorData::new(dw, [ci, co, kh, kw]))
}

/// ∂L/∂b = Σ over batch and positions of ∂L/∂y.
fn bias_grad(grad: &FlexTensor) -> FloatTensor<Flex> {
    let [n, o, h, w] = dims(&grad.shape());
    let g = contiguous(grad);
    let plane = h * w;
    let mut sums = vec![0f32; o];
    for image in g.chunks_exact(o * plane).take(n) {
        for (sum, channel) in sums.iter_mut().zip(image.chunks_exact(plane)) {
            *sum += channel.iter().sum::<f32>();
        }
    }
    FlexTensor::from_data(TensorData::new(sums, [o]))
}

#[cfg(test)]
mod tests;
