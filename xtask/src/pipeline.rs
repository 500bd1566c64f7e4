//! `train`, `eval` and `sample`: the same steps for every backend and architecture.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use vae_core::ImportanceSampling;
use vae_models::{Architecture, Likelihood, TrainableDecoder, TrainableEncoder, Vae, persist};
use vae_train::strategy::StopReason;
use vae_train::{
    BitsPerDim, RunControl, RunMetrics, TestMetrics, TrainRequest, artifacts, evaluate,
};

use crate::data::{LoadedData, load};
use crate::settings::RunConfig;

/// Facts about a run that are not configuration: where its data was, what trained it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The dataset directory used.
    pub data_dir: PathBuf,
    /// The backend.
    pub backend: String,
}

impl RunInfo {
    fn path(run: &Path) -> PathBuf {
        run.join("run.json")
    }

    fn write(&self, run: &Path) -> Result<()> {
        vae_train::checkpoint::write_atomically(
            &Self::path(run),
            &serde_json::to_vec_pretty(self)?,
        )?;
        Ok(())
    }

    /// Reads `<run>/run.json`.
    pub fn read(run: &Path) -> Result<Self> {
        let path = Self::path(run);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{}: not a run directory", run.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt", path.display()))
    }
}

fn likelihood(model: &Architecture) -> Likelihood {
    match model {
        Architecture::Mlp(c) => c.likelihood,
        Architecture::Conv(c) => c.likelihood,
    }
}

/// What `train` needs besides the backend.
pub struct TrainJob {
    /// Resolved configuration.
    pub config: RunConfig,
    /// The run directory.
    pub run_dir: PathBuf,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--resume`.
    pub resume: bool,
    /// Ctrl-C and NaN handling.
    pub control: Arc<RunControl>,
    /// Backend name for reports.
    pub backend: String,
}

/// Trains on backend `B`, dispatching on the architecture.
pub fn train<B: AutodiffBackend>(job: TrainJob, device: B::Device) -> Result<()> {
    B::seed(&device, job.config.training.seed);
    let data = load(&job.config, job.data_dir.as_deref(), true)?;
    job.config
        .model
        .validate(Some(data.dims.num_values()))
        .context("configuration key `model` does not fit the data")?;
    match job.config.model.clone() {
        Architecture::Mlp(c) => train_model(job, data, c.init::<B>(&device), device),
        Architecture::Conv(c) => train_model(job, data, c.init::<B>(&device), device),
    }
}

fn train_model<B, E, D>(
    job: TrainJob,
    data: LoadedData,
    model: Vae<B, E, D>,
    device: B::Device,
) -> Result<()>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    let run = job.run_dir.clone();
    std::fs::write(run.join("config.toml"), job.config.to_toml()?)
        .with_context(|| format!("{}: cannot write", run.join("config.toml").display()))?;
    RunInfo {
        data_dir: data.dir.clone(),
        backend: job.backend.clone(),
    }
    .write(&run)?;
    println!(
        "training {} on {}: {} train / {} valid examples, up to epoch {}, run directory {}",
        job.config.dataset,
        job.backend,
        data.train.len(),
        data.valid.len(),
        job.config.training.epochs,
        run.display()
    );
    let started = std::time::Instant::now();
    let result = vae_train::train(TrainRequest {
        device: device.clone(),
        model,
        train: data.train.clone(),
        valid: data.valid.clone(),
        config: job.config.training.clone(),
        run_dir: run.clone(),
        resume: job.resume,
        control: job.control.clone(),
        data_health: data.health.clone(),
    })?;
    let stopped = format!("{:?}", result.outcome.stop);
    let mut metrics = RunMetrics::new(
        &job.config.dataset,
        &job.backend,
        &result.history,
        result.train_images_per_second,
        stopped,
    );
    let checkpoint = result
        .outcome
        .last_checkpoint
        .map_or("none".to_string(), |m| format!("epoch {}", m.epoch));
    match &result.outcome.stop {
        StopReason::Finished | StopReason::EarlyStopped(_) => {}
        StopReason::UserStop(epoch) => {
            metrics.write(&run.join("metrics.json"))?;
            println!(
                "stopped during epoch {epoch}; the state is checkpointed. `--resume --out {}` redoes epoch {epoch} from it",
                run.display()
            );
            return Ok(());
        }
        StopReason::NonFinite(why) => {
            metrics.write(&run.join("metrics.json"))?;
            let kept = match result.outcome.last_checkpoint {
                Some(m) => format!("The last good checkpoint (epoch {}) is kept in {}; lower training.learning_rate and --resume from it, or start over", m.epoch, run.join("checkpoints").display()),
                None => "No checkpoint was written: it diverged in the first epoch; lower training.learning_rate".to_string(),
            };
            bail!("training diverged: {why}. {kept}");
        }
        StopReason::DataError(why) => bail!("data error: {why} (last checkpoint: {checkpoint})"),
        StopReason::CheckpointFailed(why) => {
            bail!("checkpointing failed: {why} (last good checkpoint: {checkpoint})")
        }
    }

    let model = result.model;
    let inner = device.clone();
    let bits = BitsPerDim::for_likelihood(likelihood(&job.config.model));
    let test = evaluate::evaluate(
        &model,
        data.test.as_ref(),
        job.config.training.batch_size.max(256),
        bits,
        &inner,
    )?;
    println!(
        "test: neg_elbo_nats={:.3} log_likelihood_nats={:.3} kl_nats={:.3} bits_per_dim={:.4} ({} examples)",
        test.neg_elbo_nats,
        test.log_likelihood_nats,
        test.kl_nats,
        test.bits_per_dim,
        test.examples
    );
    metrics.test = Some(test);
    persist::save_safetensors(&model, &run.join("model.safetensors"))?;
    artifacts::write_model_pictures(&model, data.test.as_ref(), data.dims, &run, &inner)?;
    artifacts::write_curves(&result.history, &run.join("curves.png"))?;
    metrics.write(&run.join("metrics.json"))?;
    println!(
        "done in {:.1} s ({:.0} training images/s); wrote {}",
        started.elapsed().as_secs_f64(),
        metrics.train_images_per_second,
        run.display()
    );
    Ok(())
}

/// Loads a run's trained model on backend `B` and hands it to `f`.
fn with_model<B: Backend, T>(
    config: &RunConfig,
    run: &Path,
    device: &B::Device,
    f: impl FnOnce(ModelRef<'_, B>) -> Result<T>,
) -> Result<T> {
    let weights = run.join("model.safetensors");
    match &config.model {
        Architecture::Mlp(c) => f(ModelRef::Mlp(&persist::load_safetensors(
            c.init::<B>(device),
            &weights,
        )?)),
        Architecture::Conv(c) => f(ModelRef::Conv(&persist::load_safetensors(
            c.init::<B>(device),
            &weights,
        )?)),
    }
}

/// A loaded model of either architecture.
enum ModelRef<'a, B: Backend> {
    Mlp(&'a Vae<B, vae_models::MlpEncoder<B>, vae_models::MlpDecoder<B>>),
    Conv(&'a Vae<B, vae_models::ConvEncoder<B>, vae_models::ConvDecoder<B>>),
}

/// `eval --run DIR`: test ELBO terms and importance-sampled log p(x), added to `metrics.json`.
pub fn eval<B: Backend>(
    run: &Path,
    importance_samples: usize,
    limit: usize,
    device: B::Device,
) -> Result<()> {
    let config = RunConfig::for_run(run, &Default::default())?;
    let info = RunInfo::read(run)?;
    B::seed(&device, config.training.seed);
    let data = load(&config, Some(&info.data_dir), true)?;
    let test: Arc<dyn burn::data::dataset::Dataset<vae_data::ImageItem>> = if limit > 0 {
        Arc::new(vae_train::evaluate::Prefix::new(data.test.clone(), limit))
    } else {
        data.test.clone()
    };
    let bits = BitsPerDim::for_likelihood(likelihood(&config.model));
    let sampling = ImportanceSampling::new()
        .with_num_samples(importance_samples)
        .with_chunk_size(250.min(importance_samples));
    // Batches small enough that chunk × batch × D decoder outputs fit comfortably.
    let batch = (4_000_000 / (sampling.chunk_size * data.dims.num_values())).clamp(1, 256);
    let started = std::time::Instant::now();
    let subset = with_model::<B, _>(&config, run, &device, |model| {
        let (mut metrics, log_px) = match model {
            ModelRef::Mlp(m) => (
                evaluate::evaluate(m, test.as_ref(), 256, bits, &device)?,
                evaluate::importance_sampled_log_px(m, test.as_ref(), batch, &sampling, &device)?,
            ),
            ModelRef::Conv(m) => (
                evaluate::evaluate(m, test.as_ref(), 64, bits, &device)?,
                evaluate::importance_sampled_log_px(m, test.as_ref(), batch, &sampling, &device)?,
            ),
        };
        metrics.is_log_px_nats = Some(log_px);
        metrics.importance_samples = Some(importance_samples);
        metrics.is_examples = Some(metrics.examples);
        Ok(metrics)
    })?;
    println!(
        "test ({} examples): neg_elbo_nats={:.3}, is_log_px_nats={:.3} (K = {importance_samples}): log p(x) ≥ ELBO by {:.3} nats, in {:.1} s",
        subset.examples,
        subset.neg_elbo_nats,
        subset.is_log_px_nats.unwrap_or(f64::NAN),
        subset.is_log_px_nats.unwrap_or(f64::NAN) + subset.neg_elbo_nats,
        started.elapsed().as_secs_f64()
    );
    let path = run.join("metrics.json");
    let mut metrics = RunMetrics::read(&path)?;
    // A partial evaluation adds log p(x) but keeps the full test-set ELBO written by training.
    let test_metrics = match (&metrics.test, limit > 0) {
        (Some(full), true) => TestMetrics {
            is_log_px_nats: subset.is_log_px_nats,
            importance_samples: subset.importance_samples,
            is_examples: subset.is_examples,
            ..full.clone()
        },
        _ => subset,
    };
    metrics.test = Some(test_metrics);
    metrics.write(&path)?;
    Ok(())
}

/// `sample --run DIR`: `n` samples from the prior as a PNG grid.
pub fn sample<B: Backend>(
    run: &Path,
    n: usize,
    out: Option<PathBuf>,
    seed: u64,
    device: B::Device,
) -> Result<PathBuf> {
    let config = RunConfig::for_run(run, &Default::default())?;
    B::seed(&device, seed);
    let out = out.unwrap_or_else(|| run.join(format!("samples-{n}.png")));
    let dims = match &config.model {
        Architecture::Mlp(c) => {
            let side = (c.input_dim as f64).sqrt().round() as usize;
            if side * side != c.input_dim {
                bail!(
                    "cannot draw samples of {} values as a square image",
                    c.input_dim
                );
            }
            vae_data::ImageDims {
                channels: 1,
                height: side,
                width: side,
            }
        }
        Architecture::Conv(c) => vae_data::ImageDims {
            channels: c.image.channels,
            height: c.image.height,
            width: c.image.width,
        },
    };
    let images = with_model::<B, _>(&config, run, &device, |model| {
        let t = match model {
            ModelRef::Mlp(m) => m.sample(n, &device),
            ModelRef::Conv(m) => m.sample(n, &device),
        };
        let [rows, d] = t.dims();
        let flat = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
        Ok((0..rows)
            .map(|i| flat[i * d..(i + 1) * d].to_vec())
            .collect::<Vec<_>>())
    })?;
    let cols = (n as f64).sqrt().ceil() as usize;
    artifacts::save_grid(&out, &images, dims, cols.max(1))?;
    Ok(out)
}
