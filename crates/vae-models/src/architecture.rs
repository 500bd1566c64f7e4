//! Choosing an architecture from configuration.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::conv::ConvVaeConfig;
use crate::mlp::MlpVaeConfig;

/// The shape of one image: channels × height × width.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct ImageShape {
    /// 1 for grey-scale, 3 for RGB.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// C · H · W, the flattened size D.
    pub fn num_values(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The side of a square image (the height).
    pub fn side(&self) -> usize {
        self.height
    }

    /// Checks the shape is square with a power-of-two side ≥ 16 and 1 or more channels.
    pub fn validate_square_power_of_two(&self) -> Result<(), ArchitectureError> {
        if self.channels == 0
            || self.height != self.width
            || self.height < 16
            || !self.height.is_power_of_two()
        {
            return Err(ArchitectureError::ImageShape(self.clone()));
        }
        Ok(())
    }
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
    /// A bad likelihood setting.
    #[error("{0}")]
    Likelihood(String),
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
            Self::Mlp(c) => {
                if c.input_dim == 0 || c.hidden.contains(&0) {
                    return Err(ArchitectureError::Channels(c.hidden.clone()));
                }
                if c.latent_dim == 0 {
                    return Err(ArchitectureError::LatentDim);
                }
                c.likelihood
                    .validate()
                    .map_err(ArchitectureError::Likelihood)?;
            }
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
