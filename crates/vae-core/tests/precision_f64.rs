//! The precision checks of `precision/mod.rs` in f64, on `Autodiff<NdArray<f64>>`: a test
//! binary of its own, so burn 0.21's per-device-type default float dtype is F64 for the
//! whole process (`common::device_at_precision`).

mod common;
mod precision;

use burn::backend::{Autodiff, NdArray};

type Ad = Autodiff<NdArray<f64>>;

#[test]
fn kl_standard_normal_is_accurate_near_zero() {
    precision::kl_standard_normal_is_accurate_near_zero::<Ad>();
}

#[test]
fn kl_standard_normal_is_accurate_across_log_variances() {
    precision::kl_standard_normal_is_accurate_across_log_variances::<Ad>();
}

#[test]
fn kl_divergence_is_accurate_near_zero() {
    precision::kl_divergence_is_accurate_near_zero::<Ad>();
}

#[test]
fn log_mean_exp_of_an_all_neg_infinite_column_is_neg_infinite() {
    precision::log_mean_exp_of_an_all_neg_infinite_column_is_neg_infinite::<Ad>();
}

#[test]
fn bernoulli_gradient_is_x_minus_sigmoid_at_confident_logits() {
    precision::bernoulli_gradient_is_x_minus_sigmoid_at_confident_logits::<Ad>();
}

#[test]
fn bernoulli_probs_are_accurate_in_their_own_precision() {
    precision::bernoulli_probs_are_accurate_in_their_own_precision::<Ad>();
}

#[test]
fn log_sigmoid_is_accurate_in_its_own_precision() {
    precision::log_sigmoid_is_accurate_in_its_own_precision::<Ad>();
}
