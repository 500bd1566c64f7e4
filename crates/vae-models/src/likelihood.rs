//! Turning a decoder network's raw output into an observation model.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, activation::sigmoid, backend::Backend};
use serde::{Deserialize, Serialize};
use vae_core::{Bernoulli, ContinuousBernoulli, Gaussian, ObservationModel};

use crate::architecture::ArchitectureError;

/// The observation model p(x|z) a decoder parameterises, for data in [0, 1].
///
/// Serialised with a `kind` tag, e.g. `{ kind = "bernoulli" }` or
/// `{ kind = "gaussian", scale = "learned-shared" }` in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Likelihood {
    /// Bernoulli from logits; the network's output is used as logits, no sigmoid. The classic
    /// choice for (binarised or grey-scale) MNIST.
    #[default]
    Bernoulli,
    /// Continuous Bernoulli from logits: a normalised density on [0, 1].
    ContinuousBernoulli,
    /// Gaussian with mean σ(output) ∈ [0, 1] and the given scale.
    Gaussian {
        /// How σ is chosen.
        scale: GaussianScale,
    },
}

/// How the σ of a Gaussian likelihood is set. See [`vae_core::Gaussian`] for why it matters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GaussianScale {
    /// A fixed σ > 0 for every dimension.
    Fixed {
        /// σ, in data units ([0, 1] pixels).
        sigma: f64,
    },
    /// One learned σ shared by all dimensions (a decoder parameter, initialised to 0.1).
    LearnedShared,
    /// One learned σ per data dimension (initialised to 0.1).
    LearnedPerDim,
    /// σ² set to its maximum-likelihood value, the batch mean squared error (σ-VAE).
    Optimal,
}

/// ln σ of a learned scale at initialisation: σ = 0.1, a tenth of the [0, 1] data range.
const INITIAL_LOG_SCALE: f64 = -std::f64::consts::LN_10;

impl Likelihood {
    /// Checks parameters (a fixed σ must be positive and finite).
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        match self {
            Self::Gaussian {
                scale: GaussianScale::Fixed { sigma },
            } if !(sigma.is_finite() && *sigma > 0.0) => {
                Err(ArchitectureError::FixedSigma { sigma: *sigma })
            }
            _ => Ok(()),
        }
    }

    /// Builds the head for a decoder producing `data_dim` outputs per example.
    pub fn init<B: Backend>(&self, data_dim: usize, device: &B::Device) -> LikelihoodHead<B> {
        let log_scale = match self {
            Self::Gaussian {
                scale: GaussianScale::LearnedShared,
            } => Some([1, 1, 1]),
            Self::Gaussian {
                scale: GaussianScale::LearnedPerDim,
            } => Some([1, 1, data_dim]),
            _ => None,
        }
        .map(|shape| Param::from_tensor(Tensor::full(shape, INITIAL_LOG_SCALE, device)));
        LikelihoodHead {
            likelihood: *self,
            log_scale,
        }
    }
}

/// The last stage of a decoder: interprets raw network outputs `[S, N, D]` as the parameters
/// of the configured [`Likelihood`], holding the learned log σ when there is one.
#[derive(Module, Debug)]
pub struct LikelihoodHead<B: Backend> {
    #[module(skip)]
    likelihood: Likelihood,
    /// Learned ln σ, `[1, 1, 1]` (shared) or `[1, 1, D]` (per dimension).
    log_scale: Option<Param<Tensor<B, 3>>>,
}

impl<B: Backend> LikelihoodHead<B> {
    /// The configured likelihood.
    pub fn likelihood(&self) -> Likelihood {
        self.likelihood
    }

    /// Interprets raw outputs `[S, N, D]`: logits for the Bernoulli kinds, σ⁻¹(mean) for the
    /// Gaussian.
    pub fn apply(&self, output: Tensor<B, 3>) -> DecodedLikelihood<B> {
        match self.likelihood {
            Likelihood::Bernoulli => DecodedLikelihood::Bernoulli(Bernoulli::from_logits(output)),
            Likelihood::ContinuousBernoulli => {
                DecodedLikelihood::ContinuousBernoulli(ContinuousBernoulli::from_logits(output))
            }
            Likelihood::Gaussian { scale } => {
                let mean = sigmoid(output);
                match (scale, &self.log_scale) {
                    (GaussianScale::Fixed { sigma }, _) => {
                        DecodedLikelihood::Gaussian(Gaussian::fixed(mean, sigma))
                    }
                    (GaussianScale::Optimal, _) => DecodedLikelihood::GaussianOptimal { mean },
                    (_, Some(log_scale)) => {
                        DecodedLikelihood::Gaussian(Gaussian::new(mean, log_scale.val()))
                    }
                    (_, None) => unreachable!("learned scales are created by Likelihood::init"),
                }
            }
        }
    }
}

/// The observation model a [`LikelihoodHead`] produced; dispatches to the vae-core type.
#[derive(Debug, Clone)]
pub enum DecodedLikelihood<B: Backend> {
    /// See [`Bernoulli`].
    Bernoulli(Bernoulli<B>),
    /// See [`ContinuousBernoulli`].
    ContinuousBernoulli(ContinuousBernoulli<B>),
    /// See [`Gaussian`].
    Gaussian(Gaussian<B>),
    /// A Gaussian whose σ is fitted to the targets when they are scored
    /// ([`Gaussian::with_optimal_scale`]). Without targets σ is undefined, so
    /// [`sample`](ObservationModel::sample) returns the mean.
    GaussianOptimal {
        /// The mean, `[S, N, D]`.
        mean: Tensor<B, 3>,
    },
}

impl<B: Backend> ObservationModel<B> for DecodedLikelihood<B> {
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Self::Bernoulli(d) => d.log_prob(x),
            Self::ContinuousBernoulli(d) => d.log_prob(x),
            Self::Gaussian(d) => d.log_prob(x),
            Self::GaussianOptimal { mean } => {
                Gaussian::with_optimal_scale(mean.clone(), x.clone()).log_prob(x)
            }
        }
    }

    fn mean(&self) -> Tensor<B, 3> {
        match self {
            Self::Bernoulli(d) => d.mean(),
            Self::ContinuousBernoulli(d) => d.mean(),
            Self::Gaussian(d) => d.mean(),
            Self::GaussianOptimal { mean } => mean.clone(),
        }
    }

    fn sample(&self) -> Tensor<B, 3> {
        match self {
            Self::Bernoulli(d) => d.sample(),
            Self::ContinuousBernoulli(d) => d.sample(),
            Self::Gaussian(d) => d.sample(),
            Self::GaussianOptimal { mean } => mean.clone(),
        }
    }

    fn dims(&self) -> [usize; 3] {
        match self {
            Self::Bernoulli(d) => d.dims(),
            Self::ContinuousBernoulli(d) => d.dims(),
            Self::Gaussian(d) => d.dims(),
            Self::GaussianOptimal { mean } => mean.dims(),
        }
    }
}
