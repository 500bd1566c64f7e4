//! Hidden-layer activations.

use burn::tensor::{Tensor, activation, backend::Backend};
use serde::{Deserialize, Serialize};

/// A hidden-layer nonlinearity. Serialised in kebab-case (`"relu"`, `"leaky-relu"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// max(x, 0).
    #[default]
    Relu,
    /// max(x, 0.01 x), PyTorch's default slope.
    LeakyRelu,
    /// tanh(x), as in the IWAE paper's MLPs.
    Tanh,
    /// x Φ(x).
    Gelu,
    /// x σ(x).
    Silu,
}

impl Activation {
    /// Applies the nonlinearity elementwise.
    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::LeakyRelu => vae_kernels::leaky_relu(x, 0.01),
            Self::Tanh => activation::tanh(x),
            Self::Gelu => activation::gelu(x),
            Self::Silu => activation::silu(x),
        }
    }
}
