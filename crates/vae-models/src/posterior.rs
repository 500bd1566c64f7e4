//! The VAE's posterior family as a configurable part: the encoder's diagonal Gaussian, or that
//! Gaussian pushed through an inverse autoregressive flow.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};
use vae_core::{DiagonalGaussian, FlowPosterior, Posterior, PosteriorSamples};

use crate::architecture::ArchitectureError;
use crate::iaf::Iaf;

/// Which posterior family a VAE has: `model.posterior` in a run's configuration, e.g.
/// `posterior = { kind = "iaf", steps = 2, hidden = 320 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PosteriorConfig {
    /// q(z|x) = N(μ(x), diag σ²(x)), the encoder's output. The default.
    #[default]
    Gaussian,
    /// The encoder's Gaussian through an inverse autoregressive flow (Kingma et al. 2016) of
    /// `steps` steps with `hidden` units each, conditioned on the Gaussian's parameters.
    /// The KL is then estimated by Monte Carlo; log q stays exact (the flow's log-determinant).
    Iaf {
        /// Flow steps, ≥ 1 (orders alternate between steps).
        steps: usize,
        /// Hidden units of each step's masked network, ≥ 1.
        hidden: usize,
    },
}

impl PosteriorConfig {
    /// Checks the settings; the error names the key under `model`.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        if let Self::Iaf { steps, hidden } = *self {
            for (key, value) in [("posterior.steps", steps), ("posterior.hidden", hidden)] {
                if value == 0 {
                    return Err(ArchitectureError::Setting {
                        key: key.into(),
                        expected: "must be ≥ 1".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The flow's parameters, freshly initialised, for `latent_dim` latents; `None` for the
    /// Gaussian (no flow).
    pub fn init<B: Backend>(&self, latent_dim: usize, device: &B::Device) -> Option<Iaf<B>> {
        match *self {
            Self::Gaussian => None,
            Self::Iaf { steps, hidden } => Some(Iaf::new(latent_dim, steps, hidden, device)),
        }
    }
}

/// The posterior q(z|x) of a [`Vae`](crate::Vae) for one batch: what
/// [`Vae::posterior`](crate::Vae::posterior) returns.
#[derive(Debug, Clone)]
pub enum VaePosterior<B: Backend> {
    /// The encoder's diagonal Gaussian.
    Gaussian(DiagonalGaussian<B>),
    /// The encoder's Gaussian through the VAE's IAF.
    Iaf(FlowPosterior<B, Iaf<B>>),
}

impl<B: Backend> VaePosterior<B> {
    /// The encoder's Gaussian: the posterior itself, or the flow's base q₀(z₀|x).
    pub fn base(&self) -> &DiagonalGaussian<B> {
        match self {
            Self::Gaussian(q) => q,
            Self::Iaf(q) => q.base(),
        }
    }
}

impl<B: Backend> Posterior<B> for VaePosterior<B> {
    fn batch_size(&self) -> usize {
        self.base().batch_size()
    }

    fn latent_dim(&self) -> usize {
        self.base().latent_dim()
    }

    fn rsample_with_log_prob(&self, samples: usize) -> PosteriorSamples<B> {
        match self {
            Self::Gaussian(q) => q.rsample_with_log_prob(samples),
            Self::Iaf(q) => q.rsample_with_log_prob(samples),
        }
    }

    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        match self {
            Self::Gaussian(q) => Posterior::log_prob(q, z),
            Self::Iaf(q) => q.log_prob(z),
        }
    }

    fn entropy(&self) -> Option<Tensor<B, 1>> {
        match self {
            Self::Gaussian(q) => Posterior::entropy(q),
            Self::Iaf(q) => q.entropy(),
        }
    }

    fn location(&self) -> Tensor<B, 2> {
        match self {
            Self::Gaussian(q) => q.location(),
            Self::Iaf(q) => q.location(),
        }
    }

    fn gaussian(&self) -> Option<&DiagonalGaussian<B>> {
        match self {
            Self::Gaussian(q) => Some(q),
            Self::Iaf(_) => None,
        }
    }
}
