//! The training loop: burn-train's single-device loop plus what a long run needs — a NaN stops
//! the run without checkpointing the broken state, Ctrl-C checkpoints the current state, and
//! every checkpoint is verified before it is marked as the one to resume from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::tensor::Device;
use burn::tensor::backend::DeviceOps;
use burn::train::{EventProcessorTraining, LearnerEvent, TrainingItem};
use burn::train::{
    InferenceStep, Learner, LearningComponentsTypes, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainStep, TrainingBackend, TrainingComponents,
    TrainingModel, ValidLoader,
};
use burn::train::{LearnerModelRecord, LearnerOptimizerRecord, LearnerSchedulerRecord};

use vae_data::{DataError, DataHealth};

use crate::checkpoint::{CheckpointFileError, CheckpointMarker, Checkpointing, load_record};
use crate::data_parallel::{DataParallel, DataParallelError};
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
            Self::DataParallel(e) => write!(f, "data-parallel training stopped: {e}"),
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
}

impl<D> VaeStrategy<D> {
    /// The same loop, averaging every step's gradients over the ranks of `group`.
    pub fn with_data_parallel(self, group: Option<Arc<DataParallel>>) -> Self {
        Self {
            data_parallel: group,
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
        }
    }

    fn data_error(&self) -> Option<Arc<DataError>> {
        self.data_health
            .as_ref()
            .and_then(|check| check())
            .map(Arc::new)
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

        for epoch in self.first_epoch..=components.num_epochs {
            let global = Progress {
                items_processed: epoch,
                items_total: components.num_epochs,
            };

            // The step outputs stay on the device and are added up; one read per window of
            // `metrics_every_steps` steps (and at the end of the epoch) feeds the metrics, so
            // the host never waits for the device inside a window.
            let mut iterator = train_loader.iter();
            let mut iteration = 0;
            let mut window = Window::default();
            while let Some(batch) = iterator.next() {
                iteration += 1;
                learner.lr_step();
                let progress = iterator.progress();
                let output = learner.train_step(batch);
                let grads = match &self.data_parallel {
                    None => output.grads,
                    Some(group) => match group.average_gradients(&learner.model(), output.grads) {
                        Ok(mean) => mean,
                        Err(error) => {
                            stop = StopReason::DataParallel(Arc::new(error));
                            break;
                        }
                    },
                };
                learner.optimizer_step(grads);
                window.add(output.item, progress, iteration);
                let stopping = interrupter.should_stop();
                if (window.steps >= self.metrics_every_steps || stopping)
                    && let Some((item, progress, iteration)) = window.take()
                {
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
            if let Some((item, progress, iteration)) = window.take() {
                processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                    item,
                    progress,
                    global.clone(),
                    Some(iteration),
                    Some(learner.lr_current()),
                )));
            }
            processor.process_train(LearnerEvent::EndEpoch(epoch));

            // A lost rank ends training at once: nothing after the last checkpoint is saved
            // (the other ranks stopped too).
            if matches!(stop, StopReason::DataParallel(_)) {
                break;
            }
            if let Some(why) = self.data_error() {
                stop = StopReason::DataError(why);
                break;
            }
            if interrupter.should_stop() {
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
                    processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                        item,
                        progress,
                        global.clone(),
                        Some(iteration),
                        None,
                    )));
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
                stop = StopReason::DataError(why);
                break;
            }
            if let Some(why) = self.control.non_finite() {
                stop = StopReason::NonFinite(why);
                break;
            }

            match save(&learner, epoch, true) {
                Ok(marker) => last_checkpoint = Some(marker),
                Err(why) => {
                    stop = StopReason::CheckpointFailed(why);
                    break;
                }
            }
            if let Some(strategy) = &mut early_stopping
                && strategy.should_stop(epoch, &components.event_store)
            {
                stop = StopReason::EarlyStopped(epoch);
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
