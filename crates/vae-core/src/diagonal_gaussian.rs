//! The diagonal Gaussian: the approximate posterior q(z|x) and the standard-normal prior p(z).

use burn::tensor::{DType, Distribution, Tensor, backend::Backend};

use crate::units::LN_2PI;

/// A batch of diagonal Gaussians N(μ, diag(σ²)), one per row: the approximate posterior
/// q(z|x) an encoder produces.
///
/// Parameters have shape `[N, L]` (batch × latent). Samples have shape `[S, N, L]`
/// (samples × batch × latent); log-densities of samples have shape `[S, N]`; per-example
/// quantities (entropy, KL) have shape `[N]`. All log-densities and divergences are in nats and
/// summed over the L latent dimensions.
///
/// # Log-variance clamping
///
/// [`DiagonalGaussian::new`] clamps log σ² to [`LOG_VAR_MIN`](Self::LOG_VAR_MIN)`..=`
/// [`LOG_VAR_MAX`](Self::LOG_VAR_MAX) = −30..=20, i.e. σ ∈ [3.1e-7, 2.2e4]. An encoder's
/// unconstrained output can otherwise overflow `exp` (σ² = e^89 is `inf` in f32) or make
/// log q(z|x) huge; the bounds are far outside anything a healthy model uses, so they never bias
/// a trained model, and the clamp's zero gradient outside them only stops a divergence that is
/// already under way. Use [`DiagonalGaussian::new_unclamped`] to opt out.
///
/// # Rounding of the sums over latent dimensions
///
/// Per-dimension terms are accurate to a few ε (the float type's machine epsilon) relative to
/// their value; the sums over L (log-densities, entropy, KL) are the backend's `sum_dim`, whose
/// rounding error grows with L and with the terms' magnitudes. In f32 it is negligible at the
/// usual L ≤ a few hundred, but at L = 65 536 the issue-17 audit measured 6.0 nats on a
/// log-density of −576 028.6 on burn 0.21's Flex (1.0e-5 relative) and 1.4e-6 relative on
/// NdArray. Use f64 when L is that large and the total matters.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian<B: Backend> {
    mean: Tensor<B, 2>,
    log_var: Tensor<B, 2>,
}

impl<B: Backend> DiagonalGaussian<B> {
    /// Lower bound applied to log σ² by [`DiagonalGaussian::new`] (σ ≈ 3.1e-7).
    pub const LOG_VAR_MIN: f64 = -30.0;
    /// Upper bound applied to log σ² by [`DiagonalGaussian::new`] (σ ≈ 2.2e4).
    pub const LOG_VAR_MAX: f64 = 20.0;

    /// N(mean, diag(exp(log_var))), with log σ² clamped to
    /// [`LOG_VAR_MIN`](Self::LOG_VAR_MIN)`..=`[`LOG_VAR_MAX`](Self::LOG_VAR_MAX).
    ///
    /// # Panics
    /// If `mean` and `log_var` do not have the same `[N, L]` shape.
    pub fn new(mean: Tensor<B, 2>, log_var: Tensor<B, 2>) -> Self {
        let log_var = log_var.clamp(Self::LOG_VAR_MIN, Self::LOG_VAR_MAX);
        Self::new_unclamped(mean, log_var)
    }

    /// N(mean, diag(exp(log_var))) exactly as given, without the log-variance clamp.
    ///
    /// # Panics
    /// If `mean` and `log_var` do not have the same `[N, L]` shape.
    pub fn new_unclamped(mean: Tensor<B, 2>, log_var: Tensor<B, 2>) -> Self {
        assert_eq!(
            mean.dims(),
            log_var.dims(),
            "DiagonalGaussian: mean and log_var must have the same [batch, latent] shape"
        );
        Self { mean, log_var }
    }

    /// The standard normal N(0, I) for `batch` rows of `latent` dimensions: the VAE prior p(z).
    pub fn standard(batch: usize, latent: usize, device: &B::Device) -> Self {
        Self {
            mean: Tensor::zeros([batch, latent], device),
            log_var: Tensor::zeros([batch, latent], device),
        }
    }

    /// μ, shape `[N, L]`.
    pub fn mean(&self) -> Tensor<B, 2> {
        self.mean.clone()
    }

    /// log σ², shape `[N, L]` (after clamping, if constructed with [`DiagonalGaussian::new`]).
    pub fn log_var(&self) -> Tensor<B, 2> {
        self.log_var.clone()
    }

    /// σ = exp(½ log σ²), shape `[N, L]`.
    pub fn std(&self) -> Tensor<B, 2> {
        self.log_var.clone().mul_scalar(0.5).exp()
    }

    /// Batch size N.
    pub fn batch_size(&self) -> usize {
        self.mean.dims()[0]
    }

    /// Latent dimensionality L.
    pub fn latent_dim(&self) -> usize {
        self.mean.dims()[1]
    }

    /// The device the parameters live on.
    pub fn device(&self) -> B::Device {
        self.mean.device()
    }

    /// The reparameterisation z = μ + σ ⊙ ε for given noise ε of shape `[S, N, L]`.
    ///
    /// Gradients flow to μ and σ, not to ε. Passing ε explicitly makes an estimate
    /// deterministic (tests use symmetric sigma points to take expectations exactly).
    pub fn reparameterize(&self, eps: Tensor<B, 3>) -> Tensor<B, 3> {
        let [_, n, l] = eps.dims();
        assert_eq!(
            [n, l],
            self.mean.dims(),
            "DiagonalGaussian::reparameterize: noise must be [samples, batch, latent]"
        );
        self.mean.clone().unsqueeze_dim::<3>(0) + self.std().unsqueeze_dim::<3>(0) * eps
    }

    /// `samples` reparameterised draws z ~ q, shape `[S, N, L]` with S = `samples`.
    pub fn rsample(&self, samples: usize) -> Tensor<B, 3> {
        let [n, l] = self.mean.dims();
        // ε in μ's float type, not the device default (burn 0.21 keeps one default per device
        // type, shared by the f32 and f64 variants of a backend).
        let eps = Tensor::random(
            [samples, n, l],
            Distribution::Normal(0.0, 1.0),
            (&self.device(), self.mean.dtype()),
        );
        self.reparameterize(eps)
    }

    /// log N(z; μ, σ²) per latent dimension, shape `[S, N, L]`, nats.
    pub fn log_prob_per_dim(&self, z: Tensor<B, 3>) -> Tensor<B, 3> {
        let mean = self.mean.clone().unsqueeze_dim::<3>(0);
        let log_var = self.log_var.clone().unsqueeze_dim::<3>(0);
        let inv_var = log_var.clone().neg().exp();
        // −½ [ln 2π + ln σ² + (z − μ)² / σ²]
        ((z - mean).powi_scalar(2) * inv_var + log_var + LN_2PI).mul_scalar(-0.5)
    }

    /// log q(z) = Σ_l log N(z_l; μ_l, σ_l²), shape `[S, N]`, nats.
    pub fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        self.log_prob_per_dim(z).sum_dim(2).squeeze_dim::<2>(2)
    }

    /// Differential entropy H[q] = Σ_l ½ (1 + ln 2π + ln σ_l²), shape `[N]`, nats.
    pub fn entropy(&self) -> Tensor<B, 1> {
        (self.log_var.clone() + (1.0 + LN_2PI))
            .mul_scalar(0.5)
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }

    /// KL(q ‖ N(0, I)) per latent dimension, shape `[N, L]`, nats, each entry ≥ 0:
    /// ½ (μ² + σ² − 1 − ln σ²) = ½ (μ² + φ(ln σ²)), with φ(v) = e^v − 1 − v.
    ///
    /// φ is evaluated by [`exp_taylor_remainder`]: ≥ 0 by construction and accurate to a few
    /// units of the float type's rounding error relative to its value for every v, including
    /// v → 0 where the direct `σ² − 1 − ln σ²` cancels (in f32 it returns 0 or a negative number
    /// for |ln σ²| ≲ 5e-4). No clamp is applied, so the gradients are the exact derivatives
    /// ∂/∂μ = μ and ∂/∂ln σ² = ½ (σ² − 1), down to collapsed units where both are tiny.
    pub fn kl_standard_normal_per_dim(&self) -> Tensor<B, 2> {
        (self.mean.clone().powi_scalar(2) + exp_taylor_remainder(self.log_var.clone()))
            .mul_scalar(0.5)
    }

    /// KL(q ‖ N(0, I)) = Σ_l ½ (μ_l² + σ_l² − 1 − ln σ_l²), shape `[N]`, nats, ≥ 0.
    pub fn kl_standard_normal(&self) -> Tensor<B, 1> {
        self.kl_standard_normal_per_dim()
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }

    /// KL(self ‖ other) per latent dimension between diagonal Gaussians, shape `[N, L]`, nats,
    /// each entry ≥ 0:
    /// ½ [ln σ_p² − ln σ_q² + (σ_q² + (μ_q − μ_p)²) / σ_p² − 1] = ½ [φ(d) + (μ_q − μ_p)² / σ_p²],
    /// with d = ln σ_q² − ln σ_p² and φ(d) = e^d − 1 − d.
    ///
    /// φ is evaluated by [`exp_taylor_remainder`] (≥ 0 and accurate relative to its value near
    /// d = 0, where the direct form cancels), so both terms are non-negative by construction; no
    /// clamp is applied and the gradients are exact near zero KL.
    ///
    /// # Panics
    /// If the two batches have different shapes.
    pub fn kl_divergence_per_dim(&self, other: &Self) -> Tensor<B, 2> {
        assert_eq!(
            self.mean.dims(),
            other.mean.dims(),
            "DiagonalGaussian::kl_divergence: both distributions must be [batch, latent] of the same shape"
        );
        let log_var_difference = self.log_var.clone() - other.log_var.clone();
        let mahalanobis = (self.mean.clone() - other.mean.clone()).powi_scalar(2)
            * other.log_var.clone().neg().exp();
        (exp_taylor_remainder(log_var_difference) + mahalanobis).mul_scalar(0.5)
    }

    /// KL(self ‖ other) between diagonal Gaussians, summed over latent dimensions, shape `[N]`,
    /// nats, ≥ 0.
    pub fn kl_divergence(&self, other: &Self) -> Tensor<B, 1> {
        self.kl_divergence_per_dim(other)
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }

    /// The same distribution with gradients stopped at its parameters.
    pub fn detach(&self) -> Self {
        Self {
            mean: self.mean.clone().detach(),
            log_var: self.log_var.clone().detach(),
        }
    }
}

/// Below this |v|, [`exp_taylor_remainder`] sums the Taylor series; at and above it, the closed
/// form. At |v| = 1 the closed form `e^v − v − 1` loses under 3 ε to cancellation (ε the float
/// type's machine epsilon) and the series' truncation is below ε, so both branches are
/// accurate to ≤ 3 ε relative over the whole line (measured in f32 and f64 against a
/// compensated 80-term series; a threshold of ½ would cost the closed form 7.6 ε).
const REMAINDER_SERIES_BELOW: f64 = 1.0;

/// The highest power of v kept in the series for f64 tensors. Its gradient is the series of
/// e^v − 1 truncated one power earlier, so the degree is set by the gradient: the first dropped
/// term, v¹⁹/19! ≤ 8.2·10⁻¹⁸, is below ε_f64 · |e^v − 1| for 0 < |v| < 1 (at degree 17 it
/// was 20 ε at v = −1, measured).
const REMAINDER_SERIES_DEGREE_F64: i32 = 19;

/// The highest power of v kept for every other float type (f32, f16, bf16): the gradient's
/// first dropped term, v¹¹/11! ≤ 2.5·10⁻⁸, is below ε_f32 · |e^v − 1| for |v| < 1.
const REMAINDER_SERIES_DEGREE_F32: i32 = 11;

/// φ(v) = e^v − 1 − v elementwise, ≥ 0 for every v, in the units of `v` (nats when v is a
/// log-variance): the remainder of the first-order Taylor expansion of exp at 0, the
/// log-variance part of a Gaussian KL.
///
/// The closed form cancels catastrophically as v → 0 (φ ≈ v²/2 is computed as the difference
/// of numbers ≈ 1), so for |v| < [`REMAINDER_SERIES_BELOW`] it is the Taylor series
/// Σ_{k=2..n} v^k / k! in Horner form (n = 19 in f64, 11 otherwise) — a polynomial whose
/// derivative is the matching series of e^v − 1 — and `e^v − v − 1` elsewhere; both are
/// accurate to ≤ 3 ε relative. Branch-free: both branches are computed everywhere and
/// selected with `mask_where`, and the series is fed 0 where it is not selected, so a huge v
/// (which the unclamped constructor allows) cannot overflow it and turn its zero gradient into
/// NaN.
pub(crate) fn exp_taylor_remainder<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    let degree = if v.dtype() == DType::F64 {
        REMAINDER_SERIES_DEGREE_F64
    } else {
        REMAINDER_SERIES_DEGREE_F32
    };
    let use_series = v.clone().abs().lower_elem(REMAINDER_SERIES_BELOW);
    let v_small = v.clone().mask_fill(use_series.clone().bool_not(), 0.0);
    // 1/k! for k = degree, degree − 1, …, 2 (Horner runs from the highest power down).
    let inverse_factorial = |k: i32| 1.0 / (1..=k).map(f64::from).product::<f64>();
    let mut horner = v_small
        .clone()
        .mul_scalar(inverse_factorial(degree))
        .add_scalar(inverse_factorial(degree - 1));
    for k in (2..degree - 1).rev() {
        horner = (horner * v_small.clone()).add_scalar(inverse_factorial(k));
    }
    let series = horner * v_small.powi_scalar(2);
    // Only used for |v| ≥ 1, where φ ≥ 0.36 and the subtractions lose at most a few bits
    // (≤ 3 ε measured in this order).
    let closed = (v.clone().exp() - v).sub_scalar(1.0);
    closed.mask_where(use_series, series)
}

/// log N(z; 0, I) summed over the latent dimension: the prior log-density log p(z).
///
/// `z` has shape `[S, N, L]`; the result has shape `[S, N]`, nats.
pub fn standard_normal_log_prob<B: Backend>(z: Tensor<B, 3>) -> Tensor<B, 2> {
    (z.powi_scalar(2) + LN_2PI)
        .mul_scalar(-0.5)
        .sum_dim(2)
        .squeeze_dim::<2>(2)
}
