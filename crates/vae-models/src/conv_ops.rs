//! The convolutions the conv models call: burn's, except on the Flex CPU backend.
//!
//! For `Autodiff<Flex>` (training) and, for the transposed convolution, plain `Flex` (sampling,
//! evaluation), with f32, groups = 1 and dilation = 1, the ops here replace three slow paths of
//! burn 0.21 on Flex, each found with perf on `cargo xtask bench --cases conv-b64`:
//!
//! * **weight gradients.** burn computes ∂L/∂W as a second convolution over batch-and-channel-
//!   swapped views, which Flex first copies element by element (a third of the step). Here it
//!   is one matrix product, ∂L/∂W = G·cols(x), with G the output gradient as `[O, N·Ho·Wo]` and
//!   cols(x) the im2col patches `[N·Ho·Wo, C·kh·kw]`, gathered and multiplied block by block
//!   so the patch matrix never exists whole (for the 64×64 output layer it would be 300 MB);
//! * **transposed convolutions** (the decoder's forward pass, and every convolution's ∂L/∂x):
//!   Flex's runs the images one after another and adds through a function pointer per
//!   element; here images run in parallel, one GEMM and one col2im each, and stride-1 cases
//!   are ordinary convolutions with the kernel flipped.
//!
//! Every other backend, and every other case, takes burn's path unchanged.

use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, backend::Backend, module};

/// 2-D convolution, `x: [N, C, H, W]`, `weight: [O, C, kh, kw]`, `bias: [O]` → `[N, O, Ho, Wo]`.
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::conv2d::<B>(x, weight, bias, &options) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    module::conv2d(x, weight, bias, options)
}

/// 2-D transposed convolution, `x: [N, Ci, H, W]`, `weight: [Ci, Co, kh, kw]` → `[N, Co, Ho, Wo]`.
pub(crate) fn conv_transpose2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::conv_transpose2d::<B>(x, weight, bias, &options) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    module::conv_transpose2d(x, weight, bias, options)
}

#[cfg(feature = "flex")]
mod flex {
    //! The Flex paths. Tensors of the generic `B` are moved into `Box<dyn Any>` and downcast:
    //! when `B` is exactly `Autodiff<Flex>` (or `Flex`) they come back as that type (safe code,
    //! no transmutes), otherwise the caller gets its inputs back.

    use std::any::{Any, TypeId};

    use burn::backend::Flex;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::{Autodiff, NodeId};
    use burn::backend::flex::FlexTensor;
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
    use burn::tensor::{DType, Shape, TensorData, TensorMetadata, TensorPrimitive};
    use burn::tensor::{Tensor, backend::Backend};
    use rayon::prelude::*;

    type Ad = Autodiff<Flex, NoCheckpointing>;
    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

    fn is_ad_flex<B: Backend>() -> bool {
        TypeId::of::<B>() == TypeId::of::<Ad>()
    }

    /// `value` as type `U`; called only once [`is_ad_flex`] made `T` and `U` the same type.
    fn same_type<T: 'static, U: 'static>(value: T) -> U {
        let boxed: Box<dyn Any> = Box::new(value);
        *boxed
            .downcast::<U>()
            .unwrap_or_else(|_| unreachable!("B is Autodiff<Flex>"))
    }

    fn supported(x: &Tensor<impl Backend, 4>, dilation: [usize; 2], groups: usize) -> bool {
        dilation == [1, 1] && groups == 1 && x.dtype() == DType::F32
    }

    pub(super) fn conv2d<B: Backend>(
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Option<Tensor<B, 1>>,
        options: &ConvOptions<2>,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        if !is_ad_flex::<B>() || !supported(&x, options.dilation, options.groups) {
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

    pub(super) fn conv_transpose2d<B: Backend>(
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Option<Tensor<B, 1>>,
        options: &ConvTransposeOptions<2>,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let flex = TypeId::of::<B>() == TypeId::of::<Flex>();
        if !(flex || is_ad_flex::<B>())
            || bias.is_some()
            || !supported(&x, options.dilation, options.groups)
        {
            return Err((x, weight, bias));
        }
        let output = |x: &FlexTensor, w: &FlexTensor| {
            let [_, _, h, wd] = dims4(&x.shape());
            let [_, _, kh, kw] = dims4(&w.shape());
            let side = |len: usize, k: usize, axis: usize| {
                ((len - 1) * options.stride[axis] + k + options.padding_out[axis])
                    .saturating_sub(2 * options.padding[axis])
            };
            let geometry = Geometry::new(options.stride, options.padding);
            transposed_conv(x, w, geometry, [side(h, kh, 0), side(wd, kw, 1)])
        };
        if flex {
            // Inference (sampling, evaluation): the same kernel, nothing recorded.
            let x = same_type::<_, Tensor<Flex, 4>>(x).into_primitive().tensor();
            let w = same_type::<_, Tensor<Flex, 4>>(weight)
                .into_primitive()
                .tensor();
            return Ok(same_type::<Tensor<Flex, 4>, _>(Tensor::from_primitive(
                TensorPrimitive::Float(output(&x, &w)),
            )));
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
            let [_, _, h, wd] = dims4(&x.shape());
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
                grads
                    .register::<Flex>(node.id, Flex::conv_transpose2d_x_backward(w, grad, options));
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
        #[cfg(test)]
        tests::WEIGHT_GRADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let [o, c, kh, kw] = dims4(weight_shape);
        let [_, _, ho, wo] = dims4(&grad.shape());
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
        #[cfg(test)]
        tests::WEIGHT_GRADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let [ci, co, kh, kw] = dims4(weight_shape);
        let [_, _, h, w] = dims4(&x.shape());
        let xs = channels_first(x);
        let dw = patches_product(&xs, ci, grad, [h, w], [kh, kw], geometry);
        FlexTensor::from_data(TensorData::new(dw, [ci, co, kh, kw]))
    }

    /// `conv_transpose2d(x, W)` for `x: [N, Ci, H, W]`, `W: [Ci, Co, kh, kw]` (no bias,
    /// groups 1, dilation 1) into an output of spatial size `out`:
    /// y[n, co, s·i + ky − p, s·j + kx − p] += x[n, ci, i, j] · W[ci, co, ky, kx], terms that land
    /// outside `out` dropped. Per image, one GEMM cols = Wᵀ · x_n (`[Co·kh·kw, H·W]`) and a
    /// col2im scatter-add; images in parallel. (Flex's own runs the images one after another,
    /// with a function-pointer add per element: 13 % of a conv VAE training step.)
    fn transposed_conv(
        x: &FlexTensor,
        w: &FlexTensor,
        Geometry { stride, padding }: Geometry,
        [ho, wo]: [usize; 2],
    ) -> FlexTensor {
        let [n, ci, h, wd] = dims4(&x.shape());
        let [w_ci, co, kh, kw] = dims4(&w.shape());
        assert_eq!(ci, w_ci, "input channels of x and W");
        let stride_one_side = |len: usize, k: usize, p: usize| (len + k - 1).checked_sub(2 * p);
        if stride == [1, 1]
            && padding[0] < kh
            && padding[1] < kw
            && [Some(ho), Some(wo)]
                == [
                    stride_one_side(h, kh, padding[0]),
                    stride_one_side(wd, kw, padding[1]),
                ]
        {
            // With stride 1 it is an ordinary convolution with the kernel flipped and its
            // channel axes swapped, padded k − 1 − p: Flex's im2col convolution, no scatter.
            let options = ConvOptions::new(
                [1, 1],
                [kh - 1 - padding[0], kw - 1 - padding[1]],
                [1, 1],
                1,
            );
            return Flex::conv2d(x.clone(), flipped(w), None, options);
        }
        let (src, weights) = (contiguous(x), contiguous(w));
        let rows = co * kh * kw;
        let mut out = vec![0f32; n * co * ho * wo];
        out.par_chunks_mut(co * ho * wo).enumerate().for_each_init(
            || vec![0f32; rows * h * wd],
            |cols, (b, image)| {
                let x_b = &src[b * ci * h * wd..][..ci * h * wd];
                // SAFETY: cols is [rows, H·W]; W is [Ci, rows] read transposed; x_b is
                // [Ci, H·W]; row-major with the strides given, all in bounds.
                unsafe {
                    gemm::gemm(
                        rows,
                        h * wd,
                        ci,
                        cols.as_mut_ptr(),
                        1,
                        (h * wd) as isize,
                        false,
                        weights.as_ptr(),
                        rows as isize,
                        1,
                        x_b.as_ptr(),
                        1,
                        (h * wd) as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                // The input positions i (or j) whose output s·i + k − p lies in [0, len).
                let valid = |k: usize, s: usize, p: usize, len: usize, n_in: usize| {
                    let lo = p.saturating_sub(k).div_ceil(s);
                    let hi = if len + p > k {
                        (len + p - k - 1) / s + 1
                    } else {
                        0
                    };
                    lo..hi.min(n_in).max(lo)
                };
                for (r, col) in cols.chunks_exact(h * wd).enumerate() {
                    let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                    let plane = &mut image[c * ho * wo..][..ho * wo];
                    let js = valid(kx, stride[1], padding[1], wo, wd);
                    for i in valid(ky, stride[0], padding[0], ho, h) {
                        let y = i * stride[0] + ky - padding[0];
                        let out_row = &mut plane[y * wo..][..wo];
                        let in_row = &col[i * wd..][..wd];
                        for j in js.clone() {
                            out_row[j * stride[1] + kx - padding[1]] += in_row[j];
                        }
                    }
                }
            },
        );
        FlexTensor::from_data(TensorData::new(out, [n, co, ho, wo]))
    }

    /// `[Ci, Co, kh, kw]` → `[Co, Ci, kh, kw]` with both kernel axes reversed.
    fn flipped(w: &FlexTensor) -> FlexTensor {
        let [ci, co, kh, kw] = dims4(&w.shape());
        let src = contiguous(w);
        let mut out = vec![0f32; src.len()];
        for (o, kernels) in out.chunks_exact_mut(ci * kh * kw).enumerate() {
            for (i, kernel) in kernels.chunks_exact_mut(kh * kw).enumerate() {
                let from = &src[(i * co + o) * kh * kw..][..kh * kw];
                for (dst, src) in kernel.iter_mut().zip(from.iter().rev()) {
                    *dst = *src;
                }
            }
        }
        FlexTensor::from_data(TensorData::new(out, [co, ci, kh, kw]))
    }

    /// Patch-matrix entries per block (4 MiB of f32): a block is gathered and consumed by the
    /// GEMM while it is still in cache. Materialising the whole patch matrix instead cost
    /// 300 MB per step for the 64×64 output convolution at batch 64 (page faults, DRAM traffic).
    /// Tests use tiny blocks, so their small convolutions take many blocks on every thread.
    #[cfg(not(test))]
    const BLOCK_ENTRIES: usize = 1 << 20;
    #[cfg(test)]
    const BLOCK_ENTRIES: usize = 64;
    /// At least this many patch rows (the GEMM's inner dimension) per block.
    #[cfg(not(test))]
    const MIN_BLOCK_ROWS: usize = 64;
    #[cfg(test)]
    const MIN_BLOCK_ROWS: usize = 3;

    /// `A · cols(t)` as a row-major `[p, C·kh·kw]` buffer, where `a` is `[p, N·gh·gw]` (one
    /// column per patch position) and cols(t) are the patches of `t: [N, C, H, W]` at the
    /// positions of a `[gh, gw]` grid ([`im2col_rows`]). The patch matrix is never built whole:
    /// each thread gathers blocks of its rows into a scratch buffer and accumulates its own
    /// partial product, and the partials are summed.
    fn patches_product(
        a: &FlexTensor,
        p: usize,
        t: &FlexTensor,
        grid: [usize; 2],
        kernel: [usize; 2],
        geometry: Geometry,
    ) -> Vec<f32> {
        let [n, c, h, w] = dims4(&t.shape());
        let src = contiguous(t);
        let a = contiguous(a);
        let q = c * kernel[0] * kernel[1];
        let rows = n * grid[0] * grid[1];
        assert_eq!(a.len(), p * rows, "A is [p, N·gh·gw]");
        let block = (BLOCK_ENTRIES / q.max(1))
            .max(MIN_BLOCK_ROWS)
            .min(rows)
            .max(1);
        let starts: Vec<usize> = (0..rows).step_by(block).collect();
        // A fixed partition, one contiguous run of blocks per thread, and partials summed in
        // order: the same sums in the same order on every run (rayon's adaptive splitting
        // would make the weight gradient differ in its last bits from run to run).
        let per_thread = starts.len().div_ceil(rayon::current_num_threads()).max(1);
        let partials: Vec<Vec<f32>> = starts
            .par_chunks(per_thread)
            .map(|starts| {
                let mut cols = Vec::new();
                let mut dw = vec![0f32; p * q];
                for &start in starts {
                    let end = (start + block).min(rows);
                    cols.resize((end - start) * q, 0.0);
                    im2col_rows(
                        &src,
                        [n, c, h, w],
                        grid,
                        kernel,
                        geometry,
                        start..end,
                        &mut cols,
                    );
                    // SAFETY: dw is [p, q], a is [p, rows] read at columns start..end, cols is
                    // [end − start, q]; all row-major with the strides given, all in bounds.
                    unsafe {
                        gemm::gemm(
                            p,
                            q,
                            end - start,
                            dw.as_mut_ptr(),
                            1,
                            q as isize,
                            true,
                            a.as_ptr().add(start),
                            1,
                            rows as isize,
                            cols.as_ptr(),
                            1,
                            q as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                dw
            })
            .collect();
        let mut partials = partials.into_iter();
        let mut sum = partials.next().unwrap_or_else(|| vec![0f32; p * q]);
        for part in partials {
            sum.iter_mut().zip(&part).for_each(|(s, v)| *s += v);
        }
        sum
    }

    /// ∂L/∂b = Σ over batch and positions of ∂L/∂y.
    fn bias_grad(grad: &FlexTensor) -> FloatTensor<Flex> {
        let [n, o, h, w] = dims4(&grad.shape());
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

    fn dims4(shape: &Shape) -> [usize; 4] {
        [shape[0], shape[1], shape[2], shape[3]]
    }

    fn contiguous(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
        match t.as_slice::<f32>() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(
                t.to_contiguous()
                    .as_slice::<f32>()
                    .expect("a fresh contiguous copy starts at offset 0")
                    .to_vec(),
            ),
        }
    }

    /// `[N, C, H, W]` → `[C, N·H·W]`: N·C contiguous planes moved, no per-element indexing.
    fn channels_first(t: &FlexTensor) -> FlexTensor {
        let [n, c, h, w] = dims4(&t.shape());
        let src = contiguous(t);
        let plane = h * w;
        let mut out = vec![0f32; n * c * plane];
        out.par_chunks_mut(n * plane)
            .enumerate()
            .for_each(|(ch, dst)| {
                for (b, dst) in dst.chunks_exact_mut(plane).enumerate() {
                    let start = (b * c + ch) * plane;
                    dst.copy_from_slice(&src[start..start + plane]);
                }
            });
        FlexTensor::from_data(TensorData::new(out, [c, n * plane]))
    }

    /// Rows `rows` of the patch matrix of `src: [N, C, H, W]` at the positions of a grid
    /// `[gh, gw]`, into `out` (`rows.len() × C·kh·kw`, every entry written): row (n, i, j),
    /// column (c, ky, kx) = src[n, c, s·i + ky − p, s·j + kx − p], zero outside the image.
    fn im2col_rows(
        src: &[f32],
        [_, c, h, w]: [usize; 4],
        [gh, gw]: [usize; 2],
        [kh, kw]: [usize; 2],
        Geometry { stride, padding }: Geometry,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        // The in-image part of a kernel window starting at `origin` (may be negative) along
        // an axis of length `len`: kernel offsets lo..hi.
        let inside = |origin: isize, k: usize, len: usize| {
            let lo = (-origin).clamp(0, k as isize) as usize;
            let hi = (len as isize - origin).clamp(lo as isize, k as isize) as usize;
            (lo, hi)
        };
        for (row, patch) in rows.zip(out.chunks_exact_mut(c * kh * kw)) {
            let (b, i, j) = (row / (gh * gw), (row / gw) % gh, row % gw);
            let y0 = (i * stride[0]) as isize - padding[0] as isize;
            let x0 = (j * stride[1]) as isize - padding[1] as isize;
            let (ky_lo, ky_hi) = inside(y0, kh, h);
            let (kx_lo, kx_hi) = inside(x0, kw, w);
            let image = &src[b * c * h * w..(b + 1) * c * h * w];
            for (plane, dst) in image
                .chunks_exact(h * w)
                .zip(patch.chunks_exact_mut(kh * kw))
            {
                for (ky, dst) in dst.chunks_exact_mut(kw).enumerate() {
                    if ky < ky_lo || ky >= ky_hi || kx_lo == kx_hi {
                        // The kernel row lies above, below, left or right of the image.
                        dst.fill(0.0);
                        continue;
                    }
                    let y = (y0 + ky as isize) as usize;
                    let x = (x0 + kx_lo as isize) as usize;
                    let src = &plane[y * w + x..][..kx_hi - kx_lo];
                    if let (Ok(dst), Ok(src)) = (
                        <&mut [f32; 3]>::try_from(&mut *dst),
                        <&[f32; 3]>::try_from(src),
                    ) {
                        // The common case, a whole row of a 3-wide kernel: a fixed-size
                        // copy, not a `memmove` call per three floats.
                        *dst = *src;
                        continue;
                    }
                    for (k, value) in dst.iter_mut().enumerate() {
                        *value = if (kx_lo..kx_hi).contains(&k) {
                            src[k - kx_lo]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use burn::backend::{Autodiff, NdArray};
        use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
        use burn::tensor::{Tensor, TensorData, module};

        use std::sync::atomic::{AtomicUsize, Ordering};

        use super::{Ad, Flex};

        type Reference = Autodiff<NdArray<f32>>;

        /// Weight gradients computed by this module (proves the tests ran the fast path).
        pub(super) static WEIGHT_GRADS: AtomicUsize = AtomicUsize::new(0);

        /// Standard-normal-ish f32 data from a local generator: burn's seeded `random` is global
        /// state shared with the other tests running in parallel.
        fn random(shape: [usize; 4], seed: u64) -> TensorData {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let values = (0..shape.iter().product::<usize>())
                .map(|_| {
                    // Sum of four uniforms, centred and scaled to unit variance.
                    (0..4)
                        .map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            (state >> 40) as f32 / (1u64 << 24) as f32
                        })
                        .sum::<f32>()
                        .mul_add(3f32.sqrt(), -2.0 * 3f32.sqrt())
                })
                .collect::<Vec<f32>>();
            TensorData::new(values, shape)
        }

        fn assert_close(ours: TensorData, reference: TensorData, what: &str) {
            // The reference may run in f64: the NdArray device's default float type is global
            // and other tests in this binary use NdArray<f64>.
            let a = ours.convert::<f32>().to_vec::<f32>().unwrap();
            let b = reference.convert::<f32>().to_vec::<f32>().unwrap();
            assert_eq!(a.len(), b.len(), "{what}: length");
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * scale,
                    "{what}[{i}]: fast {x} vs burn {y} (scale {scale})"
                );
            }
        }

        /// Output, ∂/∂x, ∂/∂W and ∂/∂b of Σ y·r (r random) on both paths.
        fn check_conv(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize, bias: bool) {
            let (xd, wd) = (random(x, 1), random(w, 2));
            let bd = TensorData::new((0..w[0]).map(|i| i as f32 * 0.1 - 0.3).collect(), [w[0]]);
            let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);

            let dev = Default::default();
            let xf = Tensor::<Ad, 4>::from_data(xd.clone(), &dev).require_grad();
            let wf = Tensor::<Ad, 4>::from_data(wd.clone(), &dev).require_grad();
            let bf = Tensor::<Ad, 1>::from_data(bd.clone(), &dev).require_grad();
            let yf = super::super::conv2d(
                xf.clone(),
                wf.clone(),
                bias.then(|| bf.clone()),
                options.clone(),
            );
            let taken = WEIGHT_GRADS.load(Ordering::Relaxed);
            let r = random(yf.dims(), 3);
            let gf = (yf.clone() * Tensor::from_data(r.clone(), &dev))
                .sum()
                .backward();

            let dev = Default::default();
            let xr = Tensor::<Reference, 4>::from_data(xd, &dev).require_grad();
            let wr = Tensor::<Reference, 4>::from_data(wd, &dev).require_grad();
            let br = Tensor::<Reference, 1>::from_data(bd, &dev).require_grad();
            let yr = module::conv2d(xr.clone(), wr.clone(), bias.then(|| br.clone()), options);
            let gr = (yr.clone() * Tensor::from_data(r, &dev)).sum().backward();

            assert!(
                WEIGHT_GRADS.load(Ordering::Relaxed) > taken,
                "fast path not taken"
            );
            assert_close(yf.into_data(), yr.into_data(), "y");
            assert_close(
                xf.grad(&gf).unwrap().into_data(),
                xr.grad(&gr).unwrap().into_data(),
                "dx",
            );
            assert_close(
                wf.grad(&gf).unwrap().into_data(),
                wr.grad(&gr).unwrap().into_data(),
                "dW",
            );
            if bias {
                assert_close(
                    bf.grad(&gf).unwrap().into_data(),
                    br.grad(&gr).unwrap().into_data(),
                    "db",
                );
            }
        }

        fn check_conv_transpose(
            x: [usize; 4],
            w: [usize; 4],
            stride: usize,
            pad: usize,
            out: usize,
        ) {
            let (xd, wd) = (random(x, 4), random(w, 5));
            let options = ConvTransposeOptions::new([stride; 2], [pad; 2], [out; 2], [1, 1], 1);

            let dev = Default::default();
            let xf = Tensor::<Ad, 4>::from_data(xd.clone(), &dev).require_grad();
            let wf = Tensor::<Ad, 4>::from_data(wd.clone(), &dev).require_grad();
            let yf = super::super::conv_transpose2d(xf.clone(), wf.clone(), None, options.clone());
            // Inference on plain Flex runs the same kernel: the same values, bit for bit.
            let yi = super::super::conv_transpose2d(
                Tensor::<Flex, 4>::from_data(xd.clone(), &dev),
                Tensor::<Flex, 4>::from_data(wd.clone(), &dev),
                None,
                options.clone(),
            );
            assert_eq!(yi.into_data(), yf.clone().into_data(), "inference path");
            let taken = WEIGHT_GRADS.load(Ordering::Relaxed);
            let r = random(yf.dims(), 6);
            let gf = (yf.clone() * Tensor::from_data(r.clone(), &dev))
                .sum()
                .backward();

            let dev = Default::default();
            let xr = Tensor::<Reference, 4>::from_data(xd, &dev).require_grad();
            let wr = Tensor::<Reference, 4>::from_data(wd, &dev).require_grad();
            let yr = module::conv_transpose2d(xr.clone(), wr.clone(), None, options);
            let gr = (yr.clone() * Tensor::from_data(r, &dev)).sum().backward();

            assert!(
                WEIGHT_GRADS.load(Ordering::Relaxed) > taken,
                "fast path not taken"
            );
            assert_close(yf.into_data(), yr.into_data(), "y");
            assert_close(
                xf.grad(&gf).unwrap().into_data(),
                xr.grad(&gr).unwrap().into_data(),
                "dx",
            );
            assert_close(
                wf.grad(&gf).unwrap().into_data(),
                wr.grad(&gr).unwrap().into_data(),
                "dW",
            );
        }

        #[test]
        fn conv2d_gradients_match_burn() {
            // The encoder's stride-2 blocks, the decoder's stride-1 output layer, odd sides.
            check_conv([3, 3, 16, 16], [8, 3, 3, 3], 2, 1, false);
            check_conv([2, 5, 9, 9], [4, 5, 3, 3], 2, 1, false);
            check_conv([2, 4, 8, 8], [3, 4, 3, 3], 1, 1, true);
            check_conv([2, 3, 7, 6], [2, 3, 2, 3], 1, 0, true);
            check_conv([2, 3, 7, 6], [2, 3, 2, 3], 2, 1, false);
            // Padding wider than the kernel: whole kernel windows outside the image.
            check_conv([2, 3, 5, 5], [2, 3, 1, 1], 1, 2, false);
            check_conv([2, 3, 6, 6], [2, 3, 1, 1], 2, 2, true);
        }

        #[test]
        fn conv_transpose2d_gradients_match_burn() {
            check_conv_transpose([3, 8, 4, 4], [8, 5, 3, 3], 2, 1, 1);
            check_conv_transpose([2, 4, 5, 5], [4, 3, 3, 3], 2, 1, 0);
            check_conv_transpose([2, 3, 6, 6], [3, 2, 3, 3], 1, 1, 0);
            check_conv_transpose([2, 3, 6, 5], [3, 2, 2, 3], 2, 1, 1);
            check_conv_transpose([2, 3, 6, 6], [3, 2, 1, 1], 2, 2, 0);
        }
    }
}
