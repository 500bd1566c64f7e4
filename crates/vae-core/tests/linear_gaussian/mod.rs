//! The linear-Gaussian model where everything is closed-form, shared by the identity tests
//! `linear_gaussian_f64.rs` and `linear_gaussian_f32.rs` (one test binary, hence one process,
//! per precision: see [`device_at_precision`]).
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
#![allow(dead_code)]

use burn::tensor::{Tensor, backend::Backend};
use vae_core::{
    DiagonalGaussian, Elbo, Gaussian, ImportanceSampling, KlEstimator, Posterior, StandardNormal,
};

use crate::common::dense::{self, Mat};
use crate::common::{Rng, device_at_precision, named_dtype, tensor, to_vec};

pub const L: usize = 3;
pub const D: usize = 5;
pub const SIGMA: f64 = 0.7;
/// The tolerance the issue asks for, in nats.
pub const TOLERANCE: f64 = 1e-4;

pub struct Model {
    pub w: Mat, // D × L
    pub b: Vec<f64>,
}

impl Model {
    pub fn general() -> Self {
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
    pub fn orthogonal_columns() -> Self {
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

    pub fn marginal_cov(&self) -> Mat {
        let wwt = dense::matmul(&self.w, &dense::transpose(&self.w));
        dense::add_scaled_identity(&wwt, SIGMA * SIGMA)
    }

    pub fn log_px(&self, x: &[f64]) -> f64 {
        let cov = self.marginal_cov();
        let r: Vec<f64> = x.iter().zip(&self.b).map(|(a, b)| a - b).collect();
        let maha = dense::dot(&r, &dense::solve_spd(&cov, &r));
        -0.5 * (D as f64 * (2.0 * std::f64::consts::PI).ln() + dense::log_det_spd(&cov) + maha)
    }

    /// Posterior precision Λ and mean μ.
    pub fn posterior(&self, x: &[f64]) -> (Mat, Vec<f64>) {
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
    pub fn kl_to_posterior(&self, x: &[f64], m: &[f64], v: &[f64]) -> f64 {
        let (precision, mu) = self.posterior(x);
        let trace: f64 = (0..L).map(|i| precision[i][i] * v[i]).sum();
        let delta: Vec<f64> = mu.iter().zip(m).map(|(a, b)| a - b).collect();
        let quad = dense::dot(&delta, &dense::mat_vec(&precision, &delta));
        let log_det_v: f64 = v.iter().map(|x| x.ln()).sum();
        0.5 * (trace + quad - L as f64 - dense::log_det_spd(&precision) - log_det_v)
    }

    /// log p(z|x) for one z.
    pub fn log_posterior(&self, x: &[f64], z: &[f64]) -> f64 {
        let (precision, mu) = self.posterior(x);
        let delta: Vec<f64> = z.iter().zip(&mu).map(|(a, b)| a - b).collect();
        let quad = dense::dot(&delta, &dense::mat_vec(&precision, &delta));
        0.5 * (dense::log_det_spd(&precision) - L as f64 * (2.0 * std::f64::consts::PI).ln() - quad)
    }

    pub fn sample_x(&self, rng: &mut Rng, n: usize) -> Vec<Vec<f64>> {
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
    pub fn decode<Bk: Backend>(&self, z: Tensor<Bk, 3>) -> Gaussian<Bk> {
        let [s, n, _] = z.dims();
        let device = z.device();
        let wt = tensor::<Bk, 2>(dense::transpose(&self.w).concat(), [L, D], &device);
        let b = tensor::<Bk, 2>(self.b.clone(), [1, D], &device);
        let mean = z.reshape([s * n, L]).matmul(wt) + b;
        Gaussian::fixed(mean.reshape([s, n, D]), SIGMA)
    }
}

/// ε = ±√L e_j for j = 1..L: 2L points whose empirical first three moments equal N(0, I)'s.
pub fn sigma_points<Bk: Backend>(n: usize, device: &Bk::Device) -> Tensor<Bk, 3> {
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

pub struct Case {
    pub x: Vec<Vec<f64>>,
    pub q_mean: Vec<Vec<f64>>,
    pub q_var: Vec<Vec<f64>>,
}

impl Case {
    pub fn posterior<Bk: Backend>(&self, device: &Bk::Device) -> DiagonalGaussian<Bk> {
        let n = self.x.len();
        let mean = tensor(self.q_mean.concat(), [n, L], device);
        let log_var = tensor(
            self.q_var.concat().iter().map(|v| v.ln()).collect(),
            [n, L],
            device,
        );
        DiagonalGaussian::new(mean, log_var)
    }

    pub fn data<Bk: Backend>(&self, device: &Bk::Device) -> Tensor<Bk, 2> {
        tensor(self.x.concat(), [self.x.len(), D], device)
    }
}

/// q = the true posterior's mean and diagonal, perturbed by `shift` and scaled by `inflate`.
pub fn case(model: &Model, n: usize, shift: f64, inflate: f64, seed: u64) -> Case {
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

/// The importance-sampled log p(x) with proposal `q` for each K in `ks`: the mean over the
/// examples of |estimate − `truth`|, averaged over `reps` repetitions so a trend is not luck.
pub fn importance_sampling_errors<Bk: Backend>(
    model: &Model,
    case: &Case,
    q: &impl Posterior<Bk>,
    truth: &[f64],
    ks: &[usize],
    chunk_size: usize,
    reps: usize,
) -> Vec<f64> {
    let device = device_at_precision::<Bk>();
    ks.iter()
        .map(|&k| {
            let sampler = ImportanceSampling::new()
                .with_num_samples(k)
                .with_chunk_size(chunk_size);
            let total: f64 = (0..reps)
                .map(|_| {
                    let estimate = to_vec(sampler.log_px(
                        case.data(&device),
                        q,
                        &StandardNormal::new(L),
                        |z| model.decode(z),
                    ));
                    estimate
                        .iter()
                        .zip(truth)
                        .map(|(e, t)| (e - t).abs())
                        .sum::<f64>()
                        / truth.len() as f64
                })
                .sum();
            total / reps as f64
        })
        .collect()
}

/// Per example, the mean and variance of the normalised weights r = w / p(x) over `s` draws
/// of `q`: E_q[r] = 1 exactly, and Var(r) sets the importance-sampling error, ≈ sqrt(Var / K).
pub fn normalised_weight_moments<Bk: Backend>(
    model: &Model,
    case: &Case,
    q: &impl Posterior<Bk>,
    truth: &[f64],
    s: usize,
) -> Vec<(f64, f64)> {
    let device = device_at_precision::<Bk>();
    let draws = q.rsample_with_log_prob(s);
    let log_w = to_vec(vae_core::log_importance_weights(
        case.data(&device),
        &draws,
        &model.decode(draws.z.clone()),
        &StandardNormal::new(L),
    ));
    let n = truth.len();
    truth
        .iter()
        .enumerate()
        .map(|(example, log_px)| {
            let r: Vec<f64> = (0..s)
                .map(|i| (log_w[i * n + example] - log_px).exp())
                .collect();
            let mean = r.iter().sum::<f64>() / s as f64;
            let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (s - 1) as f64;
            (mean, var)
        })
        .collect()
}

/// max_n |ELBO_n − (log p(x_n) − KL(q_n ‖ p(z|x_n)))| and max_n (ELBO_n − log p(x_n)).
///
/// Runs at `Bk`'s own precision and proves it: the device's default float dtype is pinned
/// ([`device_at_precision`]) and the posterior, the samples and the ELBO are checked to be in
/// that dtype.
pub fn identity_errors<Bk: Backend>(model: &Model, case: &Case) -> (f64, f64) {
    let device = device_at_precision::<Bk>();
    let n = case.x.len();
    let q = case.posterior::<Bk>(&device);
    assert_eq!(q.mean().dtype(), named_dtype::<Bk>(), "posterior dtype");
    let z = q.reparameterize(sigma_points(n, &device));
    assert_eq!(z.dtype(), named_dtype::<Bk>(), "sample dtype");
    let likelihood = model.decode(z.clone());
    let elbo = Elbo::estimate(
        case.data(&device),
        &q,
        &vae_core::PosteriorSamples::at(&q, z),
        &likelihood,
        &StandardNormal::new(q.latent_dim()),
        KlEstimator::Analytic,
    );
    let elbo = elbo.elbo();
    assert_eq!(elbo.dtype(), named_dtype::<Bk>(), "ELBO dtype");
    let elbo = to_vec(elbo);
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

/// ELBO(q) = log p(x) − KL(q ‖ p(z|x)) for several q, at `Bk`'s precision.
pub fn check_elbo_plus_posterior_kl_is_log_px<Bk: Backend>() {
    let model = Model::general();
    let dtype = named_dtype::<Bk>();
    for (seed, shift, inflate) in [(1, 0.5, 1.0), (2, 1.0, 0.3), (3, 0.1, 3.0), (4, 2.0, 1.7)] {
        let case = case(&model, 6, shift, inflate, seed);
        let (err, excess) = identity_errors::<Bk>(&model, &case);
        eprintln!(
            "identity at {dtype:?} (shift {shift}, inflate {inflate}): \
             |ELBO − log p(x) + KL(q‖p(z|x))| {err:.2e}; max ELBO − log p(x): {excess:.3}"
        );
        assert!(err < TOLERANCE, "{dtype:?} identity error {err}");
        assert!(excess < 0.0, "ELBO above log p(x) at {dtype:?}");
    }
}

/// ELBO = log p(x) exactly when q is the true posterior, and strictly below otherwise, at
/// `Bk`'s precision.
pub fn check_elbo_equals_log_px_when_q_is_the_true_posterior<Bk: Backend>() {
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
    let dtype = named_dtype::<Bk>();
    let exact = case(&model, 6, 0.0, 1.0, 7);
    let (err, gap) = identity_errors::<Bk>(&model, &exact);
    eprintln!(
        "q = p(z|x) at {dtype:?}: max |ELBO − log p(x)| {:.2e}",
        gap.abs()
    );
    assert!(err < TOLERANCE, "{dtype:?} identity error {err}");
    assert!(gap.abs() < TOLERANCE, "{dtype:?} gap {gap}");

    // Any other q leaves a strictly positive gap.
    let off = case(&model, 6, 0.3, 1.0, 7);
    let (_, excess) = identity_errors::<Bk>(&model, &off);
    assert!(
        excess < -1e-3,
        "gap should be positive for q ≠ p(z|x), got {excess}"
    );
}
