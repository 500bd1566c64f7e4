//! The public ops: one generic function each, `B: Backend`, always returning a result.
//!
//! Each tries its fast path (with the `fast-kernels` feature, on the backends the kernel is
//! written for) and otherwise computes burn's generic formulation, here, so callers never branch
//! on the backend themselves.

use burn::nn::BatchNorm;
use burn::optim::{Adam, AdamConfig, AdamState, SimpleOptimizer};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, activation, backend::Backend, module};

use crate::cube;
#[cfg(any(feature = "fast-kernels", feature = "wgpu", feature = "cuda"))]
use crate::dispatch::count;
#[cfg(feature = "fast-kernels")]
use crate::dispatch::is_flex_family;
#[cfg(feature = "fast-kernels")]
use crate::flex;

/// The Bernoulli log-likelihood with logits, summed over the last axis:
/// `log p(x|η) = Σ_d [x_d η_d − softplus(η_d)]`, nats, for `x: [1, N, D]` (broadcast over the
/// S samples) and logits `η: [S, N, D]` → `[S, N]`.
///
/// `softplus(η) = ln(1 + e^η) = −log σ(−η)`, finite for every finite η. With binary x this is
/// `Σ_d log Bernoulli(x_d; σ(η_d))`; with x ∈ [0, 1] it is the (negated) binary cross-entropy.
///
/// Both paths evaluate `softplus(η) = max(η, 0) + ln(1 + e^{−|η|})` and the gradient
/// ∂/∂η = g·(x − σ(η)) directly from e^{−|η|}, as `(x − 1) + σ(−η)` for η > 0 and `x − σ(η)`
/// otherwise, so it is accurate relative to its own size for every logit (at η = −17, x = 0:
/// −4.1e-8, where burn's generic `log_sigmoid` backward, `1 − 1/z`, returns 0 in f32 and is off
/// by up to 4 % for η ∈ (−16.6, −10)); ∂/∂x = Σ_s g·η.
///
/// Fast path (`fast-kernels`, `Flex` or `Autodiff<Flex>`, f32): one fused, vectorised pass
/// forward that keeps σ(−|η|), and one pass backward. Generic path: the same arithmetic in
/// burn's elementwise ops (see `bernoulli_log_prob_per_element`), then [`sum_last_dim`].
/// The two agree within f32 rounding in absolute terms; both have the relative accuracy above.
///
/// # Panics
/// If `x` is not `[1, N, D]` for logits `[S, N, D]`.
pub fn bernoulli_log_prob<B: Backend>(x: Tensor<B, 3>, logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let [_, n, d] = logits.dims();
    assert_eq!(
        x.dims(),
        [1, n, d],
        "bernoulli_log_prob: x must be [1, N, D] for logits [S, N, D] = {:?}",
        logits.dims()
    );
    #[cfg(feature = "fast-kernels")]
    let (x, logits) = match flex::bernoulli::log_prob(x, logits) {
        Ok(log_prob) => {
            count(|c| &mut c.bernoulli_log_prob);
            return log_prob;
        }
        Err(inputs) => inputs,
    };
    sum_last_dim(bernoulli_log_prob_per_element(x, logits))
}

/// `x·η − softplus(η)` elementwise, `[1, N, D]` × `[S, N, D]` → `[S, N, D]`, nats, with the
/// derivatives ∂/∂η = x − σ(η) and ∂/∂x = η each evaluated without cancellation.
///
/// With h = 1 for η > 0 (else 0), `x·η − softplus(η) = (x − h)·η − softplus(−|η|)`, and
/// softplus(−|η|) = ln(1 + e^{−|η|}) ∈ (0, ln 2] never overflows. The derivative of
/// −softplus(−|η|), `slope` = ±σ(−|η|) = ±e^{−|η|}/(1 + e^{−|η|}) (+ for η > 0, − for η ≤ 0,
/// matching h), is computed here directly and attached by
/// the zero-valued term `(η − η̄)·slope` (η̄ = η detached; the difference is exactly 0 forward and
/// has derivative 1): autodiff through burn's `log_sigmoid` would instead compute 1 − 1/z with
/// z ≈ 1 and lose the small σ(η) of a confident logit. The η-gradient is then the sum of two
/// exact parts, (x − h) + slope, e.g. 0 − σ(−17) at x = 0, η = −17.
fn bernoulli_log_prob_per_element<B: Backend>(x: Tensor<B, 3>, eta: Tensor<B, 3>) -> Tensor<B, 3> {
    let eta_value = eta.clone().detach();
    // h: 1 where η > 0, 0 where η ≤ 0 (at η = 0 both sides give −ln 2 and slope −½).
    let positive = eta_value.clone().sign().clamp_min(0.0);
    let decay = eta_value.clone().abs().neg().exp();
    let softplus_of_neg_abs = decay.clone().log1p();
    let sigmoid_of_neg_abs = decay.clone() / decay.add_scalar(1.0);
    let slope = sigmoid_of_neg_abs * positive.clone().mul_scalar(2.0).sub_scalar(1.0);
    (x - positive) * eta.clone() - softplus_of_neg_abs + (eta - eta_value) * slope
}

/// Sums `t: [S, N, D]` over its last axis: `out[s, n] = Σ_d t[s, n, d]`, shape `[S, N]`, in
/// the units of `t`.
///
/// Fast path (`fast-kernels`, `Flex` or `Autodiff<Flex>`): a product with a `[D, 1]` vector
/// of ones, whose gradient is a dense tensor (Flex walks `sum_dim`'s stride-0 broadcast
/// gradient element by element: 6 % of a CPU MLP step, measured). Generic path:
/// `sum_dim(2)`.
pub fn sum_last_dim<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 2> {
    #[cfg(feature = "fast-kernels")]
    if is_flex_family::<B>() {
        count(|c| &mut c.sum_last_dim);
        return flex::reductions::sum_last_dim(t);
    }
    let [s, n, _] = t.dims();
    t.sum_dim(2).reshape([s, n])
}

/// 2-D convolution, `x: [N, C, H, W]`, `weight: [O, C, kh, kw]`, `bias: [O]` →
/// `[N, O, Ho, Wo]` with `Ho = ⌊(H + 2p − d·(kh − 1) − 1) / s⌋ + 1` (likewise `Wo`):
/// `y[n, o, i, j] = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · x[n, c, s·i + d·ky − p, s·j + d·kx − p]`,
/// zero outside the image.
///
/// Fast path (`fast-kernels`, `Autodiff<Flex>`, f32, dilation 1, groups 1): burn's forward,
/// with ∂L/∂W as a blocked im2col GEMM and ∂L/∂x as a transposed convolution parallel over
/// images. Generic path: `burn::tensor::module::conv2d`.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "fast-kernels")]
    let (x, weight, bias) = match flex::conv::conv2d::<B>(x, weight, bias, &options) {
        Ok(y) => {
            count(|c| &mut c.conv2d);
            return y;
        }
        Err(inputs) => inputs,
    };
    module::conv2d(x, weight, bias, options)
}

/// 2-D transposed convolution, `x: [N, Ci, H, W]`, `weight: [Ci, Co, kh, kw]`, `bias: [Co]`
/// → `[N, Co, Ho, Wo]` with `Ho = (H − 1)·s + d·(kh − 1) + 1 + p_out − 2p` (likewise `Wo`):
/// `y[n, co, s·i + d·ky − p, s·j + d·kx − p] += x[n, ci, i, j] · W[ci, co, ky, kx]`, plus
/// `b[co]`; the adjoint of [`conv2d`] with the same stride and padding.
///
/// Fast path (`fast-kernels`, `Flex` or `Autodiff<Flex>`, f32, no bias, dilation 1, groups 1):
/// images in parallel, one GEMM and one col2im each (stride 1: a convolution with the kernel
/// flipped); ∂L/∂W as a blocked im2col GEMM. Generic path:
/// `burn::tensor::module::conv_transpose2d`.
pub fn conv_transpose2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "fast-kernels")]
    let (x, weight, bias) = match flex::conv::conv_transpose2d::<B>(x, weight, bias, &options) {
        Ok(y) => {
            count(|c| &mut c.conv_transpose2d);
            return y;
        }
        Err(inputs) => inputs,
    };
    module::conv_transpose2d(x, weight, bias, options)
}

/// Batch normalisation of `x: [N, C, H, W]` with burn's `BatchNorm` module and semantics:
/// `y = γ_c (x − μ_c) / √(σ²_c + ε) + β_c`, where μ, σ² are the batch's per-channel mean and
/// (biased) variance when autodiff is enabled — which also updates the running statistics,
/// `r ← (1 − momentum)·r + momentum·batch` — and the running statistics otherwise.
///
/// Fast paths: on `Flex` or `Autodiff<Flex>` (`fast-kernels`), the same statistics and update
/// arranged as products with ones over `[N·C, H·W]` and one per-(n, c) multiply-add (several
/// times faster on Flex, measured on the CelebA conv VAE); on `Autodiff<Wgpu>` /
/// `Autodiff<Cuda>` (features `wgpu` / `cuda`, f32), training as one autodiff operation whose
/// passes are two cubecl kernels each: 5 kernel launches per layer and training step on wgpu
/// with the running-statistics update, against 38 for burn's `BatchNorm`. Generic path:
/// [`batch_norm_affine`], the same function over a channel-last view, arranged for few kernel
/// launches (22).
pub fn batch_norm<B: Backend>(norm: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "fast-kernels")]
    if is_flex_family::<B>() {
        count(|c| &mut c.batch_norm);
        return flex::batch_norm::batch_norm(norm, x);
    }
    batch_norm_affine(norm, x)
}

/// burn's `BatchNorm::forward` (same parameters, statistics, running-statistics update and
/// value up to f32 rounding), written as one per-channel affine map `y = x·a + b` with
/// `a = γ / √(σ² + ε)` and `b = β − μ·a` on `[1, C]`, over the channel-last view
/// `[N·H·W, C]`.
///
/// Why: on burn's GPU backends every op is a kernel launch, and burn's formulation costs 38
/// per batch norm per training step (measured on wgpu: `swap_dims` + `reshape` copies before
/// each statistic, and five `[1, C, 1, 1]` operands whose gradients autodiff reduces one axis
/// at a time); this one costs 22 (5 with the GPU kernels of `cube::batch_norm`, which take
/// over the batch statistics on `Autodiff<Wgpu>` / `Autodiff<Cuda>`). The view is free for a
/// convolution's output,
/// which burn's GPU convolutions leave channel-last in memory, so each statistic is one
/// reduction over axis 0; the big tensor meets two `[1, C]` operands; and μ is detached inside
/// σ² — exact, since ∂σ²/∂μ = −(2/M)·Σ(x − μ) = 0 — which spares backward a reduction.
fn batch_norm_affine<B: Backend>(norm: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    batch_norm_channel_last(norm, x, |x, gamma, beta, epsilon| {
        match cube::batch_norm::batch_norm_rows(x, gamma, beta, epsilon) {
            Ok(out) => {
                #[cfg(any(feature = "wgpu", feature = "cuda"))]
                count(|c| &mut c.batch_norm);
                out
            }
            Err((x, gamma, beta)) => batch_statistics_elementwise(x, gamma, beta, epsilon),
        }
    })
}

/// A batch norm's output rows `y: [M, C]` with batch statistics, and the batch's per-channel
/// mean and biased variance (`[C]` each, for the running statistics).
pub(crate) struct BatchStatistics<B: Backend> {
    /// `γ·(x − μ)/√(σ² + ε) + β`, `[M, C]`.
    pub(crate) y: Tensor<B, 2>,
    /// μ, `[C]`.
    pub(crate) mean: Tensor<B, 1>,
    /// σ² = mean of (x − μ)², `[C]`.
    pub(crate) var: Tensor<B, 1>,
}

/// The frame of [`batch_norm_affine`]: the channel-last view `[N·H·W, C]`, then `train` (the
/// batch statistics and output, updating the running statistics) under autodiff, else the
/// affine map with the running statistics; the result back as `[N, C, H, W]`.
fn batch_norm_channel_last<B: Backend>(
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    train: impl FnOnce(Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>, f64) -> BatchStatistics<B>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let rows = x.permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    let y = if B::ad_enabled(&device) {
        let out = train(rows, norm.gamma.val(), norm.beta.val(), norm.epsilon);
        update_running_statistics(norm, out.mean, out.var);
        out.y
    } else {
        let mean = norm.running_mean.value().to_device(&device).reshape([1, c]);
        let var = norm.running_var.value().to_device(&device).reshape([1, c]);
        let a = norm.gamma.val().reshape([1, c]) / var.add_scalar(norm.epsilon).sqrt();
        let b = norm.beta.val().reshape([1, c]) - mean * a.clone();
        rows * a + b
    };
    y.reshape([n, h, w, c]).permute([0, 3, 1, 2])
}

/// [`BatchStatistics`] of `x: [M, C]` in burn's elementwise ops, differentiated by autodiff:
/// `y = x·a + b` with `a = γ/√(σ² + ε)` and `b = β − μ·a` on `[1, C]`, σ² with μ detached.
fn batch_statistics_elementwise<B: Backend>(
    x: Tensor<B, 2>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> BatchStatistics<B> {
    let [m, c] = x.dims();
    let count = m as f64;
    let per_channel = |t: Tensor<B, 2>| t.sum_dim(0).div_scalar(count);
    let mean = per_channel(x.clone());
    // Two passes (no E[x²] − μ², which cancels when |μ| ≫ σ).
    let centred = x.clone() - mean.clone().detach();
    let var = per_channel(centred.clone() * centred);
    let a = gamma.reshape([1, c]) / var.clone().add_scalar(epsilon).sqrt();
    let b = beta.reshape([1, c]) - mean.clone() * a.clone();
    BatchStatistics {
        y: x * a + b,
        mean: mean.reshape([c]),
        var: var.reshape([c]),
    }
}

/// Moves `norm`'s running statistics towards one batch's per-channel mean and (biased)
/// variance, `[C]` each: `r ← (1 − momentum)·r + momentum·batch` — burn's update, untracked.
pub(crate) fn update_running_statistics<B: Backend>(
    norm: &BatchNorm<B>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
) {
    let m = norm.momentum;
    for (state, batch) in [(&norm.running_mean, mean), (&norm.running_var, var)] {
        let old = state.value_sync().to_device(&batch.device());
        state.update((old.mul_scalar(1.0 - m) + batch.detach().mul_scalar(m)).detach());
    }
}

/// Leaky ReLU, elementwise: `max(x, s·x)` for a slope 0 < s < 1 (x ≥ 0: x; x < 0: s·x).
///
/// Fast path (`fast-kernels`, `Flex` or `Autodiff<Flex>`): `s·x + (1 − s)·relu(x)`, which uses
/// ReLU's native kernels forward and backward instead of a comparison and two masked selects
/// (several times cheaper on Flex; same value and gradient, the kink at 0 aside). Generic path:
/// `burn::tensor::activation::leaky_relu`.
pub fn leaky_relu<B: Backend, const D: usize>(x: Tensor<B, D>, slope: f64) -> Tensor<B, D> {
    #[cfg(feature = "fast-kernels")]
    if is_flex_family::<B>() {
        count(|c| &mut c.leaky_relu);
        return flex::activation::leaky_relu(x, slope);
    }
    activation::leaky_relu(x, slope)
}

/// The hyper-parameters of [`adam_step`]; the defaults are burn's `AdamConfig` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    /// β₁ ∈ [0, 1), the decay of the first moment m.
    pub beta_1: f32,
    /// β₂ ∈ [0, 1), the decay of the second moment v.
    pub beta_2: f32,
    /// ε > 0, added to √v̂ for numerical stability (in the parameter's units per step, before
    /// the learning rate).
    pub epsilon: f32,
}

impl Default for AdamHyper {
    /// β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁵ (burn's defaults).
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
        }
    }
}

impl AdamHyper {
    /// burn's `Adam` with these hyper-parameters (no AMSGrad, no weight decay).
    fn burn_adam(&self) -> Adam {
        AdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .build()
    }
}

/// One Adam step (Kingma & Ba, bias-corrected, ε added to √v̂) of parameter θ with gradient g
/// and learning rate η (`lr`, per step), from burn's `AdamState` (`None` before the first
/// step; moments m₀ = v₀ = 0, step t counted from 1):
///
/// ```text
/// m_t = β₁ m + (1 − β₁) g,   v_t = β₂ v + (1 − β₂) g²
/// θ ← θ − η · m_t·√(1 − β₂ᵗ)/(1 − β₁ᵗ) / (√v_t + ε·√(1 − β₂ᵗ))
/// ```
///
/// Returns the new parameter and state. The numbers are burn's `Adam` (built from `hyper`)
/// bit for bit on every path, and the state is burn's, so checkpoints are interchangeable.
///
/// Fast path (`fast-kernels`, `Flex`, f32, no AMSGrad state): the same f32 operations in the
/// same order in one parallel in-place pass over θ, m and v. Generic path: burn's `Adam`.
pub fn adam_step<B: Backend, const D: usize>(
    hyper: &AdamHyper,
    lr: f64,
    tensor: Tensor<B, D>,
    grad: Tensor<B, D>,
    state: Option<AdamState<B, D>>,
) -> (Tensor<B, D>, AdamState<B, D>) {
    #[cfg(feature = "fast-kernels")]
    let (tensor, grad, state) = match flex::adam::step(hyper, lr, tensor, grad, state) {
        Ok(updated) => {
            count(|c| &mut c.adam_step);
            return updated;
        }
        Err(inputs) => inputs,
    };
    let (tensor, state) =
        <Adam as SimpleOptimizer<B>>::step(&hyper.burn_adam(), lr, tensor, grad, state);
    (tensor, state.expect("burn's Adam always returns its state"))
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::{AutodiffModule, Param};
    use burn::nn::BatchNormConfig;
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Distribution, Tensor, Tolerance, activation, module};

    use super::*;
    use crate::fast_path_counts;

    type Ad = Autodiff<NdArray<f32>>;

    /// f32 agreement of two arrangements of the same function (values of order 1–10).
    fn close() -> Tolerance<f32> {
        Tolerance::absolute(2e-5)
    }

    /// Every op on NdArray (with and without autodiff) is burn's generic formulation: same
    /// values as burn's own op, and no fast path counted.
    #[test]
    fn non_flex_backends_take_the_generic_path() {
        let device = Default::default();
        let before = fast_path_counts();
        let x = Tensor::<Ad, 3>::random([1, 3, 5], Distribution::Uniform(0.0, 1.0), &device);
        let eta = Tensor::<Ad, 3>::random([2, 3, 5], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let log_p = bernoulli_log_prob(x.clone(), eta.clone());
        let expected = bernoulli_log_prob_per_element(x, eta.clone())
            .sum_dim(2)
            .reshape([2, 3]);
        assert_eq!(log_p.clone().into_data(), expected.into_data());
        let _ = log_p.sum().backward();

        let t = Tensor::<NdArray<f32>, 3>::random([2, 3, 4], Distribution::Default, &device);
        assert_eq!(
            sum_last_dim(t.clone()).into_data(),
            t.sum_dim(2).reshape([2, 3]).into_data()
        );

        let image = Tensor::<Ad, 4>::random([2, 3, 8, 8], Distribution::Default, &device);
        let w = Tensor::<Ad, 4>::random([4, 3, 3, 3], Distribution::Default, &device);
        let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let y = conv2d(image.clone(), w.clone(), None, options.clone());
        assert_eq!(
            y.clone().into_data(),
            module::conv2d(image, w, None, options).into_data()
        );
        let wt = Tensor::<Ad, 4>::random([4, 3, 3, 3], Distribution::Default, &device);
        let options = ConvTransposeOptions::new([2, 2], [1, 1], [1, 1], [1, 1], 1);
        let up = conv_transpose2d(y.clone(), wt.clone(), None, options.clone());
        assert_eq!(
            up.clone().into_data(),
            module::conv_transpose2d(y, wt, None, options).into_data()
        );

        let norm = BatchNormConfig::new(3).init::<Ad>(&device);
        let reference = BatchNormConfig::new(3).init::<Ad>(&device);
        batch_norm(&norm, up.clone())
            .into_data()
            .assert_approx_eq::<f32>(&reference.forward(up.clone()).into_data(), close());
        assert_eq!(
            leaky_relu(up.clone(), 0.01).into_data(),
            activation::leaky_relu(up, 0.01).into_data()
        );

        let param = Tensor::<NdArray<f32>, 1>::from_floats([0.5, -1.0, 0.0], &device);
        let grad = Tensor::<NdArray<f32>, 1>::from_floats([0.1, -0.0, 2.0], &device);
        let hyper = AdamHyper::default();
        let (ours, state) = adam_step(&hyper, 1e-2, param.clone(), grad.clone(), None);
        let (theirs, _) = AdamConfig::new().build().step(1e-2, param, grad, None);
        assert_eq!(ours.into_data(), theirs.into_data());
        assert_eq!(state.momentum.time, 1);

        assert_eq!(fast_path_counts(), before, "no fast path off Flex");
    }

    #[test]
    #[should_panic(expected = "x must be [1, N, D]")]
    fn bernoulli_log_prob_checks_the_data_shape() {
        let device = Default::default();
        let x = Tensor::<NdArray<f32>, 3>::zeros([2, 3, 5], &device);
        let eta = Tensor::<NdArray<f32>, 3>::zeros([2, 3, 5], &device);
        let _ = bernoulli_log_prob(x, eta);
    }

    /// The generic batch norm is burn's `BatchNorm`: the same output, the same gradients for
    /// x, γ and β, and the same running statistics, in training (three steps, so the running
    /// averages move) and in inference; on activations with a channel mean far from 0
    /// (|μ| = 4σ) and channels of different scales.
    #[test]
    fn generic_batch_norm_equals_burns() {
        assert_batch_norm_equals_burns(batch_norm_affine);
    }

    /// The same for batch norm as one autodiff operation with a closed-form backward pass
    /// (the GPU backends' path), here on NdArray.
    #[test]
    fn batch_norm_as_one_autodiff_operation_equals_burns() {
        assert_batch_norm_equals_burns(|norm, x| {
            batch_norm_channel_last(
                norm,
                x,
                cube::batch_norm::batch_norm_autodiff::<
                    NdArray<f32>,
                    cube::batch_norm::BurnRowKernels,
                >,
            )
        });
    }

    fn assert_batch_norm_equals_burns(
        ours_forward: impl Fn(&BatchNorm<Ad>, Tensor<Ad, 4>) -> Tensor<Ad, 4>,
    ) {
        let device = Default::default();
        let gamma = Tensor::<Ad, 1>::from_floats([1.5, -0.5, 2.0, 0.25], &device);
        let beta = Tensor::<Ad, 1>::from_floats([0.1, 0.0, -1.0, 3.0], &device);
        // Two modules, not clones: clones share their running statistics.
        let norm = || BatchNorm {
            gamma: Param::from_tensor(gamma.clone()),
            beta: Param::from_tensor(beta.clone()),
            ..BatchNormConfig::new(4)
                .with_momentum(0.3)
                .init::<Ad>(&device)
        };
        let (ours, theirs) = (norm(), norm());
        let scale = Tensor::<Ad, 4>::from_floats([[[[1.0]], [[0.1]], [[3.0]], [[1.0]]]], &device);
        for _ in 0..3 {
            let data = (Tensor::<NdArray<f32>, 4>::random(
                [3, 4, 5, 6],
                Distribution::Normal(4.0, 1.0),
                &device,
            ) * scale.clone().inner())
            .into_data();
            // One leaf per graph: a backward pass consumes its graph.
            let leaf = || Tensor::<Ad, 4>::from_data(data.clone(), &device).require_grad();
            let (x_ours, x_theirs) = (leaf(), leaf());
            // A weighting that is not constant, so that no gradient vanishes by symmetry.
            let weights = Tensor::<Ad, 4>::random([3, 4, 5, 6], Distribution::Default, &device);
            let y_ours = ours_forward(&ours, x_ours.clone());
            let y_theirs = theirs.forward(x_theirs.clone());
            y_ours
                .clone()
                .into_data()
                .assert_approx_eq::<f32>(&y_theirs.clone().into_data(), close());
            let grads_ours = (y_ours * weights.clone()).sum().backward();
            let grads_theirs = (y_theirs * weights).sum().backward();
            let grad = |t: &Tensor<Ad, 4>, g| t.grad(g).expect("x has a gradient").into_data();
            grad(&x_ours, &grads_ours)
                .assert_approx_eq::<f32>(&grad(&x_theirs, &grads_theirs), close());
            for (p_ours, p_theirs) in [(&ours.gamma, &theirs.gamma), (&ours.beta, &theirs.beta)] {
                p_ours
                    .grad(&grads_ours)
                    .expect("γ, β have gradients")
                    .into_data()
                    .assert_approx_eq::<f32>(
                        &p_theirs.grad(&grads_theirs).unwrap().into_data(),
                        Tolerance::absolute(1e-4),
                    );
            }
            for (r_ours, r_theirs) in [
                (&ours.running_mean, &theirs.running_mean),
                (&ours.running_var, &theirs.running_var),
            ] {
                r_ours
                    .value()
                    .into_data()
                    .assert_approx_eq::<f32>(&r_theirs.value().into_data(), close());
            }
        }
        // Inference: the running statistics, no update.
        let (ours, theirs) = (ours.valid(), theirs.valid());
        let x = Tensor::<NdArray<f32>, 4>::random([2, 4, 3, 3], Distribution::Default, &device);
        batch_norm_affine(&ours, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&theirs.forward(x).into_data(), close());
    }
}
