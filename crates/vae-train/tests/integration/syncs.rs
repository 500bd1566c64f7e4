//! Host syncs per training step: zero in steady state.
//!
//! A GPU runs ahead of the host only while the host does not wait for it; each read of a tensor
//! (a loss for a progress bar, a NaN check) drains the queue. The training loop therefore keeps
//! the metrics on the device and reads them once per `training.metrics_every_steps` steps.
//!
//! This counts every read and every `sync` that the training code asks of the backend, through
//! burn's router backend with a counting client in front of the CPU backend. What is counted is
//! what the code above the backend requests, so it is the same on CUDA and wgpu, whose generic
//! code path (not the CPU fast kernels) the router takes.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::Autodiff;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use burn_flex::{Flex, FlexDevice};
use burn_ir::{BackendIr, OperationIr, TensorId, TensorIr};
use burn_router::{
    BackendRouter, MultiBackendBridge, RouterTensor, Runner, RunnerChannel, RunnerClient,
};
use vae_data::ImageItem;

use crate::common::squares_8x8;
use vae_models::MlpVaeConfig;
use vae_train::Trainer;

static READS: AtomicUsize = AtomicUsize::new(0);
static SYNCS: AtomicUsize = AtomicUsize::new(0);
/// The counters are global: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The CPU backend's runner, counting reads and syncs.
#[derive(Clone)]
struct CountingClient {
    runner: Runner<Flex>,
}

impl RunnerClient for CountingClient {
    type Device = FlexDevice;

    fn register_op(&self, op: OperationIr) {
        self.runner.register_op(op)
    }

    fn read_tensor_async(
        &self,
        tensor: TensorIr,
    ) -> burn_std::future::DynFut<Result<TensorData, burn::tensor::backend::ExecutionError>> {
        READS.fetch_add(1, Ordering::SeqCst);
        self.runner.read_tensor_async(tensor)
    }

    fn sync(&self) -> Result<(), burn::tensor::backend::ExecutionError> {
        SYNCS.fetch_add(1, Ordering::SeqCst);
        self.runner.sync()
    }

    fn create_empty_handle(&self) -> TensorId {
        self.runner.create_empty_handle()
    }

    fn register_tensor_data(&self, data: TensorData) -> RouterTensor<Self> {
        let ir = self.runner.register_tensor_data_desc(data);
        RouterTensor::new(ir.id, ir.shape, ir.dtype, self.clone())
    }

    fn device(&self) -> FlexDevice {
        self.runner.device()
    }

    fn seed(&self, seed: u64) {
        self.runner.seed(seed)
    }

    fn dtype_usage(&self, dtype: DType) -> burn::tensor::backend::DTypeUsageSet {
        self.runner.dtype_usage(dtype)
    }
}

/// One backend only: handles never change backend.
struct SameBackend;

impl MultiBackendBridge for SameBackend {
    type TensorHandle = <Flex as BackendIr>::Handle;
    type Device = FlexDevice;

    fn change_backend_float(
        tensor: Self::TensorHandle,
        _shape: burn::tensor::Shape,
        _device: &FlexDevice,
    ) -> Self::TensorHandle {
        tensor
    }

    fn change_backend_int(
        tensor: Self::TensorHandle,
        _shape: burn::tensor::Shape,
        _device: &FlexDevice,
    ) -> Self::TensorHandle {
        tensor
    }

    fn change_backend_bool(
        tensor: Self::TensorHandle,
        _shape: burn::tensor::Shape,
        _device: &FlexDevice,
    ) -> Self::TensorHandle {
        tensor
    }
}

#[derive(Clone)]
struct Counting;

impl RunnerChannel for Counting {
    type Device = FlexDevice;
    type Bridge = SameBackend;
    type Client = CountingClient;
    type FloatElem = f32;
    type IntElem = i32;
    type BoolElem = bool;

    fn name(_device: &FlexDevice) -> String {
        "counting<flex>".into()
    }

    fn init_client(device: &FlexDevice) -> CountingClient {
        CountingClient {
            runner: Runner::new(*device),
        }
    }

    fn get_tensor_handle(
        tensor: &TensorIr,
        client: &CountingClient,
    ) -> <Flex as BackendIr>::Handle {
        client.runner.get_tensor_handle(tensor)
    }

    fn register_tensor(
        client: &CountingClient,
        handle: <Flex as BackendIr>::Handle,
        shape: burn::tensor::Shape,
        dtype: DType,
    ) -> RouterTensor<CountingClient> {
        client
            .runner
            .register_tensor(handle, shape, dtype, client.clone())
    }
}

type B = Autodiff<BackendRouter<Counting>>;

/// Device reads and syncs of one epoch of `steps` training steps of batch 4 (and one
/// validation step), with the metrics read every `metrics_every` steps.
fn reads_and_syncs(steps: usize, metrics_every: usize) -> (usize, usize) {
    let device = FlexDevice;
    B::seed(&device, 1);
    let model = MlpVaeConfig::new(64, vec![16], 2).init::<B>(&device);
    let train: Arc<dyn Dataset<ImageItem>> = Arc::new(InMemDataset::new(squares_8x8(4 * steps)));
    let valid: Arc<dyn Dataset<ImageItem>> = Arc::new(InMemDataset::new(squares_8x8(4)));
    let (reads, syncs) = (READS.load(Ordering::SeqCst), SYNCS.load(Ordering::SeqCst));
    let result = Trainer::new(model, device)
        .data(train, valid)
        .epochs(1)
        .batch_size(4)
        .metrics_every_steps(metrics_every)
        .fit()
        .unwrap();
    let seen = result.history.train.len();
    assert_eq!(seen, 1, "one epoch of training metrics");
    (
        READS.load(Ordering::SeqCst) - reads,
        SYNCS.load(Ordering::SeqCst) - syncs,
    )
}

#[test]
fn a_training_step_reads_nothing_from_the_device() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One read window per epoch in both runs: 64 more steps cost no read and no sync.
    let short = reads_and_syncs(8, 1000);
    let long = reads_and_syncs(72, 1000);
    assert_eq!(
        long, short,
        "(reads, syncs) of 72 steps vs 8 steps, metrics read once per epoch"
    );
}

#[test]
fn the_metrics_cost_one_read_per_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 72 steps read every 16 steps: windows end at 16, 32, 48, 64 and the epoch's end at 72,
    // four reads more than one window for the epoch.
    let once = reads_and_syncs(72, 1000);
    let every_16 = reads_and_syncs(72, 16);
    assert_eq!(every_16.0, once.0 + 4, "reads: every 16 steps vs once");
    assert_eq!(every_16.1, once.1, "syncs do not depend on the window");
}
