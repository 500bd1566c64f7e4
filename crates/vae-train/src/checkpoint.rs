//! Which checkpoint is complete: a small marker written atomically after the checkpoint files
//! have been written *and read back*, so a crash while saving never leaves a resume pointing
//! at a half-written file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// File name of the marker, beside burn's `{model,optim,scheduler}-N.mpk` files.
pub const MARKER: &str = "latest.json";

/// The last complete checkpoint of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMarker {
    /// The epoch the checkpoint holds (`checkpoint/{model,optim,scheduler}-<epoch>.mpk`).
    pub epoch: usize,
    /// False when the run was stopped (Ctrl-C) during epoch `epoch + 1`: the files then hold
    /// the state at that moment, and resuming redoes epoch `epoch + 1` from it.
    pub complete: bool,
    /// Optimizer steps taken up to this checkpoint (KL warm-up and LR schedules continue from
    /// here).
    pub optimizer_steps: u64,
}

/// `<run>/checkpoints`, burn-train's directory for the run (it writes `checkpoint/` inside).
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| TrainError::file(path, e))
}

impl CheckpointMarker {
    /// Records this checkpoint as the latest complete one.
    pub fn write(&self, checkpoints: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(self).expect("marker serialises");
        write_atomically(&checkpoints.join(MARKER), &json)
    }

    /// The latest complete checkpoint, if any.
    pub fn read(checkpoints: &Path) -> Result<Option<Self>, TrainError> {
        let path = checkpoints.join(MARKER);
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrainError::file(&path, e)),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TrainError::file(&path, format!("corrupt checkpoint marker: {e}"))),
        }
    }
}
