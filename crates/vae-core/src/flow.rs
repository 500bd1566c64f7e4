//! Normalising-flow posteriors: a diagonal Gaussian pushed through an invertible map.

use burn::tensor::{Tensor, backend::Backend};

use crate::diagonal_gaussian::DiagonalGaussian;
use crate::posterior::{Posterior, PosteriorSamples};

/// An invertible, differentiable map z = f(z₀) of latents `[S, N, L]`, conditioned on the
/// base posterior (its parameters are the flow's per-example context), with the log of its
/// Jacobian determinant.
pub trait Flow<B: Backend> {
    /// z = f(z₀) and log |det ∂f/∂z₀| per draw, shapes `[S, N, L]` and `[S, N]`, nats.
    fn forward(
        &self,
        z0: Tensor<B, 3>,
        context: &DiagonalGaussian<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>);

    /// z₀ = f⁻¹(z), shape `[S, N, L]`.
    fn inverse(&self, z: Tensor<B, 3>, context: &DiagonalGaussian<B>) -> Tensor<B, 3>;
}

/// q(z|x) = the law of z = f(z₀), z₀ ~ q₀(z₀|x) = N(μ, diag σ²) (Rezende & Mohamed 2015):
///
/// `log q(z|x) = log q₀(z₀|x) − log |det ∂f/∂z₀|`.
///
/// Draws are cheap and carry that density exactly; the density at any other z inverts the flow.
#[derive(Debug, Clone)]
pub struct FlowPosterior<B: Backend, F> {
    base: DiagonalGaussian<B>,
    flow: F,
}

impl<B: Backend, F: Flow<B>> FlowPosterior<B, F> {
    /// q₀ pushed through `flow`.
    pub fn new(base: DiagonalGaussian<B>, flow: F) -> Self {
        Self { base, flow }
    }

    /// q₀(z₀|x), the encoder's Gaussian.
    pub fn base(&self) -> &DiagonalGaussian<B> {
        &self.base
    }

    /// The flow f.
    pub fn flow(&self) -> &F {
        &self.flow
    }
}

impl<B: Backend, F: Flow<B>> Posterior<B> for FlowPosterior<B, F> {
    fn batch_size(&self) -> usize {
        self.base.batch_size()
    }

    fn latent_dim(&self) -> usize {
        self.base.latent_dim()
    }

    fn rsample_with_log_prob(&self, samples: usize) -> PosteriorSamples<B> {
        let z0 = self.base.rsample(samples);
        let log_q0 = self.base.log_prob(z0.clone());
        let (z, log_det) = self.flow.forward(z0, &self.base);
        PosteriorSamples {
            z,
            log_q: log_q0 - log_det,
        }
    }

    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        let z0 = self.flow.inverse(z, &self.base);
        let (_, log_det) = self.flow.forward(z0.clone(), &self.base);
        self.base.log_prob(z0) - log_det
    }

    fn entropy(&self) -> Option<Tensor<B, 1>> {
        None
    }

    fn location(&self) -> Tensor<B, 2> {
        let (z, _) = self
            .flow
            .forward(self.base.mean().unsqueeze_dim::<3>(0), &self.base);
        z.squeeze_dim::<2>(0)
    }

    fn gaussian(&self) -> Option<&DiagonalGaussian<B>> {
        None
    }
}
