//! The kernels for burn's Flex CPU backend (`Flex`, `Autodiff<Flex>`), compiled with the
//! `fast-kernels` feature only.
//!
//! Each entry point takes the generic `B` tensors of its op in [`crate::ops`], checks through
//! [`crate::dispatch`] that `B` (and the element type, and the op's options) are what it is
//! written for, and either returns the result or hands the inputs back untouched. Two kinds:
//!
//! * kernels of their own on Flex's f32 buffers, registered as custom autodiff ops where they
//!   are differentiated: [`bernoulli`] (with [`simd_math`]), [`conv`], [`adam`];
//! * rewrites in burn's own tensor ops that are faster on Flex than burn's formulation (but not
//!   necessarily elsewhere): [`reductions`], [`batch_norm`], [`activation`].

pub(crate) mod activation;
pub(crate) mod adam;
pub(crate) mod batch_norm;
pub(crate) mod bernoulli;
pub(crate) mod conv;
pub(crate) mod reductions;
pub(crate) mod simd_math;
