//! Data-parallel training across processes and machines on burn-collective: every rank computes
//! gradients on its shard of the global batch, the gradients are averaged with one all-reduce
//! per step, and every rank applies the same optimizer step, so all ranks hold the same
//! parameters — the same ones one process would reach with the global batch (the property that
//! makes data parallelism correct; `experiments/collective-probe` measured it to every digit).
//!
//! burn-collective 0.21.0 is used through a vendored, patched copy (`vendor/README.md`). Two of
//! its properties shape this module:
//! * its global broadcast is unimplemented, so rank 0's initial weights travel by an all-reduce
//!   (`Sum`, zeros on every other rank) — [`DataParallel::share_from_rank_zero`];
//! * it pairs tensors by call order, not by name, and `GradientsParams::all_reduce` pairs them
//!   by `ParamId`s that are random per process; so the gradients are flattened in module visit
//!   order (the same on every rank for the same architecture) and all-reduced once
//!   ([`DataParallel::average_gradients`]);
//! * it has no timeouts: a rank that stalls would hang the others. Every collective operation
//!   runs under a [`Watchdog`] that ends the process with a message naming the operation after
//!   [`DataParallelConfig::timeout`] (a blocked all-reduce cannot be cancelled). A rank that
//!   dies closes its sockets and the others' all-reduce fails within a second (measured).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
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
}

/// Ends the process if a collective operation outlasts its timeout (a blocked all-reduce cannot
/// be cancelled, and waiting forever would hang a run).
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// The deadline of the operation in progress, in milliseconds since `start`; 0: none.
    deadline_ms: Arc<AtomicU64>,
    start: Instant,
}

impl Watchdog {
    /// A watchdog thread for rank `rank`.
    fn spawn(rank: u32) -> Self {
        let watchdog = Self {
            deadline_ms: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        };
        let (deadline, start) = (watchdog.deadline_ms.clone(), watchdog.start);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let due = deadline.load(Ordering::Acquire);
                if due != 0 && start.elapsed().as_millis() as u64 > due {
                    eprintln!(
                        "error: rank {rank}: a collective operation timed out: another rank stopped responding; stopping"
                    );
                    std::process::exit(3);
                }
            }
        });
        watchdog
    }

    /// Runs `operation` with the deadline `timeout` from now.
    fn guard<T>(&self, timeout: Duration, operation: impl FnOnce() -> T) -> T {
        let due = self.start.elapsed() + timeout;
        self.deadline_ms
            .store(due.as_millis().max(1) as u64, Ordering::Release);
        let result = operation();
        self.deadline_ms.store(0, Ordering::Release);
        result
    }
}

/// This process's membership of a data-parallel group (see the module documentation).
#[derive(Debug)]
pub struct DataParallel {
    config: DataParallelConfig,
    watchdog: Watchdog,
}

impl DataParallel {
    /// Joins the group: registers with the coordinator and waits (at most the timeout) for every
    /// rank. `B` is the backend the tensors live on (the inner backend of training).
    pub fn join<B: Backend>(
        config: DataParallelConfig,
        device: &B::Device,
    ) -> Result<Self, DataParallelError> {
        if config.nodes == 0 || config.rank >= config.nodes {
            return Err(DataParallelError::Setting(format!(
                "rank {} is not in 0..{}",
                config.rank, config.nodes
            )));
        }
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
        let watchdog = Watchdog::spawn(config.rank);
        let peer = PeerId::from(config.rank);
        watchdog
            .guard(config.timeout, || {
                burn_collective::register::<B>(peer, device.clone(), collective)
            })
            .map_err(|e| DataParallelError::Collective {
                rank: config.rank,
                operation: "joining",
                problem: format!("{e:?}"),
            })?;
        Ok(Self { config, watchdog })
    }

    /// This process's rank.
    pub fn rank(&self) -> u32 {
        self.config.rank
    }

    /// N, the number of ranks.
    pub fn nodes(&self) -> u32 {
        self.config.nodes
    }

    /// One all-reduce of a flat tensor on the inner backend `B`.
    fn all_reduce<B: Backend>(
        &self,
        operation: &'static str,
        values: Tensor<B, 1>,
        op: ReduceOperation,
    ) -> Result<Tensor<B, 1>, DataParallelError> {
        let peer = PeerId::from(self.config.rank);
        let out = self
            .watchdog
            .guard(self.config.timeout, || {
                burn_collective::all_reduce::<B>(peer, values.into_primitive().tensor(), op)
            })
            .map_err(|e| DataParallelError::Collective {
                rank: self.config.rank,
                operation,
                problem: format!("{e:?}"),
            })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }

    /// `module` with rank 0's parameter values on every rank (each rank keeps its own
    /// `ParamId`s). Every rank must call it with the same architecture.
    pub fn share_from_rank_zero<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: M,
    ) -> Result<M, DataParallelError> {
        let flat = flatten_parameters(&module.valid());
        let flat = if self.config.rank == 0 {
            flat
        } else {
            flat.zeros_like()
        };
        let flat = self.all_reduce("sharing rank 0's weights", flat, ReduceOperation::Sum)?;
        Ok(module.map(&mut Refill {
            flat: Tensor::from_inner(flat),
            at: 0,
        }))
    }

    /// The mean of every rank's gradients of `module`'s parameters, with one all-reduce: the
    /// gradients are concatenated in module visit order, averaged, and split back under this
    /// rank's `ParamId`s. A parameter without a gradient contributes zeros.
    pub fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams, DataParallelError> {
        let mut take = TakeGradients {
            grads: &mut grads,
            parts: Vec::new(),
            layout: Vec::new(),
        };
        module.visit(&mut take);
        let (parts, layout) = (take.parts, take.layout);
        let flat = Tensor::cat(parts, 0);
        let mean = self.all_reduce("averaging gradients", flat, ReduceOperation::Mean)?;
        let mut at = 0;
        let mut put = PutGradients {
            grads: &mut grads,
            mean,
            at: &mut at,
        };
        module.visit(&mut put);
        debug_assert_eq!(layout.iter().sum::<usize>(), at);
        Ok(grads)
    }

    /// The mean over ranks of `values` (metrics: each rank's sums, averaged).
    pub fn average<B: Backend>(
        &self,
        values: &[f64],
        device: &B::Device,
    ) -> Result<Vec<f64>, DataParallelError> {
        let t = Tensor::<B, 1>::from_floats(
            values
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()
                .as_slice(),
            device,
        );
        let mean = self.all_reduce("averaging metrics", t, ReduceOperation::Mean)?;
        Ok(mean
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap_or_default())
    }

    /// This rank's examples of an epoch: a permutation of `0..len` drawn from `seed` and the
    /// epoch (the same on every rank, a different one each epoch), cut into N equal shards
    /// (the last `len mod N` examples of the permutation are left out, so every rank takes the
    /// same number of steps).
    pub fn shard(&self, len: usize, epoch: usize, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        // SplitMix64-driven Fisher–Yates: deterministic across ranks and platforms.
        let mut state = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..len).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let per_rank = len / self.config.nodes as usize;
        let start = self.config.rank as usize * per_rank;
        order[start..start + per_rank].to_vec()
    }
}

/// Every parameter's values, flattened and concatenated in visit order.
fn flatten_parameters<B: Backend, M: burn::module::Module<B>>(module: &M) -> Tensor<B, 1> {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().reshape([-1]));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    Tensor::cat(collect.0, 0)
}

/// Gives each parameter the next slice of `flat`, as a fresh leaf that requires gradients.
struct Refill<B: Backend> {
    flat: Tensor<B, 1>,
    at: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Refill<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, mapper) = param.consume();
        let dims = value.dims();
        let n = dims.iter().product::<usize>();
        let values = self.flat.clone().slice(self.at..self.at + n).reshape(dims);
        self.at += n;
        Param::from_mapped_value(id, values.detach().require_grad(), mapper)
    }
}

/// Removes each parameter's gradient (zeros if it has none), flattened, in visit order.
struct TakeGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    layout: Vec<usize>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TakeGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let grad = self
            .grads
            .remove::<B::InnerBackend, D>(param.id)
            .unwrap_or_else(|| value.inner().zeros_like());
        self.layout.push(grad.shape().num_elements());
        self.parts.push(grad.reshape([-1]));
    }
}

/// Registers each parameter's slice of the averaged gradients, in visit order.
struct PutGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    mean: Tensor<B::InnerBackend, 1>,
    at: &'a mut usize,
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
        self.grads.register::<B::InnerBackend, D>(param.id, part);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(rank: u32, nodes: u32) -> DataParallel {
        DataParallel {
            config: DataParallelConfig {
                nodes,
                rank,
                coordinator: "127.0.0.1:1".into(),
                host: "127.0.0.1".into(),
                data_port: 1,
                timeout: Duration::from_secs(1),
            },
            watchdog: Watchdog {
                deadline_ms: Arc::new(AtomicU64::new(0)),
                start: Instant::now(),
            },
        }
    }

    #[test]
    fn shards_partition_a_permutation_that_changes_each_epoch() {
        for nodes in [1, 2, 3] {
            for epoch in 0..3 {
                let mut all: Vec<usize> = (0..nodes)
                    .flat_map(|r| member(r, nodes).shard(100, epoch, 7))
                    .collect();
                assert_eq!(all.len(), 100 / nodes as usize * nodes as usize);
                all.sort();
                all.dedup();
                assert_eq!(all.len(), 100 / nodes as usize * nodes as usize, "disjoint");
            }
        }
        let rank = member(1, 2);
        assert_ne!(rank.shard(100, 0, 7), rank.shard(100, 1, 7));
        assert_eq!(rank.shard(100, 3, 7), member(1, 2).shard(100, 3, 7));
    }
}
