//! The VAE's prior p(z) as a configurable, learnable part: the standard normal, a learned
//! mixture of Gaussians, or the VampPrior.

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};
use vae_core::{DiagonalGaussian, GaussianMixture, Prior, StandardNormal};

use crate::architecture::ArchitectureError;
use crate::encoder::Encoder;

/// Which prior a VAE has: `model.prior` in a run's configuration, e.g.
/// `prior = { kind = "vamp", pseudo_inputs = 500 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PriorConfig {
    /// p(z) = N(0, I): no parameters, closed-form KL. The default.
    #[default]
    StandardNormal,
    /// p(z) = Σ_k π_k N(μ_k, diag σ_k²) with learned means, variances and weights (K =
    /// `components`); the KL is estimated by Monte Carlo.
    Mixture {
        /// K ≥ 1.
        components: usize,
    },
    /// The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z | u_k), the encoder's
    /// posteriors at K = `pseudo_inputs` learned pseudo-inputs u_k (data-shaped, `[K, D]`);
    /// the KL is estimated by Monte Carlo. Each training step encodes the K pseudo-inputs.
    /// With a flow posterior the components are the encoder's Gaussians q₀(z | u_k) (still a
    /// learned prior, not the flow's mixture, whose density would need the flow's inverse).
    Vamp {
        /// K ≥ 1 (the paper used 500 for MNIST).
        pseudo_inputs: usize,
    },
}

impl PriorConfig {
    /// Checks the settings; the error names the key under `model`.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        let (key, value) = match *self {
            Self::StandardNormal => return Ok(()),
            Self::Mixture { components } => ("prior.components", components),
            Self::Vamp { pseudo_inputs } => ("prior.pseudo_inputs", pseudo_inputs),
        };
        if value == 0 {
            return Err(ArchitectureError::Setting {
                key: key.into(),
                expected: "must be ≥ 1".into(),
            });
        }
        Ok(())
    }

    /// The prior's parameters, freshly initialised, for latents of `latent_dim` and data of
    /// `data_dim` values per example; `None` for the standard normal (it has none).
    ///
    /// Mixture: means ~ N(0, 1), unit variances, equal weights. VampPrior: pseudo-inputs
    /// ~ U(0, 1), the range of the data.
    pub fn init<B: Backend>(
        &self,
        latent_dim: usize,
        data_dim: usize,
        device: &B::Device,
    ) -> Option<LearnedPrior<B>> {
        match *self {
            Self::StandardNormal => None,
            Self::Mixture { components } => Some(LearnedPrior::Mixture(MixturePrior {
                means: Param::from_tensor(Tensor::random(
                    [components, latent_dim],
                    Distribution::Normal(0.0, 1.0),
                    device,
                )),
                log_vars: Param::from_tensor(Tensor::zeros([components, latent_dim], device)),
                logits: Param::from_tensor(Tensor::zeros([components], device)),
            })),
            Self::Vamp { pseudo_inputs } => Some(LearnedPrior::Vamp(VampPrior {
                pseudo_inputs: Param::from_tensor(Tensor::random(
                    [pseudo_inputs, data_dim],
                    Distribution::Default,
                    device,
                )),
            })),
        }
    }
}

/// The parameters of a learned prior, part of the [`Vae`](crate::Vae) module (saved with its
/// weights, trained with them).
// One per model: the variants' sizes do not matter, and burn's Module derive has no Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum LearnedPrior<B: Backend> {
    /// See [`PriorConfig::Mixture`].
    Mixture(MixturePrior<B>),
    /// See [`PriorConfig::Vamp`].
    Vamp(VampPrior<B>),
}

/// A learned mixture of K diagonal Gaussians over the latent space.
#[derive(Module, Debug)]
pub struct MixturePrior<B: Backend> {
    /// μ_k, `[K, L]`.
    pub means: Param<Tensor<B, 2>>,
    /// ln σ_k², `[K, L]`.
    pub log_vars: Param<Tensor<B, 2>>,
    /// The mixture weights' logits, `[K]` (π = softmax).
    pub logits: Param<Tensor<B, 1>>,
}

/// The VampPrior's K learned pseudo-inputs, `[K, D]`.
#[derive(Module, Debug)]
pub struct VampPrior<B: Backend> {
    /// u_k, `[K, D]`, data-shaped.
    pub pseudo_inputs: Param<Tensor<B, 2>>,
}

impl<B: Backend> LearnedPrior<B> {
    /// The prior distribution these parameters define, built for one forward pass (the
    /// VampPrior encodes its pseudo-inputs with `encoder`, so its gradients reach both).
    pub fn distribution<E: Encoder<B>>(&self, encoder: &E) -> GaussianMixture<B> {
        match self {
            Self::Mixture(m) => {
                GaussianMixture::new(m.means.val(), m.log_vars.val(), m.logits.val())
            }
            Self::Vamp(v) => GaussianMixture::uniform(encoder.encode(v.pseudo_inputs.val())),
        }
    }
}

/// The prior of a [`Vae`](crate::Vae) for one forward pass: what
/// [`Vae::prior`](crate::Vae::prior) returns.
#[derive(Debug, Clone)]
pub enum PriorDistribution<B: Backend> {
    /// N(0, I).
    StandardNormal(StandardNormal),
    /// A learned mixture or a VampPrior.
    Mixture(GaussianMixture<B>),
}

impl<B: Backend> PriorDistribution<B> {
    /// The same prior with gradients stopped at its parameters (gradients still flow through
    /// the z it is evaluated at).
    pub fn detach(&self) -> Self {
        match self {
            Self::StandardNormal(p) => Self::StandardNormal(*p),
            Self::Mixture(p) => Self::Mixture(p.detach()),
        }
    }
}

impl<B: Backend> Prior<B> for PriorDistribution<B> {
    fn latent_dim(&self) -> usize {
        match self {
            Self::StandardNormal(p) => Prior::<B>::latent_dim(p),
            Self::Mixture(p) => p.latent_dim(),
        }
    }

    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        match self {
            Self::StandardNormal(p) => p.log_prob(z),
            Self::Mixture(p) => p.log_prob(z),
        }
    }

    fn sample(&self, samples: usize, batch: usize, device: &B::Device) -> Tensor<B, 3> {
        match self {
            Self::StandardNormal(p) => p.sample(samples, batch, device),
            Self::Mixture(p) => p.sample(samples, batch, device),
        }
    }

    fn analytic_kl_per_dim(&self, posterior: &DiagonalGaussian<B>) -> Option<Tensor<B, 2>> {
        match self {
            Self::StandardNormal(p) => p.analytic_kl_per_dim(posterior),
            Self::Mixture(p) => p.analytic_kl_per_dim(posterior),
        }
    }
}
