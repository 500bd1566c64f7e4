//! [`Trainer`]: fits any VAE on any data with burn-train, with checkpoints and resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::{Aggregate, Direction, EventStoreClient, Split};
use burn::train::{
    Interrupter, Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining,
    TrainingStrategy,
};
use vae_core::{BetaTcObjective, ElboObjective, ImportanceBound, KlEstimator};
use vae_data::{DataHealth, ImageBatch, ImageBatcher, ImageItem};
use vae_models::{TrainableDecoder, TrainableEncoder, Vae};

use crate::checkpoint::{
    CheckpointFileError, CheckpointLog, CheckpointMarker, Checkpointing, checkpoints_dir,
    load_record,
};
use crate::condition::{check_splits, condition_source};
use crate::config::{LrSchedule, TrainingConfig};
use crate::data_parallel::{DataParallel, DataParallelError};
use crate::epoch_order::{EpochOrder, OrderedDataset};
use crate::error::TrainError;
use crate::metrics::{Kl, LogLikelihood, NegElbo, TermMetric};
use crate::optimizer::{OptimizerConfig, VaeOptimizer};
use crate::renderer::{EpochRenderer, History, RunControl};
use crate::schedule::Scheduler;
use crate::step::{StepObjective, TrainableVae};
use crate::strategy::{LoopOutcome, StopReason, VaeStrategy};

/// The inference model type of a trained `Vae<B, E, D>`.
pub type TrainedVae<B, E, D> = Vae<
    <B as AutodiffBackend>::InnerBackend,
    <E as AutodiffModule<B>>::InnerModule,
    <D as AutodiffModule<B>>::InnerModule,
>;

/// What [`Trainer::fit`] produced.
pub struct TrainResult<M> {
    /// The model as trained (inference copy).
    pub model: M,
    /// Epoch metrics of the whole run, earlier invocations included.
    pub history: History,
    /// Why it stopped and the last complete checkpoint.
    pub outcome: LoopOutcome,
    /// The first epoch this invocation trained.
    pub first_epoch: usize,
    /// Training images per second in this invocation (forward, ELBO, backward, optimizer
    /// step and data loading); 0 when it trained nothing.
    pub train_images_per_second: f64,
    /// When resuming: the latest checkpoint's file that could not be read, if training
    /// continued from the previous checkpoint instead.
    pub resume_fallback: Option<CheckpointFileError>,
}

/// Trains a [`Vae`] with burn-train: a model and data, then optional settings, then
/// [`fit`](Self::fit).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use burn::backend::{Autodiff, Flex};
/// # use burn::data::dataset::InMemDataset;
/// # use vae_models::MlpVaeConfig;
/// # use vae_train::{OptimizerConfig, Trainer};
/// # use vae_data::ImageItem;
/// # let (train, valid): (Vec<ImageItem>, Vec<ImageItem>) = (vec![], vec![]);
/// type B = Autodiff<Flex>;
/// let device = Default::default();
/// let model = MlpVaeConfig::kingma_welling(784).init::<B>(&device);
/// let result = Trainer::new(model, device)
///     .data(Arc::new(InMemDataset::new(train)), Arc::new(InMemDataset::new(valid)))
///     .epochs(10)
///     .optimizer(OptimizerConfig::adamw(1e-4).with_clip_grad_norm(100.0))
///     .run_dir("runs/my-run")
///     .fit()?;
/// println!("last valid −ELBO: {:?}", result.history.valid.last());
/// # Ok::<(), vae_train::TrainError>(())
/// ```
///
/// Defaults: [`TrainingConfig::default`] (PyTorch's `examples/vae`: 10 epochs of batch 128,
/// Adam at 1e-3), checkpoints in a temporary directory removed after training, no stop
/// handle. Items are [`ImageItem`]s stacked by [`ImageBatcher`] (for a conditional model, one
/// that makes each item's condition: its class label one-hot, or its named attributes) unless
/// [`data_with`](Self::data_with) gives another item type and batcher.
pub struct Trainer<B, E, D, I = ImageItem, Bt = ImageBatcher>
where
    B: AutodiffBackend,
    E: burn::module::Module<B>,
    D: burn::module::Module<B>,
{
    model: Vae<B, E, D>,
    device: B::Device,
    train: Option<Arc<dyn Dataset<I>>>,
    valid: Option<Arc<dyn Dataset<I>>>,
    batcher: Bt,
    config: TrainingConfig,
    run_dir: Option<PathBuf>,
    resume: bool,
    control: Option<Arc<RunControl>>,
    data_health: Option<DataHealth>,
    /// A problem with the data found when it was given, reported by `fit`.
    data_error: Option<TrainError>,
    data_parallel: Option<Arc<DataParallel>>,
}

impl<B, E, D> Trainer<B, E, D>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    /// A trainer for `model` (freshly initialised; its weights are replaced when resuming) on
    /// `device`.
    pub fn new(model: Vae<B, E, D>, device: B::Device) -> Self {
        let batcher = match model.condition() {
            None => ImageBatcher::new(),
            Some(condition) => ImageBatcher::conditioned(condition_source(condition)),
        };
        Self {
            model,
            device,
            train: None,
            valid: None,
            batcher,
            config: TrainingConfig::default(),
            run_dir: None,
            resume: false,
            control: None,
            data_health: None,
            data_error: None,
            data_parallel: None,
        }
    }

    /// Training and validation examples (8-bit images; for a conditional model, with the class
    /// labels or attributes its condition is made from, which `fit` checks).
    pub fn data(
        mut self,
        train: Arc<dyn Dataset<ImageItem>>,
        valid: Arc<dyn Dataset<ImageItem>>,
    ) -> Self {
        if let Some(source) = self.batcher.condition() {
            let splits = [("train", train.as_ref()), ("valid", valid.as_ref())];
            self.data_error = check_splits(source, &splits).err();
        }
        self.data_checked(train, valid)
    }

    /// [`data`](Self::data) for examples whose conditions were checked already.
    pub(crate) fn data_checked(
        mut self,
        train: Arc<dyn Dataset<ImageItem>>,
        valid: Arc<dyn Dataset<ImageItem>>,
    ) -> Self {
        self.train = Some(train);
        self.valid = Some(valid);
        self
    }
}

impl<B, E, D, I, Bt> Trainer<B, E, D, I, Bt>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    Bt: Batcher<B, I, ImageBatch<B>>
        + Batcher<B::InnerBackend, I, ImageBatch<B::InnerBackend>>
        + Clone
        + Send
        + Sync
        + 'static,
{
    /// Training and validation examples of any item type, with the batcher that stacks them
    /// into `[N, D]` batches of values the model's likelihood accepts.
    pub fn data_with<I2, Bt2>(
        self,
        train: Arc<dyn Dataset<I2>>,
        valid: Arc<dyn Dataset<I2>>,
        batcher: Bt2,
    ) -> Trainer<B, E, D, I2, Bt2> {
        Trainer {
            model: self.model,
            device: self.device,
            train: Some(train),
            valid: Some(valid),
            batcher,
            config: self.config,
            run_dir: self.run_dir,
            resume: self.resume,
            control: self.control,
            data_health: self.data_health,
            data_error: None,
            data_parallel: self.data_parallel,
        }
    }

    /// All training settings at once (replaces every setting made before it: call it first).
    pub fn config(mut self, config: TrainingConfig) -> Self {
        self.config = config;
        self
    }

    /// The last epoch to train (epochs are numbered from 1).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.config.epochs = epochs;
        self
    }

    /// Examples per optimizer step.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// The base learning rate.
    pub fn learning_rate(mut self, learning_rate: f64) -> Self {
        self.config.learning_rate = learning_rate;
        self
    }

    /// The optimizer (Adam or AdamW, weight decay, gradient clipping).
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.config.optimizer = optimizer;
        self
    }

    /// The learning-rate schedule.
    pub fn lr_schedule(mut self, schedule: LrSchedule) -> Self {
        self.config.lr_schedule = schedule;
        self
    }

    /// The training objective (β, KL warm-up, free bits); the metrics always report the true
    /// ELBO terms.
    pub fn objective(mut self, objective: ElboObjective) -> Self {
        self.config.objective = objective;
        self
    }

    /// Train on an importance-weighted bound (IWAE, MIWAE, CIWAE, PIWAE) instead of the ELBO.
    pub fn importance_bound(mut self, bound: ImportanceBound) -> Self {
        self.config.importance_bound = Some(bound);
        self
    }

    /// Train the β-TC-VAE objective instead of the ELBO.
    pub fn total_correlation(mut self, objective: BetaTcObjective) -> Self {
        self.config.total_correlation = Some(objective);
        self
    }

    /// Latent samples per example in the training ELBO estimate.
    pub fn latent_samples(mut self, samples: usize) -> Self {
        self.config.latent_samples = samples;
        self
    }

    /// How the KL term of the training ELBO is estimated.
    pub fn kl_estimator(mut self, kl: KlEstimator) -> Self {
        self.config.kl_estimator = kl;
        self
    }

    /// Data-loading threads (0 = load on the training thread).
    pub fn num_workers(mut self, workers: usize) -> Self {
        self.config.num_workers = workers;
        self
    }

    /// Training steps between reads of the metrics from the device (see
    /// [`TrainingConfig::metrics_every_steps`]).
    pub fn metrics_every_steps(mut self, steps: usize) -> Self {
        self.config.metrics_every_steps = steps;
        self
    }

    /// The shuffling seed (seed the backend yourself for initialisation and latent noise).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Stop when the validation −ELBO has not improved for `epochs` epochs (0 = never).
    pub fn early_stopping(mut self, epochs: usize) -> Self {
        self.config.early_stopping_patience = epochs;
        self
    }

    /// The run directory: checkpoints and logs go to `<run_dir>/checkpoints/`. Without it, a
    /// temporary directory is used and removed after training.
    pub fn run_dir(mut self, run_dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(run_dir.into());
        self
    }

    /// Continue from the last complete checkpoint in the run directory.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// The stop handle (Ctrl-C) and NaN reporting shared with the caller.
    pub fn control(mut self, control: Arc<RunControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// A check of lazily decoded data run after each epoch (a failure stops the run).
    pub fn data_health(mut self, health: DataHealth) -> Self {
        self.data_health = Some(health);
        self
    }

    /// Train as one rank of a data-parallel group (see [`crate::data_parallel`]): every rank
    /// calls `fit` with the same model architecture, data and settings. `training.batch_size`
    /// is the global batch, a multiple of the number of ranks N; each rank takes 1/N of every
    /// global batch, so N ranks train what one process would with that batch (the last
    /// examples mod N of each epoch's order are left out). Rank 0's model — fresh, or its
    /// checkpoint with the optimizer state when resuming — is where every rank starts. Only
    /// rank 0 validates and writes (the run directory and `resume` are ignored elsewhere); the
    /// training metrics are averaged over the ranks. Seed each rank's backend differently: the
    /// latent noise of its examples should not repeat another rank's.
    pub fn data_parallel(mut self, group: Arc<DataParallel>) -> Self {
        self.data_parallel = Some(group);
        self
    }

    /// Trains (or resumes) and returns the trained model with its history.
    pub fn fit(self) -> Result<TrainResult<TrainedVae<B, E, D>>, TrainError> {
        let Self {
            model,
            device,
            train,
            valid,
            batcher,
            config,
            run_dir,
            resume,
            control,
            data_health,
            data_error,
            data_parallel: group,
        } = self;
        config.validate()?;
        let (nodes, rank) = group
            .as_ref()
            .map_or((1, 0), |g| (g.nodes() as usize, g.rank() as usize));
        if config.batch_size % nodes != 0 {
            return Err(TrainError::setting(
                "training.batch_size",
                config.batch_size,
                format!(
                    "must be a multiple of the number of ranks ({nodes}): it is the global batch, split evenly"
                ),
            ));
        }
        if nodes > 1 && config.num_workers > 0 {
            return Err(TrainError::setting(
                "training.num_workers",
                config.num_workers,
                "must be 0 with data-parallel training: several loading threads deliver batches in an order that differs per rank",
            ));
        }
        // Only rank 0 of a data-parallel group reads and writes the run directory.
        let writes = rank == 0;
        if let Some(error) = data_error {
            return Err(error);
        }
        if config.total_correlation.is_some() {
            // The decomposition needs a factorised p(z) and q(z|x_j) at every other example's z.
            if model.prior.is_some() {
                return Err(TrainError::setting(
                    "training.total_correlation",
                    "set",
                    "needs the standard-normal prior (its dimension-wise KL is against a factorised p(z)); remove model.prior",
                ));
            }
            if model.flow.is_some() {
                return Err(TrainError::setting(
                    "training.total_correlation",
                    "set",
                    "needs the Gaussian posterior (its estimate of q(z) evaluates every example's posterior at every z); remove model.posterior",
                ));
            }
        }
        let (Some(train), Some(valid)) = (train, valid) else {
            return Err(TrainError::NoData);
        };
        if nodes > 1 && train.len() < nodes {
            return Err(TrainError::setting(
                "data",
                format!("{} training examples", train.len()),
                format!("needs at least one per rank ({nodes})"),
            ));
        }
        if valid.is_empty() && config.early_stopping_patience > 0 {
            return Err(TrainError::setting(
                "training.early_stopping_patience",
                config.early_stopping_patience,
                "must be 0 when there is no validation split (early stopping watches the validation −ELBO)",
            ));
        }
        for (split, data) in [("train", &train), ("valid", &valid)] {
            // One example through the batcher: the model must consume what the data holds. An
            // empty validation split means training without validation.
            let first = match data.get(0) {
                Some(first) => first,
                None if split == "valid" => continue,
                None => return Err(TrainError::EmptySplit { split }),
            };
            let batch: ImageBatch<B::InnerBackend> =
                Batcher::<B::InnerBackend, I, _>::batch(&batcher, vec![first], &device);
            let actual = batch.images.dims()[1];
            if actual != model.data_dim() {
                return Err(TrainError::DataSize {
                    expected: model.data_dim(),
                    actual,
                    split,
                });
            }
            let conditions = batch.conditions.map_or(0, |c| c.dims()[1]);
            if conditions != model.condition_dim() {
                return Err(TrainError::ConditionSize {
                    expected: model.condition_dim(),
                    actual: conditions,
                    split,
                });
            }
        }
        crate::memory::check(
            "a training step",
            crate::memory::training_step_bytes(
                model.num_params(),
                (config.batch_size / nodes).min(train.len()),
                config.samples_per_step(),
                model.data_dim(),
            ),
            "lower training.batch_size or the samples per step (training.latent_samples, training.importance_bound)",
        )?;
        // Without a run directory, burn-train still needs one for its checkpoints and logs.
        let (run_dir, _temporary) = match run_dir.filter(|_| writes) {
            Some(dir) => (dir, None),
            None => {
                let tmp = tempfile::tempdir().map_err(|e| TrainError::file("$TMPDIR", e))?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let control = control.unwrap_or_else(|| RunControl::new(Interrupter::new()));

        let checkpoints = checkpoints_dir(&run_dir);
        let checkpoint_dir = checkpoints.join("checkpoint");
        let log = if writes {
            checkpoint_to_resume(&run_dir, resume, config.epochs, false)?
        } else {
            None
        };
        type Model<B, E, D> = TrainableVae<B, E, D>;
        type OptimRecord<B, E, D> = <OptimizerAdaptor<VaeOptimizer, Model<B, E, D>, B> as Optimizer<
            Model<B, E, D>,
            B,
        >>::Record;
        let restored = match &log {
            Some(log) => Some(restore::<
                B,
                <Model<B, E, D> as Module<B>>::Record,
                OptimRecord<B, E, D>,
            >(&checkpoint_dir, log, &device)?),
            None => None,
        };
        let start = restored.as_ref().map(|r| r.marker);
        let mut history = History::default();
        if let Some(m) = start {
            let path = history_path(&run_dir);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    history = serde_json::from_slice(&bytes).map_err(|e| {
                        TrainError::file(&path, format!("unreadable epoch history: {e}"))
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(TrainError::file(&path, e)),
            }
            // Epochs after the checkpoint (a partial one, or ones whose checkpoint was lost)
            // are trained again.
            history.train.retain(|e| e.epoch <= m.epoch);
            history.valid.retain(|e| e.epoch <= m.epoch);
        }
        let mut first_epoch = start.map_or(1, |m| m.epoch + 1);
        let steps_done = start.map_or(0, |m| m.optimizer_steps);

        // Each epoch's order, and this rank's part of every global batch.
        let rank_batch = config.batch_size / nodes;
        let order = Arc::new(EpochOrder::new(
            train.len(),
            config.seed,
            config.batch_size,
            nodes,
            rank,
        ));
        let batches_per_epoch = order.len().div_ceil(rank_batch);
        let step_objective = match (config.importance_bound, config.total_correlation) {
            (Some(bound), _) => StepObjective::ImportanceBound(bound),
            (None, Some(objective)) => StepObjective::TotalCorrelation {
                objective,
                dataset_size: train.len(),
            },
            (None, None) => StepObjective::Elbo,
        };
        let trainable = TrainableVae::new(
            model,
            config.objective.clone(),
            config.kl_estimator,
            config.latent_samples,
            steps_done,
        )
        .with_step_objective(step_objective);
        let steps: Arc<AtomicU64> = trainable.step_counter();
        let resume_fallback = restored.as_ref().and_then(|r| r.fallback.clone());
        let mut records = restored.map(|r| StartRecords {
            examples: train.len(),
            first_epoch,
            steps_done,
            model: r.model,
            optimizer: Some((r.optim, r.scheduler)),
        });
        if let Some(group) = &group {
            // Every rank starts from rank 0's record: its values and its ParamIds, so that its
            // optimizer state (keyed by them) loads everywhere.
            let message = match writes {
                true => Some(
                    records
                        .take()
                        .unwrap_or_else(|| StartRecords {
                            examples: train.len(),
                            first_epoch,
                            steps_done,
                            model: trainable.clone().into_record(),
                            optimizer: None,
                        })
                        .encode::<B>()?,
                ),
                false => None,
            };
            let bytes = group.share_from_rank_zero::<B::InnerBackend>(
                "sharing rank 0's model and optimizer state",
                message,
                &device,
            )?;
            let start = StartRecords::decode::<B>(&bytes, &device).map_err(|problem| {
                DataParallelError::FromRankZero {
                    rank: rank as u32,
                    what: "the model and optimizer state",
                    problem,
                }
            })?;
            if start.examples != train.len() {
                return Err(DataParallelError::Setting(format!(
                    "rank {rank} has {} training examples but rank 0 has {}: every rank must load the same dataset",
                    train.len(),
                    start.examples
                ))
                .into());
            }
            first_epoch = start.first_epoch;
            steps.store(start.steps_done, std::sync::atomic::Ordering::Relaxed);
            records = Some(start);
        }

        // Drawn through the epoch order (no shuffling of the loader's own).
        let train_loader: Arc<dyn DataLoader<B, ImageBatch<B>>> =
            DataLoaderBuilder::new(batcher.clone())
                .batch_size(rank_batch)
                .num_workers(config.num_workers)
                .set_device(device.clone())
                .build(OrderedDataset::new(train.clone(), order.clone()));
        let valid_loader: Arc<dyn DataLoader<B::InnerBackend, ImageBatch<B::InnerBackend>>> =
            DataLoaderBuilder::new(batcher)
                .batch_size(config.batch_size)
                .num_workers(config.num_workers)
                .set_device(device.clone())
                .build(valid);

        let shared_history = Arc::new(Mutex::new(history));
        let outcome = Arc::new(Mutex::new(None));
        let checkpointing = Checkpointing::new(checkpoint_dir, log, start);
        let recorder = checkpointing.recorder();
        let strategy = VaeStrategy::new(
            device.clone(),
            control.clone(),
            checkpointing,
            first_epoch,
            config.metrics_every_steps,
            steps,
            data_health,
            outcome.clone(),
        )
        .with_epoch_order(order, rank_batch)
        .with_data_parallel(group);
        let mut training = SupervisedTraining::new(&checkpoints, train_loader, valid_loader)
            .metrics((
                TermMetric::<NegElbo>::default(),
                TermMetric::<LogLikelihood>::default(),
                TermMetric::<Kl>::default(),
            ))
            .with_file_checkpointer(recorder)
            .with_checkpointing_strategy(SaveOnly)
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
        let scheduler = Scheduler::new(
            config.lr_schedule,
            config.learning_rate,
            batches_per_epoch,
            config.epochs,
        );
        let optimizer = config.optimizer.init::<B, TrainableVae<B, E, D>>();
        let mut learner = Learner::new(trainable, optimizer, scheduler);
        if let Some(records) = records {
            learner.load_model(records.model);
            if let Some((optim, scheduler)) = records.optimizer {
                learner.load_optim(optim);
                learner.load_scheduler(scheduler);
            }
        }
        let result = training.launch(learner);

        let history = shared_history.lock().map(|h| h.clone()).unwrap_or_default();
        let outcome = outcome
            .lock()
            .ok()
            .and_then(|mut o| o.take())
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
            train_images_per_second: if examples == 0 {
                0.0
            } else {
                examples as f64 / seconds.max(1e-9)
            },
            resume_fallback,
        })
    }
}

/// The checkpoints a run in `run_dir` continues from: `None` for a new run, the marker
/// when resuming to `epochs`. Refuses a new run over a checkpointed one, a resume with nothing
/// to resume, and a resume of a run already trained to `epochs` whose outputs are `finished`
/// (a run whose last epoch is checkpointed but whose outputs are missing may resume: it then
/// trains nothing and returns the checkpointed model).
pub(crate) fn checkpoint_to_resume(
    run_dir: &Path,
    resume: bool,
    epochs: usize,
    finished: bool,
) -> Result<Option<CheckpointLog>, TrainError> {
    let dir = || run_dir.to_path_buf();
    match (
        resume,
        CheckpointLog::read(&checkpoints_dir(run_dir).join("checkpoint"))?,
    ) {
        (false, None) => Ok(None),
        (false, Some(log)) => Err(TrainError::RunExists {
            dir: dir(),
            epoch: log.latest.epoch,
        }),
        (true, None) => Err(TrainError::NothingToResume { dir: dir() }),
        (true, Some(log)) if log.latest.epoch >= epochs && (finished || !log.latest.complete) => {
            Err(TrainError::AlreadyTrained {
                dir: dir(),
                epoch: log.latest.epoch,
            })
        }
        (true, Some(log)) => Ok(Some(log)),
    }
}

/// Where training starts: the model's record and, when resuming, the optimizer's and the
/// scheduler's — what rank 0 sends every rank of a data-parallel group.
struct StartRecords<M, O> {
    /// Rank 0's number of training examples (every rank must have the same data).
    examples: usize,
    first_epoch: usize,
    steps_done: u64,
    model: M,
    optimizer: Option<(O, usize)>,
}

type StartRecorder = burn::record::NamedMpkBytesRecorder<burn::record::FullPrecisionSettings>;

impl<M, O> StartRecords<M, O> {
    /// `first_epoch`, `steps_done`, then each record as a length and its MessagePack bytes
    /// (an empty optimizer record: a fresh start).
    fn encode<B: Backend>(self) -> Result<Vec<u8>, TrainError>
    where
        M: Record<B>,
        O: Record<B>,
    {
        use burn::record::Recorder;
        let recorder = StartRecorder::default();
        let bytes = |e: burn::record::RecorderError| {
            TrainError::from(DataParallelError::Setting(format!(
                "rank 0's record could not be serialised: {e}"
            )))
        };
        let model = Recorder::<B>::record(&recorder, self.model, ()).map_err(bytes)?;
        let (optim, scheduler) = match self.optimizer {
            Some((optim, scheduler)) => (
                Recorder::<B>::record(&recorder, optim, ()).map_err(bytes)?,
                scheduler,
            ),
            None => (Vec::new(), 0),
        };
        let mut out = Vec::with_capacity(48 + model.len() + optim.len());
        for word in [
            self.examples as u64,
            self.first_epoch as u64,
            self.steps_done,
            scheduler as u64,
            model.len() as u64,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&model);
        out.extend_from_slice(&(optim.len() as u64).to_le_bytes());
        out.extend_from_slice(&optim);
        Ok(out)
    }

    /// The inverse of [`encode`](Self::encode).
    fn decode<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<Self, String>
    where
        M: Record<B>,
        O: Record<B>,
    {
        use burn::record::Recorder;
        let mut at: usize = 0;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let part = at
                .checked_add(n)
                .and_then(|end| bytes.get(at..end))
                .ok_or_else(|| format!("{} bytes, cut short at byte {at}", bytes.len()))?;
            at += n;
            Ok(part)
        };
        let mut word = || -> Result<u64, String> {
            Ok(u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")))
        };
        let (examples, first_epoch, steps_done, scheduler, model_len) =
            (word()?, word()?, word()?, word()?, word()?);
        let recorder = StartRecorder::default();
        let model = Recorder::<B>::load::<M>(&recorder, take(model_len as usize)?.to_vec(), device)
            .map_err(|e| format!("the model record: {e}"))?;
        let optim_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let optimizer = match optim_len {
            0 => None,
            n => Some((
                Recorder::<B>::load::<O>(&recorder, take(n as usize)?.to_vec(), device)
                    .map_err(|e| format!("the optimizer record: {e}"))?,
                scheduler as usize,
            )),
        };
        Ok(Self {
            examples: examples as usize,
            first_epoch: first_epoch as usize,
            steps_done,
            model,
            optimizer,
        })
    }
}

/// The records of a checkpoint, read before training starts.
struct Restored<M, O> {
    marker: CheckpointMarker,
    model: M,
    optim: O,
    scheduler: usize,
    fallback: Option<CheckpointFileError>,
}

/// Reads the latest checkpoint of `log`, or the previous one when a file of the latest is
/// missing or unreadable; errors name the latest's bad file.
fn restore<B: Backend, M: Record<B>, O: Record<B>>(
    dir: &Path,
    log: &CheckpointLog,
    device: &B::Device,
) -> Result<Restored<M, O>, TrainError> {
    let mut first_error: Option<CheckpointFileError> = None;
    for marker in log.candidates() {
        let [model, optim, scheduler] = marker.files(dir);
        let loaded = (|| {
            Ok::<_, CheckpointFileError>((
                load_record::<B, M>(&model, device)?,
                load_record::<B, O>(&optim, device)?,
                load_record::<B, usize>(&scheduler, device)?,
            ))
        })();
        match loaded {
            Ok((model, optim, scheduler)) => {
                return Ok(Restored {
                    marker,
                    model,
                    optim,
                    scheduler,
                    fallback: first_error,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(TrainError::Checkpoint(
        first_error.expect("a log has at least one checkpoint"),
    ))
}

/// burn-train's checkpointing strategy: save when asked. The loop numbers, verifies and
/// prunes checkpoints itself (see `checkpoint`).
struct SaveOnly;

impl CheckpointingStrategy for SaveOnly {
    fn checkpointing(&mut self, _: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

fn history_path(run: &Path) -> PathBuf {
    checkpoints_dir(run).join("history.json")
}
