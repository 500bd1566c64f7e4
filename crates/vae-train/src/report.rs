//! `metrics.json`: what a run measured, with every number named for its sign and unit.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::error::TrainError;
use crate::evaluate::TestMetrics;
use crate::renderer::{EpochMetrics, History};

/// Per-epoch curves of one split, nats per example.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitCurves {
    /// Epoch numbers.
    pub epoch: Vec<usize>,
    /// −ELBO per epoch.
    pub neg_elbo_nats: Vec<f64>,
    /// E_q[log p(x|z)] per epoch.
    pub log_likelihood_nats: Vec<f64>,
    /// KL per epoch.
    pub kl_nats: Vec<f64>,
}

impl SplitCurves {
    fn from_epochs(epochs: &[EpochMetrics]) -> Self {
        Self {
            epoch: epochs.iter().map(|m| m.epoch).collect(),
            neg_elbo_nats: epochs.iter().map(|m| m.elbo.neg_elbo_nats).collect(),
            log_likelihood_nats: epochs.iter().map(|m| m.elbo.log_likelihood_nats).collect(),
            kl_nats: epochs.iter().map(|m| m.elbo.kl_nats).collect(),
        }
    }
}

/// The contents of `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Dataset name.
    pub dataset: String,
    /// Backend that trained the model.
    pub backend: String,
    /// Last epoch trained.
    pub epochs: usize,
    /// Training curves.
    pub train: SplitCurves,
    /// Validation curves.
    pub valid: SplitCurves,
    /// Test-set evaluation (`eval` adds `is_log_px_nats`).
    pub test: Option<TestMetrics>,
    /// Training throughput of the last invocation, images per second (forward, ELBO,
    /// backward and optimizer step, data loading included).
    pub train_images_per_second: f64,
    /// Why training ended.
    pub stopped: String,
}

impl RunMetrics {
    /// Metrics from a training history.
    pub fn new(
        dataset: &str,
        backend: &str,
        history: &History,
        images_per_second: f64,
        stopped: String,
    ) -> Self {
        Self {
            dataset: dataset.to_string(),
            backend: backend.to_string(),
            epochs: history.train.last().map_or(0, |m| m.epoch),
            train: SplitCurves::from_epochs(&history.train),
            valid: SplitCurves::from_epochs(&history.valid),
            test: None,
            train_images_per_second: images_per_second,
            stopped,
        }
    }

    /// Writes `metrics.json` atomically.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(self).expect("metrics serialise");
        write_atomically(path, &json)
    }

    /// Reads a `metrics.json`.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::file(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::file(path, format!("not a metrics.json: {e}")))
    }
}
