//! The encoder side of a VAE.

use burn::module::{AutodiffModule, Module, ModuleDisplay};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use vae_core::DiagonalGaussian;

/// A network that maps a batch of data to the approximate posterior q(z|x).
///
/// Implement it for your own [`Module`] to plug it into [`Vae`](crate::Vae).
pub trait Encoder<B: Backend>: Module<B> + ModuleDisplay {
    /// q(z|x) for data `x` of shape `[N, D]` (flattened, values in [0, 1]): a diagonal Gaussian
    /// with parameters `[N, L]`. Build it with [`DiagonalGaussian::new`], which clamps the
    /// log-variance to a safe range.
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B>;

    /// The latent dimensionality L.
    fn latent_dim(&self) -> usize;
}

/// An [`Encoder`] on an autodiff backend whose inference copy (`.valid()`) is an encoder too:
/// what training needs. Implemented for every such type; never implement it by hand.
pub trait TrainableEncoder<B: AutodiffBackend>:
    Encoder<B> + AutodiffModule<B, InnerModule: Encoder<B::InnerBackend>> + 'static
{
}

impl<B, E> TrainableEncoder<B> for E
where
    B: AutodiffBackend,
    E: Encoder<B> + AutodiffModule<B> + 'static,
    E::InnerModule: Encoder<B::InnerBackend>,
{
}
