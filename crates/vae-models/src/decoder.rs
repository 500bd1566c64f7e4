//! The decoder side of a VAE.

use burn::module::{AutodiffModule, Module, ModuleDisplay};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use vae_core::ObservationModel;

/// A network that maps latent samples to the observation model p(x|z).
///
/// Implement it for your own [`Module`] to plug it into [`Vae`](crate::Vae). The output is any
/// vae-core observation model, e.g. [`Bernoulli`](vae_core::Bernoulli) from logits, or the
/// configurable [`DecodedLikelihood`](crate::DecodedLikelihood) via a
/// [`LikelihoodHead`](crate::LikelihoodHead).
pub trait Decoder<B: Backend>: Module<B> + ModuleDisplay {
    /// The distribution the decoder parameterises.
    type Output: ObservationModel<B>;

    /// p(x|z) for latent samples `z` of shape `[S, N, L]`, as a distribution with parameters
    /// `[S, N, D]`.
    fn decode(&self, z: Tensor<B, 3>) -> Self::Output;

    /// The number of data dimensions D of each decoded example.
    fn data_dim(&self) -> usize;
}

/// A [`Decoder`] on an autodiff backend whose inference copy (`.valid()`) is a decoder too:
/// what training needs. Implemented for every such type; never implement it by hand.
pub trait TrainableDecoder<B: AutodiffBackend>:
    Decoder<B> + AutodiffModule<B, InnerModule: Decoder<B::InnerBackend>> + 'static
{
}

impl<B, D> TrainableDecoder<B> for D
where
    B: AutodiffBackend,
    D: Decoder<B> + AutodiffModule<B> + 'static,
    D::InnerModule: Decoder<B::InnerBackend>,
{
}
