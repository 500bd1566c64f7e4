//! The importance-weighted training bounds: IWAE and its MIWAE, CIWAE and PIWAE variants.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::importance::log_mean_exp;
use crate::objective::ObjectiveError;

/// A bound on log p(x) built from importance weights w_s = p(x, z_s) / q(z_s|x), z_s ~ q(z|x)
/// (`log_importance_weights`), maximised in place of the single-sample ELBO.
///
/// Each is computed per example from the log-weights `[S, N]` of
/// [`samples`](Self::samples) = S draws, in nats:
///
/// ```text
/// IWAE_K        = log (1/K) Σ_k w_k                                   (Burda et al. 2016)
/// MIWAE_{M,K}   = (1/M) Σ_m log (1/K) Σ_k w_{m,k}                     (Rainforth et al. 2018)
/// CIWAE_{K,β}   = β · (1/K) Σ_k log w_k + (1 − β) · IWAE_K             (Rainforth et al. 2018)
/// PIWAE_{M,K}   : the decoder maximises IWAE_{M·K}, the encoder MIWAE_{M,K}
/// ```
///
/// with E[ELBO] ≤ E[MIWAE_{M,K}] ≤ E[IWAE_{M·K}] ≤ log p(x). At their limits they reduce to
/// each other: MIWAE_{1,K} = IWAE_K, MIWAE_{M,1} = the M-sample ELBO (with a Monte-Carlo KL),
/// CIWAE with β = 1 is that ELBO and with β = 0 IWAE_K. MIWAE groups the samples in order:
/// draws m·K … m·K + K − 1 form group m.
///
/// Rainforth et al. show that tighter bounds weaken the encoder's gradient signal (its
/// signal-to-noise ratio falls as O(1/√K)), which the three variants trade against the
/// decoder's gain. Whatever the bound trained, a run reports the true ELBO terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ImportanceBound {
    /// IWAE_K with K = `samples`.
    Iwae {
        /// K ≥ 1.
        samples: usize,
    },
    /// MIWAE_{M,K}: M = `outer` independent IWAE_K bounds, K = `inner`, averaged.
    Miwae {
        /// M ≥ 1.
        outer: usize,
        /// K ≥ 1.
        inner: usize,
    },
    /// CIWAE_{K,β}: the convex combination β·ELBO + (1 − β)·IWAE_K.
    Ciwae {
        /// K ≥ 1.
        samples: usize,
        /// β ∈ [0, 1].
        beta: f64,
    },
    /// PIWAE_{M,K}: the decoder (and a learned prior) trained on IWAE_{M·K}, the encoder on
    /// MIWAE_{M,K} ([`piwae_loss`]).
    Piwae {
        /// M ≥ 1.
        outer: usize,
        /// K ≥ 1.
        inner: usize,
    },
}

impl ImportanceBound {
    /// S, the draws from q(z|x) per example the bound needs.
    pub fn samples(&self) -> usize {
        match *self {
            Self::Iwae { samples } | Self::Ciwae { samples, .. } => samples,
            Self::Miwae { outer, inner } | Self::Piwae { outer, inner } => outer * inner,
        }
    }

    /// Checks the settings; the error names the key at fault.
    pub fn validate(&self) -> Result<(), ObjectiveError> {
        let at_least_one = |key: &'static str, value: usize| {
            if value == 0 {
                Err(ObjectiveError::Samples { key })
            } else {
                Ok(())
            }
        };
        match *self {
            Self::Iwae { samples } => at_least_one("samples", samples),
            Self::Ciwae { samples, beta } => {
                at_least_one("samples", samples)?;
                if (0.0..=1.0).contains(&beta) {
                    Ok(())
                } else {
                    Err(ObjectiveError::CiwaeBeta(beta))
                }
            }
            Self::Miwae { outer, inner } | Self::Piwae { outer, inner } => {
                at_least_one("outer", outer)?;
                at_least_one("inner", inner)
            }
        }
    }

    /// The bound per example from log-weights `[S, N]` with S = [`samples`](Self::samples),
    /// shape `[N]`, nats. For PIWAE this is IWAE_{M·K}, the bound its decoder maximises (the
    /// one it reports); train it with [`piwae_loss`].
    ///
    /// # Panics
    /// If the log-weights do not have S rows.
    pub fn bound<B: Backend>(&self, log_weights: Tensor<B, 2>) -> Tensor<B, 1> {
        assert_eq!(
            log_weights.dims()[0],
            self.samples(),
            "ImportanceBound::bound: one row of log-weights per sample"
        );
        match *self {
            Self::Iwae { .. } | Self::Piwae { .. } => log_mean_exp(log_weights),
            Self::Miwae { outer, .. } => miwae_bound(log_weights, outer),
            Self::Ciwae { beta, .. } => ciwae_bound(log_weights, beta),
        }
    }
}

/// MIWAE_{M,K} per example from log-weights `[M·K, N]` (group m is rows m·K … m·K + K − 1),
/// shape `[N]`, nats: the mean over the M groups of each group's IWAE_K.
///
/// # Panics
/// If the number of rows is not a multiple of `outer`.
pub fn miwae_bound<B: Backend>(log_weights: Tensor<B, 2>, outer: usize) -> Tensor<B, 1> {
    let [s, n] = log_weights.dims();
    assert!(
        outer > 0 && s % outer == 0,
        "miwae_bound: {s} samples do not split into {outer} groups"
    );
    let inner = s / outer;
    // [M, K, N] → IWAE_K over K of each group → [M, N], then the mean over M.
    let grouped = log_weights.reshape([outer, inner, n]).swap_dims(0, 1);
    let per_group = log_mean_exp(grouped.reshape([inner, outer * n])).reshape([outer, n]);
    per_group.mean_dim(0).squeeze_dim::<1>(0)
}

/// CIWAE_{K,β} per example from log-weights `[K, N]`, shape `[N]`, nats:
/// β · mean_k log w_k + (1 − β) · log mean_k w_k.
pub fn ciwae_bound<B: Backend>(log_weights: Tensor<B, 2>, beta: f64) -> Tensor<B, 1> {
    let elbo = log_weights.clone().mean_dim(0).squeeze_dim::<1>(0);
    elbo.mul_scalar(beta) + log_mean_exp(log_weights).mul_scalar(1.0 - beta)
}

/// The PIWAE loss, shape `[1]`, nats per example: −mean_n IWAE_{M·K} − mean_n MIWAE_{M,K},
/// from two computations of the same log-weights `[M·K, N]` that differ only in where their
/// gradients go:
///
/// * `decoder_log_weights`: with z and q(z|x) detached, so this term's gradient reaches only
///   the decoder (and a learned prior): they ascend IWAE_{M·K};
/// * `encoder_log_weights`: with the decoder's (and prior's) parameters detached, so this
///   term's gradient reaches only the encoder, through z and q: it ascends MIWAE_{M,K}.
///
/// Its value is not a bound; report [`ImportanceBound::bound`] (IWAE_{M·K}).
pub fn piwae_loss<B: Backend>(
    decoder_log_weights: Tensor<B, 2>,
    encoder_log_weights: Tensor<B, 2>,
    outer: usize,
) -> Tensor<B, 1> {
    let decoder = log_mean_exp(decoder_log_weights).mean();
    let encoder = miwae_bound(encoder_log_weights, outer).mean();
    (decoder + encoder).neg()
}
