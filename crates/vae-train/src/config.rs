//! Training settings.

use serde::{Deserialize, Serialize};
use vae_core::{ElboObjective, KlEstimator};

use crate::error::TrainError;
use crate::optimizer::OptimizerConfig;

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
    /// The optimizer's base learning rate.
    pub learning_rate: f64,
    /// The optimizer (Adam or AdamW, weight decay, gradient clipping; default: Adam).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Seed of shuffling; `train_run` also seeds the backend with it before building the
    /// model (initialisation) and training (latent noise).
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
    /// Training steps between reads of the metrics from the device. The steps in between never
    /// wait for the device (on a GPU, a read per step stalls its queue); a NaN or ∞ is noticed
    /// at the next read, and an epoch's last read is at its end.
    #[serde(default = "default_metrics_every_steps")]
    pub metrics_every_steps: usize,
}

fn one() -> usize {
    1
}

fn default_metrics_every_steps() -> usize {
    50
}

impl Default for TrainingConfig {
    /// PyTorch's `examples/vae` settings: 10 epochs of batch 128 with Adam at 1e-3.
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            learning_rate: 1e-3,
            optimizer: OptimizerConfig::default(),
            lr_schedule: LrSchedule::Constant,
            seed: 1,
            latent_samples: 1,
            kl_estimator: KlEstimator::Analytic,
            objective: ElboObjective::default(),
            early_stopping_patience: 0,
            num_workers: 0,
            metrics_every_steps: default_metrics_every_steps(),
        }
    }
}

impl TrainingConfig {
    /// Checks every setting; the error names the offending key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                Err(TrainError::setting(
                    format!("training.{key}"),
                    0,
                    "must be ≥ 1",
                ))
            } else {
                Ok(())
            }
        };
        at_least_one("epochs", self.epochs)?;
        at_least_one("batch_size", self.batch_size)?;
        at_least_one("latent_samples", self.latent_samples)?;
        at_least_one("metrics_every_steps", self.metrics_every_steps)?;
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(TrainError::setting(
                "training.learning_rate",
                self.learning_rate,
                "must be a finite positive number",
            ));
        }
        match self.lr_schedule {
            LrSchedule::Cosine { min_lr } if !(min_lr >= 0.0 && min_lr <= self.learning_rate) => {
                return Err(TrainError::setting(
                    "training.lr_schedule.min_lr",
                    min_lr,
                    "must be in [0, training.learning_rate]",
                ));
            }
            LrSchedule::Step {
                every_epochs: 0, ..
            } => {
                return Err(TrainError::setting(
                    "training.lr_schedule.every_epochs",
                    0,
                    "must be ≥ 1",
                ));
            }
            LrSchedule::Step { gamma, .. } if !(gamma > 0.0 && gamma <= 1.0) => {
                return Err(TrainError::setting(
                    "training.lr_schedule.gamma",
                    gamma,
                    "must be in (0, 1]",
                ));
            }
            _ => {}
        }
        self.optimizer.validate()?;
        self.objective.validate()?;
        Ok(())
    }
}
