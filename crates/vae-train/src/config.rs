//! Training settings.

use serde::{Deserialize, Serialize};
use vae_core::{BetaTcObjective, ElboObjective, ImportanceBound, KlEstimator};

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
    /// Train on an importance-weighted bound instead of the ELBO (IWAE, MIWAE, CIWAE, PIWAE),
    /// e.g. `{ kind = "iwae", samples = 5 }`; it draws its own samples (`latent_samples` must
    /// stay 1) and excludes β / warm-up / free bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance_bound: Option<ImportanceBound>,
    /// Train the β-TC-VAE objective (Chen et al. 2018), e.g. `{ beta = 6 }`: the KL term
    /// split into mutual information, total correlation and dimension-wise KL, weighted α, β,
    /// γ; needs the standard-normal prior and excludes the other objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_correlation: Option<BetaTcObjective>,
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
            importance_bound: None,
            total_correlation: None,
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
        let alternative = match (&self.importance_bound, &self.total_correlation) {
            (Some(_), Some(_)) => {
                return Err(TrainError::setting(
                    "training.total_correlation",
                    "set",
                    "cannot be combined with training.importance_bound: train one objective",
                ));
            }
            (Some(bound), None) => {
                bound.validate().map_err(|e| {
                    TrainError::setting(
                        "training.importance_bound",
                        format!("{bound:?}"),
                        e.to_string(),
                    )
                })?;
                if self.latent_samples != 1 {
                    return Err(TrainError::setting(
                        "training.latent_samples",
                        self.latent_samples,
                        "must be 1 with training.importance_bound (the bound draws its own samples)",
                    ));
                }
                "training.importance_bound"
            }
            (None, Some(tc)) => {
                tc.validate().map_err(|e| {
                    TrainError::setting(
                        "training.total_correlation",
                        format!("{tc:?}"),
                        e.to_string(),
                    )
                })?;
                "training.total_correlation"
            }
            (None, None) => return Ok(()),
        };
        if self.objective != ElboObjective::default() {
            return Err(TrainError::setting(
                "training.objective",
                format!("{:?}", self.objective),
                format!(
                    "must be the plain ELBO's (β = 1, no warm-up, no free bits) with {alternative}"
                ),
            ));
        }
        Ok(())
    }

    /// Latent samples per example a training step draws.
    pub fn samples_per_step(&self) -> usize {
        self.importance_bound
            .map_or(self.latent_samples, |bound| bound.samples())
    }
}

#[cfg(test)]
mod tests {
    use vae_core::{BetaTcObjective, ElboObjective, ImportanceBound};

    use super::*;

    fn error(config: TrainingConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn alternative_objectives_are_checked_and_exclusive() {
        let iwae = TrainingConfig {
            importance_bound: Some(ImportanceBound::Iwae { samples: 5 }),
            ..TrainingConfig::default()
        };
        iwae.validate().unwrap();
        assert_eq!(iwae.samples_per_step(), 5);
        let tc = TrainingConfig {
            total_correlation: Some(BetaTcObjective::new(6.0)),
            ..TrainingConfig::default()
        };
        tc.validate().unwrap();

        let both = TrainingConfig {
            total_correlation: Some(BetaTcObjective::new(6.0)),
            ..iwae.clone()
        };
        assert!(error(both).contains("training.total_correlation"));
        let with_beta = TrainingConfig {
            objective: ElboObjective::new().with_beta(4.0),
            ..iwae.clone()
        };
        assert!(error(with_beta).contains("training.objective"));
        let with_samples = TrainingConfig {
            latent_samples: 3,
            ..iwae
        };
        assert!(error(with_samples).contains("training.latent_samples"));
        let zero = TrainingConfig {
            importance_bound: Some(ImportanceBound::Miwae { outer: 0, inner: 2 }),
            ..TrainingConfig::default()
        };
        let message = error(zero);
        assert!(
            message.contains("training.importance_bound") && message.contains("outer"),
            "{message}"
        );
        let negative = TrainingConfig {
            total_correlation: Some(BetaTcObjective::new(-1.0)),
            ..TrainingConfig::default()
        };
        assert!(error(negative).contains("beta"));

        let parsed: TrainingConfig = toml::from_str(
            "epochs = 1\nbatch_size = 8\nlearning_rate = 0.001\nseed = 1\nimportance_bound = { kind = \"ciwae\", samples = 5, beta = 0.5 }\n",
        )
        .unwrap();
        assert_eq!(
            parsed.importance_bound,
            Some(ImportanceBound::Ciwae {
                samples: 5,
                beta: 0.5
            })
        );
    }
}
