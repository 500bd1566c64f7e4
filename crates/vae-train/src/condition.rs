//! A conditional model's condition from the data: which [`ConditionSource`] gives it (one
//! place for the whole crate), and the check that every example of a run's splits has it.

use burn::data::dataset::Dataset;
use vae_data::{ConditionSource, DataSplits, ImageItem, check_conditions};
use vae_models::ConditionConfig;

use crate::error::TrainError;

/// Where the data gives a model's condition: a class condition from the items' labels
/// (one-hot), an attribute condition from their attributes of those names (0/1).
pub(crate) fn condition_source(condition: &ConditionConfig) -> ConditionSource {
    match condition {
        ConditionConfig::Class { classes } => ConditionSource::Classes(*classes),
        ConditionConfig::Attributes { names } => ConditionSource::Attributes(names.clone()),
    }
}

/// Checks that every example of each named split can give `source`'s condition; the error
/// names the split and its first example that cannot.
pub(crate) fn check_splits(
    source: &ConditionSource,
    splits: &[(&'static str, &dyn Dataset<ImageItem>)],
) -> Result<(), TrainError> {
    splits.iter().try_for_each(|&(split, examples)| {
        check_conditions(examples, source).map_err(|error| TrainError::Conditions { split, error })
    })
}

/// [`check_splits`] for a run's train, valid and test splits and a model conditioned on
/// `condition`.
pub(crate) fn check_run_data(
    condition: &ConditionConfig,
    data: &DataSplits,
) -> Result<(), TrainError> {
    check_splits(
        &condition_source(condition),
        &[
            ("train", data.train.as_ref()),
            ("valid", data.valid.as_ref()),
            ("test", data.test.as_ref()),
        ],
    )
}
