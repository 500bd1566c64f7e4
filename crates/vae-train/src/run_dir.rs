//! A run directory: what one training run writes, and how it is found again.
//!
//! ```text
//! <run>/
//!   config.toml          the resolved configuration (RunConfig): dataset, data, model, training
//!   run.json             facts that are not configuration (RunInfo): data directory, backend
//!   metrics.json         per-epoch curves, test metrics, throughput (RunMetrics)
//!   model.safetensors    final weights (tensor names = module paths)
//!   checkpoints/         burn-train's directory: checkpoint/{model,optim,scheduler}-N.mpk
//!                        (N numbers checkpoints), checkpoint/latest.json (the last verified
//!                        checkpoint and the one before), history.json
//!   .lock                held by the process writing the run
//!   *.png                reconstructions, samples, interpolation, traversal, curves, manifold
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vae_data::DataOptions;

#[cfg(test)]
use crate::checkpoint::CheckpointLog;
use crate::checkpoint::{CheckpointMarker, is_temporary_name, write_atomically};
use crate::config::TrainingConfig;
use crate::error::TrainError;
use crate::report::RunMetrics;
use crate::spec::ModelSpec;

/// Everything that defines a run; `config.toml` in its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig<S> {
    /// The dataset's name (`fashion-mnist`, `celeba`, `image-folder`, …).
    pub dataset: String,
    /// How the data is split and preprocessed.
    #[serde(default)]
    pub data: DataOptions,
    /// The model.
    pub model: S,
    /// Training settings.
    #[serde(default)]
    pub training: TrainingConfig,
}

impl<S: ModelSpec> RunConfig<S> {
    /// Checks the settings that do not depend on the data; errors name the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.training.validate()?;
        self.data.validate()?;
        Ok(())
    }

    /// The configuration as TOML (what `config.toml` holds).
    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string_pretty(self)
            .map_err(|e| TrainError::file(CONFIG, format!("cannot be written as TOML: {e}")))
    }

    /// The keys whose values differ from `saved` (dotted, as in `config.toml`), in order.
    pub fn changed_keys(&self, saved: &Self) -> Result<Vec<String>, TrainError> {
        let as_value = |config: &Self| {
            toml::Value::try_from(config)
                .map_err(|e| TrainError::file(CONFIG, format!("cannot be written as TOML: {e}")))
        };
        let mut changed = Vec::new();
        diff_keys(&as_value(self)?, &as_value(saved)?, "", &mut changed);
        Ok(changed)
    }

    /// Checks that resuming a run saved with `saved` under this configuration changes only
    /// [`RESUMABLE_KEYS`]: anything else would change the model or the data under its
    /// checkpoints.
    pub fn check_resumable_from(&self, saved: &Self) -> Result<(), TrainError> {
        let refused: Vec<String> = self
            .changed_keys(saved)?
            .into_iter()
            .filter(|key| {
                !RESUMABLE_KEYS
                    .iter()
                    .any(|ok| key == ok || key.starts_with(&format!("{ok}.")))
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(TrainError::ResumeChanges { keys: refused })
        }
    }

    /// Parses `config.toml` text; `path` names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::file(path, e.message()))
    }
}

/// The settings a resumed run may change: how long and how fast it trains, not what it
/// trains or on which data. A key covers the keys below it (`training.lr_schedule` covers
/// `training.lr_schedule.kind`).
pub const RESUMABLE_KEYS: &[&str] = &[
    "training.epochs",
    "training.learning_rate",
    "training.lr_schedule",
    "training.early_stopping_patience",
    "training.num_workers",
    "training.metrics_every_steps",
    "training.optimizer.clip_grad_norm",
    "data.cache",
];

/// Collects the dotted keys where `a` and `b` differ (a table present on one side only
/// counts as all its keys).
fn diff_keys(a: &toml::Value, b: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (ta.get(k), tb.get(k)) {
                    (Some(va), Some(vb)) => diff_keys(va, vb, &key(k), out),
                    _ => out.push(key(k)),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Facts about a run that are not configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The dataset directory used (absolute).
    pub data_dir: PathBuf,
    /// The backend that trained it.
    pub backend: String,
    /// The shape of one example (absent in runs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<vae_core::ImageShape>,
}

const CONFIG: &str = "config.toml";
const INFO: &str = "run.json";
const METRICS: &str = "metrics.json";
const WEIGHTS: &str = "model.safetensors";
const CHECKPOINTS: &str = "checkpoints";
const LOCK: &str = ".lock";

/// The run directory's lock, held while a command writes the run; released on drop (and by
/// the operating system when the process dies, so a killed run never stays locked).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// A run directory (see the module documentation for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A directory for a new run: created if absent; an existing one must be empty or hold
    /// a run that has no checkpoint yet (a run that failed before its first epoch).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let root = path.into();
        std::fs::create_dir_all(&root).map_err(|e| TrainError::file(&root, e))?;
        let run = Self { root };
        if let Some(marker) = CheckpointMarker::read(&run.checkpoint_dir())? {
            return Err(TrainError::RunExists {
                dir: run.root,
                epoch: marker.epoch,
            });
        }
        let is_run = run.info_file().is_file();
        let entries = std::fs::read_dir(&run.root).map_err(|e| TrainError::file(&run.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TrainError::file(&run.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temporary_name(&name) {
                // A crash's leftover (or a live writer's file): ours, removed by the next
                // writer under the run's lock, never here without it.
                continue;
            }
            if !is_run && name != LOCK {
                return Err(TrainError::ForeignDirectory {
                    dir: run.root,
                    found: name,
                });
            }
        }
        Ok(run)
    }

    /// An existing run: its directory must hold `config.toml` and `run.json`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let run = Self { root: path.into() };
        for (file, name) in [(run.config_file(), CONFIG), (run.info_file(), INFO)] {
            if !file.is_file() {
                return Err(TrainError::NotARun {
                    dir: run.root,
                    missing: name,
                });
            }
        }
        Ok(run)
    }

    /// Locks the run for one writer: refuses, naming the process, while another process (or
    /// another command of this one) holds it.
    pub fn lock(&self) -> Result<RunLock, TrainError> {
        use std::io::{Read, Seek, Write};
        let path = self.root.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::file(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message another process shows.
                let pid = std::process::id().to_string();
                let _ = file.set_len(0);
                let _ = file.rewind().and_then(|()| file.write_all(pid.as_bytes()));
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(TrainError::Locked {
                    dir: self.root.clone(),
                    pid: holder.trim().parse().ok(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(TrainError::file(&path, e)),
        }
    }

    /// Removes the temporary files that a crash in the middle of writing one of the run's
    /// files left behind (their names are unique to the writer, so no live write is touched
    /// while the caller holds the run's [lock](Self::lock)).
    pub fn remove_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if is_temporary_name(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the run's final outputs (weights and a test evaluation) were written for
    /// its last checkpointed epoch.
    pub fn is_finished(&self) -> bool {
        let Ok(Some(latest)) = self.last_checkpoint() else {
            return false;
        };
        self.weights_file().is_file()
            && self
                .read_metrics()
                .is_ok_and(|m| m.test.is_some() && m.epochs == latest.epoch)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG)
    }

    /// `run.json`.
    pub fn info_file(&self) -> PathBuf {
        self.root.join(INFO)
    }

    /// `metrics.json`.
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    /// `model.safetensors`, the final weights.
    pub fn weights_file(&self) -> PathBuf {
        self.root.join(WEIGHTS)
    }

    /// `checkpoints/`, burn-train's directory for the run.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS)
    }

    /// `checkpoints/checkpoint/`, where the checkpoint files and `latest.json` are.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoints_dir().join("checkpoint")
    }

    /// The last complete checkpoint, if any.
    pub fn last_checkpoint(&self) -> Result<Option<CheckpointMarker>, TrainError> {
        CheckpointMarker::read(&self.checkpoint_dir())
    }

    /// Reads `config.toml`.
    pub fn read_config<S: ModelSpec>(&self) -> Result<RunConfig<S>, TrainError> {
        let path = self.config_file();
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::file(&path, e))?;
        RunConfig::from_toml(&text, &path)
    }

    /// Writes `config.toml` atomically.
    pub fn write_config<S: ModelSpec>(&self, config: &RunConfig<S>) -> Result<(), TrainError> {
        write_atomically(&self.config_file(), config.to_toml()?.as_bytes())
    }

    /// Reads `run.json`.
    pub fn read_info(&self) -> Result<RunInfo, TrainError> {
        let path = self.info_file();
        let bytes = std::fs::read(&path).map_err(|e| TrainError::file(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| TrainError::file(&path, e))
    }

    /// Writes `run.json` atomically.
    pub fn write_info(&self, info: &RunInfo) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(info).expect("RunInfo serialises");
        write_atomically(&self.info_file(), &json)
    }

    /// Reads `metrics.json`.
    pub fn read_metrics(&self) -> Result<RunMetrics, TrainError> {
        RunMetrics::read(&self.metrics_file())
    }

    /// Writes `metrics.json` atomically.
    pub fn write_metrics(&self, metrics: &RunMetrics) -> Result<(), TrainError> {
        metrics.write(&self.metrics_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_refuses_foreign_files_and_existing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new");
        let run = RunDir::create(&fresh).unwrap();
        assert!(fresh.is_dir());
        assert!(matches!(
            RunDir::open(&fresh),
            Err(TrainError::NotARun {
                missing: "config.toml",
                ..
            })
        ));

        let foreign = dir.path().join("photos");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("holiday.jpg"), b"jpeg").unwrap();
        let err = RunDir::create(&foreign).unwrap_err();
        assert!(
            matches!(&err, TrainError::ForeignDirectory { found, .. } if found == "holiday.jpg"),
            "{err}"
        );
        assert!(foreign.join("holiday.jpg").is_file(), "nothing removed");

        run.write_info(&RunInfo {
            data_dir: "/data".into(),
            backend: "cpu".into(),
            shape: None,
        })
        .unwrap();
        RunDir::create(&fresh).expect("a run without checkpoints may start again");
        CheckpointLog {
            latest: CheckpointMarker {
                epoch: 3,
                complete: true,
                optimizer_steps: 30,
                number: Some(3),
            },
            previous: None,
        }
        .write(&run.checkpoint_dir())
        .unwrap();
        assert!(matches!(
            RunDir::create(&fresh),
            Err(TrainError::RunExists { epoch: 3, .. })
        ));
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_and_the_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run")).unwrap();
        let held = run.lock().unwrap();
        let err = run.lock().unwrap_err();
        assert!(
            matches!(&err, TrainError::Locked { pid: Some(pid), .. } if *pid == std::process::id()),
            "{err}"
        );
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(held);
        run.lock().expect("free again once released");
        // The lock file is not a foreign file for a new run.
        RunDir::create(run.path()).unwrap();
    }
}
