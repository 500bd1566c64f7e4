//! # vae-models — encoders, decoders and the VAE that joins them
//!
//! A VAE is an [`Encoder`] (data → the posterior q(z|x), a
//! [`DiagonalGaussian`](vae_core::DiagonalGaussian)) and a [`Decoder`] (latent samples → an
//! observation model p(x|z) from vae-core), joined by the generic [`Vae`] with a prior p(z):
//! N(0, I), or a [`LearnedPrior`] (a mixture of Gaussians, or the VampPrior) chosen by
//! [`PriorConfig`], and a posterior family: the encoder's Gaussian, or that Gaussian through an
//! inverse autoregressive flow ([`Iaf`]) chosen by [`PosteriorConfig`], optionally conditioned
//! on side information (a conditional VAE: [`ConditionConfig`], data and latents passed as
//! [`Conditioned`] tensors). Anything that
//! implements the two traits plugs in: the MLP ([`MlpEncoder`], [`MlpDecoder`]) and
//! convolutional ([`ConvEncoder`], [`ConvDecoder`]) architectures here, or your own modules.
//!
//! Data enters every encoder flattened, `[N, D]` (images in C×H×W order, values in [0, 1]);
//! convolutional encoders reshape internally. Decoders take latent samples `[S, N, L]` and
//! return distributions over `[S, N, D]`, following vae-core's shape convention.
//!
//! The decoder's last layer is interpreted by a [`LikelihoodHead`] configured with a
//! [`Likelihood`]: logits for the Bernoulli and continuous Bernoulli (no sigmoid in the
//! network), a sigmoid mean in [0, 1] for the Gaussian, whose σ is fixed, learned or optimal.
//!
//! All configurations are `#[derive(Config)]` and serialise to JSON/TOML, so a run can be
//! rebuilt from the configuration it saved. [`persist`] saves and loads weights with burn's
//! recorders and as safetensors.
//!
//! The networks are generic. The conv models' convolutions, batch norms and leaky ReLUs, and
//! [`Activation::LeakyRelu`], go through the generic ops of `vae-kernels`
//! ([`vae_kernels::conv2d`], [`vae_kernels::conv_transpose2d`], [`vae_kernels::batch_norm`],
//! [`vae_kernels::leaky_relu`]): burn's own ops, except on burn's Flex CPU backend when that
//! crate's `fast-kernels` feature is on (vae-train turns it on), where faster formulations with
//! the same values (to f32 rounding) run.

mod activation;
mod architecture;
mod condition;
mod conv;
mod decoder;
mod encoder;
mod iaf;
mod likelihood;
mod mlp;
pub mod persist;
mod posterior;
mod prior;
mod vae;

pub use activation::Activation;
pub use architecture::{Architecture, ArchitectureError, ImageShape};
pub use condition::{
    ConditionConfig, ConditionValue, ConditionValueError, Conditioned, condition_vector,
    one_hot_classes,
};
pub use conv::{ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig, ConvVaeConfig};
pub use decoder::{Decoder, TrainableDecoder};
pub use encoder::{Encoder, TrainableEncoder};
pub use iaf::Iaf;
pub use likelihood::{DecodedLikelihood, GaussianScale, Likelihood, LikelihoodHead};
pub use mlp::{MlpDecoder, MlpDecoderConfig, MlpEncoder, MlpEncoderConfig, MlpVaeConfig};
pub use persist::PersistError;
pub use posterior::{PosteriorConfig, VaePosterior};
pub use prior::{LearnedPrior, MixturePrior, PriorConfig, PriorDistribution, VampPrior};
pub use vae::{Vae, VaeOutput};
