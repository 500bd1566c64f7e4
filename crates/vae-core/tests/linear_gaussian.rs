//! The ELBO identity on a model where everything is closed-form.
//!
//! z ~ N(0, I_L), x | z ~ N(Wz + b, σ² I_D). Then
//!   p(x)   = N(b, W Wᵀ + σ² I)
//!   p(z|x) = N(μ, Λ⁻¹),  Λ = I + WᵀW / σ²,  μ = Λ⁻¹ Wᵀ (x − b) / σ²
//! and for any q: ELBO(q) = log p(x) − KL(q ‖ p(z|x)).
//!
//! The library computes the ELBO from its own pieces (Gaussian likelihood, analytic KL to the
//! prior, reparameterised samples); the reference side is dense linear algebra in f64. The
//! expectation over q is taken exactly with symmetric sigma points ε = ±√L e_j, which integrate
//! any quadratic in z exactly, and log p(x|z) is quadratic in z.
// Index loops mirror the formulas (sums over i, j) more plainly than iterator chains.
#![allow(clippy::needless_range_loop)]

mod common;

use burn::backend::NdArray;
use burn::tensor::{Tensor, backend::Backend};
use common::dense::{self, Mat};
use common::{Rng, tensor, to_vec};
use vae_core::{
    DiagonalGaussian, Elbo, Gaussian, ImportanceSampling, KlEstimator, ObservationModel,
    standard_normal_log_prob,
};

const L: usize = 3;
const D: usize = 5;
const SIGMA: f64 = 0.7;
/// The tolerance the issue asks for, in nats.
const TOLERANCE: f64 = 1e-4;

struct Model {
    w: Mat, // D × L
    b: Vec<f64>,
}

impl Model {
    fn general() -> Self {
        let w = vec![
            vec![1.0, -0.5, 0.3],
            vec![0.2, 1.2, -0.7],
            vec![-0.9, 0.4, 0.8],
            vec![0.5, 0.5, 0.5],
            vec![1.5, -1.0, 0.1],
        ];
        Self {
            w,
            b: vec![0.1, -0.2, 0.3, 0.0, -0.5],
        }
    }

    /// Orthogonal columns (a Householder reflection's first L columns, scaled), so WᵀW is
    /// diagonal and the true posterior is a diagonal Gaussian that q can equal.
    fn orthogonal_columns() -> Self {
        let v = [1.0, -2.0, 0.5, 1.5, -1.0];
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let scales = [1.5, 0.8, 2.0];
        let w = (0..D)
            .map(|i| {
                (0..L)
                    .map(|j| {
                        let delta = if i == j { 1.0 } else { 0.0 };
                        (delta - 2.0 * v[i] * v[j] / vv) * scales[j]
                    })
                    .collect()
            })
            .collect();
        Self {
            w,
            b: vec![0.0, 0.5, -0.5, 1.0, 0.2],
        }
    }

    fn marginal_cov(&self) -> Mat {
        let wwt = dense::matmul(&self.w, &dense::transpose(&self.w));
        dense::add_scaled_identity(&wwt, SIGMA * SIGMA)
    }

    fn log_px(&self, x: &[f64]) -> f64 {
        let cov = self.marginal_cov();
        let r: Vec<f64> = x.iter().zip(&self.b).map(|(a, b)| a - b).collect();
        let maha = dense::dot(&r, &dense::solve_spd(&cov, &r));
        -0.5 * (D as f64 * (2.0 * std::f64::consts::PI).ln() + dense::log_det_spd(&cov) + maha)
    }

    /// Posterior precision Λ and mean μ.
    fn posterior(&self, x: &[f64]) -> (Mat, Vec<f64>) {
        let wtw = dense::matmul(&dense::transpose(&self.w), &self.w);
        let precision: Mat = wtw
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .map(|(j, v)| v / (SIGMA * SIGMA) + if i == j { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let r: Vec<f64> = x.iter().zip(&self.b).map(|(a, b)| a - b).collect();
        let wtr: Vec<f64> = dense::mat_vec(&dense::transpose(&self.w), &r)
            .iter()
            .map(|v| v / (SIGMA * SIGMA))
            .collect();
        let mean = dense::solve_spd(&precision, &wtr);
        (precision, mean)
    }

    /// KL(N(m, diag(v)) ‖ N(μ, Λ⁻¹)) = ½ [tr(Λ V) + (μ − m)ᵀ Λ (μ − m) − L − ln|Λ| − Σ ln v].
    fn kl_to_posterior(&self, x: &[f64], m: &[f64], v: &[f64]) -> f64 {
        let (precision, mu) = self.posterior(x);
        let trace: f64 = (0..L).map(|i| precision[i][i] * v[i]).sum();
        let delta: Vec<f64> = mu.iter().zip(m).map(|(a, b)| a - b).collect();
        let quad = dense::dot(&delta, &dense::mat_vec(&precision, &delta));
        let log_det_v: f64 = v.iter().map(|x| x.ln()).sum();
        0.5 * (trace + quad - L as f64 - dense::log_det_spd(&precision) - log_det_v)
    }

    /// log p(z|x) for one z.
    fn log_posterior(&self, x: &[f64], z: &[f64]) -> f64 {
        let (precision, mu) = self.posterior(x);
        let delta: Vec<f64> = z.iter().zip(&mu).map(|(a, b)| a - b).collect();
        let quad = dense::dot(&delta, &dense::mat_vec(&precision, &delta));
        0.5 * (dense::log_det_spd(&precision) - L as f64 * (2.0 * std::f64::consts::PI).ln() - quad)
    }

    fn sample_x(&self, rng: &mut Rng, n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let z = rng.normals(L);
                let wz = dense::mat_vec(&self.w, &z);
                (0..D)
                    .map(|i| wz[i] + self.b[i] + SIGMA * rng.normal())
                    .collect()
            })
            .collect()
    }

    /// The library's decoder: p(x|z) = N(zWᵀ + b, σ²), z of shape [S, N, L].
    fn decode<Bk: Backend>(&self, z: Tensor<Bk, 3>) -> Gaussian<Bk> {
        let [s, n, _] = z.dims();
        let device = z.device();
        let wt = tensor::<Bk, 2>(dense::transpose(&self.w).concat(), [L, D], &device);
        let b = tensor::<Bk, 2>(self.b.clone(), [1, D], &device);
        let mean = z.reshape([s * n, L]).matmul(wt) + b;
        Gaussian::fixed(mean.reshape([s, n, D]), SIGMA)
    }
}

/// ε = ±√L e_j for j = 1..L: 2L points whose empirical first three moments equal N(0, I)'s.
fn sigma_points<Bk: Backend>(n: usize, device: &Bk::Device) -> Tensor<Bk, 3> {
    let mut values = Vec::with_capacity(2 * L * n * L);
    for sign in [1.0, -1.0] {
        for j in 0..L {
            for _ in 0..n {
                for l in 0..L {
                    values.push(if l == j {
                        sign * (L as f64).sqrt()
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    tensor(values, [2 * L, n, L], device)
}

struct Case {
    x: Vec<Vec<f64>>,
    q_mean: Vec<Vec<f64>>,
    q_var: Vec<Vec<f64>>,
}

impl Case {
    fn posterior<Bk: Backend>(&self, device: &Bk::Device) -> DiagonalGaussian<Bk> {
        let n = self.x.len();
        let mean = tensor(self.q_mean.concat(), [n, L], device);
        let log_var = tensor(
            self.q_var.concat().iter().map(|v| v.ln()).collect(),
            [n, L],
            device,
        );
        DiagonalGaussian::new(mean, log_var)
    }

    fn data<Bk: Backend>(&self, device: &Bk::Device) -> Tensor<Bk, 2> {
        tensor(self.x.concat(), [self.x.len(), D], device)
    }
}

/// q = the true posterior's mean and diagonal, perturbed by `shift` and scaled by `inflate`.
fn case(model: &Model, n: usize, shift: f64, inflate: f64, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let x = model.sample_x(&mut rng, n);
    let (mut q_mean, mut q_var) = (Vec::new(), Vec::new());
    for xi in &x {
        let (precision, mu) = model.posterior(xi);
        let cov = dense::inverse_spd(&precision);
        q_mean.push(mu.iter().map(|m| m + shift * rng.normal()).collect());
        q_var.push((0..L).map(|j| cov[j][j] * inflate).collect());
    }
    Case { x, q_mean, q_var }
}

/// max_n |ELBO_n − (log p(x_n) − KL(q_n ‖ p(z|x_n)))| and max_n (ELBO_n − log p(x_n)).
fn identity_errors<Bk: Backend>(model: &Model, case: &Case) -> (f64, f64) {
    let device = Default::default();
    let n = case.x.len();
    let q = case.posterior::<Bk>(&device);
    let z = q.reparameterize(sigma_points(n, &device));
    let likelihood = model.decode(z.clone());
    let elbo = Elbo::estimate(
        case.data(&device),
        &q,
        z,
        &likelihood,
        KlEstimator::Analytic,
    );
    let elbo = to_vec(elbo.elbo());
    let mut identity_error: f64 = 0.0;
    let mut worst_excess = f64::NEG_INFINITY;
    for i in 0..n {
        let log_px = model.log_px(&case.x[i]);
        let gap = model.kl_to_posterior(&case.x[i], &case.q_mean[i], &case.q_var[i]);
        identity_error = identity_error.max((elbo[i] - (log_px - gap)).abs());
        worst_excess = worst_excess.max(elbo[i] - log_px);
    }
    (identity_error, worst_excess)
}

#[test]
fn elbo_plus_posterior_kl_is_log_px() {
    let model = Model::general();
    for (seed, shift, inflate) in [(1, 0.5, 1.0), (2, 1.0, 0.3), (3, 0.1, 3.0), (4, 2.0, 1.7)] {
        let case = case(&model, 6, shift, inflate, seed);
        let (err64, excess64) = identity_errors::<NdArray<f64>>(&model, &case);
        let (err32, excess32) = identity_errors::<NdArray<f32>>(&model, &case);
        eprintln!(
            "identity (shift {shift}, inflate {inflate}): |ELBO − log p(x) + KL(q‖p(z|x))| \
             f64 {err64:.2e}, f32 {err32:.2e}; max ELBO − log p(x): {excess64:.3}"
        );
        assert!(err64 < TOLERANCE, "f64 identity error {err64}");
        assert!(err32 < TOLERANCE, "f32 identity error {err32}");
        assert!(excess64 < 0.0 && excess32 < 0.0, "ELBO above log p(x)");
    }
}

#[test]
fn elbo_equals_log_px_when_q_is_the_true_posterior() {
    let model = Model::orthogonal_columns();
    // The posterior covariance is diagonal here, so q can be exactly p(z|x).
    let (precision, _) = model.posterior(&[0.0; D]);
    for i in 0..L {
        for j in 0..L {
            if i != j {
                assert!(precision[i][j].abs() < 1e-12, "posterior not diagonal");
            }
        }
    }
    let exact = case(&model, 6, 0.0, 1.0, 7);
    let (err64, excess64) = identity_errors::<NdArray<f64>>(&model, &exact);
    let (err32, excess32) = identity_errors::<NdArray<f32>>(&model, &exact);
    eprintln!(
        "q = p(z|x): max |ELBO − log p(x)| f64 {:.2e}, f32 {:.2e}",
        excess64.abs(),
        excess32.abs()
    );
    assert!(err64 < TOLERANCE && err32 < TOLERANCE);
    assert!(excess64.abs() < TOLERANCE, "f64 gap {excess64}");
    assert!(excess32.abs() < TOLERANCE, "f32 gap {excess32}");

    // Any other q leaves a strictly positive gap.
    let off = case(&model, 6, 0.3, 1.0, 7);
    let (_, excess) = identity_errors::<NdArray<f64>>(&model, &off);
    assert!(
        excess < -1e-3,
        "gap should be positive for q ≠ p(z|x), got {excess}"
    );
}

#[test]
fn log_joint_minus_log_posterior_is_log_px_at_every_z() {
    // Pointwise: log p(x|z) + log p(z) − log p(z|x) = log p(x) for any z, which checks the
    // Gaussian likelihood and the prior density exactly (no expectation involved).
    let model = Model::general();
    let case = case(&model, 3, 0.0, 1.0, 11);
    let device = Default::default();
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
    let device = Default::default();
    Bk::seed(&device, 21);
    let q = case.posterior::<Bk>(&device);
    let truth: Vec<f64> = case.x.iter().map(|x| model.log_px(x)).collect();

    // The normalised weights r = w / p(x) have mean exactly 1 (E_q[w] = p(x)); their variance v
    // sets the estimator's error, ≈ sqrt(v / K) for large K.
    let s = 20_000;
    let z = q.rsample(s);
    let log_w = to_vec(vae_core::log_importance_weights(
        case.data(&device),
        &q,
        z.clone(),
        &model.decode(z),
    ));
    let mut worst_variance: f64 = 0.0;
    for (n, log_px) in truth.iter().enumerate() {
        let r: Vec<f64> = (0..s).map(|i| (log_w[i * 4 + n] - log_px).exp()).collect();
        let mean = r.iter().sum::<f64>() / s as f64;
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (s - 1) as f64;
        let bound = 5.0 * (var / s as f64).sqrt();
        assert!((mean - 1.0).abs() < bound, "E[w]/p(x) = {mean} ± {bound}");
        worst_variance = worst_variance.max(var);
    }

    let mut errors = Vec::new();
    for k in [1, 10, 100, 1000, 5000] {
        let sampler = ImportanceSampling::new()
            .with_num_samples(k)
            .with_chunk_size(300);
        // Average the absolute error over repetitions so the trend is not luck.
        let reps = 8;
        let mut total = 0.0;
        for _ in 0..reps {
            let estimate = to_vec(sampler.log_px(case.data(&device), &q, |z| model.decode(z)));
            total += estimate
                .iter()
                .zip(&truth)
                .map(|(e, t)| (e - t).abs())
                .sum::<f64>()
                / truth.len() as f64;
        }
        errors.push(total / reps as f64);
    }
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
    let device = Default::default();
    let q = case.posterior::<Bk>(&device);
    let truth: f64 = case.x.iter().map(|x| model.log_px(x)).sum::<f64>() / 4.0;
    let exact_elbo = {
        let z = q.reparameterize(sigma_points(4, &device));
        let elbo = Elbo::estimate(
            case.data(&device),
            &q,
            z.clone(),
            &model.decode(z),
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
                let bound =
                    vae_core::iwae_bound(case.data(&device), &q, z.clone(), &model.decode(z));
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
