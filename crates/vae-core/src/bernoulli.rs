//! Bernoulli observation model, parameterised by logits.

use burn::tensor::{Distribution, Tensor, backend::Backend};

use crate::observation::{ObservationModel, broadcast_data, sigmoid};

/// Independent Bernoulli distributions over each data dimension, parameterised by **logits**
/// η = log(p / (1 − p)): the decoder's last layer is linear, with no sigmoid in front.
///
/// `log p(x|η) = Σ_d [x_d log σ(η_d) + (1 − x_d) log σ(−η_d)] = Σ_d [x_d η_d − softplus(η_d)]`,
/// evaluated by [`vae_kernels::bernoulli_log_prob`], which is finite for every finite η (the
/// naive `x log p + (1−x) log(1−p)` is −∞ once p rounds to 0 or 1) and forms the gradient
/// ∂/∂η_d = x_d − σ(η_d) directly, accurate relative to its size even where σ(η) ≈ 0 or 1.
///
/// Targets may be continuous in [0, 1] (grey-scale pixels), as in Kingma & Welling's and
/// PyTorch's MNIST examples; the value is then a cross-entropy, not a normalised log-density
/// (see [`ContinuousBernoulli`](crate::ContinuousBernoulli) for the normalised version).
/// With binary targets it is an exact log-probability.
#[derive(Debug, Clone)]
pub struct Bernoulli<B: Backend> {
    logits: Tensor<B, 3>,
}

impl<B: Backend> Bernoulli<B> {
    /// Bernoulli(σ(logits)), logits of shape `[S, N, D]`.
    pub fn from_logits(logits: Tensor<B, 3>) -> Self {
        Self { logits }
    }

    /// The logits η, shape `[S, N, D]`.
    pub fn logits(&self) -> Tensor<B, 3> {
        self.logits.clone()
    }

    /// The success probabilities p = σ(η), shape `[S, N, D]`, accurate relative to p in the
    /// logits' own float type (burn's generic `sigmoid` rounds through f32).
    pub fn probs(&self) -> Tensor<B, 3> {
        sigmoid(self.logits.clone())
    }
}

impl<B: Backend> ObservationModel<B> for Bernoulli<B> {
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = broadcast_data("Bernoulli", x, self.dims());
        vae_kernels::bernoulli_log_prob(x, self.logits.clone())
    }

    fn mean(&self) -> Tensor<B, 3> {
        self.probs()
    }

    fn sample(&self) -> Tensor<B, 3> {
        let u = self.logits.random_like(Distribution::Uniform(0.0, 1.0));
        u.lower(self.probs()).float()
    }

    fn dims(&self) -> [usize; 3] {
        self.logits.dims()
    }
}
