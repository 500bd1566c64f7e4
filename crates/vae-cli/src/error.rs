//! Errors of the command line: the library's, and what the command line itself checks.

use std::path::PathBuf;

/// A command failed. Messages may name command-line flags: this is the command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Training, evaluation or a run directory failed.
    #[error(transparent)]
    Train(#[from] vae_train::TrainError),
    /// The data could not be found or loaded.
    #[error(transparent)]
    Data(#[from] vae_data::DataError),
    /// A configuration layer could not be read or does not fit.
    #[error("{source_name}: {message}")]
    Config {
        /// The layer or key (`--config FILE`, `--set`, `configuration key model.latent_dim`).
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration key that no setting has.
    #[error("unknown configuration key `{key}`{}", if .others.is_empty() { String::new() } else { format!(" (and {})", .others.join(", ")) })]
    UnknownKey {
        /// The first unknown key.
        key: String,
        /// Further unknown keys.
        others: Vec<String>,
    },
    /// A flag's value was refused by the library (a run directory that cannot be used).
    #[error("{flag}: {source}{hint}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        source: Box<vae_train::TrainError>,
        /// What to do, when the command line knows.
        hint: &'static str,
    },
    /// A flag value or combination that cannot work.
    #[error("{flag}: {problem}")]
    Usage {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The model specification has no preset for this dataset and none was configured.
    #[error(
        "no model is configured for {dataset} and {spec} has no preset for it: give one in the [model] table of --config FILE"
    )]
    NoModel {
        /// The dataset.
        dataset: String,
        /// The model specification's type name.
        spec: &'static str,
    },
    /// The requested backend is not available.
    #[error("--backend {backend}: {why}")]
    Backend {
        /// The backend asked for.
        backend: &'static str,
        /// Why it cannot be used.
        why: String,
    },
    /// A file or directory could not be written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A stop signal (Ctrl-C, SIGTERM) stopped training; the state is checkpointed. The
    /// process exits with 128 + the signal's number (130, 143), as a shell reports a
    /// signal, so `train && eval` does not carry on.
    #[error(
        "stopped by {signal_name} during epoch {epoch}; the state is checkpointed: `--resume --out {}` redoes epoch {epoch} from it",
        .out.display()
    )]
    Interrupted {
        /// The signal's number.
        signal: i32,
        /// Its name for people.
        signal_name: &'static str,
        /// The epoch it interrupted.
        epoch: usize,
        /// The run directory.
        out: PathBuf,
    },
    /// Training stopped before its end in a way that is a failure (divergence, data or
    /// checkpoint errors).
    #[error("training {reason}. {advice}")]
    Stopped {
        /// Why it stopped.
        reason: Box<vae_train::strategy::StopReason>,
        /// What the last good checkpoint is and what to do.
        advice: String,
    },
}

impl CliError {
    /// The process exit status for this error: 128 + the signal for a run stopped by one,
    /// else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Interrupted { signal, .. } => 128 + signal,
            _ => 1,
        }
    }

    pub(crate) fn config(source_name: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Config {
            source_name: source_name.into(),
            message: message.to_string(),
        }
    }
}
