//! `cargo xtask bench` (filled in by the speed work).

use anyhow::Result;
use clap::Args;

/// Benchmark options.
#[derive(Args)]
pub struct BenchArgs {}

/// Runs the benchmarks.
pub fn run(_args: BenchArgs) -> Result<()> {
    Ok(())
}
