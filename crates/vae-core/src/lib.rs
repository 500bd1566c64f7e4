//! # vae-core — the mathematics of variational autoencoders, on burn tensors
//!
//! Backend-generic (`B: Backend`), no I/O, no training machinery: the distributions a VAE is made
//! of (posterior, priors, observation models), the KL divergence, the evidence lower bound
//! (ELBO) with its terms named, the β / warm-up / free-bits training objective, the
//! importance-weighted bounds (IWAE, MIWAE, CIWAE, PIWAE), the β-TC-VAE decomposition of the KL
//! term and an importance-sampled estimate of log p(x).
//!
//! ## The contract
//!
//! For a data point x, an encoder q(z|x), a prior p(z) ([`Prior`]: N(0, I) by default, or a
//! mixture) and a decoder p(x|z):
//!
//! ```text
//! ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  ≤  log p(x)
//! log p(x) = ELBO(x) + KL(q(z|x) ‖ p(z|x))
//! ```
//!
//! The ELBO is **maximised**; the training loss is **−ELBO** ([`Elbo::loss`]). Minimising the loss
//! pushes the lower bound on log p(x) up, which pushes log p(x) up and/or closes the gap
//! KL(q(z|x) ‖ p(z|x)) to the true posterior.
//!
//! ## Reduction rule (one rule, everywhere)
//!
//! * **sum** over data dimensions (pixels) and over latent dimensions,
//! * **mean** over the batch (and over Monte-Carlo samples of z, for expectations under q),
//! * unit: **nats per example**. [`bits_per_dim`] converts to bits per data dimension.
//!
//! Reconstruction terms are log-*likelihoods* (higher is better, usually negative); the KL term
//! is reported as a non-negative number of nats and *subtracted*. Every public value says which
//! it is in its name: `log_likelihood`, `kl`, `elbo`, `neg_elbo`.
//!
//! ## Shapes
//!
//! Tensors follow the sample × batch × event convention:
//!
//! | what | shape |
//! |---|---|
//! | data x (images flattened) | `[N, D]` |
//! | posterior parameters (encoder output) | `[N, L]` |
//! | latent samples z | `[S, N, L]` |
//! | observation-model parameters (decoder output) | `[S, N, D]` |
//! | log-densities of samples | `[S, N]` |
//! | per-example terms | `[N]` |
//!
//! N is the batch size, D the number of data dimensions, L the latent size and S the number of
//! latent samples per example (1 for the usual single-sample ELBO).
//!
//! ## Backend-specific fast paths
//!
//! The code here is generic. Where a backend needs a faster formulation — the Bernoulli
//! log-likelihood fused into one op, the sums over data dimensions — it calls the generic ops
//! of `vae-kernels` ([`vae_kernels::bernoulli_log_prob`], [`vae_kernels::sum_last_dim`]), which
//! pick the fast path for burn's Flex CPU backend when that crate's `fast-kernels` feature is on
//! (vae-train turns it on) and burn's formulation everywhere else.

mod bernoulli;
mod continuous_bernoulli;
mod diagonal_gaussian;
mod elbo;
mod flow;
mod gaussian;
mod gaussian_mixture;
mod importance;
mod importance_bounds;
mod kl;
mod objective;
mod observation;
mod one_hot;
mod posterior;
mod prior;
mod shape;
mod total_correlation;
mod units;

pub use bernoulli::Bernoulli;
pub use continuous_bernoulli::ContinuousBernoulli;
pub use diagonal_gaussian::{DiagonalGaussian, standard_normal_log_prob};
pub use elbo::{Elbo, ElboSummary};
pub use flow::{Flow, FlowPosterior};
pub use gaussian::Gaussian;
pub use gaussian_mixture::GaussianMixture;
pub use importance::{ImportanceSampling, iwae_bound, log_importance_weights, log_mean_exp};
pub use importance_bounds::{ImportanceBound, ciwae_bound, miwae_bound, piwae_loss};
pub use kl::KlEstimator;
pub use objective::{ElboObjective, ObjectiveError};
pub use observation::{ObservationModel, log_sigmoid, sigmoid};
pub use one_hot::one_hot;
pub use posterior::{Posterior, PosteriorSamples};
pub use prior::{Prior, StandardNormal};
pub use shape::ImageShape;
pub use total_correlation::{AggregatePosterior, BetaTcObjective, KlDecomposition};
pub use units::{LN_2PI, bits_per_dim, bits_per_dim_8bit};
