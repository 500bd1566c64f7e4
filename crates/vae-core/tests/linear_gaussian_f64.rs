//! The ELBO identity on the closed-form linear-Gaussian model (`linear_gaussian/mod.rs`), in
//! f64, plus the f64-only checks of log p(x|z), importance sampling and the IWAE bound.
//!
//! The f32 run is `linear_gaussian_f32.rs`: a separate test binary, because burn 0.21 keeps one
//! default float dtype per device type for the whole process (`common::device_at_precision`).
#![allow(clippy::needless_range_loop)]

mod common;
mod linear_gaussian;

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use common::{Rng, device_at_precision, tensor, to_vec};
use linear_gaussian::*;
use vae_core::{Elbo, KlEstimator, ObservationModel, StandardNormal, standard_normal_log_prob};

#[test]
fn elbo_plus_posterior_kl_is_log_px() {
    check_elbo_plus_posterior_kl_is_log_px::<NdArray<f64>>();
}

#[test]
fn elbo_equals_log_px_when_q_is_the_true_posterior() {
    check_elbo_equals_log_px_when_q_is_the_true_posterior::<NdArray<f64>>();
}

#[test]
fn log_joint_minus_log_posterior_is_log_px_at_every_z() {
    // Pointwise: log p(x|z) + log p(z) − log p(z|x) = log p(x) for any z, which checks the
    // Gaussian likelihood and the prior density exactly (no expectation involved).
    let model = Model::general();
    let case = case(&model, 3, 0.0, 1.0, 11);
    let device = device_at_precision::<NdArray<f64>>();
    let mut rng = Rng::new(12);
    let s = 5;
    let z_values = rng
        .normals(s * 3 * L)
        .iter()
        .map(|v| 2.0 * v)
        .collect::<Vec<_>>();
    let z = tensor::<NdArray<f64>, 3>(z_values.clone(), [s, 3, L], &device);
    let log_joint =
        to_vec(model.decode(z.clone()).log_prob(case.data(&device)) + standard_normal_log_prob(z));
    for si in 0..s {
        for (n, x) in case.x.iter().enumerate() {
            let zi = &z_values[(si * 3 + n) * L..(si * 3 + n + 1) * L];
            let implied = log_joint[si * 3 + n] - model.log_posterior(x, zi);
            let err = (implied - model.log_px(x)).abs();
            assert!(err < 1e-9, "pointwise identity off by {err}");
        }
    }
}

#[test]
fn importance_sampled_log_px_converges_to_log_px() {
    type Bk = NdArray<f64>;
    let model = Model::general();
    // q: the posterior's marginal means, shifted, and 1.5× its marginal variances (a slightly
    // wide proposal, as a trained encoder gives; the weights then have finite variance).
    let case = case(&model, 4, 0.2, 1.5, 21);
    let device = device_at_precision::<NdArray<f64>>();
    Bk::seed(&device, 21);
    let q = case.posterior::<Bk>(&device);
    let truth: Vec<f64> = case.x.iter().map(|x| model.log_px(x)).collect();

    // The normalised weights r = w / p(x) have mean exactly 1 (E_q[w] = p(x)); their variance v
    // sets the estimator's error, ≈ sqrt(v / K) for large K.
    let s = 20_000;
    let mut worst_variance: f64 = 0.0;
    for (mean, var) in normalised_weight_moments(&model, &case, &q, &truth, s) {
        let bound = 5.0 * (var / s as f64).sqrt();
        assert!((mean - 1.0).abs() < bound, "E[w]/p(x) = {mean} ± {bound}");
        worst_variance = worst_variance.max(var);
    }

    let errors =
        importance_sampling_errors(&model, &case, &q, &truth, &[1, 10, 100, 1000, 5000], 300, 8);
    let bound = 3.0 * (worst_variance / 5000.0).sqrt();
    eprintln!(
        "importance-sampled log p(x), mean |error| for K = 1, 10, 100, 1000, 5000: {:?}; \
         bound at K = 5000 from Var(w/p) = {worst_variance:.3}: {bound:.2e}",
        errors
            .iter()
            .map(|e| format!("{e:.2e}"))
            .collect::<Vec<_>>()
    );
    for pair in errors.windows(2) {
        assert!(pair[1] < pair[0], "error did not shrink with K: {errors:?}");
    }
    assert!(errors[4] < bound, "K = 5000 error {} > {bound}", errors[4]);
}

#[test]
fn iwae_bound_rises_with_k_towards_log_px() {
    type Bk = NdArray<f64>;
    let model = Model::general();
    let case = case(&model, 4, 0.5, 2.0, 31);
    let device = device_at_precision::<NdArray<f64>>();
    let q = case.posterior::<Bk>(&device);
    let truth: f64 = case.x.iter().map(|x| model.log_px(x)).sum::<f64>() / 4.0;
    let exact_elbo = {
        let z = q.reparameterize(sigma_points(4, &device));
        let elbo = Elbo::estimate(
            case.data(&device),
            &q,
            &vae_core::PosteriorSamples::at(&q, z.clone()),
            &model.decode(z),
            &StandardNormal::new(L),
            KlEstimator::Analytic,
        );
        to_vec(elbo.elbo()).iter().sum::<f64>() / 4.0
    };
    let mut rng = Rng::new(32);
    let reps = 300;
    // (mean, standard error) of the batch-mean bound for each K.
    let mut bounds = Vec::new();
    for k in [1, 2, 5, 20, 100] {
        let values: Vec<f64> = (0..reps)
            .map(|_| {
                let eps = tensor::<Bk, 3>(rng.normals(k * 4 * L), [k, 4, L], &device);
                let z = q.reparameterize(eps);
                let bound = vae_core::iwae_bound(
                    case.data(&device),
                    &vae_core::PosteriorSamples::at(&q, z.clone()),
                    &model.decode(z),
                    &StandardNormal::new(L),
                );
                to_vec(bound).iter().sum::<f64>() / 4.0
            })
            .collect();
        let mean = values.iter().sum::<f64>() / reps as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
        bounds.push((k, mean, (var / reps as f64).sqrt()));
    }
    eprintln!(
        "log p(x) = {truth:.4}, ELBO = {exact_elbo:.4}, E[IWAE_K] (K, mean, s.e.) = {bounds:.4?}"
    );
    // K = 1 is the single-sample ELBO estimator (with a Monte-Carlo KL): unbiased for the ELBO.
    let (_, l1, se1) = bounds[0];
    assert!(
        (l1 - exact_elbo).abs() < 5.0 * se1,
        "E[L_1] = {l1} vs ELBO {exact_elbo}"
    );
    for pair in bounds.windows(2) {
        let ((k0, m0, s0), (k1, m1, s1)) = (pair[0], pair[1]);
        assert!(
            m1 > m0 - 3.0 * (s0 * s0 + s1 * s1).sqrt(),
            "E[L_{k1}] = {m1} < E[L_{k0}] = {m0}"
        );
    }
    let (_, last, se) = bounds[bounds.len() - 1];
    assert!(
        last < truth + 3.0 * se,
        "E[L_100] = {last} above log p(x) = {truth}"
    );
    assert!(last > l1, "IWAE_100 no tighter than the ELBO");
}
