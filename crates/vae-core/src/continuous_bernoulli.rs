//! Continuous Bernoulli observation model (Loaiza-Ganem & Cunningham, 2019).

use burn::tensor::{Distribution, Tensor, backend::Backend};

use crate::observation::{ObservationModel, broadcast_data};

/// Below this |η| the closed forms of log C(η) and of the mean are replaced by their Taylor
/// series (0/0 at η = 0, cancellation near it). At 0.1 the neglected terms are < 1e-9.
const TAYLOR_BELOW: f64 = 0.1;
/// Below this |η| the inverse CDF used for sampling is replaced by its first-order series.
const SAMPLE_TAYLOR_BELOW: f64 = 1e-3;

/// The continuous Bernoulli: a normalised density on [0, 1] for each data dimension,
/// parameterised by logits η (λ = σ(η)).
///
/// `p(x|λ) = C(λ) λ^x (1 − λ)^(1−x)` with normalising constant
/// `C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ)` (and C(½) = 2). In terms of the logit this is
/// `C = η / tanh(η/2)`, so
///
/// `log p(x|η) = Σ_d [x_d η_d − softplus(η_d) + ln(η_d / tanh(η_d / 2))]`, nats.
///
/// Near λ = ½ (η → 0) the constant is evaluated as `ln 2 + η²/12 − 7η⁴/1440`, which is finite
/// and smooth where the closed form is 0/0; the closed-form branch never sees |η| < 0.1, so
/// gradients stay finite as well. Use it instead of [`Bernoulli`](crate::Bernoulli) when pixels
/// are continuous in [0, 1] and you want a true log-density.
#[derive(Debug, Clone)]
pub struct ContinuousBernoulli<B: Backend> {
    logits: Tensor<B, 3>,
}

impl<B: Backend> ContinuousBernoulli<B> {
    /// CB(σ(logits)), logits of shape `[S, N, D]`.
    pub fn from_logits(logits: Tensor<B, 3>) -> Self {
        Self { logits }
    }

    /// The logits η, shape `[S, N, D]`.
    pub fn logits(&self) -> Tensor<B, 3> {
        self.logits.clone()
    }

    /// ln C(η), the log normalising constant per dimension, shape `[S, N, D]`, nats; ≥ ln 2.
    pub fn log_normalizer(&self) -> Tensor<B, 3> {
        let eta = self.logits.clone();
        let small = eta.clone().abs().lower_elem(TAYLOR_BELOW);
        // Keep the closed form away from 0/0 so neither its value nor its gradient is NaN.
        let safe = eta.clone().mask_fill(small.clone(), TAYLOR_BELOW);
        let closed = safe.clone().abs().log() - safe.mul_scalar(0.5).tanh().abs().log();
        let eta2 = eta.powi_scalar(2);
        let series = eta2.clone().mul_scalar(1.0 / 12.0)
            - eta2.powi_scalar(2).mul_scalar(7.0 / 1440.0)
            + std::f64::consts::LN_2;
        closed.mask_where(small, series)
    }
}

impl<B: Backend> ObservationModel<B> for ContinuousBernoulli<B> {
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = broadcast_data("ContinuousBernoulli", x, self.dims());
        // Σ_d [x η − softplus(η)] is the Bernoulli cross-entropy: its op gives the accurate
        // gradient x − σ(η) (and the fused pass on Flex); ln C(η) is added per row.
        vae_kernels::bernoulli_log_prob(x, self.logits.clone())
            + vae_kernels::sum_last_dim(self.log_normalizer())
    }

    /// E[x] = λ/(2λ − 1) + 1/(2 atanh(1 − 2λ)) = ½ + 1/(2 tanh(η/2)) − 1/η
    /// (series ½ + η/12 − η³/720 near η = 0).
    fn mean(&self) -> Tensor<B, 3> {
        let eta = self.logits.clone();
        let small = eta.clone().abs().lower_elem(TAYLOR_BELOW);
        let safe = eta.clone().mask_fill(small.clone(), TAYLOR_BELOW);
        let closed =
            safe.clone().mul_scalar(0.5).tanh().recip().mul_scalar(0.5) - safe.recip() + 0.5;
        let series =
            eta.clone().mul_scalar(1.0 / 12.0) - eta.powi_scalar(3).mul_scalar(1.0 / 720.0) + 0.5;
        closed.mask_where(small, series)
    }

    /// Inverse-CDF sampling: for η < 0, x = log1p(u (e^η − 1)) / η; for η > 0 the mirror image
    /// 1 − x(−η) (CB(λ) at x equals CB(1 − λ) at 1 − x), so e^η never overflows.
    fn sample(&self) -> Tensor<B, 3> {
        let eta = self.logits.clone();
        let u = eta.random_like(Distribution::Uniform(0.0, 1.0));
        let small = eta.clone().abs().lower_elem(SAMPLE_TAYLOR_BELOW);
        let neg = eta
            .clone()
            .abs()
            .neg()
            .mask_fill(small.clone(), -SAMPLE_TAYLOR_BELOW);
        let mirrored = (u.clone() * (neg.clone().exp() - 1.0)).log1p() / neg;
        let closed = mirrored
            .clone()
            .neg()
            .add_scalar(1.0)
            .mask_where(eta.clone().lower_elem(0.0), mirrored);
        // x ≈ u + η u (1 − u) / 2 for |η| → 0.
        let series = u.clone() + eta * u.clone() * u.neg().add_scalar(1.0) * 0.5;
        closed.mask_where(small, series).clamp(0.0, 1.0)
    }

    fn dims(&self) -> [usize; 3] {
        self.logits.dims()
    }
}
