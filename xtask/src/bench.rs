//! `cargo xtask bench`: training throughput of the standard cases, optionally side by side with
//! PyTorch (`xtask/reference/torch_reference.py`) in the same invocation.
//!
//! Each case times the full training step — forward, ELBO, backward, Adam — after a warm-up,
//! and the cold start (model creation to the end of the first step, which on a GPU includes
//! compiling kernels). Ratios burn / PyTorch, not absolute numbers, are what to compare on
//! shared machines.

use std::path::{Path, PathBuf};
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
    /// The PyTorch twin (`torch_reference.py`), for a binary run away from its source tree.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/torch_reference.py"))]
    reference: PathBuf,
    /// Count the kernels launched per steady-state training step instead of timing (GPU
    /// backends; with --vs-pytorch, next to PyTorch's kernels on CUDA or aten ops on the CPU).
    #[arg(long)]
    launches: bool,
    /// Write this many CelebA-shaped images (178×218 JPEGs, photo-like) to --synthetic-dir
    /// and exit: input for `train image-folder` on a machine without CelebA.
    #[arg(long, requires = "synthetic_dir")]
    synthetic_images: Option<usize>,
    /// Where --synthetic-images writes.
    #[arg(long)]
    synthetic_dir: Option<PathBuf>,
    /// Internal (used by --launches): run exactly this many steps after the first, then exit.
    #[arg(long, hide = true)]
    exact_steps: Option<usize>,
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
    /// Kernels launched per steady-state step (`--launches`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels_per_step: Option<f64>,
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
    kernel_log: Option<&Path>,
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
        let out = TrainStep::step(&model, ImageBatch::new(x.clone()));
        let grads: GradientsParams = out.grads;
        (optim.step(1e-3, model, grads), out.item)
    };
    let (next, terms) = step(model);
    model = next;
    let _ = terms.kl_sum.into_scalar(); // wait for the device
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
    if let Some(log) = kernel_log {
        // Kernel lines in cubecl's log after segments of `steps` and `2 · steps` steps, each
        // ended by a read: the difference of the two differences is `steps` steps' kernels.
        let mut counts = Vec::with_capacity(3);
        for segment in [0, steps, 2 * steps] {
            for _ in 0..segment {
                model = step(model).0;
            }
            sync(&model);
            counts.push(kernel_lines(log) as i64);
        }
        let per_step = ((counts[2] - counts[1]) - (counts[1] - counts[0])) as f64 / steps as f64;
        return Record {
            case: case.to_string(),
            framework: "burn".into(),
            device: device_name.to_string(),
            batch: input[0],
            steps,
            images_per_second: 0.0, // not timed: the profiling log syncs around every kernel
            first_step_seconds: first,
            ratio_vs_pytorch: None,
            kernels_per_step: Some(per_step),
        };
    }
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
        kernels_per_step: None,
    }
}

fn burn_cases<B: AutodiffBackend>(
    cases: &[&str],
    quick: bool,
    exact_steps: Option<usize>,
    device: &B::Device,
    device_name: &str,
) -> Result<Vec<Record>> {
    // In a --launches child, cubecl writes one line per kernel to this file.
    let kernel_log = exact_steps
        .and(std::env::var_os("CUBECL_DEBUG_LOG"))
        .map(PathBuf::from);
    let mut records = Vec::new();
    for &case in cases {
        let (model, batch) = case
            .split_once("-b")
            .context("case names are <model>-b<batch>")?;
        let batch: usize = batch.parse().context("batch size")?;
        let record = match model {
            "mlp" => {
                let plan = match exact_steps {
                    Some(n) => (3, n, 1),
                    None if quick => (2, 5, 1),
                    None => (10, 100, REPEATS),
                };
                time_case::<B, _, _>(
                    case,
                    |d| MlpVaeConfig::kingma_welling(784).init(d),
                    [batch, 784],
                    plan,
                    device,
                    device_name,
                    kernel_log.as_deref(),
                )
            }
            "conv" => {
                let plan = if let Some(n) = exact_steps {
                    (3, n, 1)
                } else if quick {
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
                    kernel_log.as_deref(),
                )
            }
            other => bail!("unknown case model '{other}'"),
        };
        println!("{}", serde_json::to_string(&record)?);
        records.push(record);
    }
    Ok(records)
}

fn pytorch_cases(
    python: &str,
    script: &Path,
    cases: &[&str],
    quick: bool,
    cuda: bool,
) -> Result<Vec<Record>> {
    if !script.is_file() {
        bail!(
            "the PyTorch reference {} is not a file (pass --reference PATH/torch_reference.py)",
            script.display()
        );
    }
    let mut cmd = Command::new(python);
    cmd.arg(script)
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
                kernels_per_step: None,
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
    if let (Some(n), Some(dir)) = (args.synthetic_images, &args.synthetic_dir) {
        return synthetic_faces(dir, n);
    }
    let request: BackendRequest = args.backend.into();
    let (choice, why) = resolve(request)?;
    eprintln!("backend: {why}");
    let burn = |cases: &[&str]| match choice {
        BackendChoice::Cpu => burn_cases::<Autodiff<Cpu>>(
            cases,
            args.quick,
            args.exact_steps,
            &Default::default(),
            "cpu (flex)",
        ),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => burn_cases::<Autodiff<vae_train::backend::Gpu>>(
            cases,
            args.quick,
            args.exact_steps,
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
            args.exact_steps,
            &vae_train::backend::wgpu_device(adapter),
            "wgpu",
        ),
        #[cfg(not(feature = "wgpu"))]
        BackendChoice::Wgpu(_) => Err(anyhow::anyhow!(
            "--backend wgpu: xtask was built without its `wgpu` feature"
        )),
    };
    if args.launches {
        return launches(&args, &cases, choice);
    }
    let mut records = Vec::new();
    let mut torch = Vec::new();
    if args.vs_pytorch {
        // Each case in both frameworks back to back, so a ratio compares two measurements
        // taken within a minute of each other: on a shared machine the load drifts.
        for &case in &cases {
            records.extend(burn(&[case])?);
            torch.extend(pytorch_cases(
                &args.python,
                &args.reference,
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

/// `--synthetic-images N --synthetic-dir DIR`: N 178×218 JPEGs (CelebA's aligned size) of smooth
/// colour fields with pixel noise, ≈ CelebA's size on disk per file.
fn synthetic_faces(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..n {
        let img = image::RgbImage::from_fn(178, 218, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 24) as i32 - 12;
            let base = |c: i32| (c + noise).clamp(0, 255) as u8;
            let (x, y, i) = (x as i32, y as i32, i as i32);
            image::Rgb([
                base((x + i * 3) % 256),
                base((y * 2 + x / 3 + i) % 256),
                base(128 + ((x - 89).abs() - (y - 109).abs()) / 2),
            ])
        });
        let path = dir.join(format!("{i:06}.jpg"));
        img.save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{n} images of 178×218 in {}", dir.display());
    Ok(())
}

/// Steps per counted segment of `--launches`.
const LAUNCH_STEPS: usize = 10;

/// `--launches`: kernels per steady-state training step, per case. Each case runs in a child
/// process with cubecl's profiling log on (`CUBECL_DEBUG_OPTION=profile`, one line per
/// executed kernel); after a first step and 3 warm-up steps (compilation, autotuning), it
/// counts the lines added by 10 and by 20 more steps and takes the difference.
fn launches(args: &BenchArgs, cases: &[&str], choice: BackendChoice) -> Result<()> {
    let backend = match choice {
        BackendChoice::Cuda => "cuda",
        BackendChoice::Wgpu(_) => "wgpu",
        BackendChoice::Cpu => bail!("--launches counts GPU kernels: use --backend cuda or wgpu"),
    };
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let dir = tempfile::tempdir().context("temporary directory for the kernel logs")?;
    let torch = if args.vs_pytorch {
        pytorch_ops(
            &args.python,
            &args.reference,
            cases,
            choice == BackendChoice::Cuda,
        )?
    } else {
        Vec::new()
    };
    println!(
        "{:<10} {:>22} {:>22}",
        "case",
        format!("burn ({backend}) kernels"),
        "pytorch per step"
    );
    for &case in cases {
        let log = dir.path().join(format!("{case}.log"));
        let out = Command::new(&exe)
            .args(["bench", "--backend", backend, "--cases", case])
            .arg("--exact-steps")
            .arg(LAUNCH_STEPS.to_string())
            .env("CUBECL_DEBUG_OPTION", "profile")
            .env("CUBECL_DEBUG_LOG", &log)
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!("{case}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let per_step = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .find_map(|l| serde_json::from_str::<Record>(l).ok()?.kernels_per_step)
            .with_context(|| format!("{case}: no kernel count in the child's output"))?;
        let theirs = torch
            .iter()
            .find(|(c, _, _)| c == case)
            .map(|(_, n, what)| format!("{n} {what}"))
            .unwrap_or_else(|| "-".into());
        println!("{case:<10} {per_step:>22.1} {theirs:>22}");
    }
    Ok(())
}

/// Kernel lines in cubecl's log so far, once its background writer has caught up.
fn kernel_lines(log: &Path) -> usize {
    // cubecl writes the log from a background task after each kernel's timing resolves.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::read_to_string(log)
        .map(|text| text.lines().filter(|l| is_kernel_line(l)).count())
        .unwrap_or(0)
}

/// A line of cubecl's profiling log for one executed kernel: `| <duration> | <kernel>`.
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("| ") else {
        return false;
    };
    rest.split('|').next().is_some_and(|d| {
        let d = d.trim();
        d.ends_with('s') && d.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// PyTorch's count for one steady-state step per case: CUDA kernels on a GPU, else aten
/// operators without aten sub-operators (each such operator is one kernel on a GPU).
fn pytorch_ops(
    python: &str,
    script: &Path,
    cases: &[&str],
    cuda: bool,
) -> Result<Vec<(String, usize, String)>> {
    if !script.is_file() {
        bail!(
            "the PyTorch reference {} is not a file (pass --reference PATH/torch_reference.py)",
            script.display()
        );
    }
    let out = Command::new(python)
        .arg(script)
        .args(["--count-ops", "--cases", &cases.join(",")])
        .args(["--device", if cuda { "cuda" } else { "cpu" }])
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
        ops_per_step: usize,
        counted: String,
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let line: Line = serde_json::from_str(l)?;
            Ok((line.case, line.ops_per_step, line.counted))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_kernel_line;

    #[test]
    fn kernel_lines_are_told_from_the_rest_of_the_log() {
        assert!(is_kernel_line("| 12.5µs     | fused_elemwise_3"));
        assert!(is_kernel_line("| 1.002ms    | matmul"));
        assert!(!is_kernel_line("Executing matmul"));
        assert!(!is_kernel_line("| Kernel | Calls | Total |"));
        assert!(!is_kernel_line("compiling kernel"));
    }
}
