//! Precision at the edges (issue 17): the KL near zero, `log_mean_exp` of an all −∞ column,
//! the Bernoulli gradient at confident logits, and σ and ln σ in the tensor's own float type.
//!
//! Generic over the autodiff backend; `precision_f32.rs` and `precision_f64.rs` run every check
//! at one precision each, in a test binary (process) of its own, because burn 0.21 keeps one
//! default float dtype per device type (`common::device_at_precision`). Every check asserts
//! the dtype it ran at and prints what it measured. References are computed in f64 from the
//! inputs as the tensor holds them (an f32 1e-5 is not the f64 1e-5).
#![allow(dead_code)]

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor};
use vae_core::{Bernoulli, DiagonalGaussian, ObservationModel, log_mean_exp};

use crate::common::{device_at_precision, named_dtype, tensor, to_vec};

/// Machine epsilon of `dtype`, the unit of every tolerance below.
fn epsilon(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        _ => f64::from(f32::EPSILON),
    }
}

/// |got − exact| / |exact| in units of `dtype`'s epsilon.
fn relative_error_in_epsilons(got: f64, exact: f64, dtype: DType) -> f64 {
    ((got - exact) / exact).abs() / epsilon(dtype)
}

/// φ(v) = e^v − 1 − v to about one f64 rounding: for |v| ≤ 4 its Taylor series Σ_{k≥2} v^k/k!
/// with compensated (Neumaier) summation, else the closed form (no cancellation there).
fn exp_taylor_remainder_reference(v: f64) -> f64 {
    if v.abs() > 4.0 {
        return v.exp() - 1.0 - v;
    }
    let (mut term, mut sum, mut compensation) = (v, 0.0f64, 0.0f64);
    for k in 2..80 {
        term *= v / f64::from(k);
        let next = sum + term;
        compensation += if sum.abs() >= term.abs() {
            (sum - next) + term
        } else {
            (term - next) + sum
        };
        sum = next;
    }
    sum + compensation
}

/// KL(N(μ, e^v) ‖ N(0, 1)) for one latent dimension at `Bk`'s precision, with ∂/∂μ and ∂/∂v:
/// (value, d_mean, d_log_var, μ and v as stored).
fn kl_standard_normal_at<Bk: AutodiffBackend>(
    mean: f64,
    log_var: f64,
) -> (f64, f64, f64, f64, f64) {
    let device = device_at_precision::<Bk>();
    let mean = tensor::<Bk, 2>(vec![mean], [1, 1], &device).require_grad();
    let log_var = tensor::<Bk, 2>(vec![log_var], [1, 1], &device).require_grad();
    let q = DiagonalGaussian::new_unclamped(mean.clone(), log_var.clone());
    let kl = q.kl_standard_normal();
    assert_eq!(kl.dtype(), named_dtype::<Bk>(), "KL dtype");
    let grads = kl.clone().sum().backward();
    let value = to_vec(kl.inner())[0];
    let d_mean = to_vec(mean.grad(&grads).expect("∂/∂μ"))[0];
    let d_log_var = to_vec(log_var.grad(&grads).expect("∂/∂ln σ²"))[0];
    (
        value,
        d_mean,
        d_log_var,
        to_vec(mean.inner())[0],
        to_vec(log_var.inner())[0],
    )
}

/// The inputs: collapsed units where KL = ½ (μ² + e^v − 1 − v) is tiny. The value and
/// both gradients are within a few ε of the exact ones (before: the clamp made f32's KL and
/// gradients 0 at μ = 1e-5, ln σ² = 1e-6, and its KL −4.7 % off at ln σ² = 1e-3).
pub fn kl_standard_normal_is_accurate_near_zero<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let mut failures = Vec::new();
    for (mean, log_var) in [(1e-5, 1e-6), (1e-5, 1e-3), (0.0, -2e-4), (3e-4, 5e-4)] {
        let (value, d_mean, d_log_var, mu, v) = kl_standard_normal_at::<Bk>(mean, log_var);
        let exact = 0.5 * (mu * mu + exp_taylor_remainder_reference(v));
        let exact_d_log_var = 0.5 * v.exp_m1();
        eprintln!(
            "{dtype:?} μ = {mean:e}, ln σ² = {log_var:e}: KL {value:.6e} (exact {exact:.6e}), \
             ∂/∂μ {d_mean:.6e} (exact {mu:.6e}), ∂/∂ln σ² {d_log_var:.6e} \
             (exact {exact_d_log_var:.6e})"
        );
        if relative_error_in_epsilons(value, exact, dtype) > 4.0 {
            failures.push(format!("KL at μ = {mean:e}, ln σ² = {log_var:e}"));
        }
        if mu != 0.0 && relative_error_in_epsilons(d_mean, mu, dtype) > 4.0 {
            failures.push(format!("∂KL/∂μ at μ = {mean:e}, ln σ² = {log_var:e}"));
        }
        if relative_error_in_epsilons(d_log_var, exact_d_log_var, dtype) > 8.0 {
            failures.push(format!("∂KL/∂ln σ² at μ = {mean:e}, ln σ² = {log_var:e}"));
        }
    }
    assert!(failures.is_empty(), "{dtype:?}: {failures:?}");
}

/// KL(N(0, e^v) ‖ N(0, 1)) over v ∈ [−6, 6], densest around 0 and the series/closed-form
/// switch at |v| = 1: > 0 for every v ≠ 0 and within 4 ε of the exact value (gradient 8 ε).
pub fn kl_standard_normal_is_accurate_across_log_variances<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let mut log_vars: Vec<f64> = (-600..=600).map(|i| f64::from(i) * 0.01).collect();
    log_vars.extend((1..=40).flat_map(|i| {
        let tiny = 10f64.powf(-f64::from(i) / 4.0);
        [
            tiny,
            -tiny,
            1.0 + tiny,
            1.0 - tiny,
            -1.0 + tiny,
            -1.0 - tiny,
        ]
    }));
    let device = device_at_precision::<Bk>();
    let n = log_vars.len();
    let log_var = tensor::<Bk, 2>(log_vars, [1, n], &device).require_grad();
    let q = DiagonalGaussian::new_unclamped(Tensor::zeros([1, n], &device), log_var.clone());
    let kl = q.kl_standard_normal_per_dim();
    assert_eq!(kl.dtype(), dtype, "KL dtype");
    let grads = kl.clone().sum().backward();
    let (values, d_log_var) = (
        to_vec(kl.inner()),
        to_vec(log_var.grad(&grads).expect("∂/∂ln σ²")),
    );
    let (mut worst_value, mut worst_gradient, mut not_positive) = (0f64, 0f64, 0);
    for ((&v, &value), &d) in to_vec(log_var.inner()).iter().zip(&values).zip(&d_log_var) {
        if v == 0.0 {
            assert_eq!((value, d), (0.0, 0.0), "{dtype:?} KL at σ = 1");
            continue;
        }
        if value <= 0.0 {
            not_positive += 1;
        }
        let exact = 0.5 * exp_taylor_remainder_reference(v);
        worst_value = worst_value.max(relative_error_in_epsilons(value, exact, dtype));
        worst_gradient = worst_gradient.max(relative_error_in_epsilons(d, 0.5 * v.exp_m1(), dtype));
    }
    eprintln!(
        "{dtype:?} KL over {n} log-variances in [−6, 6]: worst relative error {worst_value:.2} ε, \
         gradient {worst_gradient:.2} ε; {not_positive} not > 0 at ln σ² ≠ 0"
    );
    assert_eq!(not_positive, 0, "{dtype:?} KL ≤ 0 at ln σ² ≠ 0");
    assert!(
        worst_value <= 4.0,
        "{dtype:?} worst KL error {worst_value} ε"
    );
    assert!(
        worst_gradient <= 8.0,
        "{dtype:?} worst gradient error {worst_gradient} ε"
    );
}

/// KL between two diagonal Gaussians a hair apart: (μ_q − μ_p) = 1e-5 and
/// (ln σ_q² − ln σ_p²) = 1e-6 around μ_p = 0.5, ln σ_p² = 0.25. Value and ∂/∂μ_q, ∂/∂ln σ_q²
/// within a few ε of ½ [φ(d) + Δ² e^{−v_p}], Δ e^{−v_p} and ½ (e^d − 1).
pub fn kl_divergence_is_accurate_near_zero<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let device = device_at_precision::<Bk>();
    let mut failures = Vec::new();
    for (delta_mean, delta_log_var) in [(1e-5, 1e-6), (1e-5, 1e-3), (-2e-4, -3e-4)] {
        let p = DiagonalGaussian::new_unclamped(
            tensor::<Bk, 2>(vec![0.5], [1, 1], &device),
            tensor::<Bk, 2>(vec![0.25], [1, 1], &device),
        );
        let q_mean = tensor::<Bk, 2>(vec![0.5 + delta_mean], [1, 1], &device).require_grad();
        let q_log_var = tensor::<Bk, 2>(vec![0.25 + delta_log_var], [1, 1], &device).require_grad();
        let q = DiagonalGaussian::new_unclamped(q_mean.clone(), q_log_var.clone());
        let kl = q.kl_divergence(&p);
        assert_eq!(kl.dtype(), dtype, "KL dtype");
        let grads = kl.clone().sum().backward();
        let value = to_vec(kl.inner())[0];
        let d_mean = to_vec(q_mean.grad(&grads).expect("∂/∂μ_q"))[0];
        let d_log_var = to_vec(q_log_var.grad(&grads).expect("∂/∂ln σ_q²"))[0];
        // The differences of the stored inputs are exact in f64 (and, by Sterbenz, in the
        // tensor's own type, which is what the library subtracts).
        let delta = to_vec(q_mean.inner())[0] - to_vec(p.mean())[0];
        let d = to_vec(q_log_var.inner())[0] - to_vec(p.log_var())[0];
        let inverse_var_p = (-to_vec(p.log_var())[0]).exp();
        let exact = 0.5 * (exp_taylor_remainder_reference(d) + delta * delta * inverse_var_p);
        let exact_d_mean = delta * inverse_var_p;
        let exact_d_log_var = 0.5 * d.exp_m1();
        eprintln!(
            "{dtype:?} Δμ = {delta_mean:e}, Δ ln σ² = {delta_log_var:e}: KL {value:.6e} \
             (exact {exact:.6e}), ∂/∂μ_q {d_mean:.6e} (exact {exact_d_mean:.6e}), \
             ∂/∂ln σ_q² {d_log_var:.6e} (exact {exact_d_log_var:.6e})"
        );
        for (what, got, exact) in [
            ("KL(q‖p)", value, exact),
            ("∂KL/∂μ_q", d_mean, exact_d_mean),
            ("∂KL/∂ln σ_q²", d_log_var, exact_d_log_var),
        ] {
            if relative_error_in_epsilons(got, exact, dtype) > 8.0 {
                failures.push(format!(
                    "{what} at Δμ = {delta_mean:e}, Δ ln σ² = {delta_log_var:e}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{dtype:?}: {failures:?}");
}

/// log_mean_exp over a column of −∞ only is −∞ (log 0), as `torch.logsumexp` gives, with a zero
/// gradient; the other columns are unaffected (before: NaN).
pub fn log_mean_exp_of_an_all_neg_infinite_column_is_neg_infinite<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let device = device_at_precision::<Bk>();
    let inf = f64::NEG_INFINITY;
    // Columns: all −∞; one −∞ and one 0; two finite values.
    let log_weights =
        tensor::<Bk, 2>(vec![inf, inf, 0.0, inf, 0.0, 3f64.ln()], [2, 3], &device).require_grad();
    let result = log_mean_exp(log_weights.clone());
    assert_eq!(result.dtype(), dtype, "log_mean_exp dtype");
    let values = to_vec(result.clone().inner());
    let grads = result.sum().backward();
    let gradient = to_vec(log_weights.grad(&grads).expect("∂/∂a"));
    eprintln!("{dtype:?} log_mean_exp([−∞ −∞ | −∞ 0 | 0 ln 3]) = {values:?}, ∂ = {gradient:?}");
    assert_eq!(values[0], f64::NEG_INFINITY, "{dtype:?} all −∞ column");
    let tolerance = 4.0 * epsilon(dtype);
    assert!((values[1] + 2f64.ln()).abs() <= tolerance, "{values:?}");
    assert!((values[2] - 2f64.ln()).abs() <= tolerance, "{values:?}");
    // Row-major [2, 3]: the softmax weights of each column, 0 for the all −∞ one.
    let exact_gradient = [0.0, 0.0, 0.25, 0.0, 1.0, 0.75];
    for (got, exact) in gradient.iter().zip(exact_gradient) {
        assert!(
            got.is_finite() && (got - exact).abs() <= tolerance,
            "{dtype:?} gradient {gradient:?}, exact {exact_gradient:?}"
        );
    }
}

/// ∂ log p(x|η) / ∂η = x − σ(η), relative to its own size, at confident logits: through the
/// generic path (NdArray) this was burn's `log_sigmoid` backward, 1 − 1/z, which gives 0 at
/// η = −17, x = 0 in f32 (exact −4.1e-8) and is off by up to 4 % for η ∈ (−16.6, −10).
pub fn bernoulli_gradient_is_x_minus_sigmoid_at_confident_logits<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let device = device_at_precision::<Bk>();
    let mut cases = vec![
        (0.0, -17.0),
        (1.0, 17.0),
        (0.0, 0.0),
        (1.0, 0.0),
        (0.3, 5.0),
    ];
    cases.extend((0..=33).flat_map(|i| {
        let eta = -16.6 + 0.2 * f64::from(i);
        [(0.0, eta), (1.0, -eta)]
    }));
    let d = cases.len();
    let x = tensor::<Bk, 2>(cases.iter().map(|c| c.0).collect(), [1, d], &device);
    let logits =
        tensor::<Bk, 3>(cases.iter().map(|c| c.1).collect(), [1, 1, d], &device).require_grad();
    let log_prob = Bernoulli::from_logits(logits.clone()).log_prob(x.clone());
    assert_eq!(log_prob.dtype(), dtype, "log-prob dtype");
    let grads = log_prob.clone().sum().backward();
    let gradient = to_vec(logits.grad(&grads).expect("∂/∂η"));
    let (x, eta) = (to_vec(x), to_vec(logits.inner()));
    let (mut exact_log_prob, mut magnitude) = (0.0, 0.0);
    let mut worst = (0f64, 0.0, 0.0, 0.0);
    for ((&x, &eta), &got) in x.iter().zip(&eta).zip(&gradient) {
        // x − σ(η) = (x − 1) + σ(−η) for η > 0: no cancellation either side, in f64.
        let decay = (-eta.abs()).exp();
        let tail = decay / (1.0 + decay);
        let exact = if eta > 0.0 {
            (x - 1.0) + tail
        } else {
            x - tail
        };
        exact_log_prob += x * eta - (eta.max(0.0) + decay.ln_1p());
        magnitude += (x * eta).abs() + eta.abs() + decay.ln_1p();
        let error = relative_error_in_epsilons(got, exact, dtype);
        if error > worst.0 {
            worst = (error, x, eta, got);
        }
        if (x, eta) == (0.0, -17.0) {
            eprintln!("{dtype:?} ∂ log p/∂η at η = −17, x = 0: {got:.6e} (exact {exact:.6e})");
        }
    }
    let (error, at_x, at_eta, got) = worst;
    eprintln!(
        "{dtype:?} Bernoulli ∂/∂η over {d} confident logits: worst {error:.2} ε \
         (x = {at_x}, η = {at_eta}: {got:e})"
    );
    assert!(error <= 4.0, "{dtype:?} worst ∂/∂η error {error} ε");
    let total = to_vec(log_prob.inner())[0];
    // A sum of d terms: rounding grows with d and with the terms' magnitudes.
    assert!(
        (total - exact_log_prob).abs() <= d as f64 * epsilon(dtype) * magnitude,
        "{dtype:?} log p {total} vs {exact_log_prob}"
    );
}

/// σ(η) (the Bernoulli `probs` and `mean`) within 2 ε of the exact value relative to σ, in the
/// logits' own type (before: burn's generic `sigmoid` ran in f32, 9e-8 off in f64), and its
/// derivative σ(1 − σ) at η = 0 (¼) and in the tails.
pub fn bernoulli_probs_are_accurate_in_their_own_precision<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let device = device_at_precision::<Bk>();
    let etas = vec![
        -80.0, -30.0, -17.0, -5.0, -0.3, -1e-9, 0.0, 1e-9, 0.3, 0.7, 5.0, 17.0, 30.0,
    ];
    let n = etas.len();
    let logits = tensor::<Bk, 3>(etas, [1, 1, n], &device).require_grad();
    let model = Bernoulli::from_logits(logits.clone());
    let probs = model.probs();
    assert_eq!(probs.dtype(), dtype, "probs dtype");
    assert_eq!(
        to_vec(model.mean().inner()),
        to_vec(probs.clone().inner()),
        "mean is probs"
    );
    let grads = probs.clone().sum().backward();
    let gradient = to_vec(logits.grad(&grads).expect("∂σ/∂η"));
    let mut worst = 0f64;
    let mut worst_gradient = 0f64;
    for ((&eta, &p), &d) in to_vec(logits.inner())
        .iter()
        .zip(&to_vec(probs.inner()))
        .zip(&gradient)
    {
        // σ(η) and σ(η)(1 − σ(η)) = e / (1 + e)² from e = e^{−|η|}: no cancellation in f64.
        let decay = (-eta.abs()).exp();
        let exact = if eta >= 0.0 {
            1.0 / (1.0 + decay)
        } else {
            decay / (1.0 + decay)
        };
        worst = worst.max(relative_error_in_epsilons(p, exact, dtype));
        let exact_gradient = decay / (1.0 + decay).powi(2);
        worst_gradient = worst_gradient.max(relative_error_in_epsilons(d, exact_gradient, dtype));
    }
    eprintln!(
        "{dtype:?} σ(η) over {n} logits: worst {worst:.2} ε; ∂σ/∂η worst {worst_gradient:.2} ε"
    );
    assert!(worst <= 2.0, "{dtype:?} worst σ error {worst} ε");
    assert!(
        worst_gradient <= 8.0,
        "{dtype:?} worst ∂σ/∂η error {worst_gradient} ε"
    );
}

/// ln σ(η) within 2 ε of the exact value relative to it, in the input's own type, finite far
/// into the negative tail (where ln of burn's `sigmoid` is −∞ and −softplus(−η) overflows),
/// with its derivative σ(−η) (½ at η = 0) within 8 ε.
pub fn log_sigmoid_is_accurate_in_its_own_precision<Bk: AutodiffBackend>() {
    let dtype = named_dtype::<Bk>();
    let device = device_at_precision::<Bk>();
    let etas = vec![
        -1000.0, -120.0, -30.0, -5.0, -0.3, -1e-9, 0.0, 1e-9, 0.3, 5.0, 17.0, 30.0, 80.0,
    ];
    let n = etas.len();
    let eta = tensor::<Bk, 1>(etas, [n], &device).require_grad();
    let log_sigma = vae_core::log_sigmoid(eta.clone());
    assert_eq!(log_sigma.dtype(), dtype, "ln σ dtype");
    let gradient = to_vec(
        eta.grad(&log_sigma.clone().sum().backward())
            .expect("∂ ln σ/∂η"),
    );
    let (mut worst, mut worst_gradient) = (0f64, 0f64);
    for ((&e, &got), &d) in to_vec(eta.inner())
        .iter()
        .zip(&to_vec(log_sigma.inner()))
        .zip(&gradient)
    {
        // From e^{−|η|} with f64's ln_1p: no cancellation on either side.
        let decay = (-e.abs()).exp();
        let exact = if e >= 0.0 {
            -decay.ln_1p()
        } else {
            e - decay.ln_1p()
        };
        let exact_gradient = if e >= 0.0 {
            decay / (1.0 + decay)
        } else {
            1.0 / (1.0 + decay)
        };
        assert!(got.is_finite(), "{dtype:?} ln σ({e}) = {got}");
        worst = worst.max(relative_error_in_epsilons(got, exact, dtype));
        worst_gradient = worst_gradient.max(relative_error_in_epsilons(d, exact_gradient, dtype));
    }
    eprintln!(
        "{dtype:?} ln σ(η) over {n} inputs: worst {worst:.2} ε; ∂/∂η worst {worst_gradient:.2} ε"
    );
    assert!(worst <= 2.0, "{dtype:?} worst ln σ error {worst} ε");
    assert!(
        worst_gradient <= 8.0,
        "{dtype:?} worst ∂ ln σ/∂η error {worst_gradient} ε"
    );
}
