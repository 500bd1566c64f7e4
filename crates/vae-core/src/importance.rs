//! Importance sampling: the IWAE bound and the estimate of log p(x).

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::observation::ObservationModel;
use crate::posterior::{Posterior, PosteriorSamples};
use crate::prior::Prior;

/// log Σ exp(a) along `dim`, keeping that dimension (size 1), in the units of `a`, without
/// overflow: the maximum is subtracted first (its gradient cancels, so it is detached).
///
/// A slice that is all −∞ (every weight zero) gives −∞, as log 0 should, with a zero
/// gradient: its maximum −∞ is replaced by 0 before the shift (−∞ − (−∞) is NaN), and its
/// empty sum by 1 before the log, so neither log 0 nor its infinite derivative times the zero
/// derivative of exp(−∞) (NaN) enters the graph; the −∞ is written back afterwards.
pub(crate) fn log_sum_exp_dim<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    dim: usize,
) -> Tensor<B, D> {
    let max = a.clone().max_dim(dim).detach();
    let all_neg_infinite = max.clone().equal_elem(f64::NEG_INFINITY);
    let shift = max.mask_fill(all_neg_infinite.clone(), 0.0);
    let sum = (a - shift.clone()).exp().sum_dim(dim);
    let log_sum = sum.mask_fill(all_neg_infinite.clone(), 1.0).log() + shift;
    log_sum.mask_fill(all_neg_infinite, f64::NEG_INFINITY)
}

/// log Σ_s exp(a_s) over dimension 0 of `[S, N]`, shape `[N]` (see [`log_sum_exp_dim`]).
fn log_sum_exp<B: Backend>(a: Tensor<B, 2>) -> Tensor<B, 1> {
    log_sum_exp_dim(a, 0).squeeze_dim::<1>(0)
}

/// log (1/S) Σ_s exp(a_s) over dimension 0 of `[S, N]`, shape `[N]`, in the units of `a`
/// (nats for log-weights), computed stably: the column maximum is subtracted before `exp`.
/// A column that is all −∞ gives −∞ with a zero (finite) gradient, as `torch.logsumexp` does.
pub fn log_mean_exp<B: Backend>(a: Tensor<B, 2>) -> Tensor<B, 1> {
    let samples = a.dims()[0] as f64;
    log_sum_exp(a).sub_scalar(samples.ln())
}

/// Log importance weights log w_s = log p(x|z_s) + log p(z_s) − log q(z_s|x), shape `[S, N]`,
/// nats, for draws z ~ q(z|x) with their log-density (`[S, N, L]`) and the decoder's
/// distribution `likelihood` at those draws (`[S, N, D]`), under `prior`.
///
/// E_q[w] = p(x), so log w is an unbiased-in-w, downward-biased-in-log estimate of log p(x).
pub fn log_importance_weights<B: Backend>(
    x: Tensor<B, 2>,
    draws: &PosteriorSamples<B>,
    likelihood: &impl ObservationModel<B>,
    prior: &impl Prior<B>,
) -> Tensor<B, 2> {
    likelihood.log_prob(x) + prior.log_prob(draws.z.clone()) - draws.log_q.clone()
}

/// The importance-weighted bound of Burda et al. (2016) with K = S draws, per example, shape
/// `[N]`, nats:
///
/// `L_K = log (1/K) Σ_k w_k`, with E[L_K] ≤ E[L_{K+1}] ≤ log p(x) and L_1 = the single-sample
/// ELBO estimate with a Monte-Carlo KL. Maximise it (loss = −mean L_K) to train an IWAE.
pub fn iwae_bound<B: Backend>(
    x: Tensor<B, 2>,
    draws: &PosteriorSamples<B>,
    likelihood: &impl ObservationModel<B>,
    prior: &impl Prior<B>,
) -> Tensor<B, 1> {
    log_mean_exp(log_importance_weights(x, draws, likelihood, prior))
}

/// The importance-sampled estimate of log p(x) with q(z|x) as proposal (Rezende et al. 2014;
/// Burda et al. 2016), the standard way to report a VAE's test log-likelihood:
///
/// `log p(x) ≈ log (1/K) Σ_{k=1..K} p(x|z_k) p(z_k) / q(z_k|x)`, z_k ~ q(z|x).
///
/// It is the IWAE bound at large K: a lower bound in expectation that converges to log p(x) as
/// K → ∞. Samples are processed `chunk_size` at a time, so memory holds
/// `chunk_size × N × D` decoder outputs however large K is (K = 5000 on a batch of MNIST is
/// 5000 × N × 784 floats unchunked).
#[derive(Config, Debug, PartialEq)]
pub struct ImportanceSampling {
    /// K, the number of importance samples per example.
    #[config(default = 5000)]
    pub num_samples: usize,
    /// Samples decoded at once.
    #[config(default = 250)]
    pub chunk_size: usize,
}

impl ImportanceSampling {
    /// Estimates log p(x) per example, shape `[N]`, nats.
    ///
    /// `decode` maps latent samples `[S, N, L]` to the decoder's distribution `[S, N, D]`; it
    /// is called ⌈K / chunk_size⌉ times. Run it on a non-autodiff backend (or a model's
    /// `.valid()` copy) so no graph is kept.
    ///
    /// # Panics
    /// If `num_samples` is 0.
    pub fn log_px<B, O, F>(
        &self,
        x: Tensor<B, 2>,
        posterior: &impl Posterior<B>,
        prior: &impl Prior<B>,
        mut decode: F,
    ) -> Tensor<B, 1>
    where
        B: Backend,
        O: ObservationModel<B>,
        F: FnMut(Tensor<B, 3>) -> O,
    {
        assert!(
            self.num_samples > 0,
            "ImportanceSampling: num_samples must be ≥ 1"
        );
        let chunk = self.chunk_size.clamp(1, self.num_samples);
        let mut per_chunk = Vec::with_capacity(self.num_samples.div_ceil(chunk));
        let mut done = 0;
        while done < self.num_samples {
            let take = chunk.min(self.num_samples - done);
            let draws = posterior.rsample_with_log_prob(take);
            let likelihood = decode(draws.z.clone());
            let log_w = log_importance_weights(x.clone(), &draws, &likelihood, prior);
            per_chunk.push(log_sum_exp(log_w).unsqueeze_dim::<2>(0));
            done += take;
        }
        // log Σ over all K = log Σ_chunks exp(log Σ within chunk); then divide by K.
        log_sum_exp(Tensor::cat(per_chunk, 0)).sub_scalar((self.num_samples as f64).ln())
    }
}
