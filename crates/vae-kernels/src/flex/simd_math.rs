//! The per-row arithmetic of the fused Bernoulli log-likelihood, written so the compiler
//! vectorises it: no libm calls, no branches, partial sums in lanes.
//!
//! glibc's scalar `expf`/`logf` were most of the fused forward pass (perf, `cargo xtask bench
//! --cases mlp-b128`). Here, for one row of `D` logits η and targets x,
//!
//! * `e = exp(−|η|)` by Cody–Waite range reduction `−|η| = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, and
//!   Cephes' `expf` polynomial `1 + r + r²·P(r)` (P of degree 5); relative error ≤ 2 ε (f32's
//!   epsilon), tested; `−|η|` is clamped at −87 so `2^n` stays a normal float — below that
//!   `e < 2·10⁻³⁸` and changes no f32 sum it is part of;
//! * `log1p(e) = 2·atanh(s)`, `s = e / (2 + e) ∈ [0, ⅓]`, by its odd series to s¹⁵ (truncation
//!   < 2·10⁻⁹ relative; relative error ≤ 2 ε, tested): no cancellation for tiny `e`;
//! * `σ(−|η|) = e/(1+e)`, from which the backward pass forms x − σ(η) without cancellation.
//!
//! On x86-64 the same code is compiled twice, and the AVX2 + FMA copy is chosen at run time when
//! the CPU has them (any x86-64 CPU since 2013); other CPUs run the portable copy.

/// Clamp for `−|η|`: `e^{−87}` is still a normal f32, so `2^n` below is built from its bits.
const MIN_EXPONENT: f32 = -87.0;

/// `Σ_d [x_d·η_d − softplus(η_d)]` over one row, with σ(−|η_d|) written to `sigmoid_of_neg_abs`
/// unless it is empty. `x`, `eta` (and a non-empty `sigmoid_of_neg_abs`) have the same length.
pub(crate) fn row_log_prob(x: &[f32], eta: &[f32], sigmoid_of_neg_abs: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `row_log_prob_avx2` is compiled for.
        return unsafe { row_log_prob_avx2(x, eta, sigmoid_of_neg_abs) };
    }
    row_log_prob_portable(x, eta, sigmoid_of_neg_abs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_log_prob_avx2(x: &[f32], eta: &[f32], sigmoid_of_neg_abs: &mut [f32]) -> f32 {
    row_log_prob_portable(x, eta, sigmoid_of_neg_abs)
}

/// Lanes of partial sums (two 8-wide AVX2 registers): what lets the sum vectorise (f32
/// addition is not associative, so a single accumulator would force a serial loop).
const LANES: usize = 16;

#[inline(always)]
pub(crate) fn row_log_prob_portable(x: &[f32], eta: &[f32], sigmoid_of_neg_abs: &mut [f32]) -> f32 {
    assert_eq!(x.len(), eta.len());
    let mut partial = [0f32; LANES];
    let full = eta.len() / LANES * LANES;
    if sigmoid_of_neg_abs.is_empty() {
        for (x, eta) in x[..full]
            .chunks_exact(LANES)
            .zip(eta[..full].chunks_exact(LANES))
        {
            for lane in 0..LANES {
                partial[lane] += element(x[lane], eta[lane]).0;
            }
        }
    } else {
        assert_eq!(sigmoid_of_neg_abs.len(), eta.len());
        for ((x, eta), sig) in x[..full]
            .chunks_exact(LANES)
            .zip(eta[..full].chunks_exact(LANES))
            .zip(sigmoid_of_neg_abs[..full].chunks_exact_mut(LANES))
        {
            for lane in 0..LANES {
                let (term, s) = element(x[lane], eta[lane]);
                partial[lane] += term;
                sig[lane] = s;
            }
        }
    }
    let mut sum: f32 = partial.iter().sum();
    for k in full..eta.len() {
        let (term, s) = element(x[k], eta[k]);
        sum += term;
        if let Some(sig) = sigmoid_of_neg_abs.get_mut(k) {
            *sig = s;
        }
    }
    sum
}

/// `(x·η − softplus(η), σ(−|η|))` for one element.
#[inline(always)]
fn element(x: f32, eta: f32) -> (f32, f32) {
    let e = exp_non_positive(-eta.abs());
    (x * eta - eta.max(0.0) - log1p_unit(e), e / (1.0 + e))
}

/// `e^t` for `t ≤ 0` (NaN propagates; `t < −87` is treated as −87).
#[inline(always)]
pub(crate) fn exp_non_positive(t: f32) -> f32 {
    // `max` returns the non-NaN operand, so a NaN logit is passed on explicitly.
    let t = if t.is_nan() { t } else { t.max(MIN_EXPONENT) };
    // n = round(t / ln 2) with the 1.5·2²³ trick: the sum's low mantissa bits hold n.
    const ROUND: f32 = 12_582_912.0;
    let shifted = t * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // Cody–Waite: ln 2 = 0.693359375 − 2.12194440e-4, the first part exact in few bits.
    let r = t - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let exp_r = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits; n ∈ [−126, 0] after the clamp, a normal float.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits((n_bits.wrapping_add(127) as u32) << 23);
    exp_r * scale
}

/// `ln(1 + e)` for `e ∈ [0, 1]`, as `2·atanh(e / (2 + e))`.
#[inline(always)]
pub(crate) fn log1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    // 2·Σ_k s^{2k+1}/(2k+1), k = 0..=7, in Horner form over s².
    let mut p = 2.0 / 15.0;
    p = p * s2 + 2.0 / 13.0;
    p = p * s2 + 2.0 / 11.0;
    p = p * s2 + 2.0 / 9.0;
    p = p * s2 + 2.0 / 7.0;
    p = p * s2 + 2.0 / 5.0;
    p = p * s2 + 2.0 / 3.0;
    p = p * s2 + 2.0;
    s * p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error in units of f32's epsilon (ε = 2⁻²³), against an f64 reference.
    fn eps(approx: f32, exact: f64) -> f64 {
        if exact == 0.0 {
            return (approx as f64).abs() / f64::from(f32::MIN_POSITIVE);
        }
        ((approx as f64 - exact) / exact).abs() / f64::from(f32::EPSILON)
    }

    #[test]
    fn exp_is_accurate_to_two_epsilons_down_to_the_clamp() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let t = -(i as f32) * 1e-4;
            let err = eps(exp_non_positive(t), f64::from(t).exp());
            worst = worst.max(err);
        }
        assert!(worst <= 2.0, "worst relative error {worst} ε");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert_eq!(exp_non_positive(-0.0), 1.0);
        // Below the clamp: e^{-87}, far under anything an f32 sum with O(1) terms can see.
        assert_eq!(exp_non_positive(-1e4), exp_non_positive(MIN_EXPONENT));
        assert_eq!(exp_non_positive(f32::NEG_INFINITY), exp_non_positive(-87.0));
        assert!(exp_non_positive(f32::NAN).is_nan());
    }

    #[test]
    fn log1p_is_accurate_to_two_epsilons_on_the_unit_interval() {
        let mut worst = 0f64;
        let mut e = 1e-30f32;
        while e <= 1.0 {
            worst = worst.max(eps(log1p_unit(e), f64::from(e).ln_1p()));
            e *= 1.001;
        }
        for i in 0..=100_000 {
            let e = i as f32 * 1e-5;
            worst = worst.max(eps(log1p_unit(e), f64::from(e).ln_1p()));
        }
        assert!(worst <= 2.0, "worst relative error {worst} ε");
        assert_eq!(log1p_unit(0.0), 0.0);
    }

    /// The kernel against f64 for a row of every length from 0 to 40 (tails and full lanes),
    /// through both the dispatched and the portable code.
    #[test]
    fn row_kernel_matches_f64_with_and_without_sigmoid_of_neg_abs() {
        for len in 0..=40 {
            let eta: Vec<f32> = (0..len)
                .map(|i| {
                    ((i as f32 * 0.618_034).fract() - 0.5) * 60.0
                        + if i % 7 == 0 { 0.0 } else { 0.3 }
                })
                .collect();
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.377).fract()).collect();
            let exact: f64 = x
                .iter()
                .zip(&eta)
                .map(|(&x, &eta)| {
                    let (x, eta) = (f64::from(x), f64::from(eta));
                    x * eta - (eta.max(0.0) + (-eta.abs()).exp().ln_1p())
                })
                .sum();
            let scale: f64 = x
                .iter()
                .zip(&eta)
                .map(|(&x, &eta)| f64::from((x * eta).abs() + eta.abs()))
                .sum();
            for kernel in [row_log_prob, |x: &[f32], e: &[f32], s: &mut [f32]| {
                row_log_prob_portable(x, e, s)
            }] {
                let mut sigmoid = vec![0f32; len];
                let with = kernel(&x, &eta, &mut sigmoid);
                let without = kernel(&x, &eta, &mut []);
                assert_eq!(with, without, "len {len}");
                assert!(
                    (f64::from(with) - exact).abs()
                        <= 4.0 * f64::from(f32::EPSILON) * scale.max(1.0),
                    "len {len}: {with} vs {exact}"
                );
                for (&s, &eta) in sigmoid.iter().zip(&eta) {
                    let exact = 1.0 / (1.0 + f64::from(eta).abs().exp());
                    assert!(
                        eps(s, exact) <= 4.0 || (s as f64 - exact).abs() < 1e-37,
                        "σ(−|{eta}|) = {s}, not {exact}"
                    );
                }
            }
        }
    }
}
