//! `cargo xtask bench`: training throughput of the standard cases, optionally side by side with
//! PyTorch (`xtask/reference/torch_reference.py`) in the same invocation.
//!
//! Each case times the full training step — forward, ELBO, backward, Adam — after a warm-up,
//! and the cold start (model creation to the end of the first step, which on a GPU includes
//! compiling kernels). Ratios burn / PyTorch, not absolute numbers, are what to compare on
//! shared machines.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use burn::train::TrainStep;
use clap::Args;
use serde::{Deserialize, Serialize};
use vae_core::{ElboObjective, KlEstimator};
use vae_data::ImageBatch;
use vae_models::{
    ConvVaeConfig, GaussianScale, Likelihood, MlpVaeConfig, TrainableDecoder, TrainableEncoder, Vae,
};
use vae_train::backend::{BackendChoice, BackendRequest, Cpu, resolve};
use vae_train::{FusedAdamConfig, TrainableVae};

use vae_cli::BackendArg;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    /// Also write the records as a JSON array to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Few steps per case: checks the harness, not the speed.
    #[arg(long)]
    quick: bool,
    /// Run the PyTorch reference on the same cases and print burn / PyTorch ratios.
    #[arg(long)]
    vs_pytorch: bool,
    /// Python interpreter with PyTorch, for --vs-pytorch.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Comma-separated subset of cases (mlp-b128, mlp-b1024, conv-b64, conv-b256).
    #[arg(long)]
    cases: Option<String>,
}

/// One measured case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Case name, e.g. `mlp-b128`.
    pub case: String,
    /// Which implementation.
    pub framework: String,
    /// Device / backend.
    pub device: String,
    /// Examples per step.
    pub batch: usize,
    /// Timed steps per segment.
    pub steps: usize,
    /// Training images per second after warm-up (median of 3 timed segments).
    pub images_per_second: f64,
    /// Seconds from model creation to the end of the first step.
    pub first_step_seconds: f64,
    /// burn / PyTorch images-per-second ratio, when both ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_pytorch: Option<f64>,
}

const ALL_CASES: [&str; 4] = ["mlp-b128", "mlp-b1024", "conv-b64", "conv-b256"];

/// Timed segments per case (one with `--quick`); the median is reported.
const REPEATS: usize = 3;

fn time_case<B, E, D>(
    case: &str,
    make: impl FnOnce(&B::Device) -> Vae<B, E, D>,
    input: [usize; 2],
    (warmup, steps, repeats): (usize, usize, usize),
    device: &B::Device,
    device_name: &str,
) -> Record
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    B::seed(device, 0);
    let started = Instant::now();
    let mut model = TrainableVae::new(
        make(device),
        ElboObjective::default(),
        KlEstimator::Analytic,
        1,
        0,
    );
    let mut optim = FusedAdamConfig::new().init();
    let x = Tensor::<B, 2>::random(input, Distribution::Uniform(0.0, 1.0), device);
    let mut step = |model: TrainableVae<B, E, D>| {
        let out = TrainStep::step(&model, ImageBatch { images: x.clone() });
        let grads: GradientsParams = out.grads;
        (optim.step(1e-3, model, grads), out.item)
    };
    let (next, terms) = step(model);
    model = next;
    let _ = terms.kl.sum().into_scalar(); // wait for the device
    let first = started.elapsed().as_secs_f64();
    for _ in 0..warmup {
        model = step(model).0;
    }
    let sync = |m: &TrainableVae<B, E, D>| {
        // Reading a parameter back waits for every queued step.
        let _ = m
            .vae
            .encode(x.clone().slice([0..1, 0..input[1]]))
            .mean()
            .sum()
            .into_scalar();
    };
    // The median of several timed segments: shared machines are noisy (±20% run to run here).
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        sync(&model);
        let t0 = Instant::now();
        for _ in 0..steps {
            model = step(model).0;
        }
        sync(&model);
        rates.push((input[0] * steps) as f64 / t0.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Record {
        case: case.to_string(),
        framework: "burn".into(),
        device: device_name.to_string(),
        batch: input[0],
        steps,
        images_per_second: rates[rates.len() / 2],
        first_step_seconds: first,
        ratio_vs_pytorch: None,
    }
}

fn burn_cases<B: AutodiffBackend>(
    cases: &[&str],
    quick: bool,
    device: &B::Device,
    device_name: &str,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for &case in cases {
        let (model, batch) = case
            .split_once("-b")
            .context("case names are <model>-b<batch>")?;
        let batch: usize = batch.parse().context("batch size")?;
        let record = match model {
            "mlp" => {
                let plan = if quick { (2, 5, 1) } else { (10, 100, REPEATS) };
                time_case::<B, _, _>(
                    case,
                    |d| MlpVaeConfig::kingma_welling(784).init(d),
                    [batch, 784],
                    plan,
                    device,
                    device_name,
                )
            }
            "conv" => {
                let plan = if quick {
                    (1, 1, 1)
                } else if device_name.starts_with("cpu") {
                    (1, 5, REPEATS)
                } else {
                    (3, 50, REPEATS)
                };
                let config = ConvVaeConfig::celeba_64(Likelihood::Gaussian {
                    scale: GaussianScale::Fixed { sigma: 0.1 },
                });
                time_case::<B, _, _>(
                    case,
                    |d| config.init(d),
                    [batch, 3 * 64 * 64],
                    plan,
                    device,
                    device_name,
                )
            }
            other => bail!("unknown case model '{other}'"),
        };
        println!("{}", serde_json::to_string(&record)?);
        records.push(record);
    }
    Ok(records)
}

fn pytorch_cases(python: &str, cases: &[&str], quick: bool, cuda: bool) -> Result<Vec<Record>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/torch_reference.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg("--cases")
        .arg(cases.join(","))
        .arg("--device")
        .arg(if cuda { "cuda" } else { "cpu" });
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed (is torch installed for {python}?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    #[derive(Deserialize)]
    struct Line {
        case: String,
        batch: usize,
        device: String,
        images_per_second: f64,
        first_step_seconds: f64,
        steps: usize,
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let line: Line = serde_json::from_str(l)?;
            Ok(Record {
                case: line.case,
                framework: "pytorch".into(),
                device: line.device,
                batch: line.batch,
                steps: line.steps,
                images_per_second: line.images_per_second,
                first_step_seconds: line.first_step_seconds,
                ratio_vs_pytorch: None,
            })
        })
        .collect()
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    let cases: Vec<&str> = match &args.cases {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => ALL_CASES.to_vec(),
    };
    let request: BackendRequest = args.backend.into();
    let (choice, why) = resolve(request)?;
    eprintln!("backend: {why}");
    let burn = |cases: &[&str]| match choice {
        BackendChoice::Cpu => {
            burn_cases::<Autodiff<Cpu>>(cases, args.quick, &Default::default(), "cpu (flex)")
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => burn_cases::<Autodiff<vae_train::backend::Gpu>>(
            cases,
            args.quick,
            &burn::backend::cuda::CudaDevice::new(0),
            "cuda",
        ),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda => Err(anyhow::anyhow!(
            "--backend cuda: xtask was built without its `cuda` feature"
        )),
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu(adapter) => burn_cases::<Autodiff<vae_train::backend::WgpuGpu>>(
            cases,
            args.quick,
            &vae_train::backend::wgpu_device(adapter),
            "wgpu",
        ),
        #[cfg(not(feature = "wgpu"))]
        BackendChoice::Wgpu(_) => Err(anyhow::anyhow!(
            "--backend wgpu: xtask was built without its `wgpu` feature"
        )),
    };
    let mut records = Vec::new();
    let mut torch = Vec::new();
    if args.vs_pytorch {
        // Each case in both frameworks back to back, so a ratio compares two measurements
        // taken within a minute of each other: on a shared machine the load drifts.
        for &case in &cases {
            records.extend(burn(&[case])?);
            torch.extend(pytorch_cases(
                &args.python,
                &[case],
                args.quick,
                choice == BackendChoice::Cuda,
            )?);
        }
    } else {
        records = burn(&cases)?;
    }
    if args.vs_pytorch {
        println!(
            "\n{:<10} {:>14} {:>14} {:>8} {:>12} {:>12}",
            "case", "burn img/s", "torch img/s", "ratio", "burn 1st s", "torch 1st s"
        );
        for record in records.iter_mut() {
            if let Some(t) = torch.iter().find(|t| t.case == record.case) {
                let ratio = record.images_per_second / t.images_per_second;
                record.ratio_vs_pytorch = Some(ratio);
                println!(
                    "{:<10} {:>14.0} {:>14.0} {:>7.2}x {:>12.2} {:>12.2}",
                    record.case,
                    record.images_per_second,
                    t.images_per_second,
                    ratio,
                    record.first_step_seconds,
                    t.first_step_seconds
                );
            }
        }
        records.extend(torch);
    }
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(path, serde_json::to_vec_pretty(&records)?)
            .with_context(|| format!("--json {}", path.display()))?;
    }
    Ok(())
}
