//! Runs as a library: train a [`ModelSpec`] into a [`RunDir`] (checkpoints, resume, test
//! evaluation, weights, pictures, `metrics.json`), then evaluate it or sample from it — for
//! the built-in architectures and for your own models alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use vae_core::{ImageShape, ImportanceSampling};
use vae_data::{DataSplits, ImageItem, load_dataset};
use vae_models::{
    ConditionValue, TrainableDecoder, TrainableEncoder, Vae, condition_vector, persist,
};

use crate::artifacts;
use crate::checkpoint::write_atomically;
use crate::data_parallel::{
    DataParallel, DataParallelConfig, DataParallelError, GradientExchanges,
};
use crate::error::TrainError;
use crate::evaluate::{self, BitsPerDim, Prefix, TestMetrics};
use crate::renderer::{History, RunControl};
use crate::report::RunMetrics;
use crate::run_dir::{RunConfig, RunDir, RunInfo};
use crate::spec::{ModelSpec, ModelVisitor};
use crate::strategy::{LoopOutcome, StopReason};
use crate::trainer::{Trainer, checkpoint_to_resume};

/// How [`train_run`] trains, besides the run's configuration.
#[derive(Clone)]
pub struct RunOptions {
    /// Continue the run from its last complete checkpoint.
    pub resume: bool,
    /// Stop handle (Ctrl-C) and NaN reporting.
    pub control: Arc<RunControl>,
    /// The backend's name, recorded in `run.json` and `metrics.json`.
    pub backend: String,
    /// Train as rank 0 of a data-parallel group ([`follow_run`] runs the other ranks).
    pub data_parallel: Option<DataParallelConfig>,
}

impl RunOptions {
    /// A new run (not resumed) on the backend named `backend`, with a fresh stop handle.
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            resume: false,
            control: RunControl::new(burn::train::Interrupter::new()),
            backend: backend.into(),
            data_parallel: None,
        }
    }

    /// The same, as rank 0 of the data-parallel group `group` (its `rank` must be 0).
    pub fn with_data_parallel(mut self, group: DataParallelConfig) -> Self {
        self.data_parallel = Some(group);
        self
    }

    /// The same, continuing the run from its last complete checkpoint.
    pub fn resumed(mut self) -> Self {
        self.resume = true;
        self
    }
}

/// What [`train_run`] did. Check [`finished`](Self::finished): a stopped or diverged run is
/// an `Ok` outcome too.
#[derive(Debug, Clone)]
#[must_use]
pub struct RunOutcome {
    /// Why training ended and the last complete checkpoint. Only [`StopReason::Finished`] and
    /// [`StopReason::EarlyStopped`] runs were evaluated and have weights and pictures.
    pub stopped: LoopOutcome,
    /// The first epoch this invocation trained.
    pub first_epoch: usize,
    /// What `metrics.json` now holds.
    pub metrics: RunMetrics,
    /// When resuming: the latest checkpoint's file that could not be read, if training
    /// continued from the previous checkpoint instead.
    pub resume_fallback: Option<crate::checkpoint::CheckpointFileError>,
    /// Data-parallel training: what this rank's gradient all-reduces cost.
    pub gradient_exchanges: Option<GradientExchanges>,
}

impl RunOutcome {
    /// Whether training ran to its end (all epochs, or early stopping) and the final outputs
    /// were written.
    pub fn finished(&self) -> bool {
        matches!(
            self.stopped.stop,
            StopReason::Finished | StopReason::EarlyStopped(_)
        )
    }
}

/// The data of a run, found again where it was trained (`run.json`) with its options.
pub fn load_run_data<S: ModelSpec>(
    run: &RunDir,
    config: &RunConfig<S>,
    progress: bool,
) -> Result<DataSplits, TrainError> {
    let info = run.read_info()?;
    Ok(load_dataset(
        &config.dataset,
        Some(&info.data_dir),
        &config.data,
        progress,
    )?)
}

/// Trains the run in `run` on `data` with backend `B`: writes `config.toml` and `run.json`,
/// trains (or resumes) with a checkpoint every epoch, and when training reaches its end
/// evaluates the test split and writes `model.safetensors`, the pictures and `metrics.json`.
/// A stopped or diverged run writes `metrics.json` with its curves and keeps its checkpoints.
///
/// The backend is seeded with `config.training.seed` before the model is built.
///
/// With [`RunOptions::data_parallel`], this process is rank 0 of a data-parallel group: after
/// the checks and before training it joins the group and sends the other ranks
/// ([`follow_run`]) the run's configuration, then its model (see [`Trainer::data_parallel`]).
pub fn train_run<S: ModelSpec, B: AutodiffBackend>(
    run: &RunDir,
    config: &RunConfig<S>,
    data: &DataSplits,
    device: &B::Device,
    options: RunOptions,
) -> Result<RunOutcome, TrainError> {
    config.validate()?;
    config.model.validate(data.shape)?;
    check_conditions(&config.model, data)?;
    let _lock = run.lock()?;
    run.remove_temporaries();
    // Refuse before anything is written: a finished or existing run keeps its configuration,
    // and a resumed one its model and data.
    let earlier = if options.resume {
        config.check_resumable_from(&run.read_config::<S>()?)?;
        run.read_metrics().ok()
    } else {
        None
    };
    checkpoint_to_resume(
        run.path(),
        options.resume,
        config.training.epochs,
        run.is_finished(),
    )?;
    B::seed(device, config.training.seed);
    run.write_config(config)?;
    let data_dir = std::path::absolute(&data.dir).unwrap_or_else(|_| data.dir.clone());
    run.write_info(&RunInfo {
        data_dir,
        backend: options.backend.clone(),
        shape: Some(data.shape),
    })?;
    let group = match &options.data_parallel {
        Some(group) if group.rank != 0 => {
            return Err(DataParallelError::Setting(format!(
                "train_run is rank 0; rank {} runs follow_run",
                group.rank
            ))
            .into());
        }
        Some(group) => {
            let group = DataParallel::join::<B::InnerBackend>(group.clone(), device)?;
            group.share_from_rank_zero::<B::InnerBackend>(
                "sending the run's configuration",
                Some(config.to_toml()?.into_bytes()),
                device,
            )?;
            Some(Arc::new(group))
        }
        None => None,
    };
    config.model.build::<B, _>(
        device,
        TrainVisitor {
            run: Some(run),
            config,
            data,
            device,
            options,
            earlier,
            group,
        },
    )?
}

/// Trains as rank `group.rank` ≠ 0 of a data-parallel run that rank 0 trains with
/// [`train_run`]: joins the group, receives rank 0's configuration, loads that dataset from
/// `data_dir` (or where it is found by default, as for a new run), and trains in step with
/// rank 0, starting from its model. Writes nothing: the returned outcome's metrics are the
/// training metrics averaged over the ranks, as rank 0 records them.
pub fn follow_run<S: ModelSpec, B: AutodiffBackend>(
    group: DataParallelConfig,
    data_dir: Option<&Path>,
    device: &B::Device,
    options: RunOptions,
) -> Result<(RunConfig<S>, RunOutcome), TrainError> {
    if group.rank == 0 {
        return Err(DataParallelError::Setting(
            "rank 0 runs train_run, the other ranks follow_run".into(),
        )
        .into());
    }
    let rank = group.rank;
    let group = DataParallel::join::<B::InnerBackend>(group, device)?;
    let text = group.share_from_rank_zero::<B::InnerBackend>(
        "receiving the run's configuration",
        None,
        device,
    )?;
    let unreadable = |problem: String| DataParallelError::FromRankZero {
        rank,
        what: "the run's configuration",
        problem,
    };
    let text = String::from_utf8(text).map_err(|e| unreadable(e.to_string()))?;
    let config = RunConfig::<S>::from_toml(&text, Path::new("config.toml"))
        .map_err(|e| unreadable(e.to_string()))?;
    config.validate()?;
    let data = load_dataset(&config.dataset, data_dir, &config.data, false)?;
    config.model.validate(data.shape)?;
    check_conditions(&config.model, &data)?;
    // Its own latent noise (the same seed on every rank would draw the same ε for the k-th
    // example of every rank's batch); the weights it initialises are replaced by rank 0's.
    B::seed(
        device,
        config
            .training
            .seed
            .wrapping_add(u64::from(rank).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    );
    let outcome = config.model.build::<B, _>(
        device,
        TrainVisitor {
            run: None,
            config: &config,
            data: &data,
            device,
            options,
            earlier: None,
            group: Some(Arc::new(group)),
        },
    )??;
    Ok((config, outcome))
}

/// Checks, before anything is written, that every split can condition a conditional model
/// (every example has a class label the model has a class for, or the attributes it names).
fn check_conditions<S: ModelSpec>(model: &S, data: &DataSplits) -> Result<(), TrainError> {
    match model.condition() {
        Some(condition) => crate::condition::check_run_data(&condition, data),
        None => Ok(()),
    }
}

struct TrainVisitor<'a, S, B: AutodiffBackend> {
    /// The run directory; `None` on a data-parallel rank other than 0, which writes nothing.
    run: Option<&'a RunDir>,
    config: &'a RunConfig<S>,
    data: &'a DataSplits,
    device: &'a B::Device,
    options: RunOptions,
    /// `metrics.json` before this invocation (when resuming): its evaluations are kept.
    earlier: Option<RunMetrics>,
    group: Option<Arc<DataParallel>>,
}

impl<S: ModelSpec, B: AutodiffBackend> ModelVisitor<B> for TrainVisitor<'_, S, B> {
    type Output = Result<RunOutcome, TrainError>;

    fn visit<E: TrainableEncoder<B>, D: TrainableDecoder<B>>(
        self,
        model: Vae<B, E, D>,
    ) -> Self::Output {
        let Self {
            run,
            config,
            data,
            device,
            options,
            earlier,
            group,
        } = self;
        // train_run checked every split's conditions before writing anything.
        let mut trainer = Trainer::new(model, device.clone())
            .data_checked(data.train.clone(), data.valid.clone())
            .config(config.training.clone())
            .resume(options.resume)
            .control(options.control.clone());
        if let Some(run) = run {
            trainer = trainer.run_dir(run.path());
        }
        if let Some(health) = &data.health {
            trainer = trainer.data_health(health.clone());
        }
        if let Some(group) = &group {
            trainer = trainer.data_parallel(group.clone());
        }
        let result = trainer.fit()?;
        let gradient_exchanges = group.map(|g| g.gradient_exchanges());
        let mut metrics = RunMetrics::new(
            &config.dataset,
            &options.backend,
            &result.history,
            result.train_images_per_second,
            result.outcome.stop.to_string(),
        );
        if let Some(earlier) = earlier {
            metrics.keep_evaluations_of(earlier);
        }
        let outcome = |metrics| RunOutcome {
            stopped: result.outcome.clone(),
            first_epoch: result.first_epoch,
            resume_fallback: result.resume_fallback.clone(),
            gradient_exchanges,
            metrics,
        };
        let Some(run) = run else {
            return Ok(outcome(metrics));
        };
        if !matches!(
            result.outcome.stop,
            StopReason::Finished | StopReason::EarlyStopped(_)
        ) {
            run.write_metrics(&metrics)?;
            return Ok(outcome(metrics));
        }
        crate::fault::point("training-finished");
        let model = result.model;
        let (bits, note) = match config.model.likelihood() {
            Some(likelihood) => match BitsPerDim::for_data(likelihood, &config.data.eval_pixels) {
                Ok(bits) => (Some(bits), None),
                Err(note) => (None, Some(note)),
            },
            None => (None, None),
        };
        let batch = config.training.batch_size.max(256);
        let mut test = evaluate::evaluate(&model, data.test.as_ref(), batch, bits, device)?;
        test.bits_per_dim_note = note;
        test.epoch = Some(metrics.epochs);
        metrics.set_test(test);
        // metrics.json last: its test evaluation of the last epoch marks the run finished.
        write_atomically(&run.weights_file(), &persist::safetensors_bytes(&model)?)?;
        artifacts::write_model_pictures(
            &model,
            data.test.as_ref(),
            data.shape,
            run.path(),
            device,
        )?;
        write_curves(&result.history, run)?;
        run.write_metrics(&metrics)?;
        Ok(outcome(metrics))
    }
}

fn write_curves(history: &History, run: &RunDir) -> Result<(), TrainError> {
    artifacts::write_curves(history, &run.path().join("curves.png"))
}

/// What [`evaluate_run`] computes; the default is the command line's: K = 5000 on every test
/// example.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// K, importance samples per test example for log p(x) (0 = the ELBO terms only).
    pub importance_samples: usize,
    /// Evaluate only the first N test examples (0 = all). The full-test-set ELBO written by
    /// training is then kept, and only log p(x) is added for the N examples.
    pub limit: usize,
}

/// Evaluates a trained run on its test split with backend `B`: the ELBO terms and, with
/// importance samples, log p(x). Returns what was computed; `metrics.json` stores it (with a
/// `limit`, only log p(x) is stored beside the full test-set ELBO written by training;
/// without importance samples, an earlier log p(x) is kept).
pub fn evaluate_run<S: ModelSpec, B: AutodiffBackend>(
    run: &RunDir,
    data: &DataSplits,
    device: &B::Device,
    options: &EvalOptions,
) -> Result<TestMetrics, TrainError> {
    let config: RunConfig<S> = run.read_config()?;
    config.model.validate(data.shape)?;
    let _lock = run.lock()?;
    B::seed(device, config.training.seed);
    let test: Arc<dyn Dataset<ImageItem>> = if options.limit > 0 {
        Arc::new(Prefix::new(data.test.clone(), options.limit))
    } else {
        data.test.clone()
    };
    let subset = config.model.build::<B, _>(
        device,
        EvalVisitor {
            weights: run.weights_file(),
            test,
            bits: config
                .model
                .likelihood()
                .map(|l| BitsPerDim::for_data(l, &config.data.eval_pixels)),
            device,
            options,
        },
    )??;
    let mut metrics = run.read_metrics()?;
    // The weights evaluated are those training wrote with its own evaluation.
    let mut subset = subset;
    subset.epoch = metrics.test.as_ref().and_then(|t| t.epoch);
    let stored = match (metrics.test.take(), options.limit > 0) {
        // A partial evaluation adds log p(x) but keeps the full test-set ELBO from training.
        (Some(full), true) => TestMetrics {
            is_log_px_nats: subset.is_log_px_nats,
            importance_samples: subset.importance_samples,
            is_examples: subset.is_examples,
            ..full
        },
        // Without importance samples, an earlier log p(x) is kept.
        (Some(earlier), false) if subset.is_log_px_nats.is_none() => TestMetrics {
            is_log_px_nats: earlier.is_log_px_nats,
            importance_samples: earlier.importance_samples,
            is_examples: earlier.is_examples,
            ..subset.clone()
        },
        _ => subset.clone(),
    };
    metrics.test = Some(stored);
    run.write_metrics(&metrics)?;
    Ok(subset)
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            importance_samples: 5000,
            limit: 0,
        }
    }
}

struct EvalVisitor<'a, B: AutodiffBackend> {
    weights: PathBuf,
    test: Arc<dyn Dataset<ImageItem>>,
    bits: Option<Result<BitsPerDim, String>>,
    device: &'a B::Device,
    options: &'a EvalOptions,
}

impl<B: AutodiffBackend> ModelVisitor<B> for EvalVisitor<'_, B> {
    type Output = Result<TestMetrics, TrainError>;

    fn visit<E: TrainableEncoder<B>, D: TrainableDecoder<B>>(
        self,
        model: Vae<B, E, D>,
    ) -> Self::Output {
        let model = persist::load_safetensors(model.valid(), &self.weights)?;
        let device = self.device;
        let bits = self.bits.as_ref().and_then(|b| b.as_ref().ok().copied());
        let mut metrics = evaluate::evaluate(&model, self.test.as_ref(), 64, bits, device)?;
        metrics.bits_per_dim_note = self.bits.and_then(|b| b.err());
        let k = self.options.importance_samples;
        if k > 0 {
            let sampling = ImportanceSampling::new()
                .with_num_samples(k)
                .with_chunk_size(250.min(k));
            // Batches small enough that chunk × batch × D decoder outputs fit comfortably.
            let batch = (4_000_000 / (sampling.chunk_size * model.data_dim()).max(1)).clamp(1, 256);
            metrics.is_log_px_nats = Some(evaluate::importance_sampled_log_px(
                &model,
                self.test.as_ref(),
                batch,
                &sampling,
                device,
            )?);
            metrics.importance_samples = Some(k);
            metrics.is_examples = Some(metrics.examples);
        }
        Ok(metrics)
    }
}

/// Draws `n` samples from a trained run's prior with backend `B` (seeded with `seed`) and
/// writes them as a PNG grid to `out`.
///
/// A conditional model draws `n` samples under `condition` (a class, or the attributes
/// present), or, without one, the condition-by-sample picture: one row per condition of
/// [`picture_rows`](vae_models::ConditionConfig::picture_rows) (each class; or no attribute, then each attribute alone),
/// each column one z ~ p(z) decoded under every row's condition. A condition the model cannot
/// take (an unconditional model, a class out of range, an attribute it does not know) is
/// [`TrainError::SampleCondition`].
pub fn sample_run<S: ModelSpec, B: AutodiffBackend>(
    run: &RunDir,
    n: usize,
    condition: Option<ConditionValue>,
    seed: u64,
    out: &Path,
    device: &B::Device,
) -> Result<(), TrainError> {
    if n == 0 {
        return Err(TrainError::NoSamples);
    }
    let config: RunConfig<S> = run.read_config()?;
    // A condition the model cannot take is refused before anything is loaded.
    if let Some(value) = &condition {
        condition_vector(config.model.condition().as_ref(), value)?;
    }
    let shape = run.read_info()?.shape;
    if let Some(shape) = shape.or_else(|| config.model.image_shape()) {
        crate::memory::check(
            &format!("{n} samples"),
            crate::memory::sampling_bytes(
                n * config
                    .model
                    .condition()
                    .map_or(1, |c| c.picture_rows().len()),
                shape.num_values(),
            ),
            "draw fewer samples",
        )?;
    }
    B::seed(device, seed);
    let (images, cols) = config.model.build::<B, _>(
        device,
        SampleVisitor {
            weights: run.weights_file(),
            n,
            condition,
            device,
        },
    )??;
    let d = images.first().map_or(0, Vec::len);
    let shape = shape
        .or_else(|| config.model.image_shape())
        .or_else(|| ImageShape::square_grey(d))
        .filter(|s| s.num_values() == d)
        .ok_or(TrainError::NotAnImage { values: d })?;
    artifacts::save_grid(out, &images, shape, cols.max(1))
}

struct SampleVisitor<'a, B: AutodiffBackend> {
    weights: PathBuf,
    n: usize,
    condition: Option<ConditionValue>,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModelVisitor<B> for SampleVisitor<'_, B> {
    /// The samples, and the columns of their grid.
    type Output = Result<(Vec<Vec<f32>>, usize), TrainError>;

    fn visit<E: TrainableEncoder<B>, D: TrainableDecoder<B>>(
        self,
        model: Vae<B, E, D>,
    ) -> Self::Output {
        let Self {
            n,
            condition,
            device,
            ..
        } = self;
        let square = (n as f64).sqrt().ceil() as usize;
        let model = persist::load_safetensors(model.valid(), &self.weights)?;
        let given = match &condition {
            Some(value) => Some(model.condition_of(value, n, device)?),
            None => None,
        };
        match (given, model.condition()) {
            (Some(c), _) => Ok((artifacts::rows(model.sample_given(c)), square)),
            (None, None) => Ok((artifacts::rows(model.sample(n, device)), square)),
            (None, Some(condition)) => {
                let images = artifacts::condition_by_sample(&model, condition, n, None, device);
                Ok((artifacts::rows(images), n))
            }
        }
    }
}
