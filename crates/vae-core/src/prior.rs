//! The prior p(z): a trait, and the standard normal every VAE starts from.

use burn::tensor::{Distribution, Tensor, backend::Backend};

use crate::diagonal_gaussian::{DiagonalGaussian, standard_normal_log_prob};

/// A prior p(z) over L-dimensional latents: everything the ELBO, the IWAE bounds, the
/// importance-sampled log p(x) and sampling need from it.
///
/// Implemented here by [`StandardNormal`] (N(0, I), the default) and
/// [`GaussianMixture`](crate::GaussianMixture) (a mixture of diagonal Gaussians: the learned
/// mixture prior, and the VampPrior built from an encoder in vae-models). A learned prior is
/// a module holding parameters that builds one of these per forward pass, so its gradients
/// flow through [`log_prob`](Self::log_prob).
pub trait Prior<B: Backend> {
    /// L, the latent size.
    fn latent_dim(&self) -> usize;

    /// log p(z) for latents `z` of shape `[S, N, L]`, shape `[S, N]`, nats (summed over L).
    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2>;

    /// `samples × batch` draws z ~ p(z), shape `[samples, batch, L]`, on `device`.
    fn sample(&self, samples: usize, batch: usize, device: &B::Device) -> Tensor<B, 3>;

    /// KL(q ‖ p) per example and latent dimension, shape `[N, L]`, nats, where it has a closed
    /// form for this prior and a diagonal-Gaussian posterior; `None` (the default) where it
    /// has none, and [`KlEstimator`](crate::KlEstimator) uses the Monte-Carlo estimate.
    fn analytic_kl_per_dim(&self, posterior: &DiagonalGaussian<B>) -> Option<Tensor<B, 2>> {
        let _ = posterior;
        None
    }
}

/// The standard normal prior p(z) = N(0, I) over `latent_dim` dimensions: no parameters, a
/// closed-form KL to a diagonal Gaussian
/// ([`DiagonalGaussian::kl_standard_normal_per_dim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardNormal {
    latent_dim: usize,
}

impl StandardNormal {
    /// N(0, I) over `latent_dim` dimensions.
    pub fn new(latent_dim: usize) -> Self {
        Self { latent_dim }
    }
}

impl<B: Backend> Prior<B> for StandardNormal {
    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// Σ_l −½ (z_l² + ln 2π).
    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        standard_normal_log_prob(z)
    }

    fn sample(&self, samples: usize, batch: usize, device: &B::Device) -> Tensor<B, 3> {
        Tensor::random(
            [samples, batch, self.latent_dim],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    /// ½ (μ² + σ² − 1 − ln σ²) per dimension, ≥ 0, accurate near 0.
    fn analytic_kl_per_dim(&self, posterior: &DiagonalGaussian<B>) -> Option<Tensor<B, 2>> {
        Some(posterior.kl_standard_normal_per_dim())
    }
}
