//! Checkpoints that survive any interruption.
//!
//! Each checkpoint gets a new number `N` and its own files,
//! `checkpoints/checkpoint/{model,optim,scheduler}-N.mpk`, so saving never touches the last
//! complete checkpoint. A checkpoint counts only once its files were written to temporary
//! names, fsynced, renamed into place and read back; then `latest.json` (the marker, written
//! the same way) is moved to it, and only after that are older files pruned. The marker keeps
//! the previous checkpoint too, so two are always on disk: resuming falls back to the previous
//! one when the latest cannot be read. A kill, a second Ctrl-C or a power loss at any instant
//! leaves a marker that names complete files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use burn::record::{
    FileRecorder, FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder, RecorderError,
};
use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::fault;

/// File name of the marker, beside the `{model,optim,scheduler}-N.mpk` files.
pub const MARKER: &str = "latest.json";

/// The three files of one checkpoint, by burn-train's names.
const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// One complete checkpoint of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMarker {
    /// The epoch the checkpoint holds: the state after this epoch (or, when not `complete`,
    /// the state at a stop during epoch `epoch + 1`).
    pub epoch: usize,
    /// False when the run was stopped (Ctrl-C, SIGTERM) during epoch `epoch + 1`: the files
    /// then hold the state at that moment, and resuming redoes epoch `epoch + 1` from it.
    pub complete: bool,
    /// Optimizer steps taken up to this checkpoint (KL warm-up and LR schedules continue from
    /// here).
    pub optimizer_steps: u64,
    /// The `N` of its files. Absent in runs written before checkpoints were numbered, whose
    /// files carry the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<usize>,
}

impl CheckpointMarker {
    /// The `N` of the checkpoint's `{model,optim,scheduler}-N.mpk` files.
    pub fn file_number(&self) -> usize {
        self.number.unwrap_or(self.epoch)
    }

    /// The checkpoint's files in `dir`.
    pub fn files(&self, dir: &Path) -> [PathBuf; 3] {
        files(dir, self.file_number())
    }

    /// The latest complete checkpoint in `dir` (`checkpoints/checkpoint/`), if any.
    pub fn read(dir: &Path) -> Result<Option<Self>, TrainError> {
        Ok(CheckpointLog::read(dir)?.map(|log| log.latest))
    }
}

fn files(dir: &Path, number: usize) -> [PathBuf; 3] {
    PARTS.map(|part| dir.join(format!("{part}-{number}.mpk")))
}

/// `latest.json`: the latest complete checkpoint and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointLog {
    /// The checkpoint to resume from.
    #[serde(flatten)]
    pub latest: CheckpointMarker,
    /// The checkpoint before it, kept on disk as a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<CheckpointMarker>,
}

impl CheckpointLog {
    /// Reads `dir/latest.json`; `None` when the run has no checkpoint yet.
    pub fn read(dir: &Path) -> Result<Option<Self>, TrainError> {
        let path = dir.join(MARKER);
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrainError::file(&path, e)),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TrainError::file(&path, format!("corrupt checkpoint marker: {e}"))),
        }
    }

    /// Writes `dir/latest.json` durably (temporary file, fsync, rename, fsync of `dir`).
    pub fn write(&self, dir: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(self).expect("marker serialises");
        write_atomically(&dir.join(MARKER), &json)
    }

    /// The checkpoints to try when resuming, newest first.
    pub fn candidates(&self) -> impl Iterator<Item = CheckpointMarker> {
        std::iter::once(self.latest).chain(self.previous)
    }

    /// The number for the next checkpoint's files: above every number in use.
    fn next_number(log: Option<&Self>) -> usize {
        log.map_or(0, |l| {
            l.candidates().map(|m| m.file_number()).max().unwrap_or(0)
        }) + 1
    }
}

/// `<run>/checkpoints`, burn-train's directory for the run (it writes `checkpoint/` inside).
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// A temporary name beside `path`, unique per process and call, so concurrent writers never
/// share one.
fn temporary_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Whether a file name is one of [`temporary_name`]'s: left only by a write that a crash
/// interrupted, so it may be removed.
pub(crate) fn is_temporary_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = inner.rsplitn(3, '.');
    let counter = parts.next().is_some_and(|n| n.parse::<usize>().is_ok());
    let pid = parts.next().is_some_and(|n| n.parse::<u32>().is_ok());
    counter && pid && parts.next().is_some_and(|n| !n.is_empty())
}

/// Flushes a directory entry (a rename) to disk. Not every platform can open a directory;
/// there the rename's own durability is what the file system gives.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `path` durably: a temporary file in the same directory, fsync, rename
/// over `path`, fsync of the directory. A crash at any instant leaves either the old file or
/// the new one, never a mix; a failure (e.g. a full disk) removes the temporary file and
/// leaves `path` as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_durably(path, bytes).map_err(|e| TrainError::file(path, e))
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = temporary_name(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if fault::armed(&format!("torn-write:{}", name.unwrap_or_default())) {
            // Half the bytes reach the disk, then the process dies (a crash mid-write).
            file.write_all(&bytes[..bytes.len() / 2])?;
            file.sync_all()?;
            eprintln!(
                "fault injection: aborting in the middle of writing {}",
                path.display()
            );
            std::process::abort();
        }
        fault::injected_write_error(path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What burn-train's checkpoint threads reported for each file.
#[derive(Debug, Default)]
pub struct WriteLog {
    results: Mutex<HashMap<PathBuf, Result<(), String>>>,
    written: Condvar,
}

impl WriteLog {
    fn report(&self, path: PathBuf, result: Result<(), String>) {
        if let Ok(mut results) = self.results.lock() {
            results.insert(path, result);
            self.written.notify_all();
        }
    }

    fn forget(&self, paths: &[PathBuf]) {
        if let Ok(mut results) = self.results.lock() {
            for path in paths {
                results.remove(path);
            }
        }
    }

    /// Waits until every file of `paths` has been written (or failed), at most `timeout`.
    fn wait(&self, paths: &[PathBuf], timeout: Duration) -> Result<(), (PathBuf, String)> {
        let deadline = std::time::Instant::now() + timeout;
        let mut results = self
            .results
            .lock()
            .map_err(|_| (paths[0].clone(), "checkpoint writer failed".to_string()))?;
        loop {
            for path in paths {
                if let Some(Err(message)) = results.get(path) {
                    return Err((path.clone(), message.clone()));
                }
            }
            if let Some(missing) = paths.iter().find(|p| !results.contains_key(*p)) {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Err((missing.clone(), "not written in time".to_string()));
                }
                results = self
                    .written
                    .wait_timeout(results, deadline - now)
                    .map_err(|_| (missing.clone(), "checkpoint writer failed".to_string()))?
                    .0;
            } else {
                return Ok(());
            }
        }
    }
}

/// The file recorder of the checkpoints: burn's named MessagePack format (the bytes
/// `NamedMpkFileRecorder<FullPrecisionSettings>` writes), written durably with
/// [`write_atomically`]'s protocol.
///
/// burn-train saves checkpoints on background threads that panic on an error, so a save
/// never fails here: its result goes to the [`WriteLog`] the training loop waits on, and a
/// failure (a full disk) becomes a clear stop instead of a crash.
#[derive(Debug, Clone, Default)]
pub struct DurableRecorder {
    writes: Arc<WriteLog>,
}

impl DurableRecorder {
    /// A recorder reporting to a fresh log.
    pub fn new() -> Self {
        Self::default()
    }
}

type Mpk = NamedMpkBytesRecorder<FullPrecisionSettings>;

impl<B: Backend> Recorder<B> for DurableRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, mut file: PathBuf) -> Result<(), RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let result = <Mpk as Recorder<B>>::save_item(&Mpk::default(), item, ())
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_durably(&file, &bytes).map_err(|e| e.to_string()));
        self.writes.report(file, result);
        Ok(())
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let mut bytes = std::fs::read(&*file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RecorderError::FileNotFound(e.to_string()),
            _ => RecorderError::Unknown(e.to_string()),
        })?;
        <Mpk as Recorder<B>>::load_item(&Mpk::default(), &mut bytes)
    }
}

impl<B: Backend> FileRecorder<B> for DurableRecorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

/// A checkpoint file that could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", .file.display())]
pub struct CheckpointFileError {
    /// The file.
    pub file: PathBuf,
    /// What went wrong (the operating system's or the decoder's words).
    pub message: String,
}

/// Reads one checkpoint file as record `R`; errors name the file.
pub(crate) fn load_record<B: Backend, R: Record<B>>(
    file: &Path,
    device: &B::Device,
) -> Result<R, CheckpointFileError> {
    Recorder::<B>::load(&DurableRecorder::new(), file.to_path_buf(), device).map_err(|e| {
        CheckpointFileError {
            file: file.to_path_buf(),
            message: match e {
                RecorderError::FileNotFound(_) => "missing".to_string(),
                other => format!("unreadable (truncated or not a checkpoint): {other}"),
            },
        }
    })
}

/// The checkpoint directory of a training loop: numbers, durable writes, the marker and
/// pruning.
#[derive(Debug)]
pub struct Checkpointing {
    dir: PathBuf,
    recorder: DurableRecorder,
    log: Option<CheckpointLog>,
    next_number: usize,
}

impl Checkpointing {
    /// Checkpoints in `dir` (`checkpoints/checkpoint/`), continuing from `resumed` (the
    /// checkpoint actually loaded, which may be the fallback); `log` is the marker as read.
    pub fn new(
        dir: PathBuf,
        log: Option<CheckpointLog>,
        resumed: Option<CheckpointMarker>,
    ) -> Self {
        let next_number = CheckpointLog::next_number(log.as_ref());
        Self {
            dir,
            recorder: DurableRecorder::new(),
            log: resumed.map(|latest| CheckpointLog {
                latest,
                previous: None,
            }),
            next_number,
        }
    }

    /// The recorder to hand to burn-train's file checkpointer.
    pub fn recorder(&self) -> DurableRecorder {
        self.recorder.clone()
    }

    /// The last committed checkpoint.
    pub fn latest(&self) -> Option<CheckpointMarker> {
        self.log.map(|l| l.latest)
    }

    /// The number to give burn-train's checkpointer for the next save.
    pub fn begin(&mut self) -> usize {
        let number = self.next_number;
        self.next_number += 1;
        self.recorder.writes.forget(&files(&self.dir, number));
        number
    }

    /// Waits for the files of checkpoint `number` (saved by burn-train's checkpointer) to be
    /// written.
    pub fn wait_written(&self, number: usize) -> Result<[PathBuf; 3], CheckpointFileError> {
        let paths = files(&self.dir, number);
        self.recorder
            .writes
            .wait(&paths, Duration::from_secs(3600))
            .map_err(|(file, message)| CheckpointFileError { file, message })?;
        fault::point("checkpoint-files-written");
        Ok(paths)
    }

    /// Makes `marker` (whose files are written and verified) the latest checkpoint, then
    /// removes the files of every checkpoint but it and the one before.
    pub fn commit(&mut self, marker: CheckpointMarker) -> Result<(), TrainError> {
        let log = CheckpointLog {
            latest: marker,
            previous: self.log.map(|l| l.latest),
        };
        log.write(&self.dir)?;
        self.log = Some(log);
        fault::point("checkpoint-marker-written");
        self.prune();
        Ok(())
    }

    /// Removes checkpoint files the marker does not name, and temporary files of interrupted
    /// writes. Best effort: a file that cannot be removed only costs space.
    fn prune(&self) {
        let Some(log) = self.log else { return };
        let keep: Vec<PathBuf> = log.candidates().flat_map(|m| m.files(&self.dir)).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = PARTS.iter().any(|part| {
                name.strip_prefix(part)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|rest| rest.strip_suffix(".mpk"))
                    .is_some_and(|n| n.parse::<usize>().is_ok())
            });
            if (ours && !keep.contains(&path)) || is_temporary_name(&name) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_grow_past_every_checkpoint_in_the_log() {
        let marker = |epoch, number| CheckpointMarker {
            epoch,
            complete: true,
            optimizer_steps: 0,
            number,
        };
        assert_eq!(CheckpointLog::next_number(None), 1);
        let old_run = CheckpointLog {
            latest: marker(4, None),
            previous: None,
        };
        assert_eq!(CheckpointLog::next_number(Some(&old_run)), 5);
        let log = CheckpointLog {
            latest: marker(2, Some(3)),
            previous: Some(marker(2, Some(7))),
        };
        assert_eq!(CheckpointLog::next_number(Some(&log)), 8);
    }

    #[test]
    fn a_marker_without_previous_or_number_reads_as_an_old_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MARKER),
            br#"{"epoch": 3, "complete": true, "optimizer_steps": 30}"#,
        )
        .unwrap();
        let log = CheckpointLog::read(dir.path()).unwrap().unwrap();
        assert_eq!(log.latest.file_number(), 3);
        assert_eq!(log.previous, None);
    }

    #[test]
    fn temporary_names_are_recognised() {
        let tmp = temporary_name(Path::new("/run/config.toml"));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(is_temporary_name(name), "{name}");
        for other in [
            ".lock",
            "config.toml",
            ".hidden.tmp",
            ".x.1.tmp",
            "a.1.2.tmp",
        ] {
            assert!(!is_temporary_name(other), "{other}");
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write_atomically(&path, b"old").unwrap();
        // A directory in the way makes the rename fail.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".tmp")),
            "temporaries left: {names:?}"
        );
    }
}
