//! The training objective built on the ELBO: β, KL warm-up and free bits.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::elbo::Elbo;

/// How the KL term is weighted during training.
///
/// ```text
/// loss_t = −mean_n log_likelihood_n + β_t · KL_t
/// β_t    = beta · min(1, s / warmup_steps),  s = t mod cycle_steps (or t without cycles)
/// KL_t   = Σ_l max(free_bits_nats, mean_n KL_{n,l})   (or mean_n KL_n when free_bits_nats = 0)
/// ```
///
/// With the defaults (β = 1, no warm-up, no free bits) `loss_t` is exactly −ELBO, the negative
/// of a lower bound on log p(x). Any other setting trains a *different* objective that is not a
/// bound: report [`Elbo::loss`] / [`Elbo::summary`] (the true −ELBO) for evaluation, never this.
///
/// * `beta`: the final KL weight (β-VAE, Higgins et al. 2017). β > 1 trades likelihood for a
///   more factorised posterior; β < 1 for sharper reconstructions.
/// * `warmup_steps`: linear KL annealing from 0 to β over this many optimizer steps (Bowman et
///   al. 2016; Sønderby et al. 2016). 0 disables it.
/// * `cycle_steps`: restart the warm-up every this many steps (cyclical annealing, Fu et al.
///   2019). 0 disables it.
/// * `free_bits_nats`: λ, the KL per latent dimension (batch mean, nats) below which the KL is
///   not penalised (Kingma et al. 2016), which keeps units from collapsing. 0 disables it. It
///   needs the KL per dimension ([`Elbo::kl_per_dim`], given by the analytic estimator); without
///   it λ applies to the total KL as a single group.
#[derive(Config, Debug, PartialEq)]
pub struct ElboObjective {
    /// Final KL weight β ≥ 0.
    #[config(default = 1.0)]
    pub beta: f64,
    /// Linear warm-up length in optimizer steps (0 = none).
    #[config(default = 0)]
    pub warmup_steps: u64,
    /// Cyclical-annealing period in optimizer steps (0 = none); must be ≥ `warmup_steps`.
    #[config(default = 0)]
    pub cycle_steps: u64,
    /// Free bits λ ≥ 0, nats per latent dimension (0 = none).
    #[config(default = 0.0)]
    pub free_bits_nats: f64,
}

impl Default for ElboObjective {
    fn default() -> Self {
        Self::new()
    }
}

/// A setting of [`ElboObjective`] that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectiveError {
    /// β is negative or not finite.
    #[error("beta must be a finite number ≥ 0, got {0}")]
    Beta(f64),
    /// Free bits is negative or not finite.
    #[error("free_bits_nats must be a finite number ≥ 0, got {0}")]
    FreeBits(f64),
    /// A number of importance samples (or groups of them) that is 0.
    #[error("{key} must be ≥ 1")]
    Samples {
        /// The key at fault.
        key: &'static str,
    },
    /// CIWAE's β outside [0, 1].
    #[error("the CIWAE beta must be in [0, 1], got {0}")]
    CiwaeBeta(f64),
    /// A β-TC-VAE weight that is negative or not finite.
    #[error("{key} must be a finite number ≥ 0, got {value}")]
    TcWeight {
        /// The key at fault (`alpha`, `beta` or `gamma`).
        key: &'static str,
        /// The value given.
        value: f64,
    },
    /// The warm-up does not fit in a cycle.
    #[error("warmup_steps ({warmup}) must not exceed cycle_steps ({cycle}) when cycling")]
    WarmupLongerThanCycle {
        /// The configured warm-up.
        warmup: u64,
        /// The configured cycle.
        cycle: u64,
    },
}

impl ElboObjective {
    /// Checks the settings; every constructor path of a run should call this once.
    pub fn validate(&self) -> Result<(), ObjectiveError> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(ObjectiveError::Beta(self.beta));
        }
        if !(self.free_bits_nats.is_finite() && self.free_bits_nats >= 0.0) {
            return Err(ObjectiveError::FreeBits(self.free_bits_nats));
        }
        if self.cycle_steps > 0 && self.warmup_steps > self.cycle_steps {
            return Err(ObjectiveError::WarmupLongerThanCycle {
                warmup: self.warmup_steps,
                cycle: self.cycle_steps,
            });
        }
        Ok(())
    }

    /// β_t, the KL weight at optimizer step `step` (counting from 0).
    pub fn beta_at(&self, step: u64) -> f64 {
        let s = if self.cycle_steps > 0 {
            step % self.cycle_steps
        } else {
            step
        };
        if self.warmup_steps == 0 {
            self.beta
        } else {
            self.beta * (s as f64 / self.warmup_steps as f64).min(1.0)
        }
    }

    /// True when the objective at `step` is exactly −ELBO (β_t = 1 and no free bits).
    pub fn is_elbo_at(&self, step: u64) -> bool {
        self.beta_at(step) == 1.0 && self.free_bits_nats == 0.0
    }

    /// The training loss at optimizer step `step`, shape `[1]`: −mean log_likelihood + β_t · KL_t
    /// (see the type's documentation). Equals [`Elbo::loss`] when [`is_elbo_at`](Self::is_elbo_at).
    pub fn loss<B: Backend>(&self, elbo: &Elbo<B>, step: u64) -> Tensor<B, 1> {
        let free_bits = self.free_bits_nats;
        let kl = match &elbo.kl_per_dim {
            _ if free_bits == 0.0 => elbo.kl.clone().mean(),
            Some(per_dim) => per_dim.clone().mean_dim(0).clamp_min(free_bits).sum(),
            None => elbo.kl.clone().mean().clamp_min(free_bits),
        };
        kl.mul_scalar(self.beta_at(step)) - elbo.log_likelihood.clone().mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_ramps_to_beta_and_holds() {
        let objective = ElboObjective::new().with_beta(2.0).with_warmup_steps(100);
        assert_eq!(objective.beta_at(0), 0.0);
        assert_eq!(objective.beta_at(50), 1.0);
        assert_eq!(objective.beta_at(100), 2.0);
        assert_eq!(objective.beta_at(10_000), 2.0);
        assert!(objective.is_elbo_at(50)); // β_t passes through 1 on its way to 2
        assert!(!objective.is_elbo_at(25));
    }

    #[test]
    fn cyclical_annealing_restarts_every_cycle() {
        let objective = ElboObjective::new()
            .with_warmup_steps(50)
            .with_cycle_steps(200);
        assert_eq!(objective.beta_at(25), 0.5);
        assert_eq!(objective.beta_at(199), 1.0);
        assert_eq!(objective.beta_at(200), 0.0);
        assert_eq!(objective.beta_at(225), 0.5);
        assert!(objective.is_elbo_at(150));
    }

    #[test]
    fn defaults_are_the_plain_elbo() {
        let objective = ElboObjective::default();
        assert!(objective.validate().is_ok());
        assert!((0..1000).all(|step| objective.is_elbo_at(step)));
    }

    #[test]
    fn nonsense_settings_are_rejected_with_their_name() {
        let err = ElboObjective::new().with_beta(-1.0).validate().unwrap_err();
        assert!(err.to_string().contains("beta"));
        let err = ElboObjective::new()
            .with_free_bits_nats(f64::NAN)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("free_bits_nats"));
        let err = ElboObjective::new()
            .with_warmup_steps(10)
            .with_cycle_steps(5)
            .validate()
            .unwrap_err();
        assert_eq!(
            err,
            ObjectiveError::WarmupLongerThanCycle {
                warmup: 10,
                cycle: 5
            }
        );
    }
}
