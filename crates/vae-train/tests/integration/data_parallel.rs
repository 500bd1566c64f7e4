//! Data-parallel training with real processes on 127.0.0.1: this test binary starts copies of
//! itself as the coordinator and the ranks (the ignored `rank_process` entry below), so every
//! rank has its own process, its own backend RNG and its own sockets, as on a cluster.
//!
//! The model's posterior has a fixed scale of e⁻³⁰ (log σ² = −60), so the reparameterised
//! z = μ + σε does not depend on the noise to f32 precision: N ranks and one process draw
//! different noise, and this makes their training comparable digit by digit. Everything else
//! — the MLP, the Bernoulli ELBO, Adam, the epoch order, the averaging — is the library's.
//!
//! These tests also guard the vendored burn-collective patch: without it the second global
//! all-reduce deadlocks, the watchdog ends the ranks, and the tests fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataset::InMemDataset;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use vae_core::DiagonalGaussian;
use vae_models::{Encoder, MlpEncoder, MlpVaeConfig, Vae};
use vae_train::Trainer;
use vae_train::data_parallel::{DataParallel, DataParallelConfig, serve_coordinator};

use crate::common::{B, squares_8x8};

/// An MLP encoder whose posterior has the fixed scale σ = e⁻³⁰ (see the module documentation).
#[derive(Module, Debug)]
struct FixedScale<B: Backend> {
    inner: MlpEncoder<B>,
}

impl<B: Backend> Encoder<B> for FixedScale<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let mean = self.inner.encode(x).mean();
        let log_var = mean.zeros_like() - 60.0;
        DiagonalGaussian::new_unclamped(mean, log_var)
    }

    fn latent_dim(&self) -> usize {
        self.inner.latent_dim()
    }
}

const ROLE: &str = "VAE_DP_TEST_ROLE";
const EXAMPLES: usize = 96;
const GLOBAL_BATCH: usize = 12;
const EPOCHS: usize = 3;

/// What a rank process is asked to do, through its environment.
struct Job {
    nodes: u32,
    rank: u32,
    port: u16,
    out: PathBuf,
}

impl Job {
    fn command(&self, role: &str) -> Command {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([
                "--ignored",
                "--exact",
                "data_parallel::rank_process",
                "--nocapture",
            ])
            .env(ROLE, role)
            .env("VAE_DP_NODES", self.nodes.to_string())
            .env("VAE_DP_RANK", self.rank.to_string())
            .env("VAE_DP_PORT", self.port.to_string())
            .env("VAE_DP_OUT", &self.out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

fn env<T: std::str::FromStr>(key: &str) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!("{key} is not set: this entry is started by the data-parallel tests")
        })
}

/// The entry of the processes the tests start: the coordinator, a rank, or one process
/// without a group (the reference).
#[test]
#[ignore = "a process of the data-parallel tests, which start it themselves"]
fn rank_process() {
    let role: String = env(ROLE);
    let port: u16 = env("VAE_DP_PORT");
    if role == "coordinator" {
        serve_coordinator(port).expect("the coordinator runs");
        return;
    }
    let (nodes, rank, out): (u32, u32, PathBuf) =
        (env("VAE_DP_NODES"), env("VAE_DP_RANK"), env("VAE_DP_OUT"));
    let batch: usize = std::env::var("VAE_DP_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GLOBAL_BATCH);
    let device = Default::default();
    B::seed(&device, 11 + u64::from(rank));
    let mlp = MlpVaeConfig::new(64, vec![32], 4).init::<B>(&device);
    let model = Vae::new(FixedScale { inner: mlp.encoder }, mlp.decoder);
    let train = Arc::new(InMemDataset::new(squares_8x8(EXAMPLES)));
    let valid = Arc::new(InMemDataset::new(squares_8x8(24)));
    let mut trainer = Trainer::new(model, device)
        .data(train, valid)
        .epochs(EPOCHS)
        .batch_size(batch)
        .learning_rate(3e-3)
        .seed(5);
    if role == "rank" {
        let group = DataParallel::join::<burn::backend::Flex>(
            DataParallelConfig {
                nodes,
                rank,
                coordinator: format!("127.0.0.1:{port}"),
                host: "127.0.0.1".into(),
                data_port: port + 1 + rank as u16,
                timeout: Duration::from_secs(60),
            },
            &device,
        )
        .expect("joins the group");
        trainer = trainer.data_parallel(Arc::new(group));
    }
    let result = trainer.fit().expect("trains");
    let last = result.history.train.last().expect("a training epoch");
    let mut bytes: Vec<u8> = Vec::new();
    bytes.extend_from_slice(&(last.elbo.neg_elbo_nats).to_le_bytes());
    bytes.extend_from_slice(&(result.history.valid.len() as u64).to_le_bytes());
    for value in parameters(&result.model) {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&out, bytes).expect("writes the parameters");
}

/// Every parameter value in module visit order.
fn parameters<Bk: Backend, M: Module<Bk>>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
            let values = param.val().into_data().convert::<f32>();
            self.0.extend(values.to_vec::<f32>().expect("f32"));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// What a finished process wrote: the last training epoch's −ELBO, the number of validation
/// epochs, and the parameters.
struct Trained {
    neg_elbo_nats: f64,
    valid_epochs: u64,
    parameters: Vec<f32>,
}

fn read_trained(path: &Path) -> Trained {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Trained {
        neg_elbo_nats: f64::from_le_bytes(bytes[0..8].try_into().unwrap()),
        valid_epochs: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        parameters: bytes[16..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    }
}

/// Waits for `child` at most `limit`, then kills it; its exit status and output.
fn finish(mut child: Child, limit: Duration, what: &str) -> (bool, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    match status {
        Some(status) => (status.success(), output),
        None => (
            false,
            format!("{what} did not finish in {limit:?}\n{output}"),
        ),
    }
}

/// A port nothing listens on now, with `span` free ports after it (the ranks' data ports).
fn free_ports(span: u16) -> u16 {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if port < 65000
            && (1..=span).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok())
        {
            return port;
        }
    }
    panic!("no run of free ports");
}

/// Trains with `nodes` ranks (or, for 0, one process without a group) and returns each
/// process's result.
fn train(nodes: u32, batch: usize, dir: &Path) -> Vec<Trained> {
    let port = free_ports(nodes as u16 + 1);
    let job = |rank: u32| Job {
        nodes,
        rank,
        port,
        out: dir.join(format!("nodes{nodes}-batch{batch}-rank{rank}.bin")),
    };
    if nodes == 0 {
        let mut command = job(0).command("single");
        command.env("VAE_DP_BATCH", batch.to_string());
        let (ok, output) = finish(
            command.spawn().expect("starts"),
            Duration::from_secs(300),
            "one process",
        );
        assert!(ok, "one process failed:\n{output}");
        return vec![read_trained(&job(0).out)];
    }
    let coordinator = job(0).command("coordinator").spawn().expect("starts");
    // Let the coordinator bind before the ranks register.
    std::thread::sleep(Duration::from_millis(300));
    let ranks: Vec<Child> = (0..nodes)
        .map(|rank| job(rank).command("rank").spawn().expect("starts"))
        .collect();
    let results: Vec<(bool, String)> = ranks
        .into_iter()
        .enumerate()
        .map(|(rank, child)| finish(child, Duration::from_secs(300), &format!("rank {rank}")))
        .collect();
    let _ = finish(coordinator, Duration::ZERO, "the coordinator");
    for (rank, (ok, output)) in results.iter().enumerate() {
        assert!(ok, "rank {rank} of {nodes} failed:\n{output}");
    }
    (0..nodes)
        .map(|rank| read_trained(&job(rank).out))
        .collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative_distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

#[test]
fn two_and_three_ranks_train_what_one_process_trains_with_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let single = train(0, GLOBAL_BATCH, dir.path()).remove(0);
    // The wrong answer a missing average would give: one process with a rank's batch.
    let small_batch = train(0, GLOBAL_BATCH / 2, dir.path()).remove(0);
    let off = relative_distance(&small_batch.parameters, &single.parameters);
    assert!(
        off > 1e-2,
        "a smaller batch trains differently ({off:.2e}): the comparison can tell"
    );
    for nodes in [2, 3] {
        let ranks = train(nodes, GLOBAL_BATCH, dir.path());
        for (rank, trained) in ranks.iter().enumerate().skip(1) {
            assert_eq!(
                trained.parameters, ranks[0].parameters,
                "rank {rank} of {nodes} ends with rank 0's parameters, bit for bit"
            );
            assert_eq!(
                trained.neg_elbo_nats, ranks[0].neg_elbo_nats,
                "rank {rank} of {nodes} reports the metrics averaged over the ranks"
            );
            assert_eq!(trained.valid_epochs, 0, "only rank 0 validates");
        }
        assert_eq!(
            ranks[0].valid_epochs, EPOCHS as u64,
            "rank 0 validates each epoch"
        );
        let distance = relative_distance(&ranks[0].parameters, &single.parameters);
        assert!(
            distance < 1e-4 && distance < off / 100.0,
            "{nodes} ranks end {distance:.2e} (relative) from one process with the global batch"
        );
        let metric_gap = (ranks[0].neg_elbo_nats - single.neg_elbo_nats).abs();
        assert!(
            metric_gap < 1e-3 * single.neg_elbo_nats.abs(),
            "{nodes} ranks' last training −ELBO {} vs one process's {}",
            ranks[0].neg_elbo_nats,
            single.neg_elbo_nats
        );
    }
}
