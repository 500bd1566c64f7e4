//! Gradients point the right way: minimising `loss()` raises the ELBO.
// Index loops mirror the formulas (sums over i, j) more plainly than iterator chains.
#![allow(clippy::needless_range_loop)]

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Tensor, backend::Backend};
use common::{Rng, tensor, to_vec};
use vae_core::{
    Bernoulli, DiagonalGaussian, Elbo, ElboObjective, KlEstimator, ObservationModel, StandardNormal,
};

type Ad = Autodiff<NdArray<f64>>;

const N: usize = 6;
const L: usize = 2;
const D: usize = 8;
const S: usize = 4;

/// A VAE without amortisation: a free Gaussian q per example and a linear Bernoulli decoder.
#[derive(Module, Debug)]
struct Toy<B: Backend> {
    q_mean: Param<Tensor<B, 2>>,
    q_log_var: Param<Tensor<B, 2>>,
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 2>>,
}

impl<B: Backend> Toy<B> {
    fn new(device: &B::Device) -> Self {
        let mut rng = Rng::new(1);
        let mut param = |shape: [usize; 2], scale: f64| {
            let values = rng
                .normals(shape[0] * shape[1])
                .iter()
                .map(|v| v * scale)
                .collect();
            Param::from_tensor(tensor(values, shape, device))
        };
        Self {
            q_mean: param([N, L], 0.5),
            q_log_var: param([N, L], 0.3),
            weight: param([L, D], 1.0),
            bias: param([1, D], 0.1),
        }
    }

    /// The ELBO of `x` with fixed reparameterisation noise `eps`, so two evaluations differ only
    /// through the parameters.
    fn elbo(&self, x: Tensor<B, 2>, eps: Tensor<B, 3>) -> Elbo<B> {
        let q = DiagonalGaussian::new(self.q_mean.val(), self.q_log_var.val());
        let z = q.reparameterize(eps);
        let logits = z.clone().reshape([S * N, L]).matmul(self.weight.val()) + self.bias.val();
        let likelihood = Bernoulli::from_logits(logits.reshape([S, N, D]));
        Elbo::estimate(
            x,
            &q,
            &vae_core::PosteriorSamples::at(&q, z),
            &likelihood,
            &StandardNormal::new(q.latent_dim()),
            KlEstimator::Analytic,
        )
    }
}

fn data(device: &burn::tensor::Device<Ad>) -> (Tensor<Ad, 2>, Tensor<Ad, 3>) {
    let mut rng = Rng::new(2);
    let x = (0..N * D)
        .map(|i| (i * 7 + i / D).is_multiple_of(3) as u8 as f64)
        .collect();
    (
        tensor(x, [N, D], device),
        tensor(rng.normals(S * N * L), [S, N, L], device),
    )
}

fn mean_elbo(model: &Toy<Ad>, x: &Tensor<Ad, 2>, eps: &Tensor<Ad, 3>) -> f64 {
    to_vec(model.elbo(x.clone(), eps.clone()).elbo().mean())[0]
}

#[test]
fn one_optimizer_step_on_the_loss_raises_the_elbo() {
    let device = common::device_at_precision::<Ad>();
    let (x, eps) = data(&device);
    for (name, lr) in [("sgd", 0.05), ("adam", 0.01)] {
        let mut model = Toy::<Ad>::new(&device);
        let before = mean_elbo(&model, &x, &eps);
        let loss = model.elbo(x.clone(), eps.clone()).loss();
        // loss is −ELBO: the sign is the whole point.
        assert!((to_vec(loss.clone())[0] + before).abs() < 1e-12);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = match name {
            "sgd" => {
                let mut o = SgdConfig::new().init();
                o.step(lr, model, grads)
            }
            _ => {
                let mut o = AdamConfig::new().init();
                o.step(lr, model, grads)
            }
        };
        let after = mean_elbo(&model, &x, &eps);
        eprintln!("{name}: ELBO {before:.4} → {after:.4}");
        assert!(
            after > before,
            "{name} step lowered the ELBO: {before} → {after}"
        );
    }
}

#[test]
fn autodiff_gradient_matches_finite_differences() {
    let device = common::device_at_precision::<Ad>();
    let (x, eps) = data(&device);
    let model = Toy::<Ad>::new(&device);
    let loss = model.elbo(x.clone(), eps.clone()).loss();
    let grads = loss.backward();
    let g_weight = model.weight.val().grad(&grads).unwrap();
    let g_mean = model.q_mean.val().grad(&grads).unwrap();
    let g_log_var = model.q_log_var.val().grad(&grads).unwrap();

    // Loss along the direction of the negative gradient, as a function of the step size t.
    let h = 1e-5;
    let loss_at = |t: f64| {
        let moved = Toy {
            q_mean: Param::from_tensor(model.q_mean.val().inner() - g_mean.clone() * t),
            q_log_var: Param::from_tensor(model.q_log_var.val().inner() - g_log_var.clone() * t),
            weight: Param::from_tensor(model.weight.val().inner() - g_weight.clone() * t),
            bias: Param::from_tensor(model.bias.val().inner()),
        };
        to_vec(moved.elbo(x.clone().inner(), eps.clone().inner()).loss())[0]
    };
    let directional = (loss_at(h) - loss_at(-h)) / (2.0 * h);
    let squared_norm: f64 = [g_weight, g_mean, g_log_var]
        .into_iter()
        .map(|g| to_vec(g.powi_scalar(2).sum())[0])
        .sum();
    // d/dt loss(θ − t g) at 0 = −‖g‖²: descending along the reported gradient lowers the loss.
    assert!(squared_norm > 1e-3);
    assert!(
        (directional + squared_norm).abs() < 1e-6 * squared_norm,
        "finite difference {directional} vs −‖g‖² = {}",
        -squared_norm
    );
}

#[test]
fn bernoulli_gradient_is_x_minus_p_everywhere() {
    let device = common::device_at_precision::<Ad>();
    let etas = vec![0.0, 1e-7, -1e-7, 3.0, -3.0, 50.0, -50.0];
    let logits: Tensor<Ad, 3> = tensor::<Ad, 3>(etas.clone(), [1, 1, 7], &device).require_grad();
    let x = vec![0.3, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0];
    let log_p = Bernoulli::from_logits(logits.clone())
        .log_prob(tensor(x.clone(), [1, 7], &device))
        .sum();
    let grads = to_vec(logits.grad(&log_p.backward()).unwrap());
    for i in 0..7 {
        let expected = x[i] - 1.0 / (1.0 + (-etas[i]).exp());
        assert!(
            (grads[i] - expected).abs() < 1e-12,
            "η = {}: {} vs {expected}",
            etas[i],
            grads[i]
        );
    }
}

#[test]
fn free_bits_stop_the_kl_gradient_only_below_the_threshold() {
    let device = common::device_at_precision::<Ad>();
    // Two latent dims: one with KL ≈ 0.01 nats, one with KL ≈ 2 nats.
    let mean: Tensor<Ad, 2> =
        tensor::<Ad, 2>(vec![0.1, 2.0, 0.1, 2.0], [2, 2], &device).require_grad();
    let log_var = tensor::<Ad, 2>(vec![0.0; 4], [2, 2], &device);
    let q = DiagonalGaussian::new(mean.clone(), log_var);
    let elbo = Elbo::with_kl_per_dim(Tensor::zeros([2], &device), q.kl_standard_normal_per_dim());
    let objective = ElboObjective::new().with_free_bits_nats(0.5);
    let loss = objective.loss(&elbo, 0);
    // Σ_l max(λ, mean_n KL_l) = max(0.5, 0.005) + 2.0
    assert!((to_vec(loss.clone())[0] - 2.5).abs() < 1e-12);
    let g = to_vec(mean.grad(&loss.backward()).unwrap());
    assert_eq!(
        g[0], 0.0,
        "dimension below the free-bits threshold still pushed"
    );
    assert!(
        (g[1] - 1.0).abs() < 1e-12,
        "dimension above the threshold: ∂/∂μ = μ / N = {}",
        g[1]
    );
}
