//! The evidence lower bound, term by term.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::kl::KlEstimator;
use crate::observation::ObservationModel;
use crate::posterior::{Posterior, PosteriorSamples};
use crate::prior::Prior;
use crate::units::{bits_per_dim, bits_per_dim_8bit};

/// The evidence lower bound of a batch, per example, with its two terms named:
///
/// ```text
/// elbo = log_likelihood − kl        ≤ log p(x)
///        log_likelihood = E_q(z|x)[log p(x|z)]     (reconstruction term, a log-likelihood)
///        kl             = KL(q(z|x) ‖ p(z)) ≥ 0    (regulariser, subtracted)
/// ```
///
/// Every tensor is per example, shape `[N]`, in nats, summed over data dimensions (for the
/// log-likelihood) and latent dimensions (for the KL). The batch reduction is the mean:
/// [`Elbo::loss`] = −mean_n elbo_n is what an optimiser minimises; it is the negative of a lower
/// bound on the average log-likelihood, so decreasing it raises the bound.
#[derive(Debug, Clone)]
pub struct Elbo<B: Backend> {
    /// E_q[log p(x|z)] per example, shape `[N]`, nats (higher is better).
    pub log_likelihood: Tensor<B, 1>,
    /// KL(q(z|x) ‖ p(z)) per example, shape `[N]`, nats (≥ 0 when analytic).
    pub kl: Tensor<B, 1>,
    /// The KL split over latent dimensions, shape `[N, L]`, nats, when the estimator gives it
    /// (analytic KL). Free bits and active-unit counts need it.
    pub kl_per_dim: Option<Tensor<B, 2>>,
}

impl<B: Backend> Elbo<B> {
    /// An ELBO from its two per-example terms (each `[N]`, nats).
    ///
    /// # Panics
    /// If the two terms have different lengths.
    pub fn new(log_likelihood: Tensor<B, 1>, kl: Tensor<B, 1>) -> Self {
        assert_eq!(
            log_likelihood.dims(),
            kl.dims(),
            "Elbo::new: log_likelihood and kl must both be [batch]"
        );
        Self {
            log_likelihood,
            kl,
            kl_per_dim: None,
        }
    }

    /// An ELBO from the per-example log-likelihood `[N]` and the KL per latent dimension
    /// `[N, L]`; the KL is its sum over L.
    pub fn with_kl_per_dim(log_likelihood: Tensor<B, 1>, kl_per_dim: Tensor<B, 2>) -> Self {
        let kl = kl_per_dim.clone().sum_dim(1).squeeze_dim::<1>(1);
        Self {
            kl_per_dim: Some(kl_per_dim),
            ..Self::new(log_likelihood, kl)
        }
    }

    /// Estimates the ELBO of data `x` (`[N, D]`) from the posterior, draws z ~ q with their
    /// log-density (`[S, N, L]`, [`Posterior::rsample_with_log_prob`]), the decoder's
    /// distribution p(x|z) at those draws (`[S, N, D]`) and the prior:
    ///
    /// `log_likelihood = mean_s log p(x|z_s)`, `kl` by `kl_estimator` (the analytic KL ignores
    /// the draws; the Monte-Carlo KL uses the same draws).
    pub fn estimate(
        x: Tensor<B, 2>,
        posterior: &impl Posterior<B>,
        draws: &PosteriorSamples<B>,
        likelihood: &impl ObservationModel<B>,
        prior: &impl Prior<B>,
        kl_estimator: KlEstimator,
    ) -> Self {
        let log_likelihood = likelihood.log_prob(x).mean_dim(0).squeeze_dim::<1>(0);
        let (kl, kl_per_dim) = kl_estimator.estimate(posterior, prior, draws);
        Self {
            kl_per_dim,
            ..Self::new(log_likelihood, kl)
        }
    }

    /// ELBO per example = log_likelihood − kl, shape `[N]`, nats.
    pub fn elbo(&self) -> Tensor<B, 1> {
        self.log_likelihood.clone() - self.kl.clone()
    }

    /// −ELBO per example = kl − log_likelihood, shape `[N]`, nats: an upper bound on −log p(x).
    pub fn neg_elbo(&self) -> Tensor<B, 1> {
        self.kl.clone() - self.log_likelihood.clone()
    }

    /// The training loss −mean_n ELBO_n, shape `[1]`, nats per example. Minimise this.
    ///
    /// For β, KL warm-up or free bits use [`ElboObjective::loss`](crate::ElboObjective::loss);
    /// this is the plain, unweighted bound.
    pub fn loss(&self) -> Tensor<B, 1> {
        self.neg_elbo().mean()
    }

    /// Batch size N.
    pub fn batch_size(&self) -> usize {
        self.kl.dims()[0]
    }

    /// Reads the batch means back to the host (one device round-trip).
    pub fn summary(&self) -> ElboSummary {
        let n = self.batch_size();
        let both = Tensor::cat(vec![self.log_likelihood.clone(), self.kl.clone()], 0)
            .reshape([2, n])
            .mean_dim(1)
            .into_data()
            .convert::<f64>();
        let values = both.as_slice::<f64>().expect("f64 data after convert");
        ElboSummary::from_terms(values[0], values[1])
    }
}

/// Batch means of the ELBO terms on the host, in nats per example.
///
/// The names carry the sign convention: `neg_elbo_nats` = `kl_nats` − `log_likelihood_nats`
/// is the loss (lower is better), `log_likelihood_nats` is the reconstruction log-likelihood
/// (higher is better) and `kl_nats` the non-negative KL.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElboSummary {
    /// −ELBO, nats per example (the training loss; an upper bound on −log p(x)).
    #[serde(deserialize_with = "nan_if_null")]
    pub neg_elbo_nats: f64,
    /// E_q[log p(x|z)], nats per example.
    #[serde(deserialize_with = "nan_if_null")]
    pub log_likelihood_nats: f64,
    /// KL(q(z|x) ‖ p(z)), nats per example.
    #[serde(deserialize_with = "nan_if_null")]
    pub kl_nats: f64,
}

/// JSON has no NaN or ∞: serde_json writes them as `null`. Read `null` back as NaN, so the
/// record of a diverged epoch stays readable.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

impl ElboSummary {
    /// The summary of the two terms (means over examples, nats).
    pub fn from_terms(log_likelihood_nats: f64, kl_nats: f64) -> Self {
        Self {
            neg_elbo_nats: kl_nats - log_likelihood_nats,
            log_likelihood_nats,
            kl_nats,
        }
    }

    /// The ELBO, nats per example (higher is better; ≤ log p(x)).
    pub fn elbo_nats(&self) -> f64 {
        -self.neg_elbo_nats
    }

    /// −ELBO in bits per data dimension, for a discrete likelihood over `num_dims` dimensions.
    pub fn bits_per_dim(&self, num_dims: usize) -> f64 {
        bits_per_dim(self.neg_elbo_nats, num_dims)
    }

    /// −ELBO in bits per dimension of 8-bit data, for a density over pixels scaled to [0, 1]
    /// (see [`bits_per_dim_8bit`]).
    pub fn bits_per_dim_8bit(&self, num_dims: usize) -> f64 {
        bits_per_dim_8bit(self.neg_elbo_nats, num_dims)
    }

    /// The mean of several batch summaries weighted by their batch sizes.
    pub fn weighted_mean(parts: &[(ElboSummary, usize)]) -> Option<Self> {
        let total: usize = parts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let mean = |f: fn(&ElboSummary) -> f64| {
            parts.iter().map(|(s, n)| f(s) * *n as f64).sum::<f64>() / total as f64
        };
        Some(Self::from_terms(
            mean(|s| s.log_likelihood_nats),
            mean(|s| s.kl_nats),
        ))
    }
}
