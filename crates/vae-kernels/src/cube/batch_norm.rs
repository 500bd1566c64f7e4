//! Batch normalisation with batch statistics as **one autodiff operation** with a hand-written
//! backward pass, for burn's GPU backends (`Autodiff<Wgpu>`, `Autodiff<Cuda>`).
//!
//! Over the channel-last rows `x: [M, C]` (M = N·H·W), with μ, σ² the per-column mean and
//! biased variance, s = 1/√(σ² + ε) and x̂ = (x − μ)·s:
//!
//! * forward: `y = γ·x̂ + β`;
//! * backward, from `g = ∂L/∂y` and the sums Σ_m g and Σ_m g·x̂ over the rows:
//!   `∂L/∂β = Σ_m g`, `∂L/∂γ = Σ_m g·x̂`, and
//!   `∂L/∂x = γ·s·(g − (Σ_m g)/M − x̂·(Σ_m g·x̂)/M)`,
//!   the closed form of the gradient through μ and σ² (exact, not an approximation).
//!
//! Why: autodiff through the elementwise formulation records about a dozen operations per norm
//! (the statistics, the affine map, and a gradient accumulated into x along three paths), and on
//! a GPU backend each one that fusion cannot merge is a kernel launch. As one operation the
//! forward pass is two reductions and two fused elementwise maps, the backward pass two
//! reductions and one elementwise map.
//!
//! The two passes are a [`RowKernels`] implementation: on burn's GPU backends the cubecl
//! kernels of `batch_norm_kernels.rs` (two launches each way, whatever burn-fusion's optimiser
//! decides); `BurnRowKernels`, the same arithmetic in burn's tensor ops, is the reference the
//! tests compare with on the CPU.

use burn::tensor::{Tensor, backend::Backend};

use crate::ops::BatchStatistics;
#[cfg(any(test, feature = "wgpu", feature = "cuda"))]
pub(crate) use autodiff::batch_norm_autodiff;

#[cfg(any(test, feature = "wgpu", feature = "cuda"))]
/// The forward pass over rows `x: [M, C]`: `y = (x − μ)·γ·s + β` (`[M, C]`) and the batch's
/// μ, σ² and s = 1/√(σ² + ε) (`[C]` each).
#[derive(Debug)]
pub(crate) struct RowsForward<I: Backend> {
    pub(crate) y: Tensor<I, 2>,
    pub(crate) mean: Tensor<I, 1>,
    pub(crate) var: Tensor<I, 1>,
    pub(crate) inv_std: Tensor<I, 1>,
}

#[cfg(any(test, feature = "wgpu", feature = "cuda"))]
/// The backward pass: ∂L/∂x (`[M, C]`), ∂L/∂γ and ∂L/∂β (`[C]`).
#[derive(Debug)]
pub(crate) struct RowsGradients<I: Backend> {
    pub(crate) x: Tensor<I, 2>,
    pub(crate) gamma: Tensor<I, 1>,
    pub(crate) beta: Tensor<I, 1>,
}

#[cfg(any(test, feature = "wgpu", feature = "cuda"))]
/// The two passes of batch norm over rows on an inner (non-autodiff) backend `I`.
pub(crate) trait RowKernels<I: Backend>: Send + Sync + std::fmt::Debug + 'static {
    /// See [`RowsForward`].
    fn forward(
        x: Tensor<I, 2>,
        gamma: Tensor<I, 1>,
        beta: Tensor<I, 1>,
        epsilon: f64,
    ) -> RowsForward<I>;

    /// With x̂ = (x − μ)·s: ∂L/∂β = Σ_m g, ∂L/∂γ = Σ_m g·x̂,
    /// ∂L/∂x = γ·s·(g − (Σ_m g)/M − x̂·(Σ_m g·x̂)/M).
    fn backward(
        g: Tensor<I, 2>,
        x: Tensor<I, 2>,
        mean: Tensor<I, 1>,
        inv_std: Tensor<I, 1>,
        gamma: Tensor<I, 1>,
    ) -> RowsGradients<I>;
}

#[cfg(test)]
/// [`RowKernels`] in burn's tensor ops, for any backend.
#[derive(Debug)]
pub(crate) struct BurnRowKernels;

#[cfg(test)]
impl<I: Backend> RowKernels<I> for BurnRowKernels {
    fn forward(
        x: Tensor<I, 2>,
        gamma: Tensor<I, 1>,
        beta: Tensor<I, 1>,
        epsilon: f64,
    ) -> RowsForward<I> {
        let [rows, channels] = x.dims();
        let count = rows as f64;
        let mean = x.clone().sum_dim(0).div_scalar(count);
        // Two passes (no E[x²] − μ², which cancels when |μ| ≫ σ).
        let centred = x - mean.clone();
        let var = (centred.clone() * centred.clone())
            .sum_dim(0)
            .div_scalar(count);
        let inv_std = var.clone().add_scalar(epsilon).sqrt().recip();
        let scale = gamma.reshape([1, channels]) * inv_std.clone();
        RowsForward {
            y: centred * scale + beta.reshape([1, channels]),
            mean: mean.reshape([channels]),
            var: var.reshape([channels]),
            inv_std: inv_std.reshape([channels]),
        }
    }

    fn backward(
        g: Tensor<I, 2>,
        x: Tensor<I, 2>,
        mean: Tensor<I, 1>,
        inv_std: Tensor<I, 1>,
        gamma: Tensor<I, 1>,
    ) -> RowsGradients<I> {
        let [rows, channels] = x.dims();
        let count = rows as f64;
        let inv_std = inv_std.reshape([1, channels]);
        let x_hat = (x - mean.reshape([1, channels])) * inv_std.clone();
        let sum_g = g.clone().sum_dim(0);
        let sum_g_x_hat = (g.clone() * x_hat.clone()).sum_dim(0);
        let scale = gamma.reshape([1, channels]) * inv_std;
        let dx =
            (g - sum_g.clone().div_scalar(count) - x_hat * sum_g_x_hat.clone().div_scalar(count))
                * scale;
        RowsGradients {
            x: dx,
            gamma: sum_g_x_hat.reshape([channels]),
            beta: sum_g.reshape([channels]),
        }
    }
}

/// [`BatchStatistics`] of `x: [M, C]` by this module's operation when `B` is one of burn's GPU
/// backends under autodiff that this build includes (`wgpu` and `cuda` features) and the
/// tensors are f32; otherwise the inputs, untouched.
#[allow(clippy::type_complexity)] // (x, γ, β): the inputs handed back
pub(crate) fn batch_norm_rows<B: Backend>(
    x: Tensor<B, 2>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Result<BatchStatistics<B>, (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>)> {
    let inputs = (x, gamma, beta);
    #[cfg(feature = "wgpu")]
    let inputs = match on::<
        B,
        burn::backend::Wgpu,
        super::batch_norm_kernels::CubeRowKernels<burn::backend::wgpu::WgpuRuntime, u32>,
    >(inputs, epsilon)
    {
        Ok(out) => return Ok(out),
        Err(inputs) => inputs,
    };
    #[cfg(feature = "cuda")]
    let inputs = match on::<
        B,
        burn::backend::Cuda,
        super::batch_norm_kernels::CubeRowKernels<burn_cubecl::cubecl::cuda::CudaRuntime, u8>,
    >(inputs, epsilon)
    {
        Ok(out) => return Ok(out),
        Err(inputs) => inputs,
    };
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let _ = epsilon;
    Err(inputs)
}

/// The operation on `Autodiff<I>` with the kernels `K`, when `B` is that type and the tensors
/// are f32.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[allow(clippy::type_complexity)]
fn on<B: Backend, I: Backend, K: RowKernels<I>>(
    (x, gamma, beta): (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>),
    epsilon: f64,
) -> Result<BatchStatistics<B>, (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>)> {
    use crate::dispatch::{is_autodiff_of, same_type};
    use burn::tensor::DType;
    let f32s = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3];
    if !f32s || !is_autodiff_of::<B, I>() {
        return Err((x, gamma, beta));
    }
    let out = batch_norm_autodiff::<I, K>(same_type(x), same_type(gamma), same_type(beta), epsilon);
    Ok(BatchStatistics {
        y: same_type(out.y),
        mean: same_type(out.mean),
        var: same_type(out.var),
    })
}

#[cfg(any(test, feature = "wgpu", feature = "cuda"))]
mod autodiff {
    use std::marker::PhantomData;

    use burn::backend::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

    use super::RowKernels;
    use crate::ops::BatchStatistics;

    /// The operation for any `Autodiff<I>` (no checkpointing) with the kernels `K`:
    /// `y = γ·(x − μ)/√(σ² + ε) + β` over `x: [M, C]`, tracked for x, γ and β, and the
    /// batch's μ and σ² (untracked, for the running statistics).
    pub(crate) fn batch_norm_autodiff<I: Backend, K: RowKernels<I>>(
        x: Tensor<Autodiff<I>, 2>,
        gamma: Tensor<Autodiff<I>, 1>,
        beta: Tensor<Autodiff<I>, 1>,
        epsilon: f64,
    ) -> BatchStatistics<Autodiff<I>> {
        let x = x.into_primitive().tensor();
        let gamma = gamma.into_primitive().tensor();
        let beta = beta.into_primitive().tensor();
        let forward = K::forward(
            float(x.primitive.clone()),
            float(gamma.primitive.clone()),
            float(beta.primitive.clone()),
            epsilon,
        );
        let y = forward.y.into_primitive().tensor();
        let y = match BatchNormBackward::<K>(PhantomData)
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                State {
                    x: x.primitive,
                    mean: forward.mean.clone().into_primitive().tensor(),
                    inv_std: forward.inv_std.into_primitive().tensor(),
                    gamma: gamma.primitive,
                },
                y,
            ),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        BatchStatistics {
            y: Tensor::from_primitive(TensorPrimitive::Float(y)),
            mean: Tensor::from_inner(forward.mean),
            var: Tensor::from_inner(forward.var),
        }
    }

    /// A float primitive of the inner backend as a tensor.
    fn float<I: Backend, const D: usize>(t: FloatTensor<I>) -> Tensor<I, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    #[derive(Debug)]
    struct BatchNormBackward<K>(PhantomData<K>);

    /// What the backward pass needs: x `[M, C]`, μ, 1/√(σ² + ε) and γ, `[C]` each.
    #[derive(Debug, Clone)]
    struct State<I: Backend> {
        x: FloatTensor<I>,
        mean: FloatTensor<I>,
        inv_std: FloatTensor<I>,
        gamma: FloatTensor<I>,
    }

    impl<I: Backend, K: RowKernels<I>> Backward<I, 3> for BatchNormBackward<K> {
        type State = State<I>;

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_gamma, node_beta] = ops.parents;
            let g = float::<I, 2>(grads.consume::<I>(&ops.node));
            let State {
                x,
                mean,
                inv_std,
                gamma,
            } = ops.state;
            let out = K::backward(g, float(x), float(mean), float(inv_std), float(gamma));
            for (node, grad) in [
                (node_x, out.x.into_primitive().tensor()),
                (node_gamma, out.gamma.into_primitive().tensor()),
                (node_beta, out.beta.into_primitive().tensor()),
            ] {
                if let Some(node) = node {
                    grads.register::<I>(node.id, grad);
                }
            }
        }
    }
}
