//! Crash-safety of runs through the library: checkpoints never overwrite the last complete
//! one and fall back to the previous one, finishing is resumable, a resume cannot change the
//! model or the data, evaluations and partial epochs are kept on record, one writer per run.
//! (Real processes, signals and injected crashes: `xtask/tests/faults.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{B, config, splits};
use burn::data::dataset::{Dataset, InMemDataset};
use vae_data::{DataSplits, ImageItem, PixelMode};
use vae_models::{Architecture, MlpVaeConfig};
use vae_train::checkpoint::CheckpointLog;
use vae_train::strategy::StopReason;
use vae_train::{EvalOptions, RunControl, RunDir, RunOptions, TrainError, evaluate_run, train_run};

/// The training split, asking `control` to stop (as Ctrl-C does) at its `stop_at`-th read.
struct StopAt {
    inner: Arc<dyn Dataset<ImageItem>>,
    control: Arc<RunControl>,
    reads: AtomicUsize,
    stop_at: usize,
}

impl Dataset<ImageItem> for StopAt {
    fn get(&self, index: usize) -> Option<ImageItem> {
        if self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.stop_at {
            self.control.request_stop();
        }
        self.inner.get(index)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

fn log(run: &RunDir) -> CheckpointLog {
    CheckpointLog::read(&run.checkpoint_dir())
        .unwrap()
        .expect("a marker")
}

/// A run trained to epoch 2, then stopped during epoch 3 (resume it to 3 epochs).
fn stopped_run(dir: &std::path::Path) -> (RunDir, DataSplits) {
    let data = splits(dir);
    let run = RunDir::create(dir.join("run")).unwrap();
    let device = Default::default();
    let options = RunOptions::new("cpu");
    let stopping = DataSplits {
        // 64 examples per epoch: the 150th read is inside epoch 3.
        train: Arc::new(StopAt {
            inner: data.train.clone(),
            control: options.control.clone(),
            reads: AtomicUsize::new(0),
            stop_at: 150,
        }),
        ..data.clone()
    };
    let outcome = train_run::<Architecture, B>(&run, &config(3), &stopping, &device, options)
        .expect("a stop is an outcome");
    assert!(
        matches!(outcome.stopped.stop, StopReason::UserStop(3)),
        "{:?}",
        outcome.stopped.stop
    );
    (run, data)
}

#[test]
fn a_stop_checkpoint_never_overwrites_the_last_complete_one() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = stopped_run(dir.path());
    let log = log(&run);
    let previous = log.previous.expect("the complete checkpoint is kept");
    assert_eq!((previous.epoch, previous.complete), (2, true));
    assert_eq!((log.latest.epoch, log.latest.complete), (2, false));
    assert_ne!(
        log.latest.file_number(),
        previous.file_number(),
        "new files for the stop"
    );
    let dir = run.checkpoint_dir();
    for file in log.latest.files(&dir).iter().chain(&previous.files(&dir)) {
        assert!(file.is_file(), "{} missing", file.display());
    }
    // Only the two checkpoints of the marker stay: epoch 1's files were pruned.
    let mpk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("mpk".as_ref()))
        .count();
    assert_eq!(mpk, 6);

    // The interrupted epoch is on record as partial.
    let metrics = run.read_metrics().unwrap();
    assert_eq!(metrics.train.epoch, [1, 2, 3]);
    assert_eq!(metrics.train.partial_epoch, Some(3));
    assert_eq!(metrics.valid.epoch, [1, 2]);
}

#[test]
fn resume_falls_back_to_the_previous_checkpoint_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let (run, data) = stopped_run(dir.path());
    let log = log(&run);
    let [_, optim, _] = log.latest.files(&run.checkpoint_dir());
    let bytes = std::fs::read(&optim).unwrap();
    std::fs::write(&optim, &bytes[..bytes.len() / 3]).unwrap();

    let device = Default::default();
    let resumed = train_run::<Architecture, B>(
        &run,
        &config(3),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .expect("resumes from the previous checkpoint");
    assert!(resumed.finished());
    let fallback = resumed.resume_fallback.expect("the bad file is reported");
    assert_eq!(fallback.file, optim);
    assert_eq!(resumed.first_epoch, 3, "epoch 2's complete checkpoint");
    assert_eq!(resumed.metrics.train.epoch, [1, 2, 3]);
    assert_eq!(resumed.metrics.train.partial_epoch, None);

    // With every checkpoint file unreadable: an error naming the latest's bad file.
    let log = self::log(&run);
    for marker in log.candidates() {
        let [model, _, _] = marker.files(&run.checkpoint_dir());
        std::fs::write(&model, b"not a checkpoint").unwrap();
    }
    let err = train_run::<Architecture, B>(
        &run,
        &config(4),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap_err();
    let [model, _, _] = log.latest.files(&run.checkpoint_dir());
    assert!(
        matches!(&err, TrainError::Checkpoint(bad) if bad.file == model),
        "{err}"
    );
    assert!(err.to_string().contains("model-"), "{err}");
}

#[test]
fn a_run_killed_before_its_outputs_is_finished_by_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    let first =
        train_run::<Architecture, B>(&run, &config(2), &data, &device, RunOptions::new("cpu"))
            .unwrap();
    let test = first.metrics.test.clone().unwrap();
    // What a kill between the last checkpoint and the outputs leaves.
    for file in ["model.safetensors", "metrics.json", "samples.png"] {
        std::fs::remove_file(run.path().join(file)).unwrap();
    }
    assert!(!run.is_finished());
    let finished = train_run::<Architecture, B>(
        &run,
        &config(2),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap();
    assert!(finished.finished());
    assert_eq!(finished.first_epoch, 3, "nothing trained again");
    assert_eq!(finished.metrics.train.epoch, [1, 2], "history kept");
    for file in ["model.safetensors", "metrics.json", "samples.png"] {
        assert!(run.path().join(file).is_file(), "{file} missing");
    }
    let again = finished.metrics.test.unwrap();
    assert_eq!(again.examples, test.examples);
    assert!(run.is_finished());
    assert!(matches!(
        train_run::<Architecture, B>(
            &run,
            &config(2),
            &data,
            &device,
            RunOptions::new("cpu").resumed()
        ),
        Err(TrainError::AlreadyTrained { epoch: 2, .. })
    ));
}

#[test]
fn resume_refuses_model_and_data_changes_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    let _ = train_run::<Architecture, B>(&run, &config(1), &data, &device, RunOptions::new("cpu"))
        .unwrap();
    let before = std::fs::read(run.config_file()).unwrap();

    let mut other_model = config(2);
    other_model.model = Architecture::Mlp(MlpVaeConfig::new(16, vec![8], 5));
    other_model.data.limit = 10;
    let err = train_run::<Architecture, B>(
        &run,
        &other_model,
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap_err();
    let TrainError::ResumeChanges { keys } = &err else {
        panic!("{err}")
    };
    assert_eq!(keys, &["data.limit", "model.latent_dim"]);
    assert!(
        err.to_string().contains("training.epochs"),
        "lists what may change: {err}"
    );
    assert_eq!(std::fs::read(run.config_file()).unwrap(), before);

    // Training longer at another learning rate is a resume.
    let mut longer = config(2);
    longer.training.learning_rate = 5e-4;
    let resumed = train_run::<Architecture, B>(
        &run,
        &longer,
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap();
    assert_eq!(resumed.metrics.train.epoch, [1, 2]);
    assert_eq!(
        run.read_config::<Architecture>()
            .unwrap()
            .training
            .learning_rate,
        5e-4
    );
}

#[test]
fn evaluations_survive_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    let _ = train_run::<Architecture, B>(&run, &config(1), &data, &device, RunOptions::new("cpu"))
        .unwrap();
    let eval = EvalOptions {
        importance_samples: 10,
        limit: 0,
    };
    let log_px = evaluate_run::<Architecture, B>(&run, &data, &device, &eval)
        .unwrap()
        .is_log_px_nats
        .unwrap();

    let resumed = train_run::<Architecture, B>(
        &run,
        &config(2),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap();
    let metrics = run.read_metrics().unwrap();
    assert_eq!(metrics, resumed.metrics);
    assert_eq!(metrics.test.as_ref().unwrap().epoch, Some(2));
    let earlier = &metrics.earlier_tests;
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].epoch, Some(1));
    assert_eq!(earlier[0].is_log_px_nats, Some(log_px));
}

#[test]
fn bits_per_dim_only_where_the_likelihood_is_a_probability_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let mut binarised = config(1);
    binarised.data.eval_pixels = PixelMode::Threshold { threshold: 0.5 };
    let outcome = train_run::<Architecture, B>(
        &run,
        &binarised,
        &data,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap();
    let test = outcome.metrics.test.unwrap();
    let bits = test.bits_per_dim.expect("binary test pixels");
    assert!(
        (bits - test.elbo.neg_elbo_nats / (16.0 * std::f64::consts::LN_2)).abs() < 1e-9,
        "{bits}"
    );
    assert_eq!(test.bits_per_dim_note, None);
}

#[test]
fn a_locked_run_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let _held = run.lock().unwrap();
    let err = train_run::<Architecture, B>(
        &run,
        &config(1),
        &data,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Locked { pid: Some(pid), .. } if pid == std::process::id()));
    assert!(!run.config_file().exists(), "nothing written");
}

#[test]
fn no_validation_split_trains_on_every_example() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let no_valid = DataSplits {
        valid: Arc::new(InMemDataset::new(Vec::<ImageItem>::new())),
        ..data
    };
    let outcome = train_run::<Architecture, B>(
        &run,
        &config(2),
        &no_valid,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap();
    assert!(outcome.finished());
    assert_eq!(outcome.metrics.train.epoch, [1, 2]);
    assert!(outcome.metrics.valid.epoch.is_empty());

    let mut early = config(2);
    early.training.early_stopping_patience = 2;
    let other = RunDir::create(dir.path().join("other")).unwrap();
    let err = train_run::<Architecture, B>(
        &other,
        &early,
        &no_valid,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("training.early_stopping_patience"),
        "{err}"
    );
}

#[test]
fn a_step_that_cannot_fit_in_memory_is_refused() {
    if vae_train::memory::available_memory().is_none() {
        eprintln!("skipped: this platform does not report available memory");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let mut huge = config(1);
    huge.training.latent_samples = 1 << 40;
    let err = train_run::<Architecture, B>(
        &run,
        &huge,
        &data,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Memory { .. }), "{err}");
    assert!(err.to_string().contains("training.latent_samples"), "{err}");
}
