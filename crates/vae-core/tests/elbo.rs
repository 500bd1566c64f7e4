//! The `Elbo` type: signs, reductions and the weighted objective.

mod common;

use common::{B, device, tensor, to_vec};
use vae_core::{Elbo, ElboObjective, ElboSummary};

fn example() -> Elbo<B> {
    // Three examples: log-likelihoods (negative, as for pixels) and KLs (positive).
    Elbo::new(
        tensor(vec![-100.0, -80.0, -120.0], [3], &device()),
        tensor(vec![10.0, 20.0, 30.0], [3], &device()),
    )
}

#[test]
fn elbo_is_log_likelihood_minus_kl_and_loss_is_its_negated_mean() {
    let elbo = example();
    assert_eq!(to_vec(elbo.elbo()), vec![-110.0, -100.0, -150.0]);
    assert_eq!(to_vec(elbo.neg_elbo()), vec![110.0, 100.0, 150.0]);
    assert_eq!(to_vec(elbo.loss()), vec![120.0]);
    let summary = elbo.summary();
    assert_eq!(
        summary,
        ElboSummary {
            neg_elbo_nats: 120.0,
            log_likelihood_nats: -100.0,
            kl_nats: 20.0
        }
    );
    assert_eq!(summary.elbo_nats(), -120.0);
    let bpd = summary.bits_per_dim(784);
    assert!((bpd - 120.0 / (784.0 * std::f64::consts::LN_2)).abs() < 1e-15);
}

#[test]
fn kl_per_dim_sums_to_kl() {
    let elbo = Elbo::<B>::with_kl_per_dim(
        tensor(vec![-1.0, -2.0], [2], &device()),
        tensor(vec![0.5, 1.5, 2.0, 0.25], [2, 2], &device()),
    );
    assert_eq!(to_vec(elbo.kl.clone()), vec![2.0, 2.25]);
}

#[test]
fn default_objective_is_exactly_the_elbo_loss() {
    let elbo = example();
    let objective = ElboObjective::default();
    assert_eq!(to_vec(objective.loss(&elbo, 7)), to_vec(elbo.loss()));
}

#[test]
fn beta_weights_only_the_kl() {
    let elbo = example();
    let objective = ElboObjective::new().with_beta(4.0);
    // −mean log-lik + β · mean KL = 100 + 4 · 20
    assert_eq!(to_vec(objective.loss(&elbo, 0)), vec![180.0]);
    let warm = ElboObjective::new().with_warmup_steps(10);
    assert_eq!(to_vec(warm.loss(&elbo, 0)), vec![100.0]);
    assert_eq!(to_vec(warm.loss(&elbo, 5)), vec![110.0]);
}

#[test]
fn weighted_mean_of_summaries_weights_by_batch_size() {
    let a = ElboSummary::from_terms(-10.0, 2.0);
    let b = ElboSummary::from_terms(-20.0, 4.0);
    let mean = ElboSummary::weighted_mean(&[(a, 1), (b, 3)]).unwrap();
    assert_eq!(mean, ElboSummary::from_terms(-17.5, 3.5));
    assert!(ElboSummary::weighted_mean(&[]).is_none());
}
