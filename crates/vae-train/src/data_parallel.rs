//! Data-parallel training across processes and machines on burn-collective: every rank computes
//! gradients on its part of each global batch ([`crate::epoch_order`]), the gradients are
//! averaged with one all-reduce per step, and every rank applies the same optimizer step, so
//! all ranks hold the same parameters — the ones one process reaches with the global batch
//! (the property that makes data parallelism correct; tested with real processes in
//! `tests/integration/data_parallel.rs`).
//!
//! burn-collective 0.21.0 is used through a vendored, patched copy (`vendor/README.md`). Its
//! properties shape this module:
//! * its global broadcast is unimplemented, so rank 0's configuration and records travel as
//!   bytes through an all-reduce (`Sum`, zeros on every other rank) —
//!   [`DataParallel::share_from_rank_zero`]; loading rank 0's record also gives every rank rank
//!   0's `ParamId`s, so its optimizer state (keyed by them) loads everywhere;
//! * it pairs tensors by call order, not by name: the gradients are flattened in module visit
//!   order (the same on every rank for the same architecture) and all-reduced once
//!   ([`DataParallel::average_gradients`]), with each rank's stop votes appended, so that
//!   every rank leaves the loop at the same step;
//! * it has no timeouts: a rank that stalls would hang the others. Every collective operation
//!   runs under a [`Watchdog`] that ends the process with a message naming the operation after
//!   [`DataParallelConfig::timeout`] (a blocked all-reduce cannot be cancelled). A rank that
//!   dies closes its sockets and the others' all-reduce fails within a second (measured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};

/// How this process takes part in data-parallel training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataParallelConfig {
    /// N, the number of processes (ranks), ≥ 1.
    pub nodes: u32,
    /// This process's rank, 0 ≤ rank < N. Rank 0 initialises the model and writes the run.
    pub rank: u32,
    /// The coordinator's `host:port` (burn-collective's global orchestrator).
    pub coordinator: String,
    /// This process's host name or address as the other ranks reach it.
    pub host: String,
    /// The port this process serves its tensors on (one per process on a shared host).
    pub data_port: u16,
    /// How long one collective operation may take before the process gives up.
    pub timeout: Duration,
}

/// Data-parallel training failed: the message names the rank and the operation.
#[derive(Debug, thiserror::Error)]
pub enum DataParallelError {
    /// A setting out of range.
    #[error("data parallel: {0}")]
    Setting(String),
    /// burn-collective refused or failed an operation (another rank stopped, most often).
    #[error("rank {rank}: {operation} failed: {problem} (another rank stopped or is unreachable)")]
    Collective {
        /// This process's rank.
        rank: u32,
        /// What was being done.
        operation: &'static str,
        /// burn-collective's error.
        problem: String,
    },
    /// Another rank ended training (every rank follows).
    #[error("rank {rank}: training stopped on another rank: {reason}")]
    GroupStopped {
        /// This process's rank.
        rank: u32,
        /// Why.
        reason: &'static str,
    },
    /// What rank 0 sent could not be read (the ranks run different versions or models).
    #[error(
        "rank {rank}: {what} from rank 0 is unreadable: {problem} (do all ranks run the same build?)"
    )]
    FromRankZero {
        /// This process's rank.
        rank: u32,
        /// What was sent.
        what: &'static str,
        /// Why it could not be read.
        problem: String,
    },
}

/// Ends the process if a collective operation outlasts its timeout (a blocked all-reduce cannot
/// be cancelled, and waiting forever would hang a run), naming the operation. The exit status
/// is [`Watchdog::EXIT_STATUS`].
#[derive(Debug, Clone)]
pub struct Watchdog {
    state: Arc<WatchdogState>,
}

#[derive(Debug)]
struct WatchdogState {
    /// The deadline of the operation in progress, in milliseconds since `start`; 0: none.
    deadline_ms: AtomicU64,
    start: Instant,
    operation: Mutex<&'static str>,
    timeout: Mutex<Duration>,
}

impl Watchdog {
    /// The exit status of a process the watchdog ends.
    pub const EXIT_STATUS: i32 = 3;

    /// A watchdog thread for rank `rank`; it ends when the last handle is dropped.
    fn spawn(rank: u32) -> Self {
        let state = Arc::new(WatchdogState {
            deadline_ms: AtomicU64::new(0),
            start: Instant::now(),
            operation: Mutex::new(""),
            timeout: Mutex::new(Duration::ZERO),
        });
        let weak = Arc::downgrade(&state);
        std::thread::spawn(move || {
            while let Some(state) = weak.upgrade() {
                let due = state.deadline_ms.load(Ordering::Acquire);
                if due != 0 && state.start.elapsed().as_millis() as u64 > due {
                    let operation = state.operation.lock().map(|o| *o).unwrap_or("");
                    let timeout = state.timeout.lock().map(|t| *t).unwrap_or_default();
                    eprintln!(
                        "error: rank {rank}: {operation} timed out after {} s: another rank stopped responding (or has not started); stopping",
                        timeout.as_secs()
                    );
                    std::process::exit(Self::EXIT_STATUS);
                }
                drop(state);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { state }
    }

    /// Runs `operation` with the deadline `timeout` from now.
    fn guard<T>(&self, name: &'static str, timeout: Duration, operation: impl FnOnce() -> T) -> T {
        if let Ok(mut slot) = self.state.operation.lock() {
            *slot = name;
        }
        if let Ok(mut slot) = self.state.timeout.lock() {
            *slot = timeout;
        }
        let due = self.state.start.elapsed() + timeout;
        self.state
            .deadline_ms
            .store(due.as_millis().max(1) as u64, Ordering::Release);
        let result = operation();
        self.state.deadline_ms.store(0, Ordering::Release);
        result
    }
}

/// Why a rank wants training to stop, voted at every step (see
/// [`DataParallel::average_gradients`]): every rank leaves the loop at the first step where
/// any rank voted, and all learn what the votes were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopVotes {
    /// A stop was requested (Ctrl-C, SIGTERM).
    pub requested: bool,
    /// A metric was NaN or ∞.
    pub non_finite: bool,
    /// The loop was interrupted for another reason.
    pub interrupted: bool,
    /// This rank's data ran out before the epoch's last step (an example failed to load).
    pub data_failed: bool,
}

impl StopVotes {
    /// Whether any rank voted to stop.
    pub fn any(&self) -> bool {
        self.requested || self.non_finite || self.interrupted || self.data_failed
    }

    fn to_floats(self) -> [f32; 4] {
        [
            self.requested,
            self.non_finite,
            self.interrupted,
            self.data_failed,
        ]
        .map(|v| if v { 1.0 } else { 0.0 })
    }

    fn from_floats(votes: &[f32]) -> Self {
        let any = |i: usize| votes.get(i).is_some_and(|&v| v > 0.0);
        Self {
            requested: any(0),
            non_finite: any(1),
            interrupted: any(2),
            data_failed: any(3),
        }
    }
}

/// This process's membership of a data-parallel group (see the module documentation).
#[derive(Debug)]
pub struct DataParallel {
    config: DataParallelConfig,
    watchdog: Watchdog,
    exchanges: Mutex<GradientExchanges>,
}

/// What the gradient all-reduces of this process cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradientExchanges {
    /// All-reduces (one per training step).
    pub count: u64,
    /// The size of each: the gradients (4 bytes per parameter) and the stop votes, in bytes.
    pub bytes_each: u64,
    /// Seconds spent in them, waiting for the slowest rank included.
    pub seconds: f64,
}

impl DataParallel {
    /// Joins the group: registers with the coordinator and waits (at most the timeout, then the
    /// process exits) for every rank. `B` is the backend the tensors live on: the inner backend
    /// of training.
    pub fn join<B: Backend>(
        config: DataParallelConfig,
        device: &B::Device,
    ) -> Result<Self, DataParallelError> {
        config.validate()?;
        let address = |host: &str, port: Option<u16>| {
            let text = match port {
                Some(port) => format!("ws://{host}:{port}"),
                None => format!("ws://{host}"),
            };
            text.parse()
                .map_err(|_| DataParallelError::Setting(format!("'{text}' is not a host and port")))
        };
        let collective = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(config.nodes)
            .with_global_address(address(&config.coordinator, None)?)
            .with_node_address(address(&config.host, Some(config.data_port))?)
            .with_data_service_port(config.data_port)
            .with_global_all_reduce_strategy(AllReduceStrategy::Ring);
        quiet_logging();
        let watchdog = Watchdog::spawn(config.rank);
        let peer = PeerId::from(config.rank);
        watchdog
            .guard("joining the group", config.timeout, || {
                burn_collective::register::<B>(peer, device.clone(), collective)
            })
            .map_err(|e| DataParallelError::Collective {
                rank: config.rank,
                operation: "joining",
                problem: format!("{e:?}"),
            })?;
        Ok(Self {
            config,
            watchdog,
            exchanges: Mutex::new(GradientExchanges::default()),
        })
    }

    /// The gradient all-reduces so far: how many, their size and the time spent in them.
    pub fn gradient_exchanges(&self) -> GradientExchanges {
        self.exchanges.lock().map(|e| *e).unwrap_or_default()
    }

    /// This process's rank.
    pub fn rank(&self) -> u32 {
        self.config.rank
    }

    /// N, the number of ranks.
    pub fn nodes(&self) -> u32 {
        self.config.nodes
    }

    /// Whether this is rank 0, the one that initialises the model and writes the run.
    pub fn is_rank_zero(&self) -> bool {
        self.config.rank == 0
    }

    /// One all-reduce of a flat tensor on the inner backend `B`.
    fn all_reduce<B: Backend>(
        &self,
        operation: &'static str,
        values: Tensor<B, 1>,
        op: ReduceOperation,
    ) -> Result<Tensor<B, 1>, DataParallelError> {
        let peer = PeerId::from(self.config.rank);
        // The ring all-reduce cuts a tensor into one slice per rank: pad short ones.
        let [len] = values.dims();
        let nodes = self.config.nodes as usize;
        let values = if len < nodes {
            let device = values.device();
            Tensor::cat(vec![values, Tensor::zeros([nodes - len], &device)], 0)
        } else {
            values
        };
        let out = self
            .watchdog
            .guard(operation, self.config.timeout, || {
                burn_collective::all_reduce::<B>(peer, values.into_primitive().tensor(), op)
            })
            .map_err(|e| DataParallelError::Collective {
                rank: self.config.rank,
                operation,
                problem: format!("{e:?}"),
            })?;
        Ok(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out)).slice(0..len))
    }

    /// The element-wise sum over ranks of `values` (device tensors; nothing is read).
    pub fn sum<B: Backend>(
        &self,
        operation: &'static str,
        values: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, DataParallelError> {
        self.all_reduce(operation, values, ReduceOperation::Sum)
    }

    /// The element-wise sum over ranks of `values`, read back (small agreements between ranks).
    pub fn agree<B: Backend>(
        &self,
        operation: &'static str,
        values: &[f32],
        device: &B::Device,
    ) -> Result<Vec<f32>, DataParallelError> {
        let sum = self.sum(operation, Tensor::<B, 1>::from_floats(values, device))?;
        Ok(read_floats(sum))
    }

    /// Rank 0's `bytes` on every rank (the other ranks pass `None`; what they pass is ignored):
    /// two all-reduces, the length then the bytes packed three to an `f32` (exact: < 2²⁴).
    pub fn share_from_rank_zero<B: Backend>(
        &self,
        operation: &'static str,
        bytes: Option<Vec<u8>>,
        device: &B::Device,
    ) -> Result<Vec<u8>, DataParallelError> {
        let bytes = if self.is_rank_zero() {
            bytes.unwrap_or_default()
        } else {
            Vec::new()
        };
        let length = bytes.len() as u64;
        let parts = [(length >> 24) as f32, (length & 0xFF_FFFF) as f32];
        let shared = self.agree::<B>(operation, &parts, device)?;
        let length = ((shared[0] as u64) << 24) | shared[1] as u64;
        let words = length.div_ceil(3) as usize;
        let packed: Vec<f32> = if self.is_rank_zero() {
            bytes
                .chunks(3)
                .map(|c| {
                    let at = |i: usize| c.get(i).copied().unwrap_or(0) as u32;
                    (at(0) | at(1) << 8 | at(2) << 16) as f32
                })
                .collect()
        } else {
            vec![0.0; words]
        };
        if words == 0 {
            return Ok(Vec::new());
        }
        let words = self.agree::<B>(operation, &packed, device)?;
        let mut out = Vec::with_capacity(length as usize);
        for word in words {
            let word = word as u32;
            out.extend_from_slice(&[word as u8, (word >> 8) as u8, (word >> 16) as u8]);
        }
        out.truncate(length as usize);
        Ok(out)
    }

    /// The mean of every rank's gradients of `module`'s parameters, and every rank's stop
    /// votes, with one all-reduce: the gradients are concatenated in module visit order (the
    /// votes after them), averaged, and split back under this rank's `ParamId`s. A parameter
    /// without a gradient contributes zeros.
    pub fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
        votes: StopVotes,
    ) -> Result<(GradientsParams, StopVotes), DataParallelError> {
        let mut take = TakeGradients {
            grads: &mut grads,
            parts: Vec::new(),
            had: Vec::new(),
        };
        module.visit(&mut take);
        let (mut parts, had) = (take.parts, take.had);
        let device = parts
            .first()
            .map(|p| p.device())
            .ok_or_else(|| DataParallelError::Setting("the model has no parameters".into()))?;
        let votes_at: usize = parts.iter().map(|p| p.dims()[0]).sum();
        parts.push(Tensor::from_floats(votes.to_floats(), &device));
        let started = Instant::now();
        let mean = self.all_reduce(
            "averaging gradients",
            Tensor::cat(parts, 0),
            ReduceOperation::Mean,
        )?;
        if let Ok(mut exchanges) = self.exchanges.lock() {
            exchanges.count += 1;
            exchanges.bytes_each = 4 * (votes_at as u64 + 4);
            exchanges.seconds += started.elapsed().as_secs_f64();
        }
        let votes =
            StopVotes::from_floats(&read_floats(mean.clone().slice(votes_at..votes_at + 4)));
        let mut at = 0;
        module.visit(&mut PutGradients {
            grads: &mut grads,
            mean,
            at: &mut at,
            had: had.into_iter(),
        });
        Ok((grads, votes))
    }
}

impl DataParallelConfig {
    /// Checks the rank, the node count and the timeout.
    pub fn validate(&self) -> Result<(), DataParallelError> {
        if self.nodes == 0 || self.rank >= self.nodes {
            return Err(DataParallelError::Setting(format!(
                "rank {} is not in 0..{} (ranks are numbered from 0 to the number of nodes − 1)",
                self.rank, self.nodes
            )));
        }
        if self.timeout.is_zero() {
            return Err(DataParallelError::Setting(
                "the timeout must be longer than 0 s".into(),
            ));
        }
        Ok(())
    }
}

/// burn-communication installs a global INFO logger on stdout (a line per tensor exchanged)
/// unless one is installed already; and burn-collective logs a lost connection as an error
/// although the next exchange reports it (as a [`DataParallelError`]). So, unless the program
/// has a logger of its own: warnings on stderr, none from those two crates.
fn quiet_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            *meta.level() <= tracing::Level::WARN
                && !meta.target().starts_with("burn_communication")
                && !meta.target().starts_with("burn_collective")
        }));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

fn read_floats<B: Backend>(values: Tensor<B, 1>) -> Vec<f32> {
    values
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

/// Removes each parameter's gradient (zeros if it has none), flattened, in visit order, and
/// whether it had one.
struct TakeGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    had: Vec<bool>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TakeGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let grad = self.grads.remove::<B::InnerBackend, D>(param.id);
        self.had.push(grad.is_some());
        let grad = grad.unwrap_or_else(|| value.inner().zeros_like());
        self.parts.push(grad.reshape([-1]));
    }
}

/// Registers each parameter's slice of the averaged gradients, in visit order — for the
/// parameters that had a gradient here (the optimizer leaves the others alone, as in one
/// process; on a rank whose data failed none had one, and nothing is applied).
struct PutGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    mean: Tensor<B::InnerBackend, 1>,
    at: &'a mut usize,
    had: std::vec::IntoIter<bool>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for PutGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let dims = param.val().dims();
        let n = dims.iter().product::<usize>();
        let part = self
            .mean
            .clone()
            .slice(*self.at..*self.at + n)
            .reshape(dims);
        *self.at += n;
        if self.had.next().unwrap_or(false) {
            self.grads.register::<B::InnerBackend, D>(param.id, part);
        }
    }
}

/// Runs burn-collective's coordinator (global orchestrator) on `port` until the process is
/// interrupted; blocking, on its own Tokio runtime.
pub fn serve_coordinator(port: u16) -> std::io::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}
