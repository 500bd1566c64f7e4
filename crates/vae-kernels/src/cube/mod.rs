//! The fast paths for burn's GPU backends (`Wgpu`, `Cuda`: cubecl JIT kernels under
//! burn-fusion), with the `wgpu` and `cuda` features.
//!
//! There every operation that fusion does not merge is a kernel launch, and whether it merges
//! is decided by burn-fusion's optimiser at run time: measured on wgpu, it fused a batch norm's
//! elementwise work in a small probe but ran it as a dozen separate kernels inside the conv
//! VAE's training step. So what pays is operations whose launches are fixed:
//!
//! * [`batch_norm`]: batch norm with batch statistics as one autodiff operation with a
//!   closed-form backward pass (`Autodiff<Wgpu>`, `Autodiff<Cuda>`), each pass a fusion custom
//!   operation of two cubecl kernels (`batch_norm_kernels.rs`).
//!
//! burn's fusion already merges the ELBO's elementwise chains (reparameterisation, KL, the
//! Bernoulli log-likelihood): a training step of the MLP VAE launches as many kernels as
//! PyTorch's, so they have no kernel of their own. A new kernel follows `batch_norm_kernels.rs`:
//! `#[cube(launch)]` functions on `CubeTensor`s, wrapped as a `CustomOpIr` fusion operation for
//! `Fusion<CubeBackend<R, f32, ..>>`, behind an entry point that takes the generic tensors and
//! hands them back where it does not apply, and a test against burn's formulation on wgpu
//! (`crates/vae-train/tests/integration/wgpu.rs`, run by CI on Mesa's software driver).

pub(crate) mod batch_norm;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod batch_norm_kernels;
