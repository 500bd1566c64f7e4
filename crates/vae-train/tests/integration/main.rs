//! vae-train's integration tests, in one test binary.
//!
//! Every test binary of this crate links the whole burn stack (the CPU, CUDA and wgpu backends
//! in the workspace build), at a few hundred megabytes and tens of seconds of linking each, so
//! the test files are modules of one binary rather than binaries of their own.

mod common;
mod data_parallel;
mod reliability;
mod run;
mod syncs;
mod trainer;
mod wgpu;
