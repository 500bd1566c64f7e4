//! The encoder side of a VAE.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{Tensor, backend::Backend};
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
