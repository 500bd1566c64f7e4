//! `cargo xtask` — the pipelines of the `vae` project.
//!
//! ```text
//! cargo xtask train <dataset> [--config FILE] [--set key=value]... [--data-dir DIR] [--out DIR]
//!                   [--backend auto|cpu|cuda] [--epochs N] [--batch-size N] [--seed N]
//!                   [--limit N] [--resume]
//! cargo xtask eval   --run DIR [--importance-samples K]
//! cargo xtask sample --run DIR [--n N] [--out FILE]
//! cargo xtask data   <name> [--data-dir DIR]
//! cargo xtask bench  [--backend cpu|cuda] [--json FILE] [--quick] [--vs-pytorch]
//! ```

/// burn's CPU kernels allocate and free multi-megabyte buffers every step. glibc hands those
/// back to the kernel each time (mmap/munmap, then page faults that zero them again: ~20 % of a
/// conv VAE step in perf); mimalloc with purging off keeps them for the next step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys has no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc v3's default purge delay (ms): checked so a changed option table is left alone.
const MI_DEFAULT_PURGE_DELAY: std::ffi::c_long = 1000;

/// Never return freed memory to the OS (measured: conv VAE step 53–70 → 85 images/s).
fn keep_freed_memory() {
    // SAFETY: mimalloc's option getter/setter take and return plain integers.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

mod bench;
mod data;
mod pipeline;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::{Parser, Subcommand, ValueEnum};
use vae_train::RunControl;
use vae_train::backend::{BackendChoice, BackendRequest, Cpu, resolve};

use crate::settings::{Overrides, RunConfig, config_env};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Train, evaluate and sample variational autoencoders."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    Cpu,
    Cuda,
}

impl From<BackendArg> for BackendRequest {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Self::Auto,
            BackendArg::Cpu => Self::Cpu,
            BackendArg::Cuda => Self::Cuda,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a VAE on a dataset (mnist, fashion-mnist, kmnist, emnist-<split>, celeba, image-folder).
    Train {
        /// The dataset.
        dataset: String,
        /// A TOML file of settings, layered over the dataset's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one setting, e.g. `--set training.objective.beta=4` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where the dataset is (default: $VAE_DATA_DIR/<name>, a system copy, or a download).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The run directory (default: runs/<dataset>-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to train.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Last epoch to train (training.epochs).
        #[arg(long)]
        epochs: Option<usize>,
        /// Examples per step (training.batch_size).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Seed (training.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Use only the first N training examples (data.limit).
        #[arg(long)]
        limit: Option<usize>,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a run on the test set: ELBO terms and importance-sampled log p(x).
    Eval {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// K, importance samples per test example.
        #[arg(long, default_value_t = 5000)]
        importance_samples: usize,
        /// Evaluate only the first N test examples.
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Where to evaluate.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
    },
    /// Draw samples from a trained model's prior into a PNG grid.
    Sample {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// Number of samples.
        #[arg(long, default_value_t = 64)]
        n: usize,
        /// Output PNG (default: <run>/samples-<n>.png).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of the latent draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to decode.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
    },
    /// Locate, download and verify a dataset.
    Data {
        /// The dataset name.
        name: String,
        /// Where it is or should go.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Training throughput benchmarks (images/s per case), optionally against PyTorch.
    Bench(bench::BenchArgs),
}

fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("--out {}: cannot create the run directory", out.display()))?;
    let probe = out.join(".write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: the run directory is not writable", out.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A run that fails before writing anything (data missing, no GPU) leaves no empty directory
/// behind when this command `created` it; `remove_dir` refuses anything that is not empty.
fn discard_if_empty<T>(result: Result<T>, dir: &Path, created: bool) -> Result<T> {
    if result.is_err() && created {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn choose(request: BackendArg) -> Result<BackendChoice> {
    let (choice, why) = resolve(request.into()).map_err(anyhow::Error::msg)?;
    eprintln!("backend: {why}");
    if choice == BackendChoice::Cuda {
        eprintln!(
            "note: the first CUDA run compiles its kernels (NVRTC) and caches them; later runs start fast"
        );
    }
    Ok(choice)
}

/// Runs `$body` with `$B` bound to the autodiff backend and `$device` to its device.
macro_rules! with_backend {
    ($choice:expr, |$B:ident, $device:ident| $body:expr) => {
        match $choice {
            BackendChoice::Cpu => {
                type $B = Autodiff<Cpu>;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            BackendChoice::Cuda => {
                type $B = Autodiff<vae_train::backend::Gpu>;
                let $device = burn::backend::cuda::CudaDevice::new(0);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            BackendChoice::Cuda => unreachable!("resolve() never picks CUDA without the feature"),
        }
    };
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            dataset,
            config,
            set,
            data_dir,
            out,
            backend,
            epochs,
            batch_size,
            seed,
            limit,
            resume,
        } => {
            let mut flags = Vec::new();
            let mut flag = |key: &str, v: Option<String>| {
                if let Some(v) = v {
                    flags.push((key.to_string(), v));
                }
            };
            flag("training.epochs", epochs.map(|v| v.to_string()));
            flag("training.batch_size", batch_size.map(|v| v.to_string()));
            flag("training.seed", seed.map(|v| v.to_string()));
            flag("data.limit", limit.map(|v| v.to_string()));
            let overrides = Overrides {
                file: config,
                env: config_env(),
                set,
                flags,
            };
            let out = match (&out, resume) {
                (Some(dir), _) => dir.clone(),
                (None, true) => bail!("--resume needs --out DIR, the run to continue"),
                (None, false) => PathBuf::from("runs").join(format!("{dataset}-{}", timestamp())),
            };
            let config = if resume {
                let saved = RunConfig::for_run(&out, &overrides)?;
                if saved.dataset != dataset {
                    bail!(
                        "--resume: {} is a {} run, not {dataset}",
                        out.display(),
                        saved.dataset
                    );
                }
                saved
            } else {
                RunConfig::for_dataset(&dataset, &overrides)?
            };
            let created = !out.exists();
            prepare_out(&out)?;
            let choice = discard_if_empty(choose(backend), &out, created)?;
            let interrupter = burn::train::Interrupter::new();
            let control = RunControl::new(interrupter);
            let handler = control.clone();
            let pressed = AtomicBool::new(false);
            let handler_installed = ctrlc::set_handler(move || {
                if pressed.swap(true, Ordering::SeqCst) {
                    eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
                    std::process::exit(130);
                }
                eprintln!("\nCtrl-C: finishing the current step, then saving a checkpoint (Ctrl-C again to quit now)");
                handler.request_stop();
            })
            .context("installing the Ctrl-C handler");
            discard_if_empty(handler_installed, &out, created)?;
            let job = pipeline::TrainJob {
                config,
                run_dir: out.clone(),
                data_dir,
                resume,
                control,
                backend: choice.name().to_string(),
            };
            let result = with_backend!(choice, |B, device| pipeline::train::<B>(job, device));
            discard_if_empty(result, &out, created)
        }
        Command::Eval {
            run,
            importance_samples,
            limit,
            backend,
        } => {
            if importance_samples == 0 {
                bail!("--importance-samples must be ≥ 1");
            }
            let choice = choose(backend)?;
            with_backend!(choice, |B, device| pipeline::eval::<
                <B as burn::tensor::backend::AutodiffBackend>::InnerBackend,
            >(
                &run,
                importance_samples,
                limit,
                device
            ))
        }
        Command::Sample {
            run,
            n,
            out,
            seed,
            backend,
        } => {
            if n == 0 {
                bail!("--n must be ≥ 1");
            }
            let choice = choose(backend)?;
            let path = with_backend!(choice, |B, device| pipeline::sample::<
                <B as burn::tensor::backend::AutodiffBackend>::InnerBackend,
            >(&run, n, out, seed, device))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Data { name, data_dir } => data::command(&name, data_dir.as_deref()),
        Command::Bench(args) => bench::run(args),
    }
}
