//! The approximate posterior q(z|x): a trait, and the draws it hands to the ELBO.

use burn::tensor::{Tensor, backend::Backend};

use crate::diagonal_gaussian::DiagonalGaussian;

/// Reparameterised draws z ~ q(z|x) with their log-density, as every Monte-Carlo estimate here
/// consumes them.
///
/// A flow posterior knows log q(z|x) cheaply only at its own draws (the density at any other
/// z needs the flow's inverse), so draws carry it: the ELBO, the IWAE bounds and log p(x) read
/// `log_q` instead of evaluating q again.
#[derive(Debug, Clone)]
pub struct PosteriorSamples<B: Backend> {
    /// z, shape `[S, N, L]`; gradients flow to q's parameters through it.
    pub z: Tensor<B, 3>,
    /// log q(z|x) at each draw, shape `[S, N]`, nats (summed over L).
    pub log_q: Tensor<B, 2>,
}

impl<B: Backend> PosteriorSamples<B> {
    /// Given latents `z` `[S, N, L]` with their density under `posterior` (exact for every
    /// posterior; for a flow it inverts the flow, L sequential passes for IAF).
    pub fn at(posterior: &impl Posterior<B>, z: Tensor<B, 3>) -> Self {
        Self {
            log_q: posterior.log_prob(z.clone()),
            z,
        }
    }

    /// S, the draws per example.
    pub fn samples(&self) -> usize {
        self.z.dims()[0]
    }

    /// The same draws with gradients stopped (z and log q both).
    pub fn detach(&self) -> Self {
        Self {
            z: self.z.clone().detach(),
            log_q: self.log_q.clone().detach(),
        }
    }
}

/// An approximate posterior q(z|x) for a batch of N examples over L-dimensional latents:
/// everything the ELBO, the importance-weighted bounds and the importance-sampled log p(x)
/// need from it.
///
/// Implemented here by [`DiagonalGaussian`] (what every encoder produces) and by
/// [`FlowPosterior`](crate::FlowPosterior) (a diagonal Gaussian pushed through a normalising
/// flow, e.g. vae-models' IAF). Implement it for a posterior family of your own and the
/// estimators of this crate take it as is.
pub trait Posterior<B: Backend> {
    /// N, the examples.
    fn batch_size(&self) -> usize;

    /// L, the latent size.
    fn latent_dim(&self) -> usize;

    /// `samples` reparameterised draws per example with log q at each: z `[S, N, L]`,
    /// log q `[S, N]`, nats.
    fn rsample_with_log_prob(&self, samples: usize) -> PosteriorSamples<B>;

    /// log q(z|x) for any `z` of shape `[S, N, L]`, shape `[S, N]`, nats.
    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2>;

    /// The differential entropy H[q] per example, shape `[N]`, nats, where it has a closed
    /// form (`None` for a flow).
    fn entropy(&self) -> Option<Tensor<B, 1>>;

    /// A representative latent per example, `[N, L]`, for reconstructions and traversals: the
    /// mean of a Gaussian, the flow's image of its base mean.
    fn location(&self) -> Tensor<B, 2>;

    /// The posterior as a diagonal Gaussian when it is one: the closed-form KL and the β-TC
    /// decomposition need that; `None` for any other family.
    fn gaussian(&self) -> Option<&DiagonalGaussian<B>>;
}

impl<B: Backend> Posterior<B> for DiagonalGaussian<B> {
    fn batch_size(&self) -> usize {
        DiagonalGaussian::batch_size(self)
    }

    fn latent_dim(&self) -> usize {
        DiagonalGaussian::latent_dim(self)
    }

    fn rsample_with_log_prob(&self, samples: usize) -> PosteriorSamples<B> {
        PosteriorSamples::at(self, self.rsample(samples))
    }

    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        DiagonalGaussian::log_prob(self, z)
    }

    fn entropy(&self) -> Option<Tensor<B, 1>> {
        Some(DiagonalGaussian::entropy(self))
    }

    fn location(&self) -> Tensor<B, 2> {
        self.mean()
    }

    fn gaussian(&self) -> Option<&DiagonalGaussian<B>> {
        Some(self)
    }
}
