//! Choosing an architecture from configuration.

use serde::{Deserialize, Serialize};

use crate::conv::ConvVaeConfig;
use crate::mlp::MlpVaeConfig;

pub use vae_core::ImageShape;

/// Checks `shape` is square with a power-of-two side ≥ 16 and one or more channels (what the
/// convolutional models need).
pub(crate) fn validate_square_power_of_two(shape: &ImageShape) -> Result<(), ArchitectureError> {
    if shape.channels == 0
        || shape.height != shape.width
        || shape.height < 16
        || !shape.height.is_power_of_two()
    {
        return Err(ArchitectureError::ImageShape(*shape));
    }
    Ok(())
}

/// A configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchitectureError {
    /// The convolutional models need square images with a power-of-two side ≥ 16.
    #[error(
        "image shape {}×{}×{} is not supported: convolutional models need a square image whose side is a power of two ≥ 16",
        .0.channels, .0.height, .0.width
    )]
    ImageShape(ImageShape),
    /// Too many stride-2 blocks for the image side.
    #[error("{blocks} downsampling blocks would shrink a {side}×{side} image below 1×1")]
    TooManyBlocks {
        /// The image side.
        side: usize,
        /// The number of blocks.
        blocks: usize,
    },
    /// Empty or zero-width layers.
    #[error("layer widths must be non-empty and positive, got {0:?}")]
    Channels(Vec<usize>),
    /// A zero-dimensional latent space.
    #[error("latent_dim must be ≥ 1")]
    LatentDim,
    /// The input size disagrees with the data.
    #[error("the model expects {expected} values per example but the data has {actual}")]
    InputDim {
        /// What the model was configured for.
        expected: usize,
        /// What the data provides.
        actual: usize,
    },
    /// A model setting is out of range (custom model specs report theirs here too).
    #[error("model.{key}: {expected}")]
    Setting {
        /// The key under `model` in a run's configuration.
        key: String,
        /// What it must be.
        expected: String,
    },
    /// A fixed Gaussian σ that is not a positive finite number.
    #[error("likelihood: a fixed sigma (σ) must be a finite positive number, got {sigma}")]
    FixedSigma {
        /// The σ given.
        sigma: f64,
    },
}

/// The built-in architectures, as a configuration value: `{ kind = "mlp", … }` or
/// `{ kind = "conv", … }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Architecture {
    /// See [`MlpVaeConfig`].
    Mlp(MlpVaeConfig),
    /// See [`ConvVaeConfig`].
    Conv(ConvVaeConfig),
}

impl Architecture {
    /// The flattened data size D the model consumes.
    pub fn data_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.input_dim,
            Self::Conv(c) => c.image.num_values(),
        }
    }

    /// The latent size L.
    pub fn latent_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.latent_dim,
            Self::Conv(c) => c.latent_dim,
        }
    }

    /// Checks that the configuration can be built, and (with `data_dim`) that it fits the data.
    pub fn validate(&self, data_dim: Option<usize>) -> Result<(), ArchitectureError> {
        match self {
            Self::Mlp(c) => c.validate()?,
            Self::Conv(c) => c.validate()?,
        }
        match data_dim {
            Some(actual) if actual != self.data_dim() => Err(ArchitectureError::InputDim {
                expected: self.data_dim(),
                actual,
            }),
            _ => Ok(()),
        }
    }
}
