//! # vae-cli — the command line of VAE runs, for any model specification
//!
//! `train`, `eval`, `sample` and `data`, the same commands and run directories for every
//! [`ModelSpec`]: `cargo xtask` is this command line for the built-in
//! [`Architecture`](vae_models::Architecture)s, and your own binary gets it for your model
//! with one call:
//!
//! ```no_run
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct MySpec;
//! # impl vae_train::ModelSpec for MySpec {
//! #     fn validate(&self, _: vae_core::ImageShape) -> Result<(), vae_models::ArchitectureError> { Ok(()) }
//! #     fn build<B: burn::tensor::backend::AutodiffBackend, V: vae_train::ModelVisitor<B>>(
//! #         &self, _: &B::Device, _: V) -> Result<V::Output, vae_models::ArchitectureError> { unimplemented!() }
//! # }
//! fn main() {
//!     vae_cli::main::<MySpec>("my-vae");
//! }
//! ```
//!
//! Settings are layered: built-in defaults ← `datasets/<name>.toml` ← `--config FILE` ←
//! `VAE_<SECTION>__<KEY>` environment variables ← `--set key=value` ← explicit flags; the
//! model's defaults are the specification's [`ModelSpec::preset`] for the dataset. Unknown
//! keys and bad values are errors naming the key. The work is done by vae-train
//! ([`vae_train::train_run`], [`vae_train::evaluate_run`], [`vae_train::sample_run`]) and
//! vae-data; this crate parses, chooses the backend, handles Ctrl-C and prints.

mod backend;
mod commands;
mod data_parallel;
mod error;
mod settings;

pub use backend::BackendArg;
pub use commands::{Command, DataArgs, EvalArgs, SampleArgs, TrainArgs, execute};
pub use data_parallel::{CoordinatorArgs, GroupArgs};
pub use error::CliError;
pub use settings::{Overrides, Settings, config_env, dataset_file};

use clap::Parser;
use vae_train::ModelSpec;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Parses the process's arguments as `<name> train|eval|sample|data …` and runs the command
/// for runs of model specification `S`; on failure prints `error: …` and exits with
/// [`CliError::exit_code`] (1, or 130 / 143 for a run stopped by Ctrl-C / SIGTERM).
pub fn main<S: ModelSpec>(name: &'static str) {
    use clap::CommandFactory;
    let matches = Cli::command()
        .name(name)
        .about("Train, evaluate and sample variational autoencoders.")
        .get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(e) = execute::<S>(cli.command) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
