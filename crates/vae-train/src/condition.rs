//! A conditional model's condition from the data: which [`ConditionSource`] gives it (one
//! place for the whole crate), and the check that every example of a run's splits has it.

use vae_data::{ConditionSource, DataSplits, check_conditions};
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

/// Checks that every split of `data` (train, valid, test) can condition a model conditioned on
/// `condition`; the error names the split and the first example that cannot.
pub(crate) fn check_splits(
    condition: &ConditionConfig,
    data: &DataSplits,
) -> Result<(), TrainError> {
    let source = condition_source(condition);
    [
        ("train", &data.train),
        ("valid", &data.valid),
        ("test", &data.test),
    ]
    .into_iter()
    .try_for_each(|(split, examples)| {
        check_conditions(examples.as_ref(), &source)
            .map_err(|error| TrainError::Conditions { split, error })
    })
}
