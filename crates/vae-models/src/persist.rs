//! Saving and loading weights: burn's recorders and safetensors.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, SafetensorsStore};

/// Saving or loading weights failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A burn recorder failed.
    #[error("{path}: {message}")]
    Recorder {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A safetensors file could not be written or read, or does not fit the model.
    #[error("{path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Saves `module` with burn's named MessagePack recorder in full precision (`<path>.mpk`).
pub fn save_record<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<(), PersistError> {
    module
        .save_file(
            path.to_path_buf(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
        )
        .map_err(|e| PersistError::Recorder {
            path: path.with_extension("mpk"),
            message: e.to_string(),
        })
}

/// Loads weights saved by [`save_record`] into `module` (built from the same configuration).
pub fn load_record<B: Backend, M: Module<B>>(
    module: M,
    path: &Path,
    device: &B::Device,
) -> Result<M, PersistError> {
    module
        .load_file(
            path.to_path_buf(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| PersistError::Recorder {
            path: path.with_extension("mpk"),
            message: e.to_string(),
        })
}

/// Saves every parameter and buffer of `module` to a safetensors file at `path`, named by its
/// module path (`encoder.hidden.0.weight`, …). Linear weights are stored as burn keeps them,
/// `[in, out]` — the transpose of PyTorch's `nn.Linear.weight`.
pub fn save_safetensors<B: Backend, M: Module<B>>(
    module: &M,
    path: &Path,
) -> Result<(), PersistError> {
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| PersistError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The safetensors file [`save_safetensors`] writes, as bytes (to write it atomically, or
/// elsewhere than a file).
pub fn safetensors_bytes<B: Backend, M: Module<B>>(module: &M) -> Result<Vec<u8>, PersistError> {
    let failed = |e: &dyn std::fmt::Display| PersistError::Safetensors {
        path: "<memory>".into(),
        message: e.to_string(),
    };
    let mut store = SafetensorsStore::from_bytes(None);
    module.save_into(&mut store).map_err(|e| failed(&e))?;
    store.get_bytes().map_err(|e| failed(&e))
}

/// Loads a safetensors file written by [`save_safetensors`] into `module`; every tensor of the
/// module must be present with the right shape.
pub fn load_safetensors<B: Backend, M: Module<B>>(
    mut module: M,
    path: &Path,
) -> Result<M, PersistError> {
    let fail = |message: String| PersistError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let mut store = SafetensorsStore::from_file(path).validate(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| fail(e.to_string()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(fail(format!(
            "does not fit the model: missing {:?}, errors {:?}",
            result.missing, result.errors
        )));
    }
    Ok(module)
}
