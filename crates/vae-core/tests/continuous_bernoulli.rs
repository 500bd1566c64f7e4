//! The continuous Bernoulli is a normalised density, with the stated mean, finite gradients at
//! λ = ½, and samples that follow it.
// Index loops mirror the formulas (sums over i, j) more plainly than iterator chains.
#![allow(clippy::needless_range_loop)]

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, backend::Backend};
use common::{B, device, tensor, to_vec};
use vae_core::{ContinuousBernoulli, ObservationModel};

const ETAS: [f64; 17] = [
    -30.0, -20.0, -5.0, -1.0, -0.1000001, -0.1, -0.0999999, -0.05, -1e-6, 0.0, 1e-6, 0.05,
    0.0999999, 0.1, 1.0, 5.0, 20.0,
];

/// p(x|η) on a grid of `points` (odd) over [0, 1].
fn density_on_grid(eta: f64, points: usize) -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..points)
        .map(|i| i as f64 / (points - 1) as f64)
        .collect();
    let model =
        ContinuousBernoulli::<B>::from_logits(tensor(vec![eta; points], [1, points, 1], &device()));
    let log_p = to_vec(model.log_prob(tensor(xs.clone(), [points, 1], &device())));
    (xs, log_p.into_iter().map(f64::exp).collect())
}

fn simpson(values: &[f64]) -> f64 {
    let h = 1.0 / (values.len() - 1) as f64;
    let inner: f64 = values[1..values.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 2 == 0 { 4.0 * v } else { 2.0 * v })
        .sum();
    h / 3.0 * (values[0] + inner + values[values.len() - 1])
}

#[test]
fn density_integrates_to_one_and_mean_matches() {
    for eta in ETAS {
        let (xs, p) = density_on_grid(eta, 4001);
        let total = simpson(&p);
        assert!((total - 1.0).abs() < 1e-7, "η = {eta}: ∫p = {total}");
        let first_moment = simpson(&xs.iter().zip(&p).map(|(x, p)| x * p).collect::<Vec<_>>());
        let model = ContinuousBernoulli::<B>::from_logits(tensor(vec![eta], [1, 1, 1], &device()));
        let mean = to_vec(model.mean())[0];
        assert!(
            (mean - first_moment).abs() < 1e-7,
            "η = {eta}: mean {mean} vs ∫xp = {first_moment}"
        );
    }
}

#[test]
fn normaliser_is_smooth_across_the_series_threshold() {
    let at = |eta: f64| {
        let m = ContinuousBernoulli::<B>::from_logits(tensor(vec![eta], [1, 1, 1], &device()));
        (to_vec(m.log_normalizer())[0], to_vec(m.mean())[0])
    };
    for t in [0.1f64, -0.1] {
        let (below, above) = (at(t * (1.0 - 1e-9)), at(t * (1.0 + 1e-9)));
        assert!(
            (below.0 - above.0).abs() < 1e-9,
            "log C jumps at {t}: {below:?} {above:?}"
        );
        assert!(
            (below.1 - above.1).abs() < 1e-9,
            "mean jumps at {t}: {below:?} {above:?}"
        );
    }
    assert_eq!(at(0.0), (std::f64::consts::LN_2, 0.5));
}

#[test]
fn gradient_is_finite_and_correct_at_one_half() {
    type Ad = Autodiff<NdArray<f64>>;
    let device = common::device_at_precision::<Ad>();
    for eta in [0.0, 1e-7, -1e-7, 0.1, 3.0] {
        let logits: Tensor<Ad, 3> = tensor::<Ad, 3>(vec![eta], [1, 1, 1], &device).require_grad();
        let x = 0.3;
        let log_p = ContinuousBernoulli::from_logits(logits.clone())
            .log_prob(tensor(vec![x], [1, 1], &device))
            .sum();
        let grads = log_p.backward();
        let g = to_vec(logits.grad(&grads).unwrap())[0];
        // d/dη log p = x − σ(η) + d/dη ln(η / tanh(η/2)); the last term is odd in η, ≈ η/6.
        let h = 1e-5;
        let log_c = |e: f64| {
            if e.abs() < 1e-3 {
                std::f64::consts::LN_2 + e * e / 12.0
            } else {
                (e / (e / 2.0).tanh()).ln()
            }
        };
        let expected =
            x - 1.0 / (1.0 + (-eta).exp()) + (log_c(eta + h) - log_c(eta - h)) / (2.0 * h);
        assert!(
            g.is_finite() && (g - expected).abs() < 1e-6,
            "η = {eta}: grad {g} vs {expected}"
        );
    }
}

#[test]
fn samples_lie_in_the_unit_interval_and_have_the_right_mean() {
    B::seed(&device(), 5);
    let n = 20_000;
    for eta in [-60.0, -3.0, -1e-4, 0.0, 0.5, 3.0, 60.0] {
        let model =
            ContinuousBernoulli::<B>::from_logits(tensor(vec![eta; n], [1, n, 1], &device()));
        let samples = to_vec(model.sample());
        assert!(
            samples.iter().all(|s| (0.0..=1.0).contains(s)),
            "η = {eta}: sample outside [0, 1]"
        );
        let mean = samples.iter().sum::<f64>() / n as f64;
        let expected = to_vec(model.mean())[0];
        // Var ≤ 1/4 on [0, 1]: 5 standard errors is 5 · 0.5 / √n.
        assert!(
            (mean - expected).abs() < 2.5 / (n as f64).sqrt(),
            "η = {eta}: {mean} vs {expected}"
        );
    }
}

#[test]
fn log_prob_is_finite_for_extreme_logits() {
    let etas = vec![-1e4, -100.0, 100.0, 1e4];
    let model = ContinuousBernoulli::<B>::from_logits(tensor(etas.clone(), [1, 1, 4], &device()));
    for x in [0.0, 0.5, 1.0] {
        let lp = to_vec(model.log_prob(tensor(vec![x; 4], [1, 4], &device())))[0];
        assert!(lp.is_finite(), "x = {x}: {lp}");
    }
    let _: Tensor<B, 1> = Tensor::zeros([1], &device());
}
