//! `--backend`: which burn backend a command runs on, chosen once, in one place.

use clap::ValueEnum;
use vae_train::backend::{BackendChoice, BackendRequest, resolve};

use crate::error::CliError;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A GPU when one answers (CUDA, then a discrete or integrated wgpu adapter), else the
    /// CPU; never a software adapter.
    Auto,
    /// The CPU (burn's Flex).
    Cpu,
    /// An NVIDIA GPU (needs the `cuda` feature).
    Cuda,
    /// Any GPU through wgpu: Vulkan, Metal, or Mesa's software Vulkan (needs the `wgpu`
    /// feature).
    Wgpu,
}

impl BackendArg {
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
        }
    }
}

impl From<BackendArg> for BackendRequest {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => Self::Auto,
            BackendArg::Cpu => Self::Cpu,
            BackendArg::Cuda => Self::Cuda,
            BackendArg::Wgpu => Self::Wgpu,
        }
    }
}

/// Resolves `--backend`, printing the choice and why to stderr.
pub fn choose(request: BackendArg) -> Result<BackendChoice, CliError> {
    let unavailable = |why: String| CliError::Backend {
        backend: request.name(),
        why,
    };
    let (choice, why) = resolve(request.into()).map_err(|e| unavailable(e.reason))?;
    // vae-train may have CUDA through another crate's feature while this crate was built
    // without it: then there is no CUDA dispatch here.
    if choice == BackendChoice::Cuda && !cfg!(feature = "cuda") {
        return match request {
            BackendArg::Auto => Ok(BackendChoice::Cpu),
            _ => Err(unavailable(
                "vae-cli was built without its `cuda` feature".into(),
            )),
        };
    }
    if matches!(choice, BackendChoice::Wgpu(_)) && !cfg!(feature = "wgpu") {
        return match request {
            BackendArg::Auto => Ok(BackendChoice::Cpu),
            _ => Err(unavailable(
                "vae-cli was built without its `wgpu` feature".into(),
            )),
        };
    }
    eprintln!("backend: {why}");
    if choice == BackendChoice::Cuda {
        eprintln!(
            "note: the first CUDA run compiles its kernels (NVRTC) and caches them; later runs start fast"
        );
    }
    if matches!(choice, BackendChoice::Wgpu(_)) {
        eprintln!(
            "note: the first wgpu steps compile and autotune kernels (tens of seconds on a software adapter)"
        );
    }
    Ok(choice)
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$choice` and `$device` to its
/// device: the one place where a backend type is picked.
macro_rules! with_backend {
    ($choice:expr, |$B:ident, $device:ident| $body:expr) => {
        match $choice {
            vae_train::backend::BackendChoice::Cpu => {
                type $B = burn::backend::Autodiff<vae_train::backend::Cpu>;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            vae_train::backend::BackendChoice::Cuda => {
                type $B = burn::backend::Autodiff<vae_train::backend::Gpu>;
                let $device = burn::backend::cuda::CudaDevice::new(0);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            vae_train::backend::BackendChoice::Cuda => {
                unreachable!("choose() never picks CUDA without the feature")
            }
            #[cfg(feature = "wgpu")]
            vae_train::backend::BackendChoice::Wgpu(adapter) => {
                type $B = burn::backend::Autodiff<vae_train::backend::WgpuGpu>;
                let $device = vae_train::backend::wgpu_device(adapter);
                $body
            }
            #[cfg(not(feature = "wgpu"))]
            vae_train::backend::BackendChoice::Wgpu(_) => {
                unreachable!("choose() never picks wgpu without the feature")
            }
        }
    };
}
pub(crate) use with_backend;
