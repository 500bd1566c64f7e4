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
    /// The last epoch, when it was interrupted (a stop or a NaN) before its end: its values
    /// are means over the examples it reached. Resuming trains it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_epoch: Option<usize>,
}

impl SplitCurves {
    fn from_epochs(epochs: &[EpochMetrics]) -> Self {
        Self {
            epoch: epochs.iter().map(|m| m.epoch).collect(),
            neg_elbo_nats: epochs.iter().map(|m| m.elbo.neg_elbo_nats).collect(),
            log_likelihood_nats: epochs.iter().map(|m| m.elbo.log_likelihood_nats).collect(),
            kl_nats: epochs.iter().map(|m| m.elbo.kl_nats).collect(),
            partial_epoch: epochs.iter().find(|m| m.partial).map(|m| m.epoch),
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
    /// Test-set evaluation of the weights in `model.safetensors` (`eval` adds
    /// `is_log_px_nats`).
    pub test: Option<TestMetrics>,
    /// Evaluations of earlier weights of the run (before a resume trained further), oldest
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_tests: Vec<TestMetrics>,
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
            earlier_tests: Vec::new(),
            train_images_per_second: images_per_second,
            stopped,
        }
    }

    /// Keeps the evaluations of `earlier` (this run's `metrics.json` before a resume), and
    /// its throughput when this invocation trained nothing.
    pub fn keep_evaluations_of(&mut self, earlier: RunMetrics) {
        self.test = earlier.test;
        self.earlier_tests = earlier.earlier_tests;
        if self.train_images_per_second == 0.0 {
            self.train_images_per_second = earlier.train_images_per_second;
        }
    }

    /// Records the evaluation of new weights; an evaluation of other weights moves to
    /// `earlier_tests`.
    pub fn set_test(&mut self, test: TestMetrics) {
        if let Some(old) = self.test.take()
            && old.epoch != test.epoch
        {
            self.earlier_tests.push(old);
        }
        self.test = Some(test);
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
