//! The one dispatch module: which backend an op runs on, the safe downcast to it, the views of
//! its tensors the kernels read, and the per-thread count of fast paths taken.
//!
//! # The rule
//!
//! An op in [`crate::ops`] is generic over `B: Backend`. It asks this module whether `B` is one
//! of the backends a kernel exists for (`is_flex`, `is_autodiff_flex`; with the `fast-kernels`
//! feature), comparing [`TypeId`](std::any::TypeId)s, and only then moves its tensors across
//! with `same_type`: a `Box<dyn Any>` downcast, so a wrong guess is a panic, never a
//! transmute. A kernel may decline further (an element type other than f32, a grouped
//! convolution, …) by handing its inputs back; the op then runs burn's generic formulation.
//! Every fast path taken is counted on the calling thread ([`fast_path_counts`]), so tests can
//! prove which path ran.

use std::cell::Cell;

/// Fast paths taken on the current thread since it started, one counter per op.
///
/// Counted where the op is dispatched, on the thread that called it — except
/// [`conv_weight_grad`](Self::conv_weight_grad), which is counted in the backward pass, on the
/// thread that runs it (the one that calls `backward()`; burn's autodiff runs the graph there).
/// Each thread has its own counters, so tests running in parallel do not see each other's
/// calls. Without the `fast-kernels` feature every counter stays 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastPathCounts {
    /// Fused Bernoulli log-likelihoods ([`crate::bernoulli_log_prob`]), forward passes.
    pub bernoulli_log_prob: u64,
    /// Sums over the last axis as a product with ones ([`crate::sum_last_dim`]).
    pub sum_last_dim: u64,
    /// Convolutions recorded as this crate's op ([`crate::conv2d`]).
    pub conv2d: u64,
    /// Weight gradients of a convolution or transposed convolution computed as a blocked
    /// im2col GEMM (backward pass; see the struct's documentation for the thread).
    pub conv_weight_grad: u64,
    /// Transposed convolutions run parallel over images ([`crate::conv_transpose2d`]).
    pub conv_transpose2d: u64,
    /// Batch norms on a fast path ([`crate::batch_norm`]): per-channel affine maps on Flex, one
    /// autodiff operation on `Autodiff<Wgpu>` / `Autodiff<Cuda>` (training only).
    pub batch_norm: u64,
    /// Leaky ReLUs written with ReLU ([`crate::leaky_relu`]).
    pub leaky_relu: u64,
    /// Adam updates as one in-place pass ([`crate::adam_step`]), one per parameter tensor.
    pub adam_step: u64,
}

impl FastPathCounts {
    const ZERO: Self = Self {
        bernoulli_log_prob: 0,
        sum_last_dim: 0,
        conv2d: 0,
        conv_weight_grad: 0,
        conv_transpose2d: 0,
        batch_norm: 0,
        leaky_relu: 0,
        adam_step: 0,
    };
}

thread_local! {
    static COUNTS: Cell<FastPathCounts> = const { Cell::new(FastPathCounts::ZERO) };
}

/// This thread's [`FastPathCounts`]: how many times each op took its fast path here.
pub fn fast_path_counts() -> FastPathCounts {
    COUNTS.with(Cell::get)
}

/// Adds one to the counter `field` picks, on this thread.
#[cfg(any(feature = "fast-kernels", feature = "wgpu", feature = "cuda"))]
pub(crate) fn count(field: fn(&mut FastPathCounts) -> &mut u64) {
    COUNTS.with(|counts| {
        let mut value = counts.get();
        *field(&mut value) += 1;
        counts.set(value);
    });
}

/// `value` as type `U`. Call it only once an `is_*` check of this module made `T` and `U` the
/// same type; otherwise it panics (a checked downcast, no transmute).
#[cfg(any(feature = "fast-kernels", feature = "wgpu", feature = "cuda"))]
pub(crate) fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn std::any::Any> = Box::new(value);
    *boxed
        .downcast::<U>()
        .unwrap_or_else(|_| unreachable!("dispatch checked the types before the downcast"))
}

/// Whether `B` is `Autodiff<I>` (no checkpointing, as burn's training uses it): how the GPU
/// backends' autodiff operations (`I` = burn's `Wgpu` or `Cuda`) are recognised.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn is_autodiff_of<
    B: burn::tensor::backend::Backend,
    I: burn::tensor::backend::Backend,
>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Autodiff<I>>()
}

#[cfg(feature = "fast-kernels")]
pub(crate) use flex::*;

/// Identification of burn's Flex CPU backend and access to its tensors.
#[cfg(feature = "fast-kernels")]
mod flex {
    use std::any::TypeId;
    use std::borrow::Cow;

    use burn::backend::Flex;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Shape, Tensor, TensorPrimitive};

    /// `Autodiff<Flex>` as burn's training on the CPU uses it (no checkpointing): the backend
    /// the custom autodiff ops are registered for.
    pub(crate) type AutodiffFlex = Autodiff<Flex, NoCheckpointing>;

    /// Whether `B` is burn's Flex CPU backend, `Flex<f32, i32>`, without autodiff
    /// (evaluation, sampling, and the optimizer's inner backend).
    pub(crate) fn is_flex<B: Backend>() -> bool {
        TypeId::of::<B>() == TypeId::of::<Flex>()
    }

    /// Whether `B` is [`AutodiffFlex`] (training on the CPU).
    pub(crate) fn is_autodiff_flex<B: Backend>() -> bool {
        TypeId::of::<B>() == TypeId::of::<AutodiffFlex>()
    }

    /// Whether `B` is `Flex` or `Autodiff<Flex>`: the backends the rewrites written with
    /// burn's own tensor ops (sums, batch norm, leaky ReLU) are measured on.
    pub(crate) fn is_flex_family<B: Backend>() -> bool {
        is_flex::<B>() || is_autodiff_flex::<B>()
    }

    /// A Flex tensor's primitive (f32 or not; the kernels check the dtype first).
    pub(crate) fn flex_primitive<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
        t.into_primitive().tensor()
    }

    /// A Flex primitive back as a float tensor.
    pub(crate) fn flex_tensor<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    /// The f32 elements of `t` in row-major order: borrowed when it is contiguous from its
    /// storage's start, else a contiguous copy.
    pub(crate) fn contiguous(t: &FlexTensor) -> Cow<'_, [f32]> {
        match t.as_slice::<f32>() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(
                t.to_contiguous()
                    .as_slice::<f32>()
                    .expect("a fresh contiguous copy starts at offset 0")
                    .to_vec(),
            ),
        }
    }

    /// The `N` sizes of a rank-`N` shape.
    ///
    /// # Panics
    /// If the shape's rank is not `N`.
    pub(crate) fn dims<const N: usize>(shape: &Shape) -> [usize; N] {
        assert_eq!(
            shape.num_dims(),
            N,
            "expected a rank-{N} tensor, got {shape:?}"
        );
        std::array::from_fn(|axis| shape[axis])
    }
}
