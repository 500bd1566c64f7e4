//! The KL term split into index-code mutual information, total correlation and dimension-wise
//! KL, and the β-TC-VAE objective that weights them (Chen et al. 2018).

use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::diagonal_gaussian::{DiagonalGaussian, standard_normal_log_prob};
use crate::importance::log_sum_exp_dim;
use crate::objective::ObjectiveError;
use crate::units::LN_2PI;

/// How the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) over a dataset of N examples is
/// estimated at a sample z_i ~ q(z|x_i) from a minibatch x_1 … x_M:
/// q(z_i) ≈ Σ_j w_ij q(z_i|x_j).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AggregatePosterior {
    /// Minibatch-weighted sampling, Chen et al.'s (2018) estimator as published: w_ij = 1/(N·M)
    /// for every j. Cheap and what their experiments used, but biased: it underestimates
    /// q(z) by a factor between M (well-separated posteriors) and N (all equal).
    #[default]
    MinibatchWeighted,
    /// Minibatch-stratified sampling: the example's own term weighs its share of the dataset,
    /// w_ii = 1/N, and the other M − 1 stand for the other N − 1 examples,
    /// w_ij = (N − 1)/(N·(M − 1)). An unbiased estimate of q(z_i) (not of its log); exact when
    /// the minibatch is the whole dataset (M = N).
    MinibatchStratified,
}

impl AggregatePosterior {
    /// log w_ij for a minibatch of `batch` examples of a dataset of `dataset_size`, `[M·M]`
    /// row-major (i the sample's example, j the component's).
    fn log_weights(self, batch: usize, dataset_size: usize) -> Vec<f64> {
        let (n, m) = (dataset_size as f64, batch as f64);
        let (own, other) = match self {
            Self::MinibatchWeighted => (-(n * m).ln(), -(n * m).ln()),
            Self::MinibatchStratified => (-n.ln(), ((n - 1.0) / (n * (m - 1.0))).ln()),
        };
        (0..batch * batch)
            .map(|ij| if ij / batch == ij % batch { own } else { other })
            .collect()
    }
}

/// The KL term of the ELBO, averaged over the data, split three ways (Chen et al. 2018, after
/// Hoffman & Johnson 2016), per example, each `[N]`, nats:
///
/// ```text
/// E_n KL(q(z|x_n) ‖ p(z)) = I_q(n; z)                         index-code mutual information
///                         + KL(q(z) ‖ Π_l q(z_l))              total correlation
///                         + Σ_l KL(q(z_l) ‖ p(z_l))            dimension-wise KL
/// ```
///
/// with the aggregate posterior q(z) and its marginals q(z_l) estimated from the minibatch
/// ([`AggregatePosterior`]). Per sample the three are log q(z|x) − log q(z),
/// log q(z) − Σ_l log q(z_l) and Σ_l log q(z_l) − log p(z_l), so they add up to the
/// Monte-Carlo KL log q(z|x) − log p(z) exactly, whatever the estimator. The prior is the
/// standard normal (the dimension-wise term needs a factorised one).
#[derive(Debug, Clone)]
pub struct KlDecomposition<B: Backend> {
    /// log q(z|x) − log q(z), the mean over samples, `[N]`, nats.
    pub index_code_mi: Tensor<B, 1>,
    /// log q(z) − Σ_l log q(z_l), `[N]`, nats.
    pub total_correlation: Tensor<B, 1>,
    /// Σ_l log q(z_l) − log p(z_l), `[N]`, nats.
    pub dimension_wise_kl: Tensor<B, 1>,
}

impl<B: Backend> KlDecomposition<B> {
    /// Estimates the three terms for the minibatch whose posteriors are `posterior` (`[M, L]`)
    /// at samples `z` ~ q (`[S, M, L]`; each of the S sets of samples is one draw of the
    /// minibatch), for a dataset of `dataset_size` examples. Memory: S·M²·L values.
    ///
    /// # Panics
    /// If `dataset_size` is smaller than the minibatch, or `z` is not `[S, M, L]`.
    pub fn estimate(
        posterior: &DiagonalGaussian<B>,
        z: Tensor<B, 3>,
        dataset_size: usize,
        estimator: AggregatePosterior,
    ) -> Self {
        let [_, m, l] = z.dims();
        assert_eq!(
            [m, l],
            [posterior.batch_size(), posterior.latent_dim()],
            "KlDecomposition::estimate: z must be [samples, batch, latent]"
        );
        assert!(
            dataset_size >= m,
            "KlDecomposition::estimate: the dataset ({dataset_size}) is smaller than the minibatch ({m})"
        );
        let device = z.device();
        let log_weights = Tensor::<B, 2>::from_data(
            TensorData::new(estimator.log_weights(m, dataset_size), [m, m]),
            (&device, z.dtype()),
        )
        .unsqueeze_dims::<4>(&[0, 3]); // [1, M, M, 1]

        // log q(z_il | x_j) for every sample i, component j and dimension l: [S, M, M, L].
        let mean = posterior.mean().unsqueeze::<4>();
        let log_var = posterior.log_var().unsqueeze::<4>();
        let per_dim = ((z.clone().unsqueeze_dim::<4>(2) - mean).powi_scalar(2)
            * log_var.clone().neg().exp()
            + log_var
            + LN_2PI)
            .mul_scalar(-0.5);

        let log_aggregate =
            log_sum_exp_dim(per_dim.clone().sum_dim(3) + log_weights.clone(), 2).flatten::<2>(1, 3); // [S, M]
        let log_marginals = log_sum_exp_dim(per_dim + log_weights, 2)
            .sum_dim(3)
            .flatten::<2>(1, 3);
        let log_posterior = posterior.log_prob(z.clone());
        let log_prior = standard_normal_log_prob(z);

        let mean_over_samples = |t: Tensor<B, 2>| t.mean_dim(0).squeeze_dim::<1>(0);
        Self {
            index_code_mi: mean_over_samples(log_posterior - log_aggregate.clone()),
            total_correlation: mean_over_samples(log_aggregate - log_marginals.clone()),
            dimension_wise_kl: mean_over_samples(log_marginals - log_prior),
        }
    }

    /// The sum of the three terms: the Monte-Carlo KL(q(z|x) ‖ p(z)), `[N]`, nats.
    pub fn kl(&self) -> Tensor<B, 1> {
        self.index_code_mi.clone() + self.total_correlation.clone() + self.dimension_wise_kl.clone()
    }
}

/// The β-TC-VAE objective (Chen et al. 2018): the loss
///
/// ```text
/// −mean_n [ E_q log p(x_n|z) − α·I_q(n; z) − β·TC − γ·Σ_l KL(q(z_l) ‖ p(z_l)) ]
/// ```
///
/// with the terms of [`KlDecomposition`]. α = β = γ = 1 is −ELBO with a Monte-Carlo KL; the
/// paper penalises the total correlation alone (α = γ = 1, β > 1, e.g. 6) to learn
/// disentangled latents. Any other weighting is not a bound: runs report the true ELBO terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetaTcObjective {
    /// α, the weight of the index-code mutual information.
    #[serde(default = "one")]
    pub alpha: f64,
    /// β, the weight of the total correlation.
    pub beta: f64,
    /// γ, the weight of the dimension-wise KL.
    #[serde(default = "one")]
    pub gamma: f64,
    /// How q(z) is estimated from a minibatch.
    #[serde(default)]
    pub estimator: AggregatePosterior,
}

fn one() -> f64 {
    1.0
}

impl BetaTcObjective {
    /// α = γ = 1, the given β, minibatch-weighted sampling: the paper's setting.
    pub fn new(beta: f64) -> Self {
        Self {
            alpha: 1.0,
            beta,
            gamma: 1.0,
            estimator: AggregatePosterior::MinibatchWeighted,
        }
    }

    /// Checks the weights; the error names the key at fault.
    pub fn validate(&self) -> Result<(), ObjectiveError> {
        for (key, value) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("gamma", self.gamma),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ObjectiveError::TcWeight { key, value });
            }
        }
        Ok(())
    }

    /// The loss, shape `[1]`, nats per example, from the reconstruction term `[N]` and the
    /// decomposition of the KL term.
    pub fn loss<B: Backend>(
        &self,
        log_likelihood: Tensor<B, 1>,
        kl: &KlDecomposition<B>,
    ) -> Tensor<B, 1> {
        let penalty = kl.index_code_mi.clone().mul_scalar(self.alpha)
            + kl.total_correlation.clone().mul_scalar(self.beta)
            + kl.dimension_wise_kl.clone().mul_scalar(self.gamma);
        (penalty - log_likelihood).mean()
    }
}
