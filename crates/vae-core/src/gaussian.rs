//! Gaussian observation model with fixed, learned or optimal σ.

use burn::tensor::{Distribution, Tensor, backend::Backend};

use crate::observation::{ObservationModel, broadcast_data};
use crate::units::LN_2PI;

/// Independent Gaussians N(μ_d, σ_d²) over each data dimension: the decoder outputs the mean,
/// the scale is fixed, learned, or set to its maximum-likelihood value.
///
/// `log p(x|z) = −½ Σ_d [ln 2π + 2 ln σ_d + ((x_d − μ_d) / σ_d)²]`, nats, summed over the D data
/// dimensions. It is a log-*density*: for small σ it is positive, and it only becomes comparable
/// with discrete likelihoods through [`bits_per_dim_8bit`](crate::bits_per_dim_8bit).
///
/// # Choosing σ
///
/// σ sets the weight of the reconstruction term against the KL: a fixed σ = 1 on [0,1] pixels
/// makes the reconstruction term tiny and the posterior collapse; the "β" people tune by hand
/// is usually a mis-set σ (β-VAE with MSE loss ≡ Gaussian with σ² = β/2). Principled choices:
/// * [`Gaussian::new`] with a learned log σ (a parameter of the decoder, per pixel or shared),
/// * [`Gaussian::with_optimal_scale`]: σ² set to its maximum-likelihood value, the batch mean
///   squared error (Rybkin et al. 2021, "σ-VAE"). It needs no extra parameter and no β.
///
/// # Scale clamping
///
/// A σ that is learned or estimated — [`Gaussian::new`] and [`Gaussian::with_optimal_scale`] —
/// has ln σ clamped to ≥ [`LOG_SCALE_MIN`](Self::LOG_SCALE_MIN) = −7 (σ ≥ 9.1e-4, a quarter of
/// an 8-bit grey level on [0,1] data): below that the density of quantised data can grow
/// without bound and a learned σ would chase it. A σ you fix with [`Gaussian::fixed`] is used
/// exactly as given, unclamped (`Gaussian::fixed(μ, 1e-4)` has σ = 1e-4): nothing chases a
/// constant, and a deliberately small σ (a near-deterministic decoder) is a legitimate choice.
#[derive(Debug, Clone)]
pub struct Gaussian<B: Backend> {
    mean: Tensor<B, 3>,
    log_scale: Tensor<B, 3>,
}

impl<B: Backend> Gaussian<B> {
    /// Lower bound on ln σ (σ ≈ 9.1e-4).
    pub const LOG_SCALE_MIN: f64 = -7.0;

    /// N(mean, exp(log_scale)²) with `mean` of shape `[S, N, D]` and `log_scale` broadcastable
    /// to it (`[1, 1, 1]` for one shared σ, `[1, 1, D]` per data dimension, `[S, N, D]` when the
    /// decoder predicts it). ln σ is clamped to ≥ [`LOG_SCALE_MIN`](Self::LOG_SCALE_MIN).
    ///
    /// # Panics
    /// If a dimension of `log_scale` is neither 1 nor the matching dimension of `mean`.
    pub fn new(mean: Tensor<B, 3>, log_scale: Tensor<B, 3>) -> Self {
        let (m, s) = (mean.dims(), log_scale.dims());
        for axis in 0..3 {
            assert!(
                s[axis] == 1 || s[axis] == m[axis],
                "Gaussian::new: log_scale {s:?} does not broadcast to mean {m:?}"
            );
        }
        Self {
            mean,
            log_scale: log_scale.clamp_min(Self::LOG_SCALE_MIN),
        }
    }

    /// N(mean, σ²) with one fixed σ > 0 for every dimension, used exactly as given: unlike
    /// [`Gaussian::new`], no lower bound is applied. σ is stored in `mean`'s float type.
    ///
    /// # Panics
    /// If `sigma` is not a positive finite number.
    pub fn fixed(mean: Tensor<B, 3>, sigma: f64) -> Self {
        assert!(
            sigma.is_finite() && sigma > 0.0,
            "Gaussian::fixed: σ must be positive and finite, got {sigma}"
        );
        // In mean's dtype, not the device default: burn 0.21 keeps one default float type per
        // device type, which an f64 model may not own.
        let log_scale = Tensor::full([1, 1, 1], sigma.ln(), (&mean.device(), mean.dtype()));
        Self { mean, log_scale }
    }

    /// N(mean, σ̂²) with one shared σ̂ set to its maximum-likelihood value given the targets:
    /// σ̂² = mean over all samples, examples and dimensions of (x − μ)², treated as a constant
    /// (no gradient flows through σ̂). This is the σ-VAE "optimal σ" (Rybkin et al. 2021).
    pub fn with_optimal_scale(mean: Tensor<B, 3>, x: Tensor<B, 2>) -> Self {
        let x = broadcast_data("Gaussian::with_optimal_scale", x, mean.dims());
        let mse = (x - mean.clone()).powi_scalar(2).mean().detach();
        let log_scale = mse.log().mul_scalar(0.5).reshape([1, 1, 1]);
        Self::new(mean, log_scale)
    }

    /// ln σ as stored (after clamping), broadcastable to `[S, N, D]`.
    pub fn log_scale(&self) -> Tensor<B, 3> {
        self.log_scale.clone()
    }

    /// σ broadcast to the full `[S, N, D]` shape.
    pub fn scale(&self) -> Tensor<B, 3> {
        self.log_scale.clone().exp() + self.mean.zeros_like()
    }
}

impl<B: Backend> ObservationModel<B> for Gaussian<B> {
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = broadcast_data("Gaussian", x, self.dims());
        let inv_scale = self.log_scale.clone().neg().exp();
        let z = (x - self.mean.clone()) * inv_scale;
        let per_dim =
            (z.powi_scalar(2) + self.log_scale.clone().mul_scalar(2.0) + LN_2PI).mul_scalar(-0.5);
        vae_kernels::sum_last_dim(per_dim)
    }

    fn mean(&self) -> Tensor<B, 3> {
        self.mean.clone()
    }

    fn sample(&self) -> Tensor<B, 3> {
        let eps = self.mean.random_like(Distribution::Normal(0.0, 1.0));
        self.mean.clone() + self.log_scale.clone().exp() * eps
    }

    fn dims(&self) -> [usize; 3] {
        self.mean.dims()
    }
}
