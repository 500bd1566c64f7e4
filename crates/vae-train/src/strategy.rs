//! The training loop: burn-train's single-device loop plus what a long run needs — a NaN stops
//! the run without checkpointing the broken state, Ctrl-C checkpoints the current state, and
//! every checkpoint is verified before it is marked as the one to resume from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use burn::tensor::backend::{AutodiffBackend, DeviceOps};
use burn::train::{EventProcessorTraining, Interrupter, LearnerEvent, TrainingItem};
use burn::train::{
    InferenceStep, Learner, LearningComponentsTypes, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainStep, TrainingBackend, TrainingComponents,
    TrainingModel, ValidLoader,
};
use burn::train::{LearnerModelRecord, LearnerOptimizerRecord, LearnerSchedulerRecord};

use vae_data::{DataError, DataHealth};

use crate::checkpoint::{CheckpointFileError, CheckpointMarker, Checkpointing, load_record};
use crate::data_parallel::{DataParallel, DataParallelError, StopVotes};
use crate::epoch_order::EpochOrder;
use crate::error::TrainError;
use crate::renderer::RunControl;
use crate::step::Accumulate;

/// Why training ended.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// All epochs ran.
    Finished,
    /// Early stopping fired after this epoch.
    EarlyStopped(usize),
    /// A stop was requested (Ctrl-C) during this epoch: the state after the current step was
    /// checkpointed (under the previous epoch's number, so resuming redoes this epoch from
    /// that state).
    UserStop(usize),
    /// A NaN / ∞ appeared; nothing after the last good checkpoint was saved.
    NonFinite(NonFinite),
    /// The data source failed (e.g. an image that no longer decodes).
    DataError(Arc<DataError>),
    /// A checkpoint could not be written or read back.
    CheckpointFailed(CheckpointFailure),
    /// Data-parallel training lost another rank (the message names this rank and the
    /// operation).
    DataParallel(Arc<DataParallelError>),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Finished => write!(f, "finished"),
            Self::EarlyStopped(epoch) => write!(f, "early stopping after epoch {epoch}"),
            Self::UserStop(epoch) => write!(f, "stopped on request during epoch {epoch}"),
            Self::NonFinite(what) => write!(f, "diverged: {what}"),
            Self::DataError(e) => write!(f, "data error: {e}"),
            Self::CheckpointFailed(e) => write!(f, "checkpointing failed: {e}"),
            Self::DataParallel(e) => write!(f, "stopped: {e}"),
        }
    }
}

/// Where a NaN or ∞ appeared: a metric's batch value.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The metric (`neg_elbo_nats`, `log_likelihood_nats`, `kl_nats`).
    pub metric: String,
    /// Its value (NaN or ±∞).
    pub value: f64,
    /// `train` or `valid`.
    pub split: &'static str,
    /// The epoch (from 1).
    pub epoch: usize,
    /// Examples of the epoch processed when it appeared.
    pub examples: usize,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} in {} epoch {} after {} examples",
            self.metric, self.value, self.split, self.epoch, self.examples
        )
    }
}

/// Why a checkpoint could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointFailure {
    /// The training loop was built without a checkpointer.
    #[error("no checkpointer configured")]
    NotConfigured,
    /// A file of the checkpoint could not be written (e.g. the disk is full); the previous
    /// checkpoint is untouched.
    #[error("checkpoint of epoch {epoch} could not be written: {error}")]
    Write {
        /// The epoch of the checkpoint.
        epoch: usize,
        /// The file and why.
        error: CheckpointFileError,
    },
    /// The files were written but could not be read back.
    #[error("checkpoint of epoch {epoch} could not be read back: {error}")]
    ReadBack {
        /// The epoch of the checkpoint.
        epoch: usize,
        /// The file and why.
        error: CheckpointFileError,
    },
    /// The marker of the checkpoint could not be written.
    #[error("{0}")]
    Marker(Arc<TrainError>),
    /// burn-train interrupted the loop for a reason of its own.
    #[error("interrupted: {message}")]
    Interrupted {
        /// burn-train's words.
        message: String,
    },
}

/// What the loop reports back.
#[derive(Debug, Clone)]
pub struct LoopOutcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The last verified checkpoint.
    pub last_checkpoint: Option<CheckpointMarker>,
}

/// The custom strategy handed to burn-train.
pub struct VaeStrategy<D> {
    device: D,
    control: Arc<RunControl>,
    checkpointing: Mutex<Checkpointing>,
    first_epoch: usize,
    metrics_every_steps: usize,
    steps: Arc<AtomicU64>,
    data_health: Option<DataHealth>,
    outcome: Arc<Mutex<Option<LoopOutcome>>>,
    /// Data-parallel membership: gradients are averaged over the ranks before each step.
    data_parallel: Option<Arc<DataParallel>>,
    /// The training order, switched to each epoch's before its batches are drawn.
    epoch_order: Option<Arc<EpochOrder>>,
    /// Training steps per epoch on every rank (what a rank whose data failed is short of).
    steps_per_epoch: usize,
}

impl<D> VaeStrategy<D> {
    /// The same loop as one rank of `group`: every step's gradients and metrics are averaged
    /// over the ranks and every rank stops at the same step; only rank 0 validates and
    /// checkpoints, and its decisions (early stopping, a failed checkpoint) stop every rank.
    pub fn with_data_parallel(self, group: Option<Arc<DataParallel>>) -> Self {
        Self {
            data_parallel: group,
            ..self
        }
    }

    /// The same loop drawing each epoch's examples in `order`'s order for that epoch (the
    /// training data loader must read through it, unshuffled).
    pub fn with_epoch_order(self, order: Arc<EpochOrder>, batch_size: usize) -> Self {
        Self {
            steps_per_epoch: order.len().div_ceil(batch_size.max(1)),
            epoch_order: Some(order),
            ..self
        }
    }

    /// A loop on `device` from epoch `first_epoch`, checkpointing through `checkpointing`
    /// (whose recorder burn-train's file checkpointer must use), reading the metrics from the
    /// device once per `metrics_every_steps` steps; `steps` is the model's optimizer step
    /// counter and `outcome` receives the result.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: D,
        control: Arc<RunControl>,
        checkpointing: Checkpointing,
        first_epoch: usize,
        metrics_every_steps: usize,
        steps: Arc<AtomicU64>,
        data_health: Option<DataHealth>,
        outcome: Arc<Mutex<Option<LoopOutcome>>>,
    ) -> Self {
        Self {
            device,
            control,
            checkpointing: Mutex::new(checkpointing),
            first_epoch,
            metrics_every_steps: metrics_every_steps.max(1),
            steps,
            data_health,
            outcome,
            data_parallel: None,
            epoch_order: None,
            steps_per_epoch: 0,
        }
    }

    fn data_error(&self) -> Option<Arc<DataError>> {
        self.data_health
            .as_ref()
            .and_then(|check| check())
            .map(Arc::new)
    }

    /// This rank's reasons to stop, before a step.
    fn local_votes(&self, interrupter: &Interrupter) -> StopVotes {
        // The interrupter first: whatever set it has set its reason before.
        let stopping = interrupter.should_stop();
        let requested = self.control.stop_requested();
        let non_finite = self.control.non_finite().is_some();
        StopVotes {
            requested,
            non_finite,
            interrupted: stopping && !requested && !non_finite,
            data_failed: false,
        }
    }

    /// The NaN another rank saw: the metrics are averaged over the ranks, so this rank's own
    /// (asynchronous) metrics report it too, a moment later.
    fn non_finite_seen_by_the_group(&self, rank: u32) -> StopReason {
        let waited = std::time::Instant::now();
        while waited.elapsed() < std::time::Duration::from_secs(10) {
            if let Some(why) = self.control.non_finite() {
                return StopReason::NonFinite(why);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        StopReason::DataParallel(Arc::new(DataParallelError::GroupStopped {
            rank,
            reason: "a training metric was NaN or ∞",
        }))
    }
}

/// What rank 0 decided at the end of an epoch, as every rank learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Continue = 0,
    EarlyStopped = 1,
    NonFinite = 2,
    CheckpointFailed = 3,
    DataError = 4,
}

impl Verdict {
    fn of(stop: Option<&StopReason>) -> Self {
        match stop {
            None => Self::Continue,
            Some(StopReason::EarlyStopped(_)) => Self::EarlyStopped,
            Some(StopReason::NonFinite(_)) => Self::NonFinite,
            Some(StopReason::DataError(_)) => Self::DataError,
            Some(_) => Self::CheckpointFailed,
        }
    }

    fn from_code(code: f32) -> Self {
        match code.round() as i32 {
            1 => Self::EarlyStopped,
            2 => Self::NonFinite,
            3 => Self::CheckpointFailed,
            4 => Self::DataError,
            _ => Self::Continue,
        }
    }

    /// How a rank other than 0 stops.
    fn stop(self, rank: u32, epoch: usize) -> Option<StopReason> {
        let reason = match self {
            Self::Continue => return None,
            Self::EarlyStopped => return Some(StopReason::EarlyStopped(epoch)),
            Self::NonFinite => "a validation metric was NaN or ∞",
            Self::CheckpointFailed => "its checkpoint could not be written",
            Self::DataError => "its data failed",
        };
        Some(StopReason::DataParallel(Arc::new(
            DataParallelError::GroupStopped { rank, reason },
        )))
    }
}

impl<LC> SupervisedLearningStrategy<LC> for VaeStrategy<Device<TrainingBackend<LC>>>
where
    LC: LearningComponentsTypes,
    <LC::TrainingModel as TrainStep>::Output: Accumulate,
    <LC::InferenceModel as InferenceStep>::Output: Accumulate,
{
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        mut learner: Learner<LC>,
        train_loader: TrainLoader<LC>,
        valid_loader: ValidLoader<LC>,
        _starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let train_loader = train_loader.to_device(&self.device);
        let valid_loader = valid_loader.to_device(self.device.inner());
        learner.fork(&self.device);
        let mut processor = components.event_processor;
        let mut checkpointer = components.checkpointer;
        let mut early_stopping = components.early_stopping;
        let interrupter = components.interrupter.clone();
        let store = components.event_store.clone();
        let mut checkpointing = match self.checkpointing.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut last_checkpoint = checkpointing.latest();
        let mut stop = StopReason::Finished;
        let device = &self.device;

        // Saves under a new number (never over the last checkpoint), waits for the files and
        // reads them back, then moves the marker and prunes (see `checkpoint`).
        let mut save = |learner: &Learner<LC>,
                        epoch: usize,
                        complete: bool|
         -> Result<CheckpointMarker, CheckpointFailure> {
            let Some(checkpointer) = checkpointer.as_mut() else {
                return Err(CheckpointFailure::NotConfigured);
            };
            let number = checkpointing.begin();
            checkpointer.checkpoint(learner, number, &store);
            let [model, optim, scheduler] = checkpointing
                .wait_written(number)
                .map_err(|error| CheckpointFailure::Write { epoch, error })?;
            let read_back = || -> Result<(), CheckpointFileError> {
                type Tb<LC> = TrainingBackend<LC>;
                load_record::<Tb<LC>, LearnerModelRecord<LC>>(&model, device)?;
                load_record::<Tb<LC>, LearnerOptimizerRecord<LC>>(&optim, device)?;
                load_record::<Tb<LC>, LearnerSchedulerRecord<LC>>(&scheduler, device)?;
                Ok(())
            };
            read_back().map_err(|error| CheckpointFailure::ReadBack { epoch, error })?;
            let marker = CheckpointMarker {
                epoch,
                complete,
                optimizer_steps: self.steps.load(Ordering::Relaxed),
                number: Some(number),
            };
            checkpointing
                .commit(marker)
                .map_err(|e| CheckpointFailure::Marker(Arc::new(e)))?;
            Ok(marker)
        };

        let group = self.data_parallel.as_deref();
        // Only rank 0 of a data-parallel group validates and checkpoints.
        let writes = group.is_none_or(DataParallel::is_rank_zero);
        let rank = group.map_or(0, DataParallel::rank);
        let inner_device = self.device.inner();
        // The step outputs of a metrics window, added up over the ranks.
        let merge = |item: <LC::TrainingModel as TrainStep>::Output| match group {
            None => Ok(item),
            Some(group) => item.merge_ranks(group),
        };

        'epochs: for epoch in self.first_epoch..=components.num_epochs {
            let global = Progress {
                items_processed: epoch,
                items_total: components.num_epochs,
            };
            if let Some(order) = &self.epoch_order {
                order.start_epoch(epoch);
            }

            // The step outputs stay on the device and are added up; one read per window of
            // `metrics_every_steps` steps (and at the end of the epoch) feeds the metrics, so
            // the host never waits for the device inside a window.
            let mut iterator = train_loader.iter();
            let mut iteration = 0;
            let mut window = Window::default();
            // A data-parallel group stops where any rank voted to, all ranks at the same step.
            let mut votes = StopVotes::default();
            loop {
                let Some(batch) = iterator.next() else {
                    // A rank whose data ran out early (an example failed to load) takes part in
                    // the step the others are in, with no gradients, and says why.
                    if let Some(group) = group
                        && iteration < self.steps_per_epoch
                    {
                        let local = StopVotes {
                            data_failed: true,
                            ..self.local_votes(&interrupter)
                        };
                        match group.average_gradients(
                            &learner.model(),
                            GradientsParams::new(),
                            local,
                        ) {
                            Ok((_, voted)) => votes = voted,
                            Err(error) => {
                                stop = StopReason::DataParallel(Arc::new(error));
                                break 'epochs;
                            }
                        }
                    }
                    break;
                };
                iteration += 1;
                learner.lr_step();
                let progress = iterator.progress();
                let local = match group {
                    Some(_) => self.local_votes(&interrupter),
                    None => StopVotes::default(),
                };
                let output = learner.train_step(batch);
                let grads = match group {
                    None => output.grads,
                    Some(group) => {
                        match group.average_gradients(&learner.model(), output.grads, local) {
                            Ok((mean, voted)) => {
                                votes = voted;
                                mean
                            }
                            Err(error) => {
                                stop = StopReason::DataParallel(Arc::new(error));
                                break 'epochs;
                            }
                        }
                    }
                };
                learner.optimizer_step(grads);
                window.add(output.item, progress, iteration);
                let stopping = match group {
                    Some(_) => votes.any(),
                    None => interrupter.should_stop(),
                };
                if (window.steps >= self.metrics_every_steps || stopping)
                    && !votes.data_failed
                    && let Some((item, progress, iteration)) = window.take()
                {
                    let item = match merge(item) {
                        Ok(item) => item,
                        Err(error) => {
                            stop = StopReason::DataParallel(Arc::new(error));
                            break 'epochs;
                        }
                    };
                    processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                        item,
                        progress,
                        global.clone(),
                        Some(iteration),
                        Some(learner.lr_current()),
                    )));
                }
                if stopping {
                    break;
                }
            }
            // (After a rank's data failed, the ranks' windows differ: not added up.)
            if !votes.data_failed
                && let Some((item, progress, iteration)) = window.take()
            {
                let item = match merge(item) {
                    Ok(item) => item,
                    Err(error) => {
                        stop = StopReason::DataParallel(Arc::new(error));
                        break 'epochs;
                    }
                };
                processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                    item,
                    progress,
                    global.clone(),
                    Some(iteration),
                    Some(learner.lr_current()),
                )));
            }
            processor.process_train(LearnerEvent::EndEpoch(epoch));

            // A failed data source stops the run (every rank, when any rank's failed).
            let data_error = self.data_error();
            if let Some(group) = group {
                let failed = match group
                    .agree::<<TrainingBackend<LC> as AutodiffBackend>::InnerBackend>(
                        "checking the data",
                        &[if data_error.is_some() { 1.0 } else { 0.0 }],
                        inner_device,
                    ) {
                    Ok(failed) => failed[0] > 0.0,
                    Err(error) => {
                        stop = StopReason::DataParallel(Arc::new(error));
                        break;
                    }
                };
                if failed {
                    stop = match data_error {
                        Some(why) => StopReason::DataError(why),
                        None => {
                            StopReason::DataParallel(Arc::new(DataParallelError::GroupStopped {
                                rank,
                                reason: "another rank's data failed",
                            }))
                        }
                    };
                    break;
                }
            } else if let Some(why) = data_error {
                stop = StopReason::DataError(why);
                break;
            }

            if let Some(group) = group
                && votes.any()
            {
                stop = if votes.non_finite {
                    match self.control.non_finite() {
                        Some(why) => StopReason::NonFinite(why),
                        None => self.non_finite_seen_by_the_group(group.rank()),
                    }
                } else if votes.requested {
                    if writes {
                        // As below: under the previous epoch's number.
                        match save(&learner, epoch - 1, false) {
                            Ok(marker) => {
                                last_checkpoint = Some(marker);
                                StopReason::UserStop(epoch)
                            }
                            Err(why) => StopReason::CheckpointFailed(why),
                        }
                    } else {
                        StopReason::UserStop(epoch)
                    }
                } else {
                    StopReason::CheckpointFailed(CheckpointFailure::Interrupted {
                        message: interrupter
                            .get_message()
                            .unwrap_or_else(|| "interrupted on another rank".into()),
                    })
                };
                break;
            }
            if group.is_none() && interrupter.should_stop() {
                // A NaN is reported asynchronously by the metrics; let them catch up first.
                if let Some(why) = self.control.non_finite() {
                    stop = StopReason::NonFinite(why);
                } else if self.control.stop_requested() {
                    // Saved under the previous epoch's number, so resuming (which starts after
                    // the checkpoint's epoch) redoes this epoch from the saved state.
                    stop = match save(&learner, epoch - 1, false) {
                        Ok(marker) => {
                            last_checkpoint = Some(marker);
                            StopReason::UserStop(epoch)
                        }
                        Err(why) => StopReason::CheckpointFailed(why),
                    };
                } else {
                    stop = StopReason::CheckpointFailed(CheckpointFailure::Interrupted {
                        message: interrupter
                            .get_message()
                            .unwrap_or_else(|| "no reason given".into()),
                    });
                }
                break;
            }

            // Rank 0 (or the only process) validates, checkpoints and decides whether to go on.
            let mut decision = None;
            if writes {
                decision = 'rank_zero: {
                    let model = learner.model().valid();
                    let mut iterator = valid_loader.iter();
                    let mut iteration = 0;
                    let mut window = Window::default();
                    while let Some(batch) = iterator.next() {
                        iteration += 1;
                        let progress = iterator.progress();
                        window.add(model.step(batch), progress, iteration);
                        if window.steps >= self.metrics_every_steps
                            && let Some((item, progress, iteration)) = window.take()
                        {
                            processor.process_valid(LearnerEvent::ProcessedItem(
                                TrainingItem::new(
                                    item,
                                    progress,
                                    global.clone(),
                                    Some(iteration),
                                    None,
                                ),
                            ));
                        }
                    }
                    if let Some((item, progress, iteration)) = window.take() {
                        processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                            item,
                            progress,
                            global.clone(),
                            Some(iteration),
                            None,
                        )));
                    }
                    processor.process_valid(LearnerEvent::EndEpoch(epoch));
                    if let Some(why) = self.data_error() {
                        break 'rank_zero Some(StopReason::DataError(why));
                    }
                    if let Some(why) = self.control.non_finite() {
                        break 'rank_zero Some(StopReason::NonFinite(why));
                    }
                    match save(&learner, epoch, true) {
                        Ok(marker) => last_checkpoint = Some(marker),
                        Err(why) => break 'rank_zero Some(StopReason::CheckpointFailed(why)),
                    }
                    if let Some(strategy) = &mut early_stopping
                        && strategy.should_stop(epoch, &components.event_store)
                    {
                        break 'rank_zero Some(StopReason::EarlyStopped(epoch));
                    }
                    None
                };
            }
            if let Some(group) = group {
                let code = Verdict::of(decision.as_ref()) as i32 as f32;
                match group.agree::<<TrainingBackend<LC> as AutodiffBackend>::InnerBackend>(
                    "hearing rank 0's decision",
                    &[if writes { code } else { 0.0 }],
                    inner_device,
                ) {
                    Ok(verdict) if !writes => {
                        decision = Verdict::from_code(verdict[0]).stop(rank, epoch)
                    }
                    Ok(_) => {}
                    Err(error) => {
                        stop = StopReason::DataParallel(Arc::new(error));
                        break;
                    }
                }
            }
            if let Some(why) = decision {
                stop = why;
                break;
            }
        }

        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(LoopOutcome {
                stop,
                last_checkpoint,
            });
        }
        (learner.model(), processor)
    }
}

/// Step outputs added up on the device since the last read, with the progress of the last one.
struct Window<T> {
    sum: Option<T>,
    steps: usize,
    last: Option<(Progress, usize)>,
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Self {
            sum: None,
            steps: 0,
            last: None,
        }
    }
}

impl<T: Accumulate> Window<T> {
    fn add(&mut self, item: T, progress: Progress, iteration: usize) {
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum.merge(item),
            None => item,
        });
        self.steps += 1;
        self.last = Some((progress, iteration));
    }

    /// The sum and the last step's progress and iteration, if any step was added; empties it.
    fn take(&mut self) -> Option<(T, Progress, usize)> {
        self.steps = 0;
        let (progress, iteration) = self.last.take()?;
        Some((self.sum.take()?, progress, iteration))
    }
}
