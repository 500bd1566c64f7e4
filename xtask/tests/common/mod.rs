//! Shared by the end-to-end tests: running `cargo xtask`, and Debian's Fashion-MNIST.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The xtask binary with a clean environment for data lookups and a shared test cache.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.env_remove("VAE_DATA_DIR").env(
        "XDG_CACHE_HOME",
        std::env::temp_dir().join("vae-xtask-tests-cache"),
    );
    command
}

pub fn xtask(args: &[&str]) -> Output {
    command().args(args).output().expect("xtask runs")
}

pub fn ok(args: &[&str]) -> String {
    let out = xtask(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`xtask {}` failed:\n{text}",
        args.join(" ")
    );
    text
}

pub fn fails(args: &[&str]) -> String {
    let out = xtask(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "`xtask {}` should fail",
        args.join(" ")
    );
    assert!(stderr.contains("error: "), "no error line: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    stderr
}

/// Whether Debian's Fashion-MNIST (`apt-get install dataset-fashion-mnist`) is installed. The
/// tests that train on it skip with a message where it is not, unless
/// `VAE_REQUIRE_SYSTEM_DATA` is set (CI sets it, so there they cannot skip).
pub fn fashion_mnist_installed(test: &str) -> bool {
    let present =
        Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file();
    if !present {
        assert!(
            std::env::var_os("VAE_REQUIRE_SYSTEM_DATA").is_none(),
            "{test}: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)"
        );
        eprintln!(
            "skipped {test}: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)"
        );
    }
    present
}

pub fn metrics(run: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap()
}
