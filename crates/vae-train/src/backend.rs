//! Choosing where to train: the CPU, or an NVIDIA GPU when built with the `cuda` feature.

use serde::{Deserialize, Serialize};

/// The CPU backend: burn's Flex (measured faster than ndarray here on both the MLP and the
/// convolutional VAE).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (with kernel fusion and autotuning).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendRequest {
    /// CUDA if compiled in and a GPU answers, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA, or an error.
    Cuda,
}

/// What will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// [`Cpu`].
    Cpu,
    /// CUDA device 0.
    Cuda,
}

impl BackendChoice {
    /// Name for logs and `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu (burn flex)",
            Self::Cuda => "cuda (burn cuda, fusion)",
        }
    }
}

/// Resolves a request, explaining the choice (`--backend auto` says which it picked and why).
pub fn resolve(request: BackendRequest) -> Result<(BackendChoice, String), String> {
    match request {
        BackendRequest::Cpu => Ok((BackendChoice::Cpu, "cpu: requested".into())),
        BackendRequest::Cuda => match cuda_probe() {
            Ok(()) => Ok((
                BackendChoice::Cuda,
                "cuda: requested, GPU 0 answered".into(),
            )),
            Err(why) => Err(format!("--backend cuda: {why}")),
        },
        BackendRequest::Auto => match cuda_probe() {
            Ok(()) => Ok((BackendChoice::Cuda, "auto → cuda: GPU 0 answered".into())),
            Err(why) => Ok((BackendChoice::Cpu, format!("auto → cpu: {why}"))),
        },
    }
}

/// Runs one tiny kernel on GPU 0 on a helper thread: without a driver the first CUDA call panics
/// rather than returning an error, so the panic is contained there and reported as text.
#[cfg(feature = "cuda")]
pub fn cuda_probe() -> Result<(), String> {
    use burn::tensor::Tensor;
    use std::sync::{Arc, Mutex};
    let message = Arc::new(Mutex::new(None::<String>));
    let sink = message.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert_with(|| info.to_string());
        }
    }));
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("cuda-probe".into())
        .spawn(move || {
            let device = burn::backend::cuda::CudaDevice::new(0);
            let t = Tensor::<Gpu, 1>::from_floats([1.0, 2.0, 3.0], &device);
            let _ = tx.send(t.sum().into_scalar());
        });
    let outcome = match spawned {
        Err(e) => Err(format!("could not start the probe thread: {e}")),
        Ok(_) => match rx.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(v) if v == 6.0 => Ok(()),
            Ok(v) => Err(format!("GPU probe computed {v} instead of 6")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err("GPU probe timed out".into()),
            Err(_) => Err(message
                .lock()
                .ok()
                .and_then(|m| m.clone())
                .map(|m| m.replace('\n', " "))
                .unwrap_or_else(|| "GPU probe failed".into())),
        },
    };
    std::panic::set_hook(previous);
    outcome
}

/// Without the `cuda` feature there is no GPU backend.
#[cfg(not(feature = "cuda"))]
pub fn cuda_probe() -> Result<(), String> {
    Err("this binary was built without the `cuda` feature".into())
}
