//! Errors of training, evaluation and artifact writing.

use std::path::PathBuf;

/// A run could not start, continue or finish. Every variant names what it is about: the
/// setting (by its key in `config.toml`), the file, or the run directory.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range.
    #[error("{key} = {value}: {expected}")]
    Setting {
        /// The key, as in `config.toml` (`training.batch_size`, …).
        key: String,
        /// The value given.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// Sampling was asked for zero samples.
    #[error("the number of samples must be ≥ 1")]
    NoSamples,
    /// Decoder outputs that cannot be drawn as an image of the run's shape.
    #[error(
        "samples of {values} values cannot be drawn: the run records no image shape of that size"
    )]
    NotAnImage {
        /// Values per sample.
        values: usize,
    },
    /// Examples whose size is not what the model consumes.
    #[error("the model consumes {expected} values per example but the {split} data has {actual}")]
    DataSize {
        /// The model's D.
        expected: usize,
        /// The data's.
        actual: usize,
        /// Which split.
        split: &'static str,
    },
    /// A conditional model's batcher gives conditions of another width (or none).
    #[error(
        "the model is conditioned on {expected} values per example but the batcher gives the {split} data {actual}"
    )]
    ConditionSize {
        /// The model's condition width C (0: unconditional).
        expected: usize,
        /// What the batcher gives.
        actual: usize,
        /// Which split.
        split: &'static str,
    },
    /// A conditional model on data without what its condition is made from (class labels,
    /// attributes).
    #[error("model.condition: the {split} data cannot condition the model: {error}")]
    Conditions {
        /// Which split.
        split: &'static str,
        /// What is wrong.
        error: vae_data::ConditionError,
    },
    /// A condition to sample under that the model cannot take (a class it does not have, an
    /// attribute it was not conditioned on, any condition for an unconditional model).
    #[error(transparent)]
    SampleCondition(#[from] vae_models::ConditionValueError),
    /// `Trainer::fit` was called before `data` or `data_with`.
    #[error("no training data was given")]
    NoData,
    /// A split that must hold examples is empty.
    #[error("the {split} split has no examples")]
    EmptySplit {
        /// `train`, `valid` or `test`.
        split: &'static str,
    },
    /// The training objective (β, warm-up, free bits) is invalid.
    #[error("training.objective: {0}")]
    Objective(#[from] vae_core::ObjectiveError),
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] vae_data::DataError),
    /// Data-parallel training could not start or go on (a setting, a lost rank, what rank 0
    /// sent).
    #[error(transparent)]
    DataParallel(#[from] crate::data_parallel::DataParallelError),
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
        /// What went wrong (the operating system's or the parser's words).
        message: String,
    },
    /// A directory that should hold a run does not.
    #[error("{dir}: not a run directory ({missing} is missing)")]
    NotARun {
        /// The directory.
        dir: PathBuf,
        /// The file that marks a run and is absent.
        missing: &'static str,
    },
    /// A new run was asked for in a directory that already holds one.
    #[error(
        "{dir} already holds a run (checkpoint of epoch {epoch}); resume it or choose another directory"
    )]
    RunExists {
        /// The run directory.
        dir: PathBuf,
        /// Its last checkpointed epoch.
        epoch: usize,
    },
    /// A new run was asked for in a directory that holds files that are not a run's.
    #[error(
        "{dir} is not empty and is not a run directory ({found} found); choose an empty or new directory"
    )]
    ForeignDirectory {
        /// The directory.
        dir: PathBuf,
        /// One of the entries found there.
        found: String,
    },
    /// Resuming found no complete checkpoint.
    #[error(
        "{dir}: nothing to resume: no complete checkpoint (checkpoints/checkpoint/latest.json)"
    )]
    NothingToResume {
        /// The run directory.
        dir: PathBuf,
    },
    /// Resuming a run that has already trained to its last epoch.
    #[error(
        "{dir}: already trained to epoch {epoch}; raise training.epochs above {epoch} to continue"
    )]
    AlreadyTrained {
        /// The run directory.
        dir: PathBuf,
        /// The last epoch trained.
        epoch: usize,
    },
    /// No checkpoint of the run can be read: the latest's bad file (the previous one, if
    /// any, was unreadable too).
    #[error("cannot resume: checkpoint file {0}, and no earlier checkpoint is readable")]
    Checkpoint(#[from] crate::checkpoint::CheckpointFileError),
    /// What was asked for would not fit in memory (estimated before allocating).
    #[error("{what} needs about {} of memory but {} is available; {advice}", crate::memory::human(*.needed), crate::memory::human(u128::from(*.available)))]
    Memory {
        /// What needs it.
        what: String,
        /// Estimated bytes.
        needed: u128,
        /// Bytes available.
        available: u64,
        /// Which setting lowers it.
        advice: String,
    },
    /// Another process (or command) is writing the run.
    #[error("{dir} is in use by {}; wait for it to finish or stop it", .pid.map_or("another process".to_string(), |p| format!("process {p}")))]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// The process holding the lock, when it could be read.
        pid: Option<u32>,
    },
    /// Resuming with settings that change what the checkpoints were trained on.
    #[error(
        "cannot resume with changed {}: they change the model or the data of the checkpoints (a resume may change only {}); start a new run instead",
        .keys.join(", "),
        crate::run_dir::RESUMABLE_KEYS.join(", ")
    )]
    ResumeChanges {
        /// The changed keys that a resume may not change.
        keys: Vec<String>,
    },
    /// A run directory holds a run of another dataset than the one asked for.
    #[error("{dir} is a run on {found}, not on {requested}")]
    OtherDataset {
        /// The run directory.
        dir: PathBuf,
        /// The run's dataset.
        found: String,
        /// The dataset asked for.
        requested: String,
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

    /// A [`TrainError::Setting`].
    pub fn setting(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self::Setting {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
