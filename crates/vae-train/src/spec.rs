//! Model specifications: the serialisable configuration a run records, and that rebuilds the
//! model to resume, evaluate or sample it.

use std::fmt::Debug;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vae_core::ImageShape;
use vae_models::{
    Architecture, ArchitectureError, ConditionConfig, ConvVaeConfig, GaussianScale, Likelihood,
    MlpVaeConfig, TrainableDecoder, TrainableEncoder, Vae,
};

/// A configuration that builds a VAE: the `[model]` table of a run's `config.toml`.
///
/// Implement it for your own model's configuration (usually a `#[derive(Config)]` struct) and
/// the run machinery of this crate — [`crate::train_run`], [`crate::evaluate_run`],
/// [`crate::sample_run`], and the `vae-cli` command line — works for your model exactly as
/// for the built-in [`Architecture`]s: run directories, resume, evaluation, pictures.
///
/// The model is handed to a [`ModelVisitor`] rather than returned, so that one specification
/// may build models of different types (an enum of architectures does).
pub trait ModelSpec: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// Checks, without allocating, that the model can be built and consumes examples of
    /// `shape` (D = C·H·W values each).
    fn validate(&self, shape: ImageShape) -> Result<(), ArchitectureError>;

    /// The decoder's observation model, when it is one of the built-in ones: it decides how
    /// bits per dimension are reported. `None` (the default) reports none.
    fn likelihood(&self) -> Option<Likelihood> {
        None
    }

    /// What the model is conditioned on, when it is one of the built-in conditions (the run
    /// machinery then gives it each example's class label one-hot, or its named attributes as
    /// 0/1); `None` (the default): unconditional.
    fn condition(&self) -> Option<ConditionConfig> {
        None
    }

    /// Builds the model, freshly initialised, on `device` and hands it to `visitor`.
    fn build<B: AutodiffBackend, V: ModelVisitor<B>>(
        &self,
        device: &B::Device,
        visitor: V,
    ) -> Result<V::Output, ArchitectureError>;

    /// The shape of the images the model produces, when the configuration knows it (used to
    /// draw samples of runs that did not record their data's shape); `None` by default.
    fn image_shape(&self) -> Option<ImageShape> {
        None
    }

    /// The model to use for `dataset` (examples of `shape`) when the configuration gives none;
    /// `None` (the default): the configuration must give the whole model.
    fn preset(dataset: &str, shape: ImageShape) -> Option<Self> {
        let _ = (dataset, shape);
        None
    }
}

/// What to do with the model a [`ModelSpec`] builds: a generic function over the encoder and
/// decoder types.
pub trait ModelVisitor<B: AutodiffBackend> {
    /// The result.
    type Output;

    /// Called once with the freshly built model.
    fn visit<E: TrainableEncoder<B>, D: TrainableDecoder<B>>(
        self,
        model: Vae<B, E, D>,
    ) -> Self::Output;
}

impl ModelSpec for Architecture {
    fn validate(&self, shape: ImageShape) -> Result<(), ArchitectureError> {
        Architecture::validate(self, Some(shape.num_values()))?;
        match self {
            Self::Conv(c) if c.image != shape => Err(ArchitectureError::Setting {
                key: "image".into(),
                expected: format!("must be the data's shape {shape}, got {}", c.image),
            }),
            _ => Ok(()),
        }
    }

    fn image_shape(&self) -> Option<ImageShape> {
        match self {
            Self::Mlp(c) => ImageShape::square_grey(c.input_dim),
            Self::Conv(c) => Some(c.image),
        }
    }

    fn likelihood(&self) -> Option<Likelihood> {
        Some(match self {
            Self::Mlp(c) => c.likelihood,
            Self::Conv(c) => c.likelihood,
        })
    }

    fn condition(&self) -> Option<ConditionConfig> {
        match self {
            Self::Mlp(c) => c.condition.clone(),
            Self::Conv(c) => c.condition.clone(),
        }
    }

    fn build<B: AutodiffBackend, V: ModelVisitor<B>>(
        &self,
        device: &B::Device,
        visitor: V,
    ) -> Result<V::Output, ArchitectureError> {
        Ok(match self {
            Self::Mlp(c) => visitor.visit(c.try_init::<B>(device)?),
            Self::Conv(c) => visitor.visit(c.try_init::<B>(device)?),
        })
    }

    /// Kingma & Welling's MLP (D-400-20, Bernoulli) for grey-scale images; for square RGB
    /// images with a power-of-two side, the CelebA convolutional VAE (channels 32, 64, …, up to
    /// five blocks while the side stays ≥ 2; latent 128; learned Gaussian σ); the MLP for any
    /// other shape.
    fn preset(_dataset: &str, shape: ImageShape) -> Option<Self> {
        let mlp = Self::Mlp(MlpVaeConfig::kingma_welling(shape.num_values()));
        if shape.channels == 1 {
            return Some(mlp);
        }
        let side = shape.height;
        let blocks = (side.max(1).ilog2() as usize).saturating_sub(1).min(5);
        let celeba = ConvVaeConfig::celeba_64(Likelihood::Gaussian {
            scale: GaussianScale::LearnedShared,
        });
        let conv = ConvVaeConfig::new(shape, celeba.channels[..blocks].to_vec(), celeba.latent_dim)
            .with_likelihood(celeba.likelihood);
        Some(if conv.validate().is_ok() {
            Self::Conv(conv)
        } else {
            mlp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fit_the_data() {
        let celeba = Architecture::preset("celeba", ImageShape::new(3, 64, 64)).unwrap();
        let Architecture::Conv(c) = &celeba else {
            panic!("conv expected for 64×64 RGB")
        };
        assert_eq!(c.channels, vec![32, 64, 128, 256, 512]);
        for shape in [
            ImageShape::new(1, 28, 28),
            ImageShape::new(3, 16, 16),
            ImageShape::new(3, 64, 64),
            ImageShape::new(3, 40, 30),
        ] {
            let preset = Architecture::preset("any", shape).unwrap();
            ModelSpec::validate(&preset, shape)
                .unwrap_or_else(|e| panic!("preset for {shape} does not fit: {e}"));
        }
    }
}
