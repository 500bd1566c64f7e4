//! Choosing where to train: the CPU, an NVIDIA GPU when built with the `cuda` feature, or any
//! GPU through wgpu (Vulkan / Metal) when built with the `wgpu` feature.

use serde::{Deserialize, Serialize};

/// The CPU backend: burn's Flex (measured faster than ndarray here on both the MLP and the
/// convolutional VAE).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (with kernel fusion and autotuning).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// The wgpu backend (with kernel fusion and autotuning): burn's cubecl stack, as for CUDA,
/// compiling WGSL for Vulkan or Metal.
#[cfg(feature = "wgpu")]
pub type WgpuGpu = burn::backend::Wgpu;

/// Which wgpu adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgpuAdapter {
    /// The first discrete GPU.
    Discrete,
    /// The first integrated GPU.
    Integrated,
    /// wgpu's default choice, software adapters included (Mesa's lavapipe).
    Default,
}

/// The wgpu device of an adapter choice.
#[cfg(feature = "wgpu")]
pub fn wgpu_device(adapter: WgpuAdapter) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    match adapter {
        WgpuAdapter::Discrete => WgpuDevice::DiscreteGpu(0),
        WgpuAdapter::Integrated => WgpuDevice::IntegratedGpu(0),
        WgpuAdapter::Default => WgpuDevice::DefaultDevice,
    }
}

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
    /// wgpu on its default adapter (a software one too), or an error.
    Wgpu,
}

/// What will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// [`Cpu`].
    Cpu,
    /// CUDA device 0.
    Cuda,
    /// wgpu on this adapter.
    Wgpu(WgpuAdapter),
}

impl BackendChoice {
    /// Name for logs and `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu (burn flex)",
            Self::Cuda => "cuda (burn cuda, fusion)",
            Self::Wgpu(WgpuAdapter::Discrete) => "wgpu (burn wgpu, fusion; discrete GPU)",
            Self::Wgpu(WgpuAdapter::Integrated) => "wgpu (burn wgpu, fusion; integrated GPU)",
            Self::Wgpu(WgpuAdapter::Default) => "wgpu (burn wgpu, fusion)",
        }
    }
}

/// A backend that was asked for cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BackendUnavailable {
    /// Why (the driver's or the probe's words).
    pub reason: String,
}

/// Resolves a request, explaining the choice (`Auto` says which it picked and why).
pub fn resolve(request: BackendRequest) -> Result<(BackendChoice, String), BackendUnavailable> {
    match request {
        BackendRequest::Cpu => Ok((BackendChoice::Cpu, "cpu: requested".into())),
        BackendRequest::Cuda => cuda_probe().map(|()| {
            (
                BackendChoice::Cuda,
                "cuda: requested, GPU 0 answered".into(),
            )
        }),
        BackendRequest::Wgpu => wgpu_probe(WgpuAdapter::Default).map(|()| {
            (
                BackendChoice::Wgpu(WgpuAdapter::Default),
                "wgpu: requested, the default adapter answered".into(),
            )
        }),
        // A GPU when one answers; never a software adapter (that is slower than the CPU).
        BackendRequest::Auto => {
            let cuda = match cuda_probe() {
                Ok(()) => return Ok((BackendChoice::Cuda, "auto → cuda: GPU 0 answered".into())),
                Err(why) => why,
            };
            for (adapter, kind) in [
                (WgpuAdapter::Discrete, "discrete"),
                (WgpuAdapter::Integrated, "integrated"),
            ] {
                if cfg!(feature = "wgpu") && wgpu_probe(adapter).is_ok() {
                    return Ok((
                        BackendChoice::Wgpu(adapter),
                        format!("auto → wgpu: a {kind} GPU answered (cuda: {cuda})"),
                    ));
                }
            }
            Ok((
                BackendChoice::Cpu,
                format!(
                    "auto → cpu: no GPU (cuda: {cuda}; wgpu: {})",
                    wgpu_unavailable()
                ),
            ))
        }
    }
}

/// The directory of the persistent kernel (PTX) and autotune caches: `$VAE_KERNEL_CACHE`, else
/// `~/.cache/vae/cubecl/<GPU model>` (cubecl's PTX keys omit the GPU architecture, so each model
/// gets its own directory).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn kernel_cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("VAE_KERNEL_CACHE") {
        return dir.into();
    }
    let model = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()
        .and_then(|mut gpus| gpus.next())
        .and_then(|gpu| std::fs::read_to_string(gpu.ok()?.path().join("information")).ok())
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown-gpu".into());
    let model: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| ".cache".into());
    base.join("vae").join("cubecl").join(model)
}

/// Turns on cubecl's persistent PTX and autotune caches in [`kernel_cache_dir`], so only the
/// first run on a machine pays for kernel compilation. A `cubecl.toml` (or `burn.toml`) in the
/// working directory or above takes precedence. Must run before the first GPU operation.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn configure_kernel_caches() {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut dir = std::env::current_dir().unwrap_or_default();
        loop {
            if ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"]
                .iter()
                .any(|f| dir.join(f).is_file())
            {
                return;
            }
            if !dir.pop() {
                break;
            }
        }
        let cache = kernel_cache_dir();
        let mut config = CubeClRuntimeConfig::default();
        config.compilation.cache = Some(CacheConfig::File(cache.clone()));
        config.autotune.cache = CacheConfig::File(cache);
        // cubecl applies its environment variables (CUBECL_DEBUG_LOG, CUBECL_AUTOTUNE_LEVEL,
        // …) only to a configuration it loads itself: keep them working.
        CubeClRuntimeConfig::set(config.override_from_env());
    });
}

/// Runs one tiny kernel on `device` on a helper thread: without a driver the first GPU call
/// panics rather than returning an error, so the panic is contained there and reported as
/// text.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn probe<B: burn::tensor::backend::Backend>(device: B::Device) -> Result<(), BackendUnavailable> {
    configure_kernel_caches();
    use burn::tensor::{ElementConversion, Tensor};
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
        .name("gpu-probe".into())
        .spawn(move || {
            let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
            let _ = tx.send(t.sum().into_scalar().elem::<f64>());
        });
    let outcome = match spawned {
        Err(e) => Err(format!("could not start the probe thread: {e}")),
        Ok(_) => match rx.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(6.0) => Ok(()),
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
    outcome.map_err(|reason| BackendUnavailable { reason })
}

/// Runs one tiny kernel on CUDA GPU 0 (see `probe`).
#[cfg(feature = "cuda")]
pub fn cuda_probe() -> Result<(), BackendUnavailable> {
    probe::<Gpu>(burn::backend::cuda::CudaDevice::new(0))
}

/// Runs one tiny kernel on a wgpu adapter (see `probe`). A machine without a Vulkan (or
/// Metal) driver fails here with the driver's words; on Debian, `apt install
/// mesa-vulkan-drivers libvulkan1` gives a software adapter.
#[cfg(feature = "wgpu")]
pub fn wgpu_probe(adapter: WgpuAdapter) -> Result<(), BackendUnavailable> {
    probe::<WgpuGpu>(wgpu_device(adapter)).map_err(|e| BackendUnavailable {
        reason: format!(
            "{} (no usable Vulkan/Metal adapter; on Debian `apt install mesa-vulkan-drivers libvulkan1` gives a software one)",
            e.reason
        ),
    })
}

/// Without the `wgpu` feature there is no wgpu backend.
#[cfg(not(feature = "wgpu"))]
pub fn wgpu_probe(_: WgpuAdapter) -> Result<(), BackendUnavailable> {
    Err(BackendUnavailable {
        reason: wgpu_unavailable().into(),
    })
}

fn wgpu_unavailable() -> &'static str {
    if cfg!(feature = "wgpu") {
        "no discrete or integrated GPU adapter answered"
    } else {
        "this binary was built without the `wgpu` feature"
    }
}

/// Without the `cuda` feature there is no GPU backend.
#[cfg(not(feature = "cuda"))]
pub fn cuda_probe() -> Result<(), BackendUnavailable> {
    Err(BackendUnavailable {
        reason: "this binary was built without the `cuda` feature".into(),
    })
}
