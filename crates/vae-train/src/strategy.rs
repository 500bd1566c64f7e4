//! The training loop: burn-train's single-device loop plus what a long run needs — a NaN stops
//! the run without checkpointing the broken state, Ctrl-C checkpoints the current state, and
//! every checkpoint is verified before it is marked as the one to resume from.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::tensor::Device;
use burn::tensor::backend::DeviceOps;
use burn::train::{EventProcessorTraining, LearnerEvent, TrainingItem};
use burn::train::{
    InferenceStep, Learner, LearningComponentsTypes, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainingBackend, TrainingComponents,
    TrainingModel, ValidLoader,
};

use crate::checkpoint::CheckpointMarker;
use crate::renderer::RunControl;

/// Why training ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// All epochs ran.
    Finished,
    /// Early stopping fired after this epoch.
    EarlyStopped(usize),
    /// Ctrl-C during this epoch: the state after the current step was checkpointed (under the
    /// previous epoch's number, so resuming redoes this epoch from that state).
    UserStop(usize),
    /// A NaN / ∞ appeared; nothing after the last good checkpoint was saved.
    NonFinite(String),
    /// The data loader failed (e.g. an image that no longer decodes).
    DataError(String),
    /// A checkpoint could not be written or read back.
    CheckpointFailed(String),
}

/// What the loop reports back.
#[derive(Debug, Clone)]
pub struct LoopOutcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The last verified checkpoint.
    pub last_checkpoint: Option<CheckpointMarker>,
}

/// A check of the data sources after each epoch (see `ImageFiles::take_error`).
pub type DataHealth = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The custom strategy handed to burn-train.
pub struct VaeStrategy<D> {
    device: D,
    control: Arc<RunControl>,
    checkpoints: PathBuf,
    steps: Arc<AtomicU64>,
    data_health: Option<DataHealth>,
    outcome: Arc<Mutex<Option<LoopOutcome>>>,
}

impl<D> VaeStrategy<D> {
    /// A loop on `device`, checkpointing into `checkpoints`; `steps` is the model's optimizer
    /// step counter and `outcome` receives the result.
    pub fn new(
        device: D,
        control: Arc<RunControl>,
        checkpoints: PathBuf,
        steps: Arc<AtomicU64>,
        data_health: Option<DataHealth>,
        outcome: Arc<Mutex<Option<LoopOutcome>>>,
    ) -> Self {
        Self {
            device,
            control,
            checkpoints,
            steps,
            data_health,
            outcome,
        }
    }

    fn data_error(&self) -> Option<String> {
        self.data_health.as_ref().and_then(|check| check())
    }
}

impl<LC> SupervisedLearningStrategy<LC> for VaeStrategy<Device<TrainingBackend<LC>>>
where
    LC: LearningComponentsTypes,
{
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        mut learner: Learner<LC>,
        train_loader: TrainLoader<LC>,
        valid_loader: ValidLoader<LC>,
        starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let train_loader = train_loader.to_device(&self.device);
        let valid_loader = valid_loader.to_device(self.device.inner());
        learner.fork(&self.device);
        let mut processor = components.event_processor;
        let mut checkpointer = components.checkpointer;
        let mut early_stopping = components.early_stopping;
        let interrupter = components.interrupter.clone();
        let store = components.event_store.clone();
        let mut last_checkpoint = CheckpointMarker::read(&self.checkpoints).ok().flatten();
        let mut stop = StopReason::Finished;

        // Saves `epoch`, waits for the files by reading them back, then moves the marker.
        let mut save = |learner: &Learner<LC>,
                        epoch: usize,
                        complete: bool|
         -> Result<CheckpointMarker, String> {
            let Some(checkpointer) = checkpointer.as_mut() else {
                return Err("no checkpointer configured".into());
            };
            checkpointer.checkpoint(learner, epoch, &store);
            let reload = std::panic::catch_unwind(AssertUnwindSafe(|| {
                checkpointer.load_checkpoint(learner.clone(), &Default::default(), epoch);
            }));
            if let Err(panic) = reload {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown error".into());
                return Err(format!(
                    "checkpoint of epoch {epoch} could not be read back: {why}"
                ));
            }
            let marker = CheckpointMarker {
                epoch,
                complete,
                optimizer_steps: self.steps.load(Ordering::Relaxed),
            };
            marker.write(&self.checkpoints).map_err(|e| e.to_string())?;
            Ok(marker)
        };

        for epoch in starting_epoch..=components.num_epochs {
            let global = Progress {
                items_processed: epoch,
                items_total: components.num_epochs,
            };

            let mut iterator = train_loader.iter();
            let mut iteration = 0;
            while let Some(batch) = iterator.next() {
                iteration += 1;
                learner.lr_step();
                let progress = iterator.progress();
                let output = learner.train_step(batch);
                learner.optimizer_step(output.grads);
                processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                    output.item,
                    progress,
                    global.clone(),
                    Some(iteration),
                    Some(learner.lr_current()),
                )));
                if interrupter.should_stop() {
                    break;
                }
            }
            processor.process_train(LearnerEvent::EndEpoch(epoch));

            if let Some(why) = self.data_error() {
                stop = StopReason::DataError(why);
                break;
            }
            if interrupter.should_stop() {
                // A NaN is reported asynchronously by the metrics; let them catch up first.
                if let Some(why) = self.control.non_finite() {
                    stop = StopReason::NonFinite(why);
                } else if self.control.stop_requested() {
                    // Saved under the previous epoch's number, so `--resume` (which starts after
                    // the checkpoint's epoch) redoes this epoch from the saved state.
                    stop = match save(&learner, epoch - 1, false) {
                        Ok(marker) => {
                            last_checkpoint = Some(marker);
                            StopReason::UserStop(epoch)
                        }
                        Err(why) => StopReason::CheckpointFailed(why),
                    };
                } else {
                    stop = StopReason::CheckpointFailed(
                        interrupter
                            .get_message()
                            .unwrap_or_else(|| "interrupted".into()),
                    );
                }
                break;
            }

            let model = learner.model().valid();
            let mut iterator = valid_loader.iter();
            let mut iteration = 0;
            while let Some(batch) = iterator.next() {
                iteration += 1;
                let progress = iterator.progress();
                let output = model.step(batch);
                processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                    output,
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
