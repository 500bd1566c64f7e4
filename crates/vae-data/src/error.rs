//! Errors: every one names the file (or URL) and says what is wrong with it.

use std::path::PathBuf;

/// Loading, locating or downloading a dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An IDX (MNIST-format) file is malformed.
    #[error("{path}: {problem}")]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        problem: String,
    },
    /// An image could not be decoded or is unusable.
    #[error("{path}: {problem}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong, in words.
        problem: String,
    },
    /// A text metadata file (partition, attributes) is malformed.
    #[error("{path}:{line}: {problem}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, in words.
        problem: String,
    },
    /// Two files that must agree (images and labels, cache and source) do not.
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file found to disagree.
        path: PathBuf,
        /// What disagrees.
        problem: String,
    },
    /// The dataset is not on disk and cannot be downloaded automatically.
    #[error("{dataset} not found in {dir}: missing {missing}.\n{help}", missing = .missing.join(", "))]
    NotFound {
        /// Dataset name.
        dataset: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The files that are missing.
        missing: Vec<String>,
        /// What to do about it.
        help: String,
    },
    /// Every mirror of a file failed.
    #[error("downloading {file} into {dir} failed:\n  {}", .attempts.join("\n  "))]
    Download {
        /// The file being fetched.
        file: String,
        /// Where it was to go.
        dir: PathBuf,
        /// One line per URL tried: the URL and what went wrong.
        attempts: Vec<String>,
    },
    /// A file's SHA-256 is not the one on record.
    #[error("{path}: SHA-256 is {actual}, expected {expected} (corrupt or incomplete download)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The registered checksum.
        expected: String,
        /// The checksum of the file on disk.
        actual: String,
    },
    /// A file is where a download or extraction would put one, but is not the registered
    /// file (or not a file at all). It is left as it is: this crate never deletes or replaces
    /// what it did not create.
    #[error(
        "{path}: {problem}; left untouched. Move or delete it to have a fresh copy downloaded, or give a directory that holds the right files"
    )]
    NotReplaced {
        /// The file found in the way.
        path: PathBuf,
        /// What is wrong with it, in words.
        problem: String,
    },
    /// A symbolic link in a data directory points at nothing.
    #[error("{path} is a symbolic link to {target}, which does not exist; fix or remove the link")]
    DanglingLink {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A dataset name this crate does not know.
    #[error("unknown dataset '{name}'; known: {}", .known.join(", "))]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// A dataset that is a folder of the user's own files was asked for without one.
    #[error("{dataset} needs a data directory: a folder of .jpg/.png images")]
    NeedsDirectory {
        /// Dataset name.
        dataset: String,
    },
    /// A folder holds no usable images.
    #[error("{dir}: no training images (.jpg, .jpeg, .png) found")]
    NoImages {
        /// The folder.
        dir: PathBuf,
    },
    /// A data setting is out of range; `key` is its name in the data options.
    #[error("data.{key} = {value}: {expected}")]
    Setting {
        /// The option's name (`size`, `channels`, `valid_size`, …).
        key: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// An example could not be read from a dataset.
    #[error("example {index} could not be read")]
    Unreadable {
        /// Its index in the dataset.
        index: usize,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
