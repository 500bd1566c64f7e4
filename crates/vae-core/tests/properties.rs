//! Property tests: the inequalities and equalities the math guarantees, over random parameters.
// Index loops mirror the formulas (sums over i, j) more plainly than iterator chains.
#![allow(clippy::needless_range_loop)]

mod common;

use common::{B, Rng, device, tensor, to_vec};
use proptest::prelude::*;
use vae_core::{
    Bernoulli, DiagonalGaussian, Gaussian, KlEstimator, ObservationModel, StandardNormal,
    log_mean_exp,
};

fn gaussian(mean: &[f64], log_var: &[f64]) -> DiagonalGaussian<B> {
    let l = mean.len();
    DiagonalGaussian::new(
        tensor(mean.to_vec(), [1, l], &device()),
        tensor(log_var.to_vec(), [1, l], &device()),
    )
}

fn params(len: usize, lo: f64, hi: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(lo..hi, len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kl_is_non_negative(
        (mq, vq, mp, vp) in (1usize..8).prop_flat_map(|l| (
            params(l, -10.0, 10.0), params(l, -12.0, 12.0),
            params(l, -10.0, 10.0), params(l, -12.0, 12.0),
        ))
    ) {
        let q = gaussian(&mq, &vq);
        let p = gaussian(&mp, &vp);
        for kl in to_vec(q.kl_divergence_per_dim(&p)) {
            prop_assert!(kl >= 0.0 && kl.is_finite(), "KL(q‖p) per dim = {kl}");
        }
        for kl in to_vec(q.kl_standard_normal_per_dim()) {
            prop_assert!(kl >= 0.0 && kl.is_finite(), "KL(q‖N(0,I)) per dim = {kl}");
        }
    }

    #[test]
    fn kl_of_a_distribution_to_itself_is_zero(
        (m, v) in (1usize..8).prop_flat_map(|l| (params(l, -10.0, 10.0), params(l, -12.0, 12.0)))
    ) {
        let q = gaussian(&m, &v);
        prop_assert_eq!(to_vec(q.kl_divergence(&q))[0], 0.0);
        // The standard normal is its own prior.
        let prior = gaussian(&vec![0.0; m.len()], &vec![0.0; m.len()]);
        prop_assert_eq!(to_vec(prior.kl_standard_normal())[0], 0.0);
    }

    #[test]
    fn kl_to_standard_normal_matches_general_kl(
        (m, v) in (1usize..8).prop_flat_map(|l| (params(l, -5.0, 5.0), params(l, -5.0, 5.0)))
    ) {
        let q = gaussian(&m, &v);
        let prior = gaussian(&vec![0.0; m.len()], &vec![0.0; m.len()]);
        let a = to_vec(q.kl_standard_normal())[0];
        let b = to_vec(q.kl_divergence(&prior))[0];
        prop_assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0));
    }

    /// The Monte-Carlo KL is unbiased: with S samples it lies within 5 standard errors of the
    /// analytic value, the standard error estimated from the same samples.
    #[test]
    fn monte_carlo_kl_agrees_with_analytic_kl(
        (m, v, seed) in (1usize..6).prop_flat_map(|l| (
            params(l, -2.0, 2.0), params(l, -2.0, 2.0), any::<u64>(),
        ))
    ) {
        let l = m.len();
        let s = 4000;
        let q = gaussian(&m, &v);
        let eps = tensor(Rng::new(seed).normals(s * l), [s, 1, l], &device());
        let z = q.reparameterize(eps);
        let (mc, _) = KlEstimator::MonteCarlo.estimate(&q, &StandardNormal::new(l), &vae_core::PosteriorSamples::at(&q, z.clone()));
        let (analytic, per_dim) = KlEstimator::Analytic.estimate(&q, &StandardNormal::new(l), &vae_core::PosteriorSamples::at(&q, z.clone()));
        prop_assert!(per_dim.is_some());
        let log_ratio = to_vec(q.log_prob(z.clone()) - vae_core::standard_normal_log_prob(z));
        let mean = log_ratio.iter().sum::<f64>() / s as f64;
        let var = log_ratio.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (s - 1) as f64;
        let (mc, analytic) = (to_vec(mc)[0], to_vec(analytic)[0]);
        prop_assert!((mc - mean).abs() < 1e-9);
        let bound = 5.0 * (var / s as f64).sqrt() + 1e-9;
        prop_assert!((mc - analytic).abs() <= bound, "MC {mc} vs analytic {analytic}, bound {bound}");
    }

    /// Bernoulli log-prob equals the textbook formula wherever that is stable, for binary and
    /// continuous targets.
    #[test]
    fn bernoulli_matches_naive_formula_where_stable(
        (logits, x) in (1usize..20).prop_flat_map(|d| (params(d, -15.0, 15.0), params(d, 0.0, 1.0)))
    ) {
        let d = logits.len();
        let model = Bernoulli::<B>::from_logits(tensor(logits.clone(), [1, 1, d], &device()));
        for targets in [x.clone(), x.iter().map(|v| v.round()).collect()] {
            let ours = to_vec(model.log_prob(tensor(targets.clone(), [1, d], &device())))[0];
            let naive: f64 = logits.iter().zip(&targets).map(|(l, x)| {
                // p and 1 − p each computed without cancellation.
                let (p, q) = (1.0 / (1.0 + (-l).exp()), 1.0 / (1.0 + l.exp()));
                x * p.ln() + (1.0 - x) * q.ln()
            }).sum();
            prop_assert!((ours - naive).abs() <= 1e-9 * naive.abs().max(1.0), "{ours} vs {naive}");
        }
    }

    /// Where the naive formula is −∞ or NaN (p rounds to 0 or 1), ours stays finite and equals
    /// the asymptote x·η − max(η, 0).
    #[test]
    fn bernoulli_stays_finite_for_extreme_logits(
        (logits, x) in (1usize..20).prop_flat_map(|d| (
            prop::collection::vec(prop_oneof![-1e6..-40.0, 40.0..1e6], d), params(d, 0.0, 1.0),
        ))
    ) {
        let d = logits.len();
        let model = Bernoulli::<B>::from_logits(tensor(logits.clone(), [1, 1, d], &device()));
        let ours = to_vec(model.log_prob(tensor(x.clone(), [1, d], &device())))[0];
        let asymptote: f64 = logits.iter().zip(&x).map(|(l, x)| x * l - l.max(0.0)).sum();
        prop_assert!(ours.is_finite());
        prop_assert!((ours - asymptote).abs() <= 1e-9 * asymptote.abs().max(1.0));
    }

    #[test]
    fn gaussian_matches_naive_formula(
        (mean, x, log_scale) in (1usize..20).prop_flat_map(|d| (
            params(d, -3.0, 3.0), params(d, -3.0, 3.0), params(d, -6.0, 2.0),
        ))
    ) {
        let d = mean.len();
        let model = Gaussian::<B>::new(
            tensor(mean.clone(), [1, 1, d], &device()),
            tensor(log_scale.clone(), [1, 1, d], &device()),
        );
        let ours = to_vec(model.log_prob(tensor(x.clone(), [1, d], &device())))[0];
        let naive: f64 = (0..d).map(|i| {
            let s = log_scale[i].exp();
            -((x[i] - mean[i]).powi(2) / (2.0 * s * s)) - s.ln()
                - 0.5 * (2.0 * std::f64::consts::PI).ln()
        }).sum();
        prop_assert!((ours - naive).abs() <= 1e-9 * naive.abs().max(1.0));
    }

    /// log-mean-exp never overflows and agrees with the direct formula where that works.
    #[test]
    fn log_mean_exp_is_stable(values in params(12, -800.0, 800.0), shift in -1e4f64..1e4) {
        let n = values.len();
        let shifted: Vec<f64> = values.iter().map(|v| v + shift).collect();
        let ours = to_vec(log_mean_exp(tensor::<B, 2>(shifted, [n, 1], &device())))[0];
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let reference =
            max + (values.iter().map(|v| (v - max).exp()).sum::<f64>() / n as f64).ln() + shift;
        prop_assert!(ours.is_finite());
        prop_assert!((ours - reference).abs() <= 1e-9 * reference.abs().max(1.0));
    }
}

#[test]
fn optimal_scale_is_the_root_mean_squared_error() {
    let mean = tensor::<B, 3>(vec![0.0, 1.0, 2.0, 3.0], [1, 2, 2], &device());
    let x = tensor::<B, 2>(vec![0.5, 1.0, 1.0, 5.0], [2, 2], &device());
    let model = Gaussian::with_optimal_scale(mean, x.clone());
    let mse: f64 = (0.25 + 0.0 + 1.0 + 4.0) / 4.0;
    let scale = to_vec(model.scale());
    assert!(scale.iter().all(|s| (s - mse.sqrt()).abs() < 1e-12));
    // At σ̂² = MSE the per-dimension log-density is −½ (ln 2π σ̂² + 1).
    let expected = -0.5 * ((2.0 * std::f64::consts::PI * mse).ln() + 1.0) * 4.0;
    let total: f64 = to_vec(model.log_prob(x)).iter().sum();
    assert!((total - expected).abs() < 1e-12, "{total} vs {expected}");
}

#[test]
fn log_variance_is_clamped_only_by_new() {
    let mean = tensor::<B, 2>(vec![0.0, 0.0], [1, 2], &device());
    let log_var = tensor::<B, 2>(vec![-100.0, 100.0], [1, 2], &device());
    let clamped = DiagonalGaussian::new(mean.clone(), log_var.clone());
    assert_eq!(
        to_vec(clamped.log_var()),
        vec![
            DiagonalGaussian::<B>::LOG_VAR_MIN,
            DiagonalGaussian::<B>::LOG_VAR_MAX
        ]
    );
    let raw = DiagonalGaussian::new_unclamped(mean, log_var);
    assert_eq!(to_vec(raw.log_var()), vec![-100.0, 100.0]);
}

#[test]
fn sample_moments_match_parameters() {
    use burn::tensor::backend::Backend;
    B::seed(&device(), 3);
    let q = gaussian(&[1.5, -2.0], &[(0.25f64).ln(), (4.0f64).ln()]);
    let s = 20_000;
    let z = to_vec(q.rsample(s));
    for (j, (mu, sd)) in [(1.5, 0.5), (-2.0, 2.0)].into_iter().enumerate() {
        let xs: Vec<f64> = (0..s).map(|i| z[i * 2 + j]).collect();
        let mean = xs.iter().sum::<f64>() / s as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (s - 1) as f64;
        let se = sd / (s as f64).sqrt();
        assert!((mean - mu).abs() < 5.0 * se, "mean {mean} vs {mu}");
        assert!(
            (var.sqrt() - sd).abs() < 0.03 * sd,
            "sd {} vs {sd}",
            var.sqrt()
        );
    }
}
