//! `cargo xtask` — the pipelines of the `vae` project: vae-cli's `train`, `eval`, `sample` and
//! `data` for the built-in architectures, plus `bench`.
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

use clap::{Parser, Subcommand};
use vae_models::Architecture;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Train, evaluate and sample variational autoencoders."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Run(vae_cli::Command),
    /// Training throughput benchmarks (images/s per case), optionally against PyTorch.
    Bench(bench::BenchArgs),
}

fn main() {
    keep_freed_memory();
    let result = match Cli::parse().command {
        Command::Run(command) => vae_cli::execute::<Architecture>(command).map_err(|e| {
            // 130 / 143 for a run stopped by Ctrl-C / SIGTERM, so `train && eval` stops too.
            let code = e.exit_code();
            (anyhow::Error::from(e), code)
        }),
        Command::Bench(args) => bench::run(args).map_err(|e| (e, 1)),
    };
    if let Err((e, code)) = result {
        eprintln!("error: {e:#}");
        std::process::exit(code);
    }
}
