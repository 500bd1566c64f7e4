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
/// `condition = { kind = "class", classes = 10 }` or
/// `condition = { kind = "attributes", names = ["Smiling", "Eyeglasses"] }`. Absent: an
/// unconditional VAE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConditionConfig {
    /// The example's class label k ∈ {0, …, classes − 1}, one-hot: c = e_k ∈ {0, 1}^classes.
    Class {
        /// The number of classes, ≥ 2 (10 for the MNIST family).
        classes: usize,
    },
    /// Named binary attributes of the example (CelebA's `Smiling`, `Male`, …): c_j = 1 if it
    /// has attribute `names[j]`, else 0; c ∈ {0, 1}^len(names).
    Attributes {
        /// The attributes, in the order of the condition's values; at least one, no repeats.
        names: Vec<String>,
    },
}

impl ConditionConfig {
    /// C, the number of condition values per example.
    pub fn width(&self) -> usize {
        match self {
            Self::Class { classes } => *classes,
            Self::Attributes { names } => names.len(),
        }
    }

    /// Checks the settings; the error names the key under `model`.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        let invalid = |key: &str, expected: String| {
            Err(ArchitectureError::Setting {
                key: key.into(),
                expected,
            })
        };
        match self {
            Self::Class { classes } if *classes < 2 => {
                invalid("condition.classes", format!("must be ≥ 2, got {classes}"))
            }
            Self::Class { .. } => Ok(()),
            Self::Attributes { names } if names.is_empty() => invalid(
                "condition.names",
                "must name at least one attribute (e.g. [\"Smiling\"])".into(),
            ),
            Self::Attributes { names } => {
                for (j, name) in names.iter().enumerate() {
                    if name.is_empty()
                        || name
                            .contains(|c: char| matches!(c, ',' | '/' | '\\') || c.is_whitespace())
                    {
                        return invalid(
                            "condition.names",
                            format!(
                                "'{name}' is not an attribute name (no spaces, commas or slashes)"
                            ),
                        );
                    }
                    if names[..j].contains(name) {
                        return invalid("condition.names", format!("'{name}' is named twice"));
                    }
                }
                Ok(())
            }
        }
    }

    /// The condition vector c (C values) for `value`: e_k for class k; for attributes, 1 for
    /// each attribute named in `value` and 0 for the others.
    pub fn vector(&self, value: &ConditionValue) -> Result<Vec<f32>, ConditionValueError> {
        let refuse = |problem: String| ConditionValueError {
            value: value.clone(),
            problem,
        };
        match (self, value) {
            (Self::Class { classes }, ConditionValue::Class(k)) if k < classes => {
                Ok(vae_core::one_hot([*k].into_iter(), *classes))
            }
            (Self::Class { classes }, ConditionValue::Class(_)) => Err(refuse(format!(
                "the model has {classes} classes: 0 to {}",
                classes.saturating_sub(1)
            ))),
            (Self::Attributes { names }, ConditionValue::Attributes(on)) => {
                if let Some(unknown) = on.iter().find(|a| !names.contains(a)) {
                    return Err(refuse(format!(
                        "'{unknown}' is not one of the model's attributes: {}",
                        names.join(", ")
                    )));
                }
                Ok(names
                    .iter()
                    .map(|name| if on.contains(name) { 1.0 } else { 0.0 })
                    .collect())
            }
            (Self::Class { classes }, ConditionValue::Attributes(_)) => Err(refuse(format!(
                "the model is conditioned on a class (0 to {}), not on attributes",
                classes.saturating_sub(1)
            ))),
            (Self::Attributes { names }, ConditionValue::Class(_)) => Err(refuse(format!(
                "the model is conditioned on the attributes {}, not on a class",
                names.join(", ")
            ))),
        }
    }

    /// The conditions a condition-by-sample picture shows, one per row, each with its label:
    /// every class (`class k`: e_k); or no attribute (`none`: 0), then each attribute alone
    /// (its name: e_j).
    pub fn picture_rows(&self) -> Vec<(String, Vec<f32>)> {
        let width = self.width();
        let unit = |j: usize| vae_core::one_hot([j].into_iter(), width);
        match self {
            Self::Class { classes } => (0..*classes)
                .map(|k| (format!("class {k}"), unit(k)))
                .collect(),
            Self::Attributes { names } => std::iter::once(("none".to_string(), vec![0.0; width]))
                .chain(names.iter().enumerate().map(|(j, n)| (n.clone(), unit(j))))
                .collect(),
        }
    }
}

/// The condition vector for `value` of a model conditioned on `condition`
/// ([`ConditionConfig::vector`]); for an unconditional model (`None`), the error says so.
pub fn condition_vector(
    condition: Option<&ConditionConfig>,
    value: &ConditionValue,
) -> Result<Vec<f32>, ConditionValueError> {
    match condition {
        Some(condition) => condition.vector(value),
        None => Err(ConditionValueError {
            value: value.clone(),
            problem: "the model is not conditional (it has no model.condition)".into(),
        }),
    }
}

/// One condition, as a user names it: a class, or the attributes that are present (the others
/// absent). [`ConditionConfig::vector`] turns it into the model's condition values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionValue {
    /// Class k.
    Class(usize),
    /// These attributes present, every other attribute of the model absent.
    Attributes(Vec<String>),
}

impl std::fmt::Display for ConditionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Class(k) => write!(f, "class {k}"),
            Self::Attributes(names) if names.is_empty() => write!(f, "no attributes"),
            Self::Attributes(names) => write!(f, "attributes {}", names.join(",")),
        }
    }
}

/// A [`ConditionValue`] the model cannot take (a class out of range, an attribute it was not
/// conditioned on, a condition for an unconditional model).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value}: {problem}")]
pub struct ConditionValueError {
    /// The value given.
    pub value: ConditionValue,
    /// Why the model cannot take it.
    pub problem: String,
}

/// Checks that a model with `condition` can have `prior`: the VampPrior's pseudo-inputs are
/// data without a condition, so it is refused (by key) with one.
pub(crate) fn validate_condition(
    condition: Option<&ConditionConfig>,
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
