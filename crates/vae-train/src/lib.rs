//! # vae-train — training, evaluating and picturing VAEs, and the runs that hold them
//!
//! Two levels:
//!
//! * [`Trainer`]: any [`Vae`](vae_models::Vae) on any data — a model and data, then optional
//!   settings (epochs, [`OptimizerConfig`]: Adam/AdamW, weight decay, gradient clipping;
//!   [`LrSchedule`]; the β / warm-up / free-bits objective; early stopping; a stop handle),
//!   then [`Trainer::fit`].
//! * **Runs**: a [`ModelSpec`] (a serialisable configuration that builds a model — the
//!   built-in [`Architecture`](vae_models::Architecture) or your own) trained into a
//!   [`RunDir`] by [`train_run`]: `config.toml`, checkpoints, resume, test evaluation,
//!   `model.safetensors`, pictures and `metrics.json`; [`evaluate_run`] adds importance-sampled
//!   log p(x); [`sample_run`] draws from the prior. The `vae-cli` crate puts a command line on
//!   top, generic over the spec.
//!
//! Built on burn-train's `SupervisedTraining` and `Learner`, with a training loop of its own
//! ([`strategy`]) for what long runs need:
//!
//! * metrics for each ELBO term, train and valid: `neg_elbo_nats`, `log_likelihood_nats`,
//!   `kl_nats` ([`metrics`]) — the true ELBO terms, whatever β / warm-up / free bits the
//!   objective uses;
//! * a live progress line in a terminal, one line per epoch and split in logs;
//! * a checkpoint every epoch (`<run>/checkpoints/checkpoint/{model,optim,scheduler}-N.mpk`),
//!   read back before `<run>/checkpoints/checkpoint/latest.json` is moved to it
//!   ([`checkpoint`]), so resuming always finds a complete one and continues with the same
//!   optimizer state;
//! * a NaN / ∞ stops the run and keeps the last good checkpoint; a stop request
//!   ([`RunControl::request_stop`], e.g. from Ctrl-C) finishes the step, checkpoints and stops;
//! * test evaluation with bits/dim and importance-sampled log p(x) ([`evaluate`]);
//! * `metrics.json` ([`RunMetrics`]) and PNG pictures ([`artifacts`]);
//! * data-parallel training over processes and machines ([`data_parallel`],
//!   [`Trainer::data_parallel`], [`follow_run`]): N ranks train what one process would with
//!   the global batch.
//!
//! The CPU backend is burn's Flex ([`backend::Cpu`]); the `cuda` feature adds the GPU.

mod adam;
pub mod artifacts;
pub mod backend;
pub mod checkpoint;
mod condition;
mod config;
pub mod data_parallel;
mod epoch_order;
mod error;
pub mod evaluate;
mod fault;
mod logger;
pub mod memory;
pub mod metrics;
mod optimizer;
mod plot;
mod renderer;
mod report;
mod run;
mod run_dir;
mod schedule;
mod spec;
mod step;
pub mod strategy;
mod trainer;

pub use adam::{FusedAdam, FusedAdamConfig};
pub use config::{LrSchedule, TrainingConfig};
pub use epoch_order::EpochOrder;
pub use error::TrainError;
pub use evaluate::{BitsPerDim, TestMetrics};
pub use optimizer::{OptimizerConfig, OptimizerKind, VaeOptimizer};
pub use renderer::{EpochMetrics, History, RunControl};
pub use report::{RunMetrics, SplitCurves};
pub use run::{
    EvalOptions, RunOptions, RunOutcome, evaluate_run, follow_run, load_run_data, sample_run,
    train_run,
};
pub use run_dir::{RESUMABLE_KEYS, RunConfig, RunDir, RunInfo, RunLock};
pub use schedule::Scheduler;
pub use spec::{ModelSpec, ModelVisitor};
pub use step::{Accumulate, ElboSums, ElboTerms, StepObjective, TrainableVae};
pub use trainer::{TrainResult, TrainedVae, Trainer};
