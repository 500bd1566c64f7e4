//! Errors of training, evaluation and artifact writing.

use std::path::PathBuf;

/// A run could not start, continue or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is invalid; the message names the key.
    #[error("{0}")]
    Config(String),
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] vae_data::DataError),
    /// The model does not fit the data or cannot be built.
    #[error(transparent)]
    Architecture(#[from] vae_models::ArchitectureError),
    /// Weights could not be saved or loaded.
    #[error(transparent)]
    Persist(#[from] vae_models::PersistError),
    /// A file of the run could not be written or read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `--resume` found nothing to resume.
    #[error("{dir}: nothing to resume: {why}")]
    NothingToResume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        why: String,
    },
}

impl TrainError {
    /// A [`TrainError::File`] from any displayable error.
    pub fn file(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            message: error.to_string(),
        }
    }
}
