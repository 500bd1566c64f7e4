//! The training loop on in-memory data: epoch numbering, resume, early stopping, a NaN stop,
//! items of any type through a batcher of one's own, and the errors of misuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use vae_core::Bernoulli;
use vae_data::{ImageBatch, ImageItem};
use vae_models::{Decoder, MlpDecoder, MlpEncoder, MlpEncoderConfig, MlpVaeConfig, Vae};
use vae_train::checkpoint::CheckpointMarker;
use vae_train::strategy::StopReason;
use vae_train::{EpochMetrics, OptimizerConfig, TrainError, Trainer};

type B = Autodiff<Flex>;
const D: usize = 16;

/// `n` images of 16 pixels from a small deterministic generator.
fn images(n: usize, seed: u64) -> Arc<dyn Dataset<ImageItem>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let items = (0..n)
        .map(|_| ImageItem {
            pixels: (0..D)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 56) as u8
                })
                .collect(),
            ..ImageItem::default()
        })
        .collect();
    Arc::new(InMemDataset::new(items))
}

fn mlp(device: &burn::tensor::Device<B>) -> Vae<B, MlpEncoder<B>, MlpDecoder<B>> {
    MlpVaeConfig::new(D, vec![8], 2).init::<B>(device)
}

fn marker(run: &std::path::Path) -> CheckpointMarker {
    CheckpointMarker::read(&run.join("checkpoints/checkpoint"))
        .unwrap()
        .expect("a checkpoint")
}

fn epochs(history: &[EpochMetrics]) -> Vec<usize> {
    history.iter().map(|m| m.epoch).collect()
}

#[test]
fn epochs_are_numbered_and_resume_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let device = Default::default();
    let (train, valid) = (images(40, 1), images(10, 2));
    let first = Trainer::new(mlp(&device), device)
        .data(train.clone(), valid.clone())
        .epochs(2)
        .batch_size(16)
        .run_dir(&run)
        .fit()
        .unwrap();
    assert!(matches!(first.outcome.stop, StopReason::Finished));
    assert_eq!(first.first_epoch, 1);
    assert_eq!(epochs(&first.history.train), [1, 2]);
    assert_eq!(epochs(&first.history.valid), [1, 2]);
    assert_eq!(first.history.train[0].examples, 40);
    let saved = marker(&run);
    assert_eq!((saved.epoch, saved.complete), (2, true));
    assert_eq!(saved.optimizer_steps, 2 * 3, "3 batches of ≤ 16 per epoch");

    // A new run in the same directory is refused; resuming continues at epoch 3.
    let again = Trainer::new(mlp(&device), device)
        .data(train.clone(), valid.clone())
        .epochs(4)
        .run_dir(&run)
        .fit();
    assert!(matches!(again, Err(TrainError::RunExists { epoch: 2, .. })));
    let resumed = Trainer::new(mlp(&device), device)
        .data(train.clone(), valid.clone())
        .epochs(4)
        .batch_size(16)
        .run_dir(&run)
        .resume(true)
        .fit()
        .unwrap();
    assert_eq!(resumed.first_epoch, 3);
    assert_eq!(epochs(&resumed.history.train), [1, 2, 3, 4]);
    assert_eq!(resumed.history.train[..2], first.history.train[..]);
    assert_eq!(marker(&run).optimizer_steps, 4 * 3);

    // Resuming to an epoch already reached trains nothing and returns the checkpointed model.
    let done = Trainer::new(mlp(&device), device)
        .data(train, valid)
        .epochs(4)
        .run_dir(&run)
        .resume(true)
        .fit()
        .unwrap();
    assert_eq!(done.first_epoch, 5);
    assert_eq!(epochs(&done.history.train), [1, 2, 3, 4]);
    assert_eq!(done.train_images_per_second, 0.0);
    assert_eq!(marker(&run).optimizer_steps, 4 * 3);
}

#[test]
fn resuming_nothing_and_empty_data_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let nothing = Trainer::new(mlp(&device), device)
        .data(images(8, 1), images(8, 2))
        .run_dir(dir.path())
        .resume(true)
        .fit();
    assert!(matches!(nothing, Err(TrainError::NothingToResume { .. })));
    let empty = Trainer::new(mlp(&device), device)
        .data(images(0, 1), images(8, 2))
        .fit();
    assert!(matches!(
        empty,
        Err(TrainError::EmptySplit { split: "train" })
    ));
    let bad = Trainer::new(mlp(&device), device)
        .data(images(8, 1), images(8, 2))
        .learning_rate(f64::NAN)
        .fit();
    let message = bad.err().expect("NaN learning rate refused").to_string();
    assert!(message.contains("training.learning_rate"), "{message}");
}

/// A decoder whose p(x|z) ignores z: with an analytic KL, the validation −ELBO is then a
/// deterministic function of the weights.
#[derive(Module, Debug)]
struct ConstantDecoder<B: Backend> {
    logits: Param<Tensor<B, 1>>,
}

impl<B: Backend> Decoder<B> for ConstantDecoder<B> {
    type Output = Bernoulli<B>;

    fn decode(&self, z: Tensor<B, 3>) -> Bernoulli<B> {
        let [s, n, _] = z.dims();
        Bernoulli::from_logits(self.logits.val().reshape([1, 1, D]).expand([s, n, D]))
    }

    fn data_dim(&self) -> usize {
        D
    }
}

#[test]
fn early_stopping_ends_the_run_when_validation_stops_improving() {
    let device = Default::default();
    let encoder: MlpEncoder<B> = MlpEncoderConfig::new(D, vec![8], 2).init(&device);
    let decoder = ConstantDecoder {
        logits: Param::from_tensor(Tensor::zeros([D], &device)),
    };
    // A learning rate too small to change any f32 weight: validation stays flat (up to the
    // last bits of parallel sums), so patience 2 stops the run 2 epochs after its best one.
    let result = Trainer::new(Vae::new(encoder, decoder), device)
        .data(images(32, 3), images(8, 4))
        .epochs(10)
        .learning_rate(1e-30)
        .early_stopping(2)
        .fit()
        .unwrap();
    let values: Vec<f64> = result
        .history
        .valid
        .iter()
        .map(|m| m.elbo.neg_elbo_nats)
        .collect();
    let (mut best_epoch, mut best) = (0, f64::INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v < best {
            (best_epoch, best) = (i + 1, v);
        }
    }
    let StopReason::EarlyStopped(stopped) = result.outcome.stop else {
        panic!("expected early stopping, got {:?}", result.outcome.stop)
    };
    assert_eq!(stopped, best_epoch + 2, "{values:?}");
    assert_eq!(values.len(), stopped);
    let spread = values.iter().fold(0f64, |m, v| m.max((v - best).abs()));
    assert!(spread <= 1e-6 * best.abs(), "{values:?}");
}

/// Float items, stacked by a batcher that returns NaN pixels for the training batches whose
/// index is in `poisoned` (training batches are the ones made for the autodiff backend).
#[derive(Clone)]
struct PoisonedBatcher {
    made: Arc<AtomicUsize>,
    poisoned: std::ops::Range<usize>,
}

impl PoisonedBatcher {
    fn new(poisoned: std::ops::Range<usize>) -> Self {
        Self {
            made: Arc::new(AtomicUsize::new(0)),
            poisoned,
        }
    }
}

/// `n` float items of `D` values in [0, 1).
fn floats(n: usize) -> Arc<dyn Dataset<Vec<f32>>> {
    Arc::new(InMemDataset::new(
        (0..n)
            .map(|i| (0..D).map(|j| ((i * D + j) % 7) as f32 / 7.0).collect())
            .collect(),
    ))
}

impl<B: Backend> Batcher<B, Vec<f32>, ImageBatch<B>> for PoisonedBatcher {
    fn batch(&self, items: Vec<Vec<f32>>, device: &B::Device) -> ImageBatch<B> {
        let n = items.len();
        let mut values: Vec<f32> = items.concat();
        if B::ad_enabled(device)
            && self
                .poisoned
                .contains(&self.made.fetch_add(1, Ordering::SeqCst))
        {
            values.fill(f32::NAN);
        }
        ImageBatch::new(Tensor::from_data(TensorData::new(values, [n, D]), device))
    }
}

#[test]
fn a_nan_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    // Epoch 1 trains on batches 0–1; epoch 2 on NaN.
    let batcher = PoisonedBatcher::new(2..usize::MAX);
    let result = Trainer::new(mlp(&device), device)
        .data_with(floats(32), floats(8), batcher)
        .epochs(3)
        .batch_size(16)
        .optimizer(OptimizerConfig::adamw(1e-4).with_clip_grad_norm(10.0))
        // A NaN is noticed when the metrics are read: here after every step, so the report
        // names the first poisoned batch.
        .metrics_every_steps(1)
        .run_dir(dir.path())
        .fit()
        .unwrap();
    let StopReason::NonFinite(what) = &result.outcome.stop else {
        panic!("expected a NaN stop, got {:?}", result.outcome.stop)
    };
    assert_eq!(
        (what.split, what.epoch, what.examples),
        ("train", 2, 16),
        "{what}"
    );
    assert!(what.value.is_nan(), "{what}");
    assert_eq!(result.outcome.last_checkpoint.map(|m| m.epoch), Some(1));
    assert_eq!(
        marker(dir.path()).epoch,
        1,
        "the NaN state is never checkpointed"
    );

    // The NaN epoch is on record (as null in JSON), and resuming redoes it from epoch 1's
    // checkpoint.
    let history = std::fs::read_to_string(dir.path().join("checkpoints/history.json")).unwrap();
    assert!(history.contains("null"), "{history}");
    let clean = PoisonedBatcher::new(0..0);
    let resumed = Trainer::new(mlp(&device), device)
        .data_with(floats(32), floats(8), clean)
        .epochs(3)
        .batch_size(16)
        .run_dir(dir.path())
        .resume(true)
        .fit()
        .unwrap();
    assert!(matches!(resumed.outcome.stop, StopReason::Finished));
    assert_eq!(resumed.first_epoch, 2);
    assert_eq!(epochs(&resumed.history.train), [1, 2, 3]);
    assert!(
        resumed
            .history
            .train
            .iter()
            .all(|m| m.elbo.neg_elbo_nats.is_finite())
    );
}

/// With the default metrics window (longer than an epoch here), the sums are read only at the
/// end of the epoch: one poisoned batch in the middle of it, followed by clean ones, must still
/// stop the run there (a NaN added to the device-side sums stays NaN), and the epoch before it
/// stays the last checkpoint.
#[test]
fn a_nan_inside_the_default_metrics_window_is_caught_at_the_end_of_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let steps_per_epoch = 64 / 8;
    assert!(
        steps_per_epoch < vae_train::TrainingConfig::default().metrics_every_steps,
        "the window must span the epoch for this test to mean anything"
    );
    // Epoch 1: batches 0–7, clean; epoch 2: batch 10 (its third step) only is poisoned.
    let result = Trainer::new(mlp(&device), device)
        .data_with(floats(64), floats(8), PoisonedBatcher::new(10..11))
        .epochs(3)
        .batch_size(8)
        .optimizer(OptimizerConfig::adamw(1e-4))
        .run_dir(dir.path())
        .fit()
        .unwrap();
    let StopReason::NonFinite(what) = &result.outcome.stop else {
        panic!("expected a NaN stop, got {:?}", result.outcome.stop)
    };
    assert_eq!((what.split, what.epoch), ("train", 2), "{what}");
    assert!(!what.value.is_finite(), "{what}");
    assert_eq!(result.outcome.last_checkpoint.map(|m| m.epoch), Some(1));
    assert_eq!(marker(dir.path()).epoch, 1);
    assert_eq!(epochs(&result.history.train), [1, 2]);
    assert!(result.history.train[0].elbo.neg_elbo_nats.is_finite());
}
