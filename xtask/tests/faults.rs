//! Faults on real processes: signals (Ctrl-C, SIGTERM, a second one), a crash at each step
//! of the checkpoint and output protocol (injected with `VAE_FAULT_ABORT_AT`, which aborts
//! the process as a SIGKILL would), a full disk (injected with `VAE_FAULT_WRITE_ERROR`, and
//! a real small tmpfs where the machine allows one), two writers on one run, and resumes that
//! would change the model. After each, the run continues with `--resume`.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{command, fails, fashion_mnist_installed, metrics, ok};
use serde_json::Value;

fn train_args(run: &Path, limit: &str, epochs: &str) -> Vec<String> {
    [
        "train",
        "fashion-mnist",
        "--limit",
        limit,
        "--epochs",
        epochs,
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
    ]
    .map(String::from)
    .to_vec()
}

fn resume(run: &Path) -> String {
    ok(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
    ])
}

fn marker(run: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/checkpoint/latest.json")).expect("a marker"),
    )
    .unwrap()
}

/// Starts a training process and returns it once its output shows `line`.
fn train_until(
    run: &Path,
    epochs: &str,
    line: &str,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = command()
        .args(train_args(run, "20000", epochs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for next in lines.by_ref() {
        if next.unwrap().starts_with(line) {
            return (child, lines);
        }
    }
    let status = child.wait();
    panic!("the run ended ({status:?}) before printing `{line}`");
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
    text
}

#[test]
fn ctrl_c_and_sigterm_checkpoint_exit_with_their_status_and_resume() {
    if !fashion_mnist_installed("ctrl_c_and_sigterm_checkpoint_exit_with_their_status_and_resume") {
        return;
    }
    for (name, code, shown) in [("INT", 130, "Ctrl-C"), ("TERM", 143, "SIGTERM")] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        // Interrupt epoch 2, once epoch 1 is checkpointed.
        let (mut child, lines) = train_until(&run, "3", "epoch 1/3 valid");
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, name);
        let _rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        let stderr = stderr_of(&mut child);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{name}: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by {shown} during epoch 2")),
            "{stderr}"
        );
        let m = marker(&run);
        assert_eq!(
            (m["epoch"].as_u64(), m["complete"].as_bool()),
            (Some(1), Some(false)),
            "{m}"
        );
        assert_eq!(
            m["previous"]["epoch"], 1,
            "epoch 1's checkpoint is kept: {m}"
        );
        let steps = m["optimizer_steps"].as_u64().unwrap();
        assert!(steps > 157 && steps < 314, "inside epoch 2: {steps} steps");
        assert_eq!(metrics(&run)["train"]["partial_epoch"], 2);

        let text = resume(&run);
        assert!(
            text.contains("epoch 2/3 train") && text.contains("epoch 3/3 valid"),
            "{text}"
        );
        let after = metrics(&run);
        assert_eq!(after["train"]["epoch"], serde_json::json!([1, 2, 3]));
        assert!(after["train"].get("partial_epoch").is_none(), "{after}");
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_the_run_still_resumes() {
    if !fashion_mnist_installed("a_second_ctrl_c_exits_at_once_and_the_run_still_resumes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (mut child, lines) = train_until(&run, "2", "epoch 1/2 valid");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "INT");
    signal(&child, "INT");
    let _rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let stderr = stderr_of(&mut child);
    assert_eq!(child.wait().unwrap().code(), Some(130), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    resume(&run);
    assert_eq!(metrics(&run)["train"]["epoch"], serde_json::json!([1, 2]));
    assert!(run.join("model.safetensors").is_file());
}

#[test]
fn a_crash_at_any_step_of_saving_leaves_a_run_that_resumes() {
    if !fashion_mnist_installed("a_crash_at_any_step_of_saving_leaves_a_run_that_resumes") {
        return;
    }
    // Every step of the second checkpoint (epoch 2 of 2) and of the final outputs.
    for point in [
        "torn-write:model-2.mpk",
        "torn-write:optim-2.mpk",
        "checkpoint-files-written#2",
        "torn-write:latest.json#2",
        "checkpoint-marker-written#2",
        "training-finished",
        "torn-write:model.safetensors",
        "torn-write:samples.png",
        "torn-write:metrics.json",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let crashed = command()
            .args(train_args(&run, "2000", "2"))
            .env("VAE_FAULT_ABORT_AT", point)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&crashed.stderr);
        assert!(
            !crashed.status.success() && stderr.contains("fault injection"),
            "{point}: did not crash: {stderr}"
        );
        let text = resume(&run);
        assert!(text.contains("test: neg_elbo_nats="), "{point}: {text}");
        let m = metrics(&run);
        assert_eq!(m["train"]["epoch"], serde_json::json!([1, 2]), "{point}");
        assert_eq!(m["test"]["epoch"], 2, "{point}");
        for file in ["model.safetensors", "samples.png", "curves.png"] {
            assert!(run.join(file).is_file(), "{point}: {file} missing");
        }
        let leftovers: Vec<String> = walk(&run)
            .into_iter()
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            names.extend(walk(&path));
        } else {
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names
}

#[test]
fn a_full_disk_names_the_file_and_the_run_resumes_once_there_is_space() {
    if !fashion_mnist_installed(
        "a_full_disk_names_the_file_and_the_run_resumes_once_there_is_space",
    ) {
        return;
    }
    for fault in [
        "optim-2.mpk",
        "latest.json#2",
        "metrics.json",
        "model.safetensors",
    ] {
        let file = fault.split('#').next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let full = command()
            .args(train_args(&run, "2000", "2"))
            .env("VAE_FAULT_WRITE_ERROR", fault)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&full.stderr);
        assert_eq!(full.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains("No space left on device"),
            "{file}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
        resume(&run);
        assert_eq!(metrics(&run)["train"]["epoch"], serde_json::json!([1, 2]));
    }
}

/// A real full disk: the run directory on a 12 MiB tmpfs, mounted in a private user and
/// mount namespace (no root needed where unprivileged namespaces are allowed). One checkpoint
/// of the preset MLP takes ~7.6 MiB, so the second cannot be written; after the tmpfs grows,
/// `--resume` continues.
#[test]
fn a_real_full_disk_on_a_small_tmpfs() {
    if !fashion_mnist_installed("a_real_full_disk_on_a_small_tmpfs") {
        return;
    }
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped a_real_full_disk_on_a_small_tmpfs: no unprivileged mount namespaces");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let run = mount.join("run");
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=12m tmpfs {mount}
{xtask} train fashion-mnist --limit 2000 --epochs 2 --out {run} --backend cpu > {log}/full.out 2> {log}/full.err
echo $? > {log}/full.code
cp {run}/checkpoints/checkpoint/latest.json {log}/marker.json
mount -o remount,size=64m {mount}
{xtask} train fashion-mnist --resume --out {run} --backend cpu > {log}/resume.out 2> {log}/resume.err
echo $? > {log}/resume.code
cp {run}/metrics.json {log}/metrics.json
"#,
        mount = mount.display(),
        run = run.display(),
        log = dir.path().display(),
    );
    let status = command_in_namespace(&script);
    assert!(status.success());
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert_eq!(read("full.code").trim(), "1", "{}", read("full.err"));
    let err = read("full.err");
    assert!(
        err.contains("No space left on device") && err.contains("-2.mpk"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let m: Value = serde_json::from_str(&read("marker.json")).unwrap();
    assert_eq!(
        (m["epoch"].as_u64(), m["complete"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(read("resume.code").trim(), "0", "{}", read("resume.err"));
    let metrics: Value = serde_json::from_str(&read("metrics.json")).unwrap();
    assert_eq!(metrics["train"]["epoch"], serde_json::json!([1, 2]));
}

fn command_in_namespace(script: &str) -> std::process::ExitStatus {
    std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
        .env_remove("VAE_DATA_DIR")
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("vae-xtask-tests-cache"),
        )
        .status()
        .unwrap()
}

#[test]
fn a_second_writer_is_refused_naming_the_first() {
    if !fashion_mnist_installed("a_second_writer_is_refused_naming_the_first") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (mut child, _lines) = train_until(&run, "20", "epoch 1/20 valid");
    let err = fails(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--epochs",
        "20",
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        err.contains(&format!("in use by process {}", child.id())),
        "{err}"
    );
    // Killed, the first writer's lock is gone with it: the run resumes (or, if the kill
    // came after epoch 3's checkpoint, is finished from it).
    let text = ok(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--epochs",
        "3",
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(text.contains("test: neg_elbo_nats="), "{text}");
}

#[test]
fn a_resume_that_would_change_the_model_is_refused_and_changes_nothing() {
    if !fashion_mnist_installed(
        "a_resume_that_would_change_the_model_is_refused_and_changes_nothing",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    ok(&train_args(&run, "2000", "1")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let config = std::fs::read(run.join("config.toml")).unwrap();
    let err = fails(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--out",
        r,
        "--epochs",
        "2",
        "--set",
        "model.latent_dim=5",
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("model.latent_dim"), "{err}");
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config);
    let text = ok(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--out",
        r,
        "--epochs",
        "2",
        "--set",
        "training.learning_rate=0.0005",
        "--backend",
        "cpu",
    ]);
    assert!(text.contains("epoch 2/2 valid"), "{text}");

    // Memory that cannot exist is refused before allocating.
    let err = fails(&[
        "sample",
        "--run",
        r,
        "--n",
        "100000000000",
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("memory") && err.contains("fewer samples"),
        "{err}"
    );
}

/// A coordinator port with free ports after it for the ranks' data ports.
fn free_group_port(ranks: u16) -> u16 {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        if port < 65000
            && (1..=ranks).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok())
        {
            return port;
        }
    }
    panic!("no run of free ports");
}

/// `train` as rank `rank` of 2 through the coordinator on `port` (rank 0 starts it).
fn rank_command(run: &Path, rank: u32, port: u16, resume: bool) -> std::process::Command {
    let mut args = vec!["train".to_string(), "fashion-mnist".to_string()];
    if rank == 0 {
        args.extend(train_args(run, "20000", "3").into_iter().skip(2));
        if resume {
            args.push("--resume".into());
        }
    } else {
        args.extend(["--backend".into(), "cpu".into()]);
    }
    args.extend(
        [
            "--nodes",
            "2",
            "--node-rank",
            &rank.to_string(),
            "--coordinator",
            &format!("127.0.0.1:{port}"),
            "--group-timeout",
            "60",
        ]
        .map(String::from),
    );
    let mut command = command();
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Reads `child`'s stdout until a line starts with `line`; the rest of it.
fn wait_for_line(
    child: &mut Child,
    line: &str,
) -> std::io::Lines<BufReader<std::process::ChildStdout>> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for next in lines.by_ref() {
        if next.unwrap().starts_with(line) {
            return lines;
        }
    }
    let status = child.wait();
    panic!(
        "the rank ended ({status:?}) before printing `{line}`: {}",
        stderr_of(child)
    );
}

/// Waits at most `limit` for `child`; its exit code and stderr.
fn exit_within(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {limit:?}: {}", stderr_of(&mut child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(out) = child.stdout.take() {
        let _: Vec<_> = BufReader::new(out).lines().collect();
    }
    let stderr = stderr_of(&mut child);
    (child.wait().unwrap().code(), stderr)
}

#[test]
fn data_parallel_ranks_stop_together_on_ctrl_c_and_the_run_resumes() {
    if !fashion_mnist_installed("data_parallel_ranks_stop_together_on_ctrl_c_and_the_run_resumes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let port = free_group_port(2);
    let mut zero = rank_command(&run, 0, port, false).spawn().unwrap();
    let one = rank_command(&run, 1, port, false).spawn().unwrap();
    // Ctrl-C on rank 1 during epoch 2: every rank stops at the same step and rank 0
    // checkpoints, as one process would.
    let zero_lines = wait_for_line(&mut zero, "epoch 1/3 valid");
    std::thread::sleep(Duration::from_millis(300));
    signal(&one, "INT");
    let _rest: Vec<String> = zero_lines.map(|l| l.unwrap()).collect();
    let (code, stderr) = exit_within(one, Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped on request during epoch 2"),
        "{stderr}"
    );
    let (code, stderr) = exit_within(zero, Duration::from_secs(60));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("during epoch 2"), "{stderr}");
    let m = marker(&run);
    assert_eq!(
        (m["epoch"].as_u64(), m["complete"].as_bool()),
        (Some(1), Some(false)),
        "{m}"
    );
    // Global batches of 128 (64 per rank): 157 steps an epoch, as for one process.
    let steps = m["optimizer_steps"].as_u64().unwrap();
    assert!(steps > 157 && steps < 314, "inside epoch 2: {steps} steps");

    // Both ranks again, rank 0 resuming: the run ends as a 2-rank run.
    let port = free_group_port(2);
    let zero = rank_command(&run, 0, port, true).spawn().unwrap();
    let one = rank_command(&run, 1, port, false).spawn().unwrap();
    let (code, stderr) = exit_within(one, Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = exit_within(zero, Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    let after = metrics(&run);
    assert_eq!(after["train"]["epoch"], serde_json::json!([1, 2, 3]));
    assert!(
        after["test"]["neg_elbo_nats"].as_f64().unwrap() < 300.0,
        "{after}"
    );
}

#[test]
fn a_killed_rank_stops_the_others_with_an_error_and_the_run_resumes() {
    if !fashion_mnist_installed("a_killed_rank_stops_the_others_with_an_error_and_the_run_resumes")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let port = free_group_port(2);
    let mut zero = rank_command(&run, 0, port, false).spawn().unwrap();
    let one = rank_command(&run, 1, port, false).spawn().unwrap();
    let zero_lines = wait_for_line(&mut zero, "epoch 1/3 valid");
    std::thread::sleep(Duration::from_millis(300));
    signal(&one, "KILL");
    let _ = exit_within(one, Duration::from_secs(10));
    let _rest: Vec<String> = zero_lines.map(|l| l.unwrap()).collect();
    // Within seconds (a lost connection), not the 60 s timeout.
    let started = std::time::Instant::now();
    let (code, stderr) = exit_within(zero, Duration::from_secs(50));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("rank 0:") && stderr.contains("another rank stopped or is unreachable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--resume --out"),
        "says how to continue: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(marker(&run)["epoch"], 1, "epoch 1's checkpoint is kept");
    // The run is an ordinary run: one process can finish it.
    let text = resume(&run);
    assert!(text.contains("epoch 3/3 valid"), "{text}");
}
