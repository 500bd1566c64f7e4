//! Training a VAE end to end with burn-train: data loaders, learner, metrics, checkpoints,
//! resume.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::{
    Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining, TrainingStrategy,
};
use vae_data::{ImageBatch, ImageBatcher, ImageItem};
use vae_models::{TrainableDecoder, TrainableEncoder, Vae};

use crate::adam::FusedAdamConfig;
use crate::checkpoint::{CheckpointMarker, checkpoints_dir};
use crate::config::TrainingConfig;
use crate::error::TrainError;
use crate::metrics::{Kl, LogLikelihood, NegElbo, TermMetric};
use crate::renderer::{EpochRenderer, History, RunControl};
use crate::schedule::Scheduler;
use crate::step::TrainableVae;
use crate::strategy::{DataHealth, LoopOutcome, StopReason, VaeStrategy};

/// Everything a training run needs.
pub struct TrainRequest<B: AutodiffBackend, E, D>
where
    E: burn::module::Module<B>,
    D: burn::module::Module<B>,
{
    /// The training device.
    pub device: B::Device,
    /// The model, freshly initialised (its weights are replaced when resuming).
    pub model: Vae<B, E, D>,
    /// Training examples.
    pub train: Arc<dyn Dataset<ImageItem>>,
    /// Validation examples.
    pub valid: Arc<dyn Dataset<ImageItem>>,
    /// Settings.
    pub config: TrainingConfig,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Continue from the run directory's last complete checkpoint.
    pub resume: bool,
    /// Stop handle (Ctrl-C) and NaN reporting.
    pub control: Arc<RunControl>,
    /// Checked after each epoch for data-loading failures.
    pub data_health: Option<DataHealth>,
}

/// What a training run produced.
pub struct TrainResult<M> {
    /// The model as trained (inference copy).
    pub model: M,
    /// Epoch metrics of the whole run, earlier invocations included.
    pub history: History,
    /// Why it stopped and the last complete checkpoint.
    pub outcome: LoopOutcome,
    /// The first epoch this invocation trained.
    pub first_epoch: usize,
    /// Training images per second in this invocation.
    pub train_images_per_second: f64,
}

/// The inference model type of a trained `Vae<B, E, D>`.
pub type TrainedVae<B, E, D> = Vae<
    <B as AutodiffBackend>::InnerBackend,
    <E as AutodiffModule<B>>::InnerModule,
    <D as AutodiffModule<B>>::InnerModule,
>;

fn history_path(run: &std::path::Path) -> PathBuf {
    checkpoints_dir(run).join("history.json")
}

/// Trains (or resumes) a VAE; see the crate documentation for what is written where.
pub fn train<B, E, D>(
    request: TrainRequest<B, E, D>,
) -> Result<TrainResult<TrainedVae<B, E, D>>, TrainError>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    let TrainRequest {
        device,
        model,
        train,
        valid,
        config,
        run_dir,
        resume,
        control,
        data_health,
    } = request;
    config.validate()?;
    if train.is_empty() || valid.is_empty() {
        return Err(TrainError::Config(format!(
            "need training and validation examples, got {} and {}",
            train.len(),
            valid.len()
        )));
    }
    let checkpoints = checkpoints_dir(&run_dir);
    let marker = CheckpointMarker::read(&checkpoints.join("checkpoint"))?;
    let mut history = History::default();
    let start = match (resume, marker) {
        (true, None) => {
            return Err(TrainError::NothingToResume {
                dir: run_dir,
                why: "no complete checkpoint (checkpoints/checkpoint/latest.json) was found".into(),
            });
        }
        (true, Some(m)) if m.epoch >= config.epochs => {
            return Err(TrainError::Config(format!(
                "{}: already trained to epoch {}; pass --epochs above {} to continue",
                run_dir.display(),
                m.epoch,
                m.epoch
            )));
        }
        (true, Some(m)) => {
            if let Ok(bytes) = std::fs::read(history_path(&run_dir)) {
                history = serde_json::from_slice(&bytes).unwrap_or_default();
            }
            history.train.retain(|e| e.epoch <= m.epoch);
            history.valid.retain(|e| e.epoch <= m.epoch);
            Some(m)
        }
        (false, Some(m)) => {
            return Err(TrainError::Config(format!(
                "{} already holds a run (checkpoint of epoch {}); pass --resume to continue it or choose another --out",
                run_dir.display(),
                m.epoch
            )));
        }
        (false, None) => None,
    };
    let first_epoch = start.map_or(1, |m| m.epoch + 1);
    let steps_done = start.map_or(0, |m| m.optimizer_steps);

    let batches_per_epoch = train.len().div_ceil(config.batch_size);
    let trainable = TrainableVae::new(
        model,
        config.objective.clone(),
        config.kl_estimator,
        config.latent_samples,
        steps_done,
    );
    let steps: Arc<AtomicU64> = trainable.step_counter();

    // A different shuffle per resumed segment, the same for the same run and seed.
    let train_loader: Arc<dyn DataLoader<B, ImageBatch<B>>> = DataLoaderBuilder::new(ImageBatcher)
        .batch_size(config.batch_size)
        .shuffle(config.seed.wrapping_add(first_epoch as u64))
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(train);
    let valid_loader: Arc<dyn DataLoader<B::InnerBackend, ImageBatch<B::InnerBackend>>> =
        DataLoaderBuilder::new(ImageBatcher)
            .batch_size(config.batch_size)
            .num_workers(config.num_workers)
            .set_device(device.clone())
            .build(valid);

    let shared_history = Arc::new(Mutex::new(history));
    let outcome = Arc::new(Mutex::new(None));
    let strategy = VaeStrategy::new(
        device.clone(),
        control.clone(),
        checkpoints.join("checkpoint"),
        steps,
        data_health,
        outcome.clone(),
    );
    let mut training = SupervisedTraining::new(&checkpoints, train_loader, valid_loader)
        .metrics((
            TermMetric::<NegElbo>::default(),
            TermMetric::<LogLikelihood>::default(),
            TermMetric::<Kl>::default(),
        ))
        .with_file_checkpointer(NamedMpkFileRecorder::<FullPrecisionSettings>::new())
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        .renderer(EpochRenderer::new(
            shared_history.clone(),
            Some(history_path(&run_dir)),
            control.clone(),
        ))
        .with_metric_logger(crate::logger::ResumeAwareLogger::new(
            &checkpoints,
            first_epoch,
        ))
        .with_application_logger(None)
        .with_interrupter(control.interrupter().clone())
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
        .num_epochs(config.epochs);
    if config.early_stopping_patience > 0 {
        training = training.early_stopping(MetricEarlyStoppingStrategy::new(
            &TermMetric::<NegElbo>::default(),
            Aggregate::Mean,
            Direction::Lowest,
            Split::Valid,
            StoppingCondition::NoImprovementSince {
                n_epochs: config.early_stopping_patience,
            },
        ));
    }
    if let Some(m) = start {
        training = training.checkpoint(m.epoch);
    }
    let scheduler = Scheduler::new(
        config.lr_schedule,
        config.learning_rate,
        batches_per_epoch,
        config.epochs,
    );
    let optimizer = FusedAdamConfig::new().init::<B, TrainableVae<B, E, D>>();
    let result = training.launch(Learner::new(trainable, optimizer, scheduler));

    let history = shared_history.lock().map(|h| h.clone()).unwrap_or_default();
    let outcome = outcome
        .lock()
        .ok()
        .and_then(|o| o.clone())
        .unwrap_or(LoopOutcome {
            stop: StopReason::Finished,
            last_checkpoint: None,
        });
    let (examples, seconds) = history
        .train
        .iter()
        .filter(|m| m.epoch >= first_epoch)
        .fold((0usize, 0.0f64), |(n, s), m| {
            (n + m.examples, s + m.seconds)
        });
    Ok(TrainResult {
        model: result.model.vae,
        history,
        outcome,
        first_epoch,
        train_images_per_second: examples as f64 / seconds.max(1e-9),
    })
}
