//! Conditioning (the conditional VAE of Sohn et al. 2015) as a configurable part: side
//! information c — a class label, binary attributes — given to the encoder and the decoder.
//!
//! The model is q(z|x, c), p(x|z, c) and the prior p(z), so the ELBO bounds log p(x|c):
//! log p(x|c) = ELBO(x, c) + KL(q(z|x, c) ‖ p(z|x, c)). A condition is a float vector per
//! example, `[N, C]`, concatenated to what each network receives (see [`Conditioned`]).

use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::architecture::ArchitectureError;
use crate::prior::PriorConfig;

/// What a VAE is conditioned on: `model.condition` in a run's configuration, e.g.
/// `condition = { kind = "class", classes = 10 }`. Absent: an unconditional VAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConditionConfig {
    /// The example's class label k ∈ {0, …, classes − 1}, one-hot: c = e_k ∈ {0, 1}^classes.
    Class {
        /// The number of classes, ≥ 2 (10 for the MNIST family).
        classes: usize,
    },
}

impl ConditionConfig {
    /// C, the number of condition values per example.
    pub fn width(&self) -> usize {
        match *self {
            Self::Class { classes } => classes,
        }
    }

    /// Checks the settings; the error names the key under `model`.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        match *self {
            Self::Class { classes } if classes < 2 => Err(ArchitectureError::Setting {
                key: "condition.classes".into(),
                expected: format!("must be ≥ 2, got {classes}"),
            }),
            Self::Class { .. } => Ok(()),
        }
    }
}

/// Checks that a model with `condition` can have `prior`: the VampPrior's pseudo-inputs are
/// data without a condition, so it is refused (by key) with one.
pub(crate) fn validate_condition(
    condition: Option<ConditionConfig>,
    prior: Option<PriorConfig>,
) -> Result<(), ArchitectureError> {
    let Some(condition) = condition else {
        return Ok(());
    };
    condition.validate()?;
    if let Some(PriorConfig::Vamp { .. }) = prior {
        return Err(ArchitectureError::Setting {
            key: "prior".into(),
            expected: "the VampPrior encodes pseudo-inputs that have no condition: with model.condition use kind = \"standard-normal\" or \"mixture\"".into(),
        });
    }
    Ok(())
}

/// A tensor with the condition of each of its examples: what the [`Vae`](crate::Vae) methods
/// take. Data is `Conditioned<B, 2>` (`x` `[N, D]`), latents `Conditioned<B, 3>` (`z`
/// `[S, N, L]`); the condition is `[N, C]` in both.
///
/// An unconditional model takes a plain tensor (`From<Tensor>` gives no condition); a
/// conditional one panics without its condition, like a tensor of the wrong shape.
#[derive(Debug, Clone)]
pub struct Conditioned<B: Backend, const D: usize> {
    /// The data or latents.
    pub tensor: Tensor<B, D>,
    /// The condition c per example, `[N, C]`; `None` for an unconditional model.
    pub condition: Option<Tensor<B, 2>>,
}

impl<B: Backend, const D: usize> Conditioned<B, D> {
    /// `tensor` with the condition `condition` (`None`: none).
    pub fn new(tensor: Tensor<B, D>, condition: Option<Tensor<B, 2>>) -> Self {
        Self { tensor, condition }
    }

    /// `tensor` given `condition`.
    pub fn given(tensor: Tensor<B, D>, condition: Tensor<B, 2>) -> Self {
        Self::new(tensor, Some(condition))
    }
}

impl<B: Backend, const D: usize> From<Tensor<B, D>> for Conditioned<B, D> {
    fn from(tensor: Tensor<B, D>) -> Self {
        Self::new(tensor, None)
    }
}

/// One-hot rows `[N, classes]` for class labels: the condition of a class-conditional VAE
/// (e.g. to sample class 3: `one_hot_classes(&[3; 8], 10, &device)`).
///
/// # Panics
/// If a label is ≥ `classes`.
pub fn one_hot_classes<B: Backend>(
    labels: &[usize],
    classes: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let values = vae_core::one_hot(labels.iter().copied(), classes);
    Tensor::from_data(TensorData::new(values, [labels.len(), classes]), device)
}
