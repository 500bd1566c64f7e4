//! How the KL term of the ELBO is estimated.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::posterior::{Posterior, PosteriorSamples};
use crate::prior::Prior;

/// Estimator of KL(q(z|x) ‖ p(z)) for any [`Posterior`] and any [`Prior`].
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum KlEstimator {
    /// The closed form where there is one — a diagonal-Gaussian posterior and a prior with
    /// [`Prior::analytic_kl_per_dim`] (for the standard normal Σ_l ½ (μ_l² + σ_l² − 1 − ln σ_l²)):
    /// exact, zero variance, ≥ 0 per example and per latent dimension. The default. Where there
    /// is none (a mixture prior, a flow posterior) it is the Monte-Carlo estimate below.
    ///
    /// [`DiagonalGaussian::kl_standard_normal_per_dim`]: crate::DiagonalGaussian::kl_standard_normal_per_dim
    ///
    /// Evaluated as Σ_l ½ (μ_l² + φ(ln σ_l²)) with φ(v) = e^v − 1 − v summed from its Taylor
    /// series near 0 ([`DiagonalGaussian::kl_standard_normal_per_dim`]): non-negative by
    /// construction and accurate relative to its value, so collapsed units (μ ≈ 0, σ ≈ 1) keep
    /// their exact small KL and gradients instead of a rounded 0 (no clamp is applied).
    Analytic,
    /// The Monte-Carlo estimate mean_s [log q(z_s|x) − log p(z_s)] over the same samples used
    /// for the reconstruction term. Unbiased, but a single example's estimate can be negative;
    /// its batch mean converges to the (non-negative) KL. Needed when q or p has no closed form.
    MonteCarlo,
}

// Not `#[derive(Default)]`: burn's Config derive copies variant attributes into its serde twin.
#[allow(clippy::derivable_impls)]
impl Default for KlEstimator {
    fn default() -> Self {
        Self::Analytic
    }
}

impl KlEstimator {
    /// Per-example estimate of KL(q ‖ p), shape `[N]`, nats, and (closed form only) its split
    /// over latent dimensions `[N, L]`. `draws` are draws from `posterior` (`[S, N, L]`) with
    /// their log-density; the Monte-Carlo estimate uses them.
    pub fn estimate<B: Backend>(
        self,
        posterior: &impl Posterior<B>,
        prior: &impl Prior<B>,
        draws: &PosteriorSamples<B>,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
        let analytic = match (self, posterior.gaussian()) {
            (Self::Analytic, Some(gaussian)) => prior.analytic_kl_per_dim(gaussian),
            _ => None,
        };
        match analytic {
            Some(per_dim) => (
                per_dim.clone().sum_dim(1).squeeze_dim::<1>(1),
                Some(per_dim),
            ),
            None => {
                let log_ratio = draws.log_q.clone() - prior.log_prob(draws.z.clone());
                (log_ratio.mean_dim(0).squeeze_dim::<1>(0), None)
            }
        }
    }
}
