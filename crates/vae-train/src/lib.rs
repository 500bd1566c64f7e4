//! # vae-train — training, evaluating and picturing VAEs
//!
//! Built on burn-train's `SupervisedTraining` and `Learner`, with a training loop of its own
//! ([`strategy`]) for what long runs need:
//!
//! * metrics for each ELBO term, train and valid: `neg_elbo_nats`, `log_likelihood_nats`,
//!   `kl_nats` ([`metrics`]) — the true ELBO terms, whatever β / warm-up / free bits the
//!   objective uses;
//! * a live progress line in a terminal, one line per epoch and split in logs ([`renderer`]);
//! * a checkpoint every epoch (`<run>/checkpoints/checkpoint/{model,optim,scheduler}-N.mpk`),
//!   read back before `<run>/checkpoints/checkpoint/latest.json` is moved to it ([`checkpoint`]), so
//!   `--resume` always finds a complete one and continues with the same optimizer state;
//! * a NaN / ∞ stops the run and keeps the last good checkpoint; Ctrl-C
//!   ([`RunControl::request_stop`]) finishes the step, checkpoints and stops;
//! * early stopping and learning-rate schedules ([`TrainingConfig`]);
//! * test evaluation with bits/dim and importance-sampled log p(x) ([`evaluate`]);
//! * `metrics.json` ([`RunMetrics`]) and PNG artifacts ([`artifacts`]).
//!
//! The CPU backend is burn's Flex ([`backend::Cpu`]); the `cuda` feature adds the GPU.

mod adam;
pub mod artifacts;
pub mod backend;
pub mod checkpoint;
mod config;
mod error;
pub mod evaluate;
mod logger;
pub mod metrics;
mod plot;
mod renderer;
mod report;
mod run;
mod schedule;
mod step;
pub mod strategy;

pub use adam::{FusedAdam, FusedAdamConfig};
pub use config::{LrSchedule, TrainingConfig};
pub use error::TrainError;
pub use evaluate::{BitsPerDim, TestMetrics};
pub use renderer::{EpochMetrics, History, RunControl};
pub use report::{RunMetrics, SplitCurves};
pub use run::{TrainRequest, TrainResult, TrainedVae, train};
pub use schedule::Scheduler;
pub use step::{ElboTerms, TrainableVae};
