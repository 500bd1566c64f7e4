//! # vae-kernels — backend-specific fast paths behind one generic API
//!
//! The operations of a VAE training step that burn 0.21's generic formulations make slow on
//! some backend, each as **one generic function** (`B: Backend`) that always returns a result:
//! the fast path where one exists for `B`, burn's generic formulation everywhere else. Callers
//! (vae-core's observation models, vae-models' networks, vae-train's optimizer) never name a
//! backend.
//!
//! | op | computes |
//! |---|---|
//! | [`bernoulli_log_prob`] | `Σ_d [x η − softplus(η)]`, `[1, N, D]` × `[S, N, D]` → `[S, N]`, nats |
//! | [`sum_last_dim`] | `Σ_d t[s, n, d]`, `[S, N, D]` → `[S, N]` |
//! | [`conv2d`], [`conv_transpose2d`] | burn's 2-D convolutions, same signatures |
//! | [`batch_norm`] | burn's `BatchNorm` forward (batch or running statistics); on the GPU backends, training is one autodiff operation of two cubecl kernels each way |
//! | [`leaky_relu`] | `max(x, s·x)` |
//! | [`adam_step`] | burn's `Adam` update of one parameter, bit for bit ([`AdamHyper`]) |
//!
//! ## The dispatch rule
//!
//! One module decides (`dispatch.rs`): an op compares `B`'s `TypeId` with the backends a
//! kernel is written for, and only then moves its tensors across by a checked `Box<dyn Any>`
//! downcast (no transmute). The kernel may still decline (element type other than f32, grouped
//! or dilated convolution, …) and hand the inputs back; the op then runs burn's formulation
//! itself. Today the fast paths are for burn's Flex CPU backend: `Autodiff<Flex>` (training)
//! and, where it helps evaluation, plain `Flex` — and, with the features `wgpu` / `cuda`,
//! burn's GPU backends under autodiff (`cube/`). Every fast path taken is counted per thread
//! ([`fast_path_counts`]), so tests prove which path ran.
//!
//! ## Feature
//!
//! `fast-kernels` (off by default; vae-train turns it on) compiles the Flex kernels (with
//! burn's `flex` and `autodiff` features, rayon and gemm). Without it every op is the generic
//! path and nothing backend-specific is compiled. The values agree with the generic path to f32
//! rounding in absolute terms (bit for bit for Adam); the tests compare them, forward and
//! gradient. That is an absolute bound: relative to small values the fast path can be the more
//! accurate one (the fused Bernoulli pass computes its own exp and log1p to ≤ 2 ε, where the
//! generic path goes through the backend's functions). Both Bernoulli paths form
//! ∂/∂η = x − σ(η) without cancellation (see [`bernoulli_log_prob`]).
//!
//! ## Adding a kernel
//!
//! 1. Write it under `src/flex/` (or `src/cube/` for a GPU kernel): an entry point that takes
//!    the op's generic tensors and returns `Ok(result)` or `Err(inputs)`, using the dispatch
//!    helpers for the backend check, the downcast and contiguous `&[f32]` views; a custom
//!    autodiff op (`burn::backend::autodiff::ops::Backward`) when it is differentiated. Every
//!    `unsafe` block lives in this crate, with a `// SAFETY:` comment.
//! 2. Call it from the op in `ops.rs` before the generic path, counting the call in a new
//!    [`FastPathCounts`] field.
//! 3. Test it against the generic path (forward and gradients, a non-Flex reference such as
//!    NdArray) and assert with [`fast_path_counts`] that it ran, under
//!    `#[cfg(feature = "fast-kernels")]`.
//!
//! ## GPU (`cube/`)
//!
//! With the feature `wgpu` or `cuda` (vae-train's features of the same names turn them on),
//! `src/cube/` holds the fast paths for `Autodiff<Wgpu>` / `Autodiff<Cuda>`, where every
//! operation that fusion does not merge is a kernel launch: batch norm in training as one
//! autodiff operation with a closed-form backward pass, each pass two cubecl kernels
//! registered as one fusion custom operation. burn's fusion already merges the ELBO's
//! elementwise chains; `src/cube/mod.rs` says why and how a new kernel plugs in.

mod cube;
mod dispatch;
#[cfg(feature = "fast-kernels")]
mod flex;
mod ops;

pub use dispatch::{FastPathCounts, fast_path_counts};
pub use ops::{
    AdamHyper, adam_step, batch_norm, bernoulli_log_prob, conv_transpose2d, conv2d, leaky_relu,
    sum_last_dim,
};
