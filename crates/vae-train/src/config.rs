//! Training settings.

use serde::{Deserialize, Serialize};
use vae_core::{ElboObjective, KlEstimator};

use crate::error::TrainError;

/// How the learning rate evolves over optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Cosine annealing from the base rate to `min_lr` over the whole run.
    Cosine {
        /// Final learning rate.
        min_lr: f64,
    },
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// Decay factor in (0, 1].
        gamma: f64,
    },
}

/// Settings of a training run (everything but the model and the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// The last epoch to train (epochs are numbered from 1).
    pub epochs: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Adam's base learning rate.
    pub learning_rate: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Seed of parameter initialisation, shuffling and latent noise.
    pub seed: u64,
    /// Latent samples per example in the ELBO estimate.
    #[serde(default = "one")]
    pub latent_samples: usize,
    /// How the KL term is estimated.
    #[serde(default)]
    pub kl_estimator: KlEstimator,
    /// β, KL warm-up and free bits (defaults: the plain ELBO).
    #[serde(default)]
    pub objective: ElboObjective,
    /// Stop when the validation −ELBO has not improved for this many epochs (0 = never).
    #[serde(default)]
    pub early_stopping_patience: usize,
    /// Data-loading threads (0 = load on the training thread).
    #[serde(default)]
    pub num_workers: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainingConfig {
    /// PyTorch's `examples/vae` settings: 10 epochs of batch 128 with Adam at 1e-3.
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            learning_rate: 1e-3,
            lr_schedule: LrSchedule::Constant,
            seed: 1,
            latent_samples: 1,
            kl_estimator: KlEstimator::Analytic,
            objective: ElboObjective::default(),
            early_stopping_patience: 0,
            num_workers: 0,
        }
    }
}

impl TrainingConfig {
    /// Checks every setting; the error names the offending key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad =
            |key: &str, why: String| Err(TrainError::Config(format!("training.{key}: {why}")));
        if self.epochs == 0 {
            return bad("epochs", "must be ≥ 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be ≥ 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("must be positive, got {}", self.learning_rate),
            );
        }
        if self.latent_samples == 0 {
            return bad("latent_samples", "must be ≥ 1".into());
        }
        match self.lr_schedule {
            LrSchedule::Cosine { min_lr } if !(min_lr >= 0.0 && min_lr <= self.learning_rate) => {
                return bad(
                    "lr_schedule.min_lr",
                    format!("must be in [0, learning_rate], got {min_lr}"),
                );
            }
            LrSchedule::Step {
                every_epochs,
                gamma,
            } if every_epochs == 0 || !(gamma > 0.0 && gamma <= 1.0) => {
                return bad(
                    "lr_schedule",
                    format!(
                        "step needs every_epochs ≥ 1 and gamma in (0, 1], got {every_epochs} and {gamma}"
                    ),
                );
            }
            _ => {}
        }
        self.objective
            .validate()
            .map_err(|e| TrainError::Config(format!("training.objective: {e}")))
    }
}
