//! The model-family math against closed forms, brute force and quadrature: the mixture prior,
//! the importance-weighted bounds and the β-TC decomposition of the KL term.
#![allow(clippy::needless_range_loop)]

mod common;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use common::{B, Rng, device, tensor, to_vec};
use vae_core::{
    AggregatePosterior, BetaTcObjective, DiagonalGaussian, GaussianMixture, ImportanceBound,
    KlDecomposition, KlEstimator, LN_2PI, Prior, StandardNormal, ciwae_bound, log_mean_exp,
    miwae_bound, piwae_loss,
};

fn normal_log_pdf(z: f64, mean: f64, log_var: f64) -> f64 {
    -0.5 * (LN_2PI + log_var + (z - mean).powi(2) / log_var.exp())
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample mean's standard error.
fn standard_error(values: &[f64]) -> f64 {
    let m = mean(values);
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    (var / values.len() as f64).sqrt()
}

fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance,
            "{what}[{i}]: {a} vs {e} (tolerance {tolerance})"
        );
    }
}

/// A host copy of a mixture's parameters.
struct HostMixture {
    means: Vec<Vec<f64>>,
    log_vars: Vec<Vec<f64>>,
    logits: Vec<f64>,
}

impl HostMixture {
    fn random(k: usize, l: usize, rng: &mut Rng) -> Self {
        Self {
            means: (0..k).map(|_| rng.normals(l)).collect(),
            log_vars: (0..k)
                .map(|_| rng.normals(l).iter().map(|v| 0.5 * v).collect())
                .collect(),
            logits: rng.normals(k),
        }
    }

    fn on_device(&self) -> GaussianMixture<B> {
        let (k, l) = (self.means.len(), self.means[0].len());
        GaussianMixture::new(
            tensor(self.means.concat(), [k, l], &device()),
            tensor(self.log_vars.concat(), [k, l], &device()),
            tensor(self.logits.clone(), [k], &device()),
        )
    }

    fn log_density(&self, z: &[f64]) -> f64 {
        let log_normaliser = log_sum_exp(&self.logits);
        let per_component: Vec<f64> = (0..self.means.len())
            .map(|k| {
                self.logits[k] - log_normaliser
                    + z.iter()
                        .enumerate()
                        .map(|(l, &zl)| normal_log_pdf(zl, self.means[k][l], self.log_vars[k][l]))
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&per_component)
    }
}

#[test]
fn mixture_density_is_the_brute_force_sum_over_components() {
    let mut rng = Rng::new(7);
    let (k, l, s, n) = (4, 3, 2, 5);
    let host = HostMixture::random(k, l, &mut rng);
    let z = rng.normals(s * n * l);
    let actual = to_vec(
        host.on_device()
            .log_prob(tensor(z.clone(), [s, n, l], &device())),
    );
    let expected: Vec<f64> = z.chunks(l).map(|zi| host.log_density(zi)).collect();
    assert_close(&actual, &expected, 1e-12, "log p(z)");
}

#[test]
fn one_component_mixture_is_that_gaussian() {
    let mut rng = Rng::new(8);
    let (l, s, n) = (3, 2, 4);
    let (mean, log_var) = (rng.normals(l), rng.normals(l));
    let component = DiagonalGaussian::<B>::new(
        tensor(mean.clone(), [1, l], &device()),
        tensor(log_var.clone(), [1, l], &device()),
    );
    let mixture = GaussianMixture::uniform(component);
    let rows = DiagonalGaussian::<B>::new(
        tensor(mean.repeat(n), [n, l], &device()),
        tensor(log_var.repeat(n), [n, l], &device()),
    );
    let z = tensor::<B, 3>(rng.normals(s * n * l), [s, n, l], &device());
    assert_close(
        &to_vec(mixture.log_prob(z.clone())),
        &to_vec(rows.log_prob(z)),
        1e-12,
        "log p(z)",
    );
}

#[test]
fn mixture_samples_have_the_mixture_moments() {
    let device = device();
    B::seed(&device, 11);
    // π = (¼, ¾), μ = (−2, 1), σ = (½, 1).
    let mixture = GaussianMixture::<B>::new(
        tensor(vec![-2.0, 1.0], [2, 1], &device),
        tensor(vec![0.25f64.ln(), 0.0], [2, 1], &device),
        tensor(vec![0.0, 3f64.ln()], [2], &device),
    );
    let draws = to_vec(mixture.sample(4, 50_000, &device));
    let expected_mean = 0.25 * -2.0 + 0.75 * 1.0;
    let expected_second = 0.25 * (0.25 + 4.0) + 0.75 * (1.0 + 1.0);
    let squares: Vec<f64> = draws.iter().map(|z| z * z).collect();
    assert!((mean(&draws) - expected_mean).abs() < 5.0 * standard_error(&draws));
    assert!((mean(&squares) - expected_second).abs() < 5.0 * standard_error(&squares));
    // Both components are drawn in their proportions: P(z < −0.5) is almost all component 0.
    let below = draws.iter().filter(|&&z| z < -0.5).count() as f64 / draws.len() as f64;
    let expected_below = 0.25 * 0.99865 + 0.75 * 0.06681; // Φ(3), Φ(−1.5)
    assert!(
        (below - expected_below).abs() < 0.01,
        "P(z < −0.5) = {below}"
    );
}

#[test]
fn kl_to_a_mixture_is_the_monte_carlo_estimate_and_matches_quadrature() {
    let device = device();
    B::seed(&device, 12);
    let mixture = GaussianMixture::<B>::new(
        tensor(vec![-2.0, 1.0], [2, 1], &device),
        tensor(vec![0.25f64.ln(), 0.0], [2, 1], &device),
        tensor(vec![0.0, 3f64.ln()], [2], &device),
    );
    let (q_mean, q_log_var) = (0.3, (0.6f64 * 0.6).ln());
    let q = DiagonalGaussian::<B>::new(
        tensor(vec![q_mean], [1, 1], &device),
        tensor(vec![q_log_var], [1, 1], &device),
    );
    let s = 100_000;
    let z = q.rsample(s);
    let (kl, per_dim) = KlEstimator::Analytic.estimate(
        &q,
        &mixture,
        &vae_core::PosteriorSamples::at(&q, z.clone()),
    );
    assert!(per_dim.is_none(), "a mixture has no closed-form KL");
    let log_ratio = to_vec(q.log_prob(z.clone()) - mixture.log_prob(z));
    let kl = to_vec(kl)[0];
    assert!((kl - mean(&log_ratio)).abs() < 1e-9);

    let host = |z: f64| {
        log_sum_exp(&[
            0.25f64.ln() + normal_log_pdf(z, -2.0, 0.25f64.ln()),
            0.75f64.ln() + normal_log_pdf(z, 1.0, 0.0),
        ])
    };
    let h = 1e-3;
    let exact: f64 = (-12_000..12_000)
        .map(|i| {
            let z = (i as f64 + 0.5) * h;
            let log_q = normal_log_pdf(z, q_mean, q_log_var);
            h * log_q.exp() * (log_q - host(z))
        })
        .sum();
    assert!(
        (kl - exact).abs() < 5.0 * standard_error(&log_ratio),
        "KL(q ‖ mixture): Monte Carlo {kl}, quadrature {exact}"
    );
}

#[test]
fn the_standard_normal_prior_gives_the_closed_form_kl() {
    let mut rng = Rng::new(13);
    let (n, l) = (3, 4);
    let q = DiagonalGaussian::<B>::new(
        tensor(rng.normals(n * l), [n, l], &device()),
        tensor(rng.normals(n * l), [n, l], &device()),
    );
    let z = q.rsample(1);
    let (kl, per_dim) = KlEstimator::Analytic.estimate(
        &q,
        &StandardNormal::new(l),
        &vae_core::PosteriorSamples::at(&q, z),
    );
    assert!(per_dim.is_some());
    assert_close(&to_vec(kl), &to_vec(q.kl_standard_normal()), 0.0, "KL");
}

// ---- importance-weighted bounds -------------------------------------------------------------

fn log_weights(s: usize, n: usize, seed: u64) -> (Vec<f64>, Tensor<B, 2>) {
    let values: Vec<f64> = Rng::new(seed)
        .normals(s * n)
        .iter()
        .map(|v| 3.0 * v - 100.0)
        .collect();
    let t = tensor(values.clone(), [s, n], &device());
    (values, t)
}

/// Column `n` of row-major `[S, N]` values, rows `rows`.
fn column(values: &[f64], n_cols: usize, n: usize, rows: std::ops::Range<usize>) -> Vec<f64> {
    rows.map(|s| values[s * n_cols + n]).collect()
}

#[test]
fn the_importance_weighted_bounds_reduce_to_each_other_at_their_limits() {
    let (s, n) = (12, 5);
    let (_, w) = log_weights(s, n, 21);
    let iwae = to_vec(log_mean_exp(w.clone()));
    let elbo = to_vec(w.clone().mean_dim(0).squeeze_dim::<1>(0));
    assert_close(
        &to_vec(miwae_bound(w.clone(), 1)),
        &iwae,
        1e-12,
        "MIWAE_{1,K}",
    );
    assert_close(
        &to_vec(miwae_bound(w.clone(), s)),
        &elbo,
        1e-12,
        "MIWAE_{M,1}",
    );
    assert_close(
        &to_vec(ciwae_bound(w.clone(), 1.0)),
        &elbo,
        1e-12,
        "CIWAE β=1",
    );
    assert_close(
        &to_vec(ciwae_bound(w.clone(), 0.0)),
        &iwae,
        1e-12,
        "CIWAE β=0",
    );
    let mixed: Vec<f64> = elbo
        .iter()
        .zip(&iwae)
        .map(|(e, i)| 0.3 * e + 0.7 * i)
        .collect();
    assert_close(&to_vec(ciwae_bound(w, 0.3)), &mixed, 1e-12, "CIWAE β=0.3");
}

#[test]
fn miwae_groups_consecutive_samples_and_lies_between_the_elbo_and_iwae() {
    let (outer, inner, n) = (3, 4, 5);
    let (values, w) = log_weights(outer * inner, n, 22);
    let miwae = to_vec(miwae_bound(w.clone(), outer));
    let iwae = to_vec(log_mean_exp(w.clone()));
    let elbo = to_vec(w.mean_dim(0).squeeze_dim::<1>(0));
    for col in 0..n {
        let groups: Vec<f64> = (0..outer)
            .map(|m| {
                let group = column(&values, n, col, m * inner..(m + 1) * inner);
                log_sum_exp(&group) - (inner as f64).ln()
            })
            .collect();
        assert!(
            (miwae[col] - mean(&groups)).abs() < 1e-12,
            "MIWAE brute force"
        );
        // Jensen: mean of logs ≤ log of means, at every level.
        assert!(elbo[col] <= miwae[col] && miwae[col] <= iwae[col]);
    }
}

#[test]
fn each_bound_is_selected_by_its_configuration() {
    let (values, w) = log_weights(6, 4, 23);
    let bounds = [
        ImportanceBound::Iwae { samples: 6 },
        ImportanceBound::Miwae { outer: 2, inner: 3 },
        ImportanceBound::Ciwae {
            samples: 6,
            beta: 0.5,
        },
        ImportanceBound::Piwae { outer: 3, inner: 2 },
    ];
    let expected = [
        to_vec(log_mean_exp(w.clone())),
        to_vec(miwae_bound(w.clone(), 2)),
        to_vec(ciwae_bound(w.clone(), 0.5)),
        to_vec(log_mean_exp(w.clone())),
    ];
    for (bound, expected) in bounds.iter().zip(&expected) {
        assert_eq!(bound.samples(), 6);
        bound.validate().unwrap();
        assert_close(&to_vec(bound.bound(w.clone())), expected, 0.0, "bound");
    }
    // PIWAE's loss: −IWAE_{MK} for the decoder plus −MIWAE_{M,K} for the encoder, batch means.
    let loss = to_vec(piwae_loss(w.clone(), w.clone(), 3))[0];
    let iwae = mean(&expected[0]);
    let miwae = mean(&to_vec(miwae_bound(w, 3)));
    assert!((loss + iwae + miwae).abs() < 1e-12);
    assert!(values.len() == 24);

    let toml = "kind = \"miwae\"\nouter = 8\ninner = 4\n";
    let parsed: ImportanceBound = toml_from_str(toml);
    assert_eq!(parsed, ImportanceBound::Miwae { outer: 8, inner: 4 });
    let zero = ImportanceBound::Miwae { outer: 0, inner: 4 };
    assert!(zero.validate().unwrap_err().to_string().contains("outer"));
    let beta = ImportanceBound::Ciwae {
        samples: 2,
        beta: 1.5,
    };
    assert!(beta.validate().unwrap_err().to_string().contains("beta"));
}

fn toml_from_str<T: serde::de::DeserializeOwned>(text: &str) -> T {
    toml::from_str(text).expect("valid TOML")
}

// ---- β-TC decomposition ---------------------------------------------------------------------

/// Three examples' posteriors in two dimensions, far enough apart to give all three terms
/// sizeable values.
const MEANS: [[f64; 2]; 3] = [[-1.5, 1.0], [0.5, -0.5], [1.5, 1.2]];
const STDS: [[f64; 2]; 3] = [[0.5, 0.8], [0.7, 0.4], [0.6, 0.6]];

fn three_posteriors() -> DiagonalGaussian<B> {
    let log_vars: Vec<f64> = STDS.concat().iter().map(|s| (s * s).ln()).collect();
    DiagonalGaussian::new(
        tensor(MEANS.concat(), [3, 2], &device()),
        tensor(log_vars, [3, 2], &device()),
    )
}

/// (index-code MI, total correlation, dimension-wise KL), the exact values for the dataset of
/// three examples with posteriors MEANS/STDS and p(n) = ⅓, by midpoint quadrature.
fn decomposition_by_quadrature() -> (f64, f64, f64) {
    let (h, half) = (0.02, 450);
    let grid: Vec<f64> = (-half..half).map(|i| (i as f64 + 0.5) * h).collect();
    let log_q_dim =
        |n: usize, l: usize, z: f64| normal_log_pdf(z, MEANS[n][l], (STDS[n][l] * STDS[n][l]).ln());
    let log_marginal = |l: usize, z: f64| {
        log_sum_exp(&[log_q_dim(0, l, z), log_q_dim(1, l, z), log_q_dim(2, l, z)]) - 3f64.ln()
    };
    let (mut mi, mut tc) = (0.0, 0.0);
    for &z0 in &grid {
        let marginal0 = log_marginal(0, z0);
        for &z1 in &grid {
            let log_conditional: Vec<f64> = (0..3)
                .map(|n| log_q_dim(n, 0, z0) + log_q_dim(n, 1, z1))
                .collect();
            let log_aggregate = log_sum_exp(&log_conditional) - 3f64.ln();
            for lc in &log_conditional {
                mi += h * h * lc.exp() / 3.0 * (lc - log_aggregate);
            }
            tc += h * h * log_aggregate.exp() * (log_aggregate - marginal0 - log_marginal(1, z1));
        }
    }
    let dimension_wise: f64 = (0..2)
        .map(|l| {
            grid.iter()
                .map(|&z| {
                    let m = log_marginal(l, z);
                    h * m.exp() * (m - normal_log_pdf(z, 0.0, 0.0))
                })
                .sum::<f64>()
        })
        .sum();
    (mi, tc, dimension_wise)
}

#[test]
fn kl_decomposition_matches_quadrature_when_the_minibatch_is_the_dataset() {
    let (mi, tc, dimension_wise) = decomposition_by_quadrature();
    // The quadrature itself: the three add up to the mean closed-form KL.
    let posterior = three_posteriors();
    let mean_kl = mean(&to_vec(posterior.kl_standard_normal()));
    assert!(
        (mi + tc + dimension_wise - mean_kl).abs() < 1e-6,
        "quadrature: {mi} + {tc} + {dimension_wise} vs {mean_kl}"
    );
    assert!(mi > 0.3 && tc > 0.02 && dimension_wise > 0.3);

    let device = device();
    B::seed(&device, 31);
    let z = posterior.rsample(40_000);
    let estimate = KlDecomposition::estimate(
        &posterior,
        z.clone(),
        3,
        AggregatePosterior::MinibatchStratified,
    );
    // p(n) = ⅓: the dataset means of the per-example terms.
    let terms = [
        mean(&to_vec(estimate.index_code_mi.clone())),
        mean(&to_vec(estimate.total_correlation.clone())),
        mean(&to_vec(estimate.dimension_wise_kl.clone())),
    ];
    assert_close(
        &terms,
        &[mi, tc, dimension_wise],
        0.01,
        "stratified estimate vs quadrature",
    );

    // Minibatch-weighted sampling weighs every term 1/(N·M): at M = N = 3 it underestimates
    // q(z) by a factor 3 and each of the two marginals by 3, so, sample by sample, MI and TC
    // gain ln 3 and the dimension-wise KL loses 2 ln 3.
    let weighted =
        KlDecomposition::estimate(&posterior, z, 3, AggregatePosterior::MinibatchWeighted);
    let ln3 = 3f64.ln();
    let shifted = [
        mean(&to_vec(weighted.index_code_mi.clone())) - ln3,
        mean(&to_vec(weighted.total_correlation.clone())) - ln3,
        mean(&to_vec(weighted.dimension_wise_kl.clone())) + 2.0 * ln3,
    ];
    assert_close(
        &shifted,
        &terms,
        1e-9,
        "weighted = stratified shifted by ln M",
    );
}

#[test]
fn the_three_terms_add_up_to_the_monte_carlo_kl_and_the_loss_to_the_negative_elbo() {
    let mut rng = Rng::new(41);
    let (s, m, l) = (3, 6, 4);
    let posterior = DiagonalGaussian::<B>::new(
        tensor(rng.normals(m * l), [m, l], &device()),
        tensor(rng.normals(m * l), [m, l], &device()),
    );
    let z = posterior.rsample(s);
    let (mc_kl, _) = KlEstimator::MonteCarlo.estimate(
        &posterior,
        &StandardNormal::new(l),
        &vae_core::PosteriorSamples::at(&posterior, z.clone()),
    );
    let log_likelihood = tensor::<B, 1>(rng.normals(m), [m], &device());
    for estimator in [
        AggregatePosterior::MinibatchWeighted,
        AggregatePosterior::MinibatchStratified,
    ] {
        let parts = KlDecomposition::estimate(&posterior, z.clone(), 1000, estimator);
        assert_close(
            &to_vec(parts.kl()),
            &to_vec(mc_kl.clone()),
            1e-10,
            "MI + TC + dim-KL",
        );
        let unit = BetaTcObjective {
            alpha: 1.0,
            beta: 1.0,
            gamma: 1.0,
            estimator,
        };
        let neg_elbo = to_vec((mc_kl.clone() - log_likelihood.clone()).mean())[0];
        let loss = to_vec(unit.loss(log_likelihood.clone(), &parts))[0];
        assert!(
            (loss - neg_elbo).abs() < 1e-10,
            "β-TC loss with unit weights"
        );
        // β scales the total correlation only.
        let tc = mean(&to_vec(parts.total_correlation.clone()));
        let six = to_vec(BetaTcObjective::new(6.0).loss(log_likelihood.clone(), &parts))[0];
        assert!((six - loss - 5.0 * tc).abs() < 1e-9);
    }
}

#[test]
fn minibatch_weighted_sampling_is_the_published_formula() {
    let mut rng = Rng::new(42);
    let (m, l, dataset) = (4, 2, 50);
    let (means, log_vars) = (rng.normals(m * l), rng.normals(m * l));
    let posterior = DiagonalGaussian::<B>::new(
        tensor(means.clone(), [m, l], &device()),
        tensor(log_vars.clone(), [m, l], &device()),
    );
    let z_host = rng.normals(m * l);
    let z = tensor::<B, 3>(z_host.clone(), [1, m, l], &device());
    let parts = KlDecomposition::estimate(
        &posterior,
        z,
        dataset,
        AggregatePosterior::MinibatchWeighted,
    );
    let log_nm = ((dataset * m) as f64).ln();
    let lq = |i: usize, j: usize, d: usize| {
        normal_log_pdf(z_host[i * l + d], means[j * l + d], log_vars[j * l + d])
    };
    for i in 0..m {
        let log_qz = log_sum_exp(
            &(0..m)
                .map(|j| (0..l).map(|d| lq(i, j, d)).sum())
                .collect::<Vec<_>>(),
        ) - log_nm;
        let log_prod: f64 = (0..l)
            .map(|d| log_sum_exp(&(0..m).map(|j| lq(i, j, d)).collect::<Vec<_>>()) - log_nm)
            .sum();
        let tc = to_vec(parts.total_correlation.clone())[i];
        assert!((tc - (log_qz - log_prod)).abs() < 1e-10, "TC[{i}]");
        let log_cond: f64 = (0..l).map(|d| lq(i, i, d)).sum();
        let mi = to_vec(parts.index_code_mi.clone())[i];
        assert!((mi - (log_cond - log_qz)).abs() < 1e-10, "MI[{i}]");
    }
}
