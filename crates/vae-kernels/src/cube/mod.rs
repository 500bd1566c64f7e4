//! Where GPU kernels written in cubecl will go. Nothing lives here yet.
//!
//! burn's GPU backends (`Cuda`, and `Wgpu` for testing) are `Fusion<CubeBackend<R, ..>>`, and
//! under `Autodiff` they already fuse the elementwise chains the Flex kernels of this crate
//! replace by hand, so no op needs a GPU kernel today. When one does (e.g. the Bernoulli
//! log-likelihood if profiling shows its reductions launch too many kernels), it plugs into the
//! same dispatch as a Flex kernel:
//!
//! 1. a `cube` Cargo feature enabling `burn/cubecl` (and the runtime it targets), so builds
//!    without a GPU toolchain compile none of it;
//! 2. in [`crate::dispatch`], an identification of the backend types the kernel is written for
//!    (the concrete `CubeBackend<CudaRuntime, f32, i32, u8>` and its `Fusion`/`Autodiff`
//!    wrappers), compared by `TypeId` like `is_flex`, and the same `same_type` downcast;
//! 3. here, a module per op with an entry point of the same shape as the Flex ones: take the
//!    generic tensors, return the result or hand the inputs back; the kernel itself a
//!    `#[cube(launch)]` function launched on the tensor's client, and its backward registered
//!    as a custom autodiff op exactly like `flex::bernoulli` does for `Flex`;
//! 4. in [`crate::ops`], one more `match` before the generic path, counting the call in
//!    [`FastPathCounts`](crate::FastPathCounts), and a test against the generic path run on
//!    the same device (skipped where no GPU is present).
