//! The ELBO identity on the closed-form linear-Gaussian model (`linear_gaussian/mod.rs`), in
//! f32: a test binary of its own, so that burn 0.21's per-device-type default float dtype is
//! F32 for the whole process (`common::device_at_precision`; the f64 run is
//! `linear_gaussian_f64.rs`).

mod common;
mod linear_gaussian;

use burn::backend::NdArray;
use linear_gaussian::*;

#[test]
fn elbo_plus_posterior_kl_is_log_px() {
    check_elbo_plus_posterior_kl_is_log_px::<NdArray<f32>>();
}

#[test]
fn elbo_equals_log_px_when_q_is_the_true_posterior() {
    check_elbo_equals_log_px_when_q_is_the_true_posterior::<NdArray<f32>>();
}
