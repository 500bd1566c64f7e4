//! The commands: `train`, `eval`, `sample`, `data` — parsing and printing only; the work is
//! vae-train's ([`train_run`], [`evaluate_run`], [`sample_run`]) and vae-data's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::{Args, Subcommand};
use vae_data::{DataOptions, DataRoots, Downloader, load_dataset, locate, verify_dataset};
use vae_models::ConditionValue;
use vae_train::data_parallel::DataParallelConfig;
use vae_train::strategy::StopReason;
use vae_train::{
    EvalOptions, ModelSpec, RunControl, RunDir, RunOptions, evaluate_run, follow_run,
    load_run_data, sample_run, train_run,
};

use crate::backend::{BackendArg, choose, with_backend};
use crate::data_parallel::{
    CoordinatorArgs, GroupArgs, coordinator, quiet_connection_panics, start_coordinator,
};
use crate::error::CliError;
use crate::settings::{Overrides, Settings, config_env};

/// The run commands, generic over the model specification when executed.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a VAE on a dataset (mnist, fashion-mnist, kmnist, emnist-<split>, celeba, image-folder).
    Train(TrainArgs),
    /// Evaluate a run on the test set: ELBO terms and importance-sampled log p(x).
    Eval(EvalArgs),
    /// Draw samples from a trained model's prior into a PNG grid.
    Sample(SampleArgs),
    /// Locate, download and verify a dataset.
    Data(DataArgs),
    /// Run the coordinator of data-parallel training (`train --nodes N`): rank 0 starts one
    /// itself when nothing listens on --coordinator's port.
    Coordinator(CoordinatorArgs),
}

/// `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset.
    pub dataset: String,
    /// A TOML file of settings, layered over the dataset's defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set training.objective.beta=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where the dataset is (default: $VAE_DATA_DIR/<name>, a system copy, or a download).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The run directory (default: runs/<dataset>-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Last epoch to train (training.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per step (training.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed (training.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use only the first N training examples (data.limit).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel training.
    #[command(flatten)]
    pub group: GroupArgs,
}

/// `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// K, importance samples per test example.
    #[arg(long, default_value_t = 5000)]
    pub importance_samples: usize,
    /// Evaluate only the first N test examples.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Where to evaluate.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

/// `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Number of samples (of each row, for a conditional model without --class or
    /// --attributes).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// For a class-conditional model: the class to sample. Without it (and for a conditional
    /// model), the condition-by-sample picture: one row per class (or per attribute, after a
    /// row without any), each column one latent decoded under every row's condition.
    #[arg(long)]
    pub class: Option<usize>,
    /// For an attribute-conditional model: the attributes present, comma-separated (e.g.
    /// `Smiling,Eyeglasses`); the model's other attributes are absent. `""`: none present.
    #[arg(long, conflicts_with = "class")]
    pub attributes: Option<String>,
    /// Output PNG (default: <run>/samples-<n>.png, <run>/samples-class-<k>-<n>.png with
    /// --class, <run>/samples-<a>+<b>-<n>.png with --attributes a,b).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the latent draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to decode.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

/// `data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// The dataset name.
    pub name: String,
    /// Where it is or should go.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs one command for runs of model specification `S`.
pub fn execute<S: ModelSpec>(command: Command) -> Result<(), CliError> {
    match command {
        Command::Train(args) => train::<S>(args),
        Command::Eval(args) => eval::<S>(args),
        Command::Sample(args) => sample::<S>(args),
        Command::Data(args) => data(args),
        Command::Coordinator(args) => coordinator(args),
    }
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

/// The run that a stop signal stops: the process has one signal handler, installed once, and
/// each `train` command points it at its own run (so `execute` may train several times).
static STOP_TARGET: std::sync::Mutex<Option<Arc<RunControl>>> = std::sync::Mutex::new(None);

/// The signal that stopped the current run (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGINT's and SIGTERM's numbers (the exit status is 128 + the signal, as a shell reports).
pub(crate) const SIGINT: i32 = 2;
pub(crate) const SIGTERM: i32 = 15;

/// Ctrl-C (SIGINT) or SIGTERM — what batch schedulers send before a kill — asks the current
/// run to finish its step and checkpoint; a second signal, or one while no run is training,
/// exits at once (the last complete checkpoint stays intact whenever it arrives).
fn install_stop_signals(control: Arc<RunControl>) -> Result<(), CliError> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    if let Ok(mut target) = STOP_TARGET.lock() {
        *target = Some(control);
    }
    STOP_SIGNAL.store(0, Ordering::SeqCst);
    let installed = INSTALLED.get_or_init(|| {
        #[cfg(unix)]
        {
            let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
                .map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("stop-signals".into())
                .spawn(move || {
                    for signal in signals.forever() {
                        on_stop_signal(signal);
                    }
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        #[cfg(not(unix))]
        {
            ctrlc::set_handler(|| on_stop_signal(SIGINT)).map_err(|e| e.to_string())
        }
    });
    installed.clone().map_err(|problem| CliError::Usage {
        flag: "Ctrl-C",
        problem: format!("cannot install the signal handler: {problem}"),
    })
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        _ => "Ctrl-C",
    }
}

fn on_stop_signal(signal: i32) {
    let target = STOP_TARGET.lock().ok().and_then(|t| t.clone());
    let first = STOP_SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    match target {
        Some(control) if first => {
            eprintln!(
                "\n{}: finishing the current step, then saving a checkpoint (again to quit at once)",
                signal_name(signal)
            );
            control.request_stop();
        }
        _ => {
            eprintln!(
                "\n{}: exiting now; the last complete checkpoint is kept",
                signal_name(signal)
            );
            std::process::exit(128 + signal);
        }
    }
}

/// The run is over: signals exit at once again.
fn release_stop_signals() {
    if let Ok(mut target) = STOP_TARGET.lock() {
        *target = None;
    }
}

/// A run that fails before writing anything (data missing, no GPU) leaves no empty directory
/// behind when this command `created` it; `remove_dir` refuses anything that is not empty.
fn discard_if_empty<T>(
    result: Result<T, CliError>,
    dir: &Path,
    created: bool,
) -> Result<T, CliError> {
    if result.is_err() && created {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn train<S: ModelSpec>(args: TrainArgs) -> Result<(), CliError> {
    let group = args.group.config()?;
    if let Some(group) = group.clone().filter(|g| g.rank != 0) {
        return follow::<S>(args, group);
    }
    let mut flags = Vec::new();
    let mut flag = |key: &str, v: Option<String>| {
        if let Some(v) = v {
            flags.push((key.to_string(), v));
        }
    };
    flag("training.epochs", args.epochs.map(|v| v.to_string()));
    flag(
        "training.batch_size",
        args.batch_size.map(|v| v.to_string()),
    );
    flag("training.seed", args.seed.map(|v| v.to_string()));
    flag("data.limit", args.limit.map(|v| v.to_string()));
    let overrides = Overrides {
        file: args.config.clone(),
        env: config_env(),
        set: args.set.clone(),
        flags,
    };
    let dataset = &args.dataset;
    let out = match (&args.out, args.resume) {
        (Some(dir), _) => dir.clone(),
        (None, true) => {
            return Err(CliError::Usage {
                flag: "--resume",
                problem: "needs --out DIR, the run to continue".into(),
            });
        }
        (None, false) => PathBuf::from("runs").join(format!("{dataset}-{}", timestamp())),
    };
    let settings = if args.resume {
        let saved = Settings::for_run(&out, &overrides)?;
        if &saved.dataset != dataset {
            return Err(vae_train::TrainError::OtherDataset {
                dir: out,
                found: saved.dataset,
                requested: dataset.clone(),
            }
            .into());
        }
        saved
    } else {
        Settings::for_dataset(dataset, &overrides)?
    };
    let created = !out.exists();
    let run = if args.resume {
        RunDir::open(&out)
    } else {
        RunDir::create(&out)
    }
    .map_err(|source| CliError::Flag {
        flag: "--out",
        hint: match source {
            vae_train::TrainError::RunExists { .. } => "; pass --resume to continue it",
            _ => "",
        },
        source: Box::new(source),
    })?;
    let prepared = (|| {
        let choice = choose(args.backend)?;
        let data_dir = match (&args.data_dir, args.resume) {
            (Some(dir), _) => Some(dir.clone()),
            (None, true) => Some(run.read_info()?.data_dir),
            (None, false) => None,
        };
        let data = load_dataset(dataset, data_dir.as_deref(), &settings.data, true)?;
        let config = settings.clone().with_model::<S>(data.shape)?;
        let control = RunControl::new(burn::train::Interrupter::new());
        install_stop_signals(control.clone())?;
        Ok((choice, data, config, control))
    })();
    let (choice, data, config, control) = discard_if_empty(prepared, &out, created)?;
    println!(
        "training {} on {}: {} train / {} valid examples, up to epoch {}, run directory {}",
        config.dataset,
        choice.name(),
        data.train.len(),
        data.valid.len(),
        config.training.epochs,
        out.display()
    );
    let started = std::time::Instant::now();
    let mut options = RunOptions::new(choice.name());
    options.resume = args.resume;
    options.control = control;
    // Held to the end: the coordinator rank 0 started stops with it.
    let mut _coordinator = None;
    if let Some(group) = group {
        println!(
            "rank 0 of {}: coordinator {}, global batch {} ({} per rank)",
            group.nodes,
            group.coordinator,
            config.training.batch_size,
            config.training.batch_size / group.nodes as usize
        );
        _coordinator = start_coordinator(&group.coordinator, &group.host)?;
        quiet_connection_panics();
        options = options.with_data_parallel(group);
    }
    let outcome = with_backend!(choice, |B, device| train_run::<S, B>(
        &run, &config, &data, &device, options
    ));
    release_stop_signals();
    let outcome = outcome?;
    if let Some(bad) = &outcome.resume_fallback {
        eprintln!("warning: checkpoint file {bad}; resumed from the checkpoint before it");
    }
    match &outcome.stopped.stop {
        StopReason::Finished | StopReason::EarlyStopped(_) => {}
        StopReason::UserStop(epoch) => {
            let signal = STOP_SIGNAL.load(Ordering::SeqCst);
            return Err(CliError::Interrupted {
                signal: if signal == 0 { SIGINT } else { signal },
                signal_name: signal_name(signal),
                epoch: *epoch,
                out: out.clone(),
            });
        }
        StopReason::NonFinite(_) => {
            let advice = match outcome.stopped.last_checkpoint {
                Some(m) => format!(
                    "The last good checkpoint (epoch {}) is kept in {}; lower training.learning_rate and --resume from it, or start over",
                    m.epoch,
                    run.checkpoints_dir().display()
                ),
                None => "No checkpoint was written: it diverged in the first epoch; lower training.learning_rate".to_string(),
            };
            return Err(CliError::Stopped {
                reason: Box::new(outcome.stopped.stop.clone()),
                advice,
            });
        }
        other => {
            let advice = match outcome.stopped.last_checkpoint {
                Some(m) => format!(
                    "The last good checkpoint (epoch {}) is kept; --resume --out {} continues from it",
                    m.epoch,
                    out.display()
                ),
                None => "No checkpoint was written; fix the cause and start again".to_string(),
            };
            return Err(CliError::Stopped {
                reason: Box::new(other.clone()),
                advice,
            });
        }
    }
    if let Some(test) = &outcome.metrics.test {
        println!(
            "test: neg_elbo_nats={:.3} log_likelihood_nats={:.3} kl_nats={:.3}{} ({} examples)",
            test.elbo.neg_elbo_nats,
            test.elbo.log_likelihood_nats,
            test.elbo.kl_nats,
            test.bits_per_dim
                .map_or(String::new(), |b| format!(" bits_per_dim={b:.4}")),
            test.examples
        );
    }
    if let Some(exchanges) = &outcome.gradient_exchanges {
        print_exchanges(0, exchanges);
    }
    println!(
        "done in {:.1} s ({:.0} training images/s); wrote {}",
        started.elapsed().as_secs_f64(),
        outcome.metrics.train_images_per_second,
        out.display()
    );
    Ok(())
}

/// What the gradient all-reduces of a data-parallel rank cost.
fn print_exchanges(rank: u32, exchanges: &vae_train::data_parallel::GradientExchanges) {
    if exchanges.count > 0 {
        println!(
            "rank {rank}: {} gradient all-reduces of {:.2} MB, {:.2} ms each (waiting for the slowest rank included)",
            exchanges.count,
            exchanges.bytes_each as f64 / 1e6,
            1e3 * exchanges.seconds / exchanges.count as f64
        );
    }
}

/// `train --node-rank R` for R ≥ 1: trains in step with rank 0, which has the settings and
/// writes the run.
fn follow<S: ModelSpec>(args: TrainArgs, group: DataParallelConfig) -> Result<(), CliError> {
    let ignored: Vec<&str> = [
        ("--config", args.config.is_some()),
        ("--set", !args.set.is_empty()),
        ("--out", args.out.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--seed", args.seed.is_some()),
        ("--limit", args.limit.is_some()),
        ("--resume", args.resume),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    let rank = group.rank;
    if !ignored.is_empty() {
        println!(
            "rank {rank}: ignoring {} (rank 0's settings and run directory are used)",
            ignored.join(", ")
        );
    }
    let choice = choose(args.backend)?;
    let control = RunControl::new(burn::train::Interrupter::new());
    install_stop_signals(control.clone())?;
    quiet_connection_panics();
    println!(
        "rank {rank} of {}: on {}, joining rank 0 through the coordinator at {}",
        group.nodes,
        choice.name(),
        group.coordinator
    );
    let mut options = RunOptions::new(choice.name());
    options.control = control;
    let data_dir = args.data_dir.clone();
    let result = with_backend!(choice, |B, device| follow_run::<S, B>(
        group.clone(),
        data_dir.as_deref(),
        &device,
        options
    ));
    release_stop_signals();
    let (config, outcome) = result?;
    if config.dataset != args.dataset {
        println!(
            "rank {rank}: rank 0 trains {}, not {} as given here; trained {}",
            config.dataset, args.dataset, config.dataset
        );
    }
    let advice = "rank 0 keeps the run and its last good checkpoint; to continue, start every rank again, rank 0 with --resume --out DIR".to_string();
    match &outcome.stopped.stop {
        StopReason::Finished | StopReason::EarlyStopped(_) => {
            if let Some(exchanges) = &outcome.gradient_exchanges {
                print_exchanges(rank, exchanges);
            }
            println!(
                "rank {rank}: done: {} to epoch {} in step with rank 0 ({:.0} training images/s over all ranks); rank 0 wrote the run",
                config.dataset, outcome.metrics.epochs, outcome.metrics.train_images_per_second
            );
            Ok(())
        }
        other => Err(CliError::Stopped {
            reason: Box::new(other.clone()),
            advice,
        }),
    }
}

fn eval<S: ModelSpec>(args: EvalArgs) -> Result<(), CliError> {
    if args.importance_samples == 0 {
        return Err(CliError::Usage {
            flag: "--importance-samples",
            problem: "must be ≥ 1".into(),
        });
    }
    let run = RunDir::open(&args.run)?;
    let config = run.read_config::<S>()?;
    let data = load_run_data(&run, &config, true)?;
    let choice = choose(args.backend)?;
    let options = EvalOptions {
        importance_samples: args.importance_samples,
        limit: args.limit,
    };
    let started = std::time::Instant::now();
    let subset = with_backend!(choice, |B, device| evaluate_run::<S, B>(
        &run, &data, &device, &options
    ))?;
    let log_px = subset.is_log_px_nats.unwrap_or(f64::NAN);
    println!(
        "test ({} examples): neg_elbo_nats={:.3}, is_log_px_nats={log_px:.3} (K = {}): log p(x) ≥ ELBO by {:.3} nats, in {:.1} s",
        subset.examples,
        subset.elbo.neg_elbo_nats,
        args.importance_samples,
        log_px + subset.elbo.neg_elbo_nats,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn sample<S: ModelSpec>(args: SampleArgs) -> Result<(), CliError> {
    if args.n == 0 {
        return Err(CliError::Usage {
            flag: "--n",
            problem: "must be ≥ 1".into(),
        });
    }
    let condition = match (args.class, &args.attributes) {
        (Some(k), _) => Some(ConditionValue::Class(k)),
        (None, Some(list)) => Some(ConditionValue::Attributes(
            list.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
        )),
        (None, None) => None,
    };
    let run = RunDir::open(&args.run)?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.path().join(match &condition {
            None => format!("samples-{}.png", args.n),
            Some(ConditionValue::Class(k)) => format!("samples-class-{k}-{}.png", args.n),
            Some(ConditionValue::Attributes(on)) if on.is_empty() => {
                format!("samples-no-attributes-{}.png", args.n)
            }
            Some(ConditionValue::Attributes(on)) => {
                // One file per set of attributes, whatever order they were typed in.
                let mut on = on.clone();
                on.sort();
                on.dedup();
                format!("samples-{}-{}.png", on.join("+"), args.n)
            }
        })
    });
    let choice = choose(args.backend)?;
    with_backend!(choice, |B, device| sample_run::<S, B>(
        &run, args.n, condition, args.seed, &out, &device
    ))
    .map_err(|error| match error {
        vae_train::TrainError::SampleCondition(error) => {
            let (flag, value) = match &error.value {
                ConditionValue::Class(k) => ("--class", k.to_string()),
                ConditionValue::Attributes(on) => ("--attributes", format!("'{}'", on.join(","))),
            };
            CliError::Usage {
                flag,
                problem: format!("{value}: {}", error.problem),
            }
        }
        other => other.into(),
    })?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `data <name>`: locate or download, verify checksums, load to check structure.
fn data(args: DataArgs) -> Result<(), CliError> {
    let name = args.name.as_str();
    let options = DataOptions::for_dataset(name).unwrap_or_default();
    if name == vae_data::IMAGE_FOLDER {
        let Some(dir) = &args.data_dir else {
            return Err(CliError::Usage {
                flag: "--data-dir",
                problem: "image-folder needs --data-dir DIR".into(),
            });
        };
        let images = vae_data::list_images(dir)?;
        println!(
            "image-folder: {} images under {}",
            images.len(),
            dir.display()
        );
        return Ok(());
    }
    let roots = DataRoots::from_env();
    let located = locate(
        name,
        args.data_dir.as_deref(),
        &roots,
        Some(&Downloader::default()),
    )?;
    println!("{name}: {} ({:?})", located.dir.display(), located.origin);
    for path in &located.downloaded {
        println!("  downloaded {}", path.display());
    }
    let report = verify_dataset(&located)?;
    for path in &report.checksummed {
        println!("  SHA-256 ok     {}", path.display());
    }
    for path in &report.structural_only {
        println!(
            "  structure only {} (not byte-identical to the registry's copy)",
            path.display()
        );
    }
    let data = load_dataset(name, Some(&located.dir), &options, true)?;
    println!(
        "  loaded: {} train / {} valid / {} test examples of {}",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        data.shape
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ctrl_c_handler_serves_every_run_of_the_process() {
        let first = RunControl::new(burn::train::Interrupter::new());
        let second = RunControl::new(burn::train::Interrupter::new());
        install_stop_signals(first).expect("the handler installs");
        install_stop_signals(second.clone()).expect("a second run reuses it");
        let target = STOP_TARGET.lock().unwrap().clone().unwrap();
        assert!(
            Arc::ptr_eq(&target, &second),
            "Ctrl-C stops the current run"
        );
    }
}
