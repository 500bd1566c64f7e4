//! What a conditional model is given besides the image: each item's condition, made from its
//! class label or its named attributes, and the check that a dataset has them.

use burn::data::dataset::Dataset;
use rayon::prelude::*;

use crate::batcher::ImageItem;

/// What an item's condition c is made from (the batcher's side of a conditional VAE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionSource {
    /// The class label k, one-hot: c = e_k ∈ {0, 1}^classes.
    Classes(usize),
    /// These named attributes, in this order: c_j = 1 if the item has attribute j, else 0.
    Attributes(Vec<String>),
}

impl ConditionSource {
    /// C, the condition values per item.
    pub fn width(&self) -> usize {
        match self {
            Self::Classes(classes) => *classes,
            Self::Attributes(names) => names.len(),
        }
    }

    /// Checks that `item` (number `index` in its dataset) has what this source reads.
    pub fn check(&self, index: usize, item: &ImageItem) -> Result<(), ConditionError> {
        self.row(index, item).map(|_| ())
    }

    /// The condition of `item` (number `index` in its dataset), C values.
    fn row(&self, index: usize, item: &ImageItem) -> Result<Vec<f32>, ConditionError> {
        match self {
            Self::Classes(classes) => match item.label {
                None => Err(ConditionError::MissingLabel { index }),
                Some(label) if label as usize >= *classes => Err(ConditionError::LabelOutOfRange {
                    index,
                    label,
                    classes: *classes,
                }),
                Some(label) => Ok(vae_core::one_hot([label as usize].into_iter(), *classes)),
            },
            Self::Attributes(names) => {
                let attributes = item
                    .attributes
                    .as_ref()
                    .ok_or(ConditionError::MissingAttributes { index })?;
                names
                    .iter()
                    .map(|name| match attributes.get(name) {
                        Some(present) => Ok(if present { 1.0 } else { 0.0 }),
                        None => Err(ConditionError::UnknownAttribute {
                            index,
                            name: name.clone(),
                            known: attributes.names.to_vec(),
                        }),
                    })
                    .collect()
            }
        }
    }

    /// The conditions of `items` as host floats, `[N · C]`.
    ///
    /// # Panics
    /// If an item lacks what this source reads ([`check_conditions`] finds that first).
    pub fn values(&self, items: &[ImageItem]) -> Vec<f32> {
        let mut values = Vec::with_capacity(items.len() * self.width());
        for (index, item) in items.iter().enumerate() {
            match self.row(index, item) {
                Ok(row) => values.extend(row),
                Err(error) => panic!("ImageBatcher: item {index} of the batch: {error}"),
            }
        }
        values
    }
}

/// Checks that every item of `dataset` has what `source` makes its condition from (a class
/// label below the number of classes, or the named attributes); the error names the first item
/// that does not. Reads every item once, on all cores (an image dataset decodes or reads each
/// image: the check costs about one epoch of data loading).
pub fn check_conditions<D: Dataset<ImageItem> + ?Sized>(
    dataset: &D,
    source: &ConditionSource,
) -> Result<(), ConditionError> {
    let first_problem = (0..dataset.len()).into_par_iter().find_map_first(|index| {
        let item = dataset.get(index)?;
        source.check(index, &item).err()
    });
    first_problem.map_or(Ok(()), Err)
}

/// Why a dataset cannot condition a conditional VAE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// An example without a class label.
    #[error(
        "example {index} has no class label (an MNIST-family dataset takes them from its …-labels-idx1-ubyte files; CelebA and image folders have none)"
    )]
    MissingLabel {
        /// Its index in the split.
        index: usize,
    },
    /// A label the model has no class for.
    #[error("example {index} has label {label}, but the model has {classes} classes (0 to {})", classes.saturating_sub(1))]
    LabelOutOfRange {
        /// Its index in the split.
        index: usize,
        /// Its label.
        label: u32,
        /// The model's classes.
        classes: usize,
    },
    /// An example without attributes.
    #[error(
        "example {index} has no attributes (CelebA takes them from list_attr_celeba.txt; MNIST-family datasets and image folders have none)"
    )]
    MissingAttributes {
        /// Its index in the split.
        index: usize,
    },
    /// An attribute the example's dataset does not have.
    #[error("example {index} has no attribute '{name}'; its attributes (CelebA's are the header of list_attr_celeba.txt) are: {}", .known.join(", "))]
    UnknownAttribute {
        /// Its index in the split.
        index: usize,
        /// The attribute asked for.
        name: String,
        /// The attributes it has.
        known: Vec<String>,
    },
}
