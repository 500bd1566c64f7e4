//! Flow posteriors on the closed-form linear-Gaussian model (`linear_gaussian/mod.rs`): a
//! Gaussian pushed through an affine flow is a full-covariance Gaussian, so it can be the true
//! posterior p(z|x), where the ELBO and every importance weight equal log p(x) exactly.
#![allow(clippy::needless_range_loop)]

mod common;
mod linear_gaussian;

use burn::backend::NdArray;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use common::dense::{self, Mat};
use common::{device_at_precision, tensor, to_vec};
use linear_gaussian::*;
use vae_core::{
    DiagonalGaussian, Elbo, Flow, FlowPosterior, ImportanceSampling, KlEstimator, Posterior,
    PosteriorSamples, StandardNormal,
};

type Bk = NdArray<f64>;

/// z = b + A z₀ with A lower-triangular (positive diagonal) and a shift b per example:
/// log |det ∂z/∂z₀| = Σ_l ln A_ll.
#[derive(Debug, Clone)]
struct AffineFlow {
    a: Mat,
    shift: Vec<Vec<f64>>,
}

impl AffineFlow {
    fn matrix(&self, m: &Mat) -> Tensor<Bk, 2> {
        tensor(m.concat(), [L, L], &device_at_precision::<Bk>())
    }

    fn shift(&self) -> Tensor<Bk, 3> {
        let n = self.shift.len();
        tensor(self.shift.concat(), [1, n, L], &device_at_precision::<Bk>())
    }

    /// z @ mᵀ over the last dimension of `[S, N, L]`.
    fn apply(z: Tensor<Bk, 3>, m: Tensor<Bk, 2>) -> Tensor<Bk, 3> {
        let [s, n, l] = z.dims();
        z.reshape([s * n, l])
            .matmul(m.transpose())
            .reshape([s, n, l])
    }

    fn inverse_matrix(&self) -> Mat {
        // Forward substitution, column by column: A X = I.
        let mut inv = vec![vec![0.0; L]; L];
        for c in 0..L {
            for i in 0..L {
                let rhs = if i == c { 1.0 } else { 0.0 };
                let acc: f64 = (0..i).map(|k| self.a[i][k] * inv[k][c]).sum();
                inv[i][c] = (rhs - acc) / self.a[i][i];
            }
        }
        inv
    }
}

impl Flow<Bk> for AffineFlow {
    fn forward(
        &self,
        z0: Tensor<Bk, 3>,
        _context: &DiagonalGaussian<Bk>,
    ) -> (Tensor<Bk, 3>, Tensor<Bk, 2>) {
        let [s, n, _] = z0.dims();
        let log_det: f64 = (0..L).map(|l| self.a[l][l].ln()).sum();
        let z = Self::apply(z0, self.matrix(&self.a)) + self.shift();
        let log_det = Tensor::<Bk, 2>::full([s, n], log_det, &device_at_precision::<Bk>());
        (z, log_det)
    }

    fn inverse(&self, z: Tensor<Bk, 3>, _context: &DiagonalGaussian<Bk>) -> Tensor<Bk, 3> {
        Self::apply(z - self.shift(), self.matrix(&self.inverse_matrix()))
    }
}

/// q(z|x) for the examples of `case`: N(0, I) pushed through z = μ + scale · chol(Σ) z₀ +
/// offset, where N(μ, Σ) is the true posterior. `scale = 1, offset = 0` is p(z|x) exactly.
fn flow_posterior(
    model: &Model,
    case: &Case,
    scale: f64,
    offset: f64,
) -> FlowPosterior<Bk, AffineFlow> {
    let device = device_at_precision::<Bk>();
    let n = case.x.len();
    let (precision, _) = model.posterior(&case.x[0]);
    let a = dense::cholesky(&dense::inverse_spd(&precision))
        .into_iter()
        .map(|row| row.into_iter().map(|v| v * scale).collect())
        .collect();
    let shift = case
        .x
        .iter()
        .map(|x| model.posterior(x).1.iter().map(|m| m + offset).collect())
        .collect();
    let base = DiagonalGaussian::new(
        Tensor::zeros([n, L], &device),
        Tensor::zeros([n, L], &device),
    );
    FlowPosterior::new(base, AffineFlow { a, shift })
}

#[test]
fn a_flow_onto_the_true_posterior_makes_the_elbo_and_every_weight_log_px() {
    let model = Model::general();
    let case = case(&model, 4, 0.0, 1.0, 41);
    let device = device_at_precision::<Bk>();
    Bk::seed(&device, 42);
    let q = flow_posterior(&model, &case, 1.0, 0.0);
    let truth: Vec<f64> = case.x.iter().map(|x| model.log_px(x)).collect();
    let s = 64;
    let draws = q.rsample_with_log_prob(s);

    // log q at the draws is the true posterior's density there, and the density anywhere
    // (through the inverse) agrees with it.
    let z = to_vec(draws.z.clone());
    let log_q = to_vec(draws.log_q.clone());
    let again = to_vec(PosteriorSamples::at(&q, draws.z.clone()).log_q);
    for i in 0..s {
        for n in 0..4 {
            let zi = &z[(i * 4 + n) * L..(i * 4 + n + 1) * L];
            let exact = model.log_posterior(&case.x[n], zi);
            assert!(
                (log_q[i * 4 + n] - exact).abs() < 1e-9,
                "log q vs log p(z|x)"
            );
            assert!((again[i * 4 + n] - exact).abs() < 1e-9, "log q through f⁻¹");
        }
    }

    // KL(q ‖ p(z|x)) = 0: the ELBO is log p(x) (the KL falls back to Monte Carlo: a flow has
    // no closed form, and its estimate is exact here because log w is constant).
    let likelihood = model.decode(draws.z.clone());
    let elbo = Elbo::estimate(
        case.data(&device),
        &q,
        &draws,
        &likelihood,
        &StandardNormal::new(L),
        KlEstimator::Analytic,
    );
    assert!(elbo.kl_per_dim.is_none(), "no closed-form KL for a flow");
    for (e, t) in to_vec(elbo.elbo()).iter().zip(&truth) {
        assert!((e - t).abs() < 1e-9, "ELBO {e} vs log p(x) {t}");
    }
    let log_px = ImportanceSampling::new()
        .with_num_samples(10)
        .with_chunk_size(4)
        .log_px(case.data(&device), &q, &StandardNormal::new(L), |z| {
            model.decode(z)
        });
    for (e, t) in to_vec(log_px).iter().zip(&truth) {
        assert!((e - t).abs() < 1e-9, "log p(x) estimate {e} vs {t}");
    }
}

#[test]
fn importance_sampled_log_px_with_a_flow_posterior_converges_to_the_closed_form() {
    let model = Model::general();
    let case = case(&model, 4, 0.0, 1.0, 43);
    let device = device_at_precision::<Bk>();
    Bk::seed(&device, 44);
    // A wrong flow: too wide and shifted, so the weights vary and only K → ∞ recovers log p(x).
    let q = flow_posterior(&model, &case, 1.3, 0.2);
    let truth: Vec<f64> = case.x.iter().map(|x| model.log_px(x)).collect();
    let errors =
        importance_sampling_errors(&model, &case, &q, &truth, &[1, 10, 100, 1000, 5000], 500, 8);
    eprintln!("flow posterior: mean |log p(x) error| for K = 1, 10, 100, 1000, 5000: {errors:.3?}");
    for pair in errors.windows(2) {
        assert!(pair[1] < pair[0], "error did not shrink with K: {errors:?}");
    }
    // The error at K is ≈ sqrt(Var(w / p(x)) / K); the variance from 20 000 weights.
    let worst_variance = normalised_weight_moments(&model, &case, &q, &truth, 20_000)
        .into_iter()
        .map(|(_, var)| var)
        .fold(0.0, f64::max);
    let bound = 3.0 * (worst_variance / 5000.0).sqrt();
    assert!(errors[4] < bound, "K = 5000: {} > {bound}", errors[4]);
    // And the ELBO of that flow is below log p(x) by KL(q ‖ p(z|x)) > 0.
    let draws = q.rsample_with_log_prob(4000);
    let likelihood = model.decode(draws.z.clone());
    let elbo = Elbo::estimate(
        case.data(&device),
        &q,
        &draws,
        &likelihood,
        &StandardNormal::new(L),
        KlEstimator::MonteCarlo,
    );
    for (e, t) in to_vec(elbo.elbo()).iter().zip(&truth) {
        assert!(e < &(t - 0.05), "ELBO {e} not below log p(x) {t}");
    }
}
