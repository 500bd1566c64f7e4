//! Flow posteriors in the VAE: the IAF's log-determinant against the autodiff Jacobian, its
//! inverse, its density (normalised, consistent at draws and anywhere), training, and the
//! configuration.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use vae_core::{
    DiagonalGaussian, Flow, FlowPosterior, KlEstimator, Posterior, PosteriorSamples, Prior,
};
use vae_models::{Architecture, ArchitectureError, Iaf, MlpVaeConfig, PosteriorConfig};

type B = NdArray<f64>;
type Ad = Autodiff<B>;

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// A base Gaussian for `n` examples over `l` latents with varied parameters.
fn base<Bk: Backend>(n: usize, l: usize, device: &Bk::Device) -> DiagonalGaussian<Bk> {
    let mean: Vec<f64> = (0..n * l).map(|i| ((i as f64) * 0.37).sin()).collect();
    let log_var: Vec<f64> = (0..n * l)
        .map(|i| ((i as f64) * 0.71).cos() * 0.5)
        .collect();
    DiagonalGaussian::new(
        Tensor::from_data(TensorData::new(mean, [n, l]), device),
        Tensor::from_data(TensorData::new(log_var, [n, l]), device),
    )
}

/// det of a small square matrix by Gaussian elimination with partial pivoting.
fn determinant(mut a: Vec<Vec<f64>>) -> f64 {
    let n = a.len();
    let mut det = 1.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        if p != c {
            a.swap(p, c);
            det = -det;
        }
        det *= a[c][c];
        let (upper, lower) = a.split_at_mut(c + 1);
        let pivot = &upper[c];
        for row in lower {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
        }
    }
    det
}

#[test]
fn the_iaf_log_determinant_is_that_of_the_autodiff_jacobian() {
    let device = Default::default();
    let (l, n) = (4, 3);
    Ad::seed(&device, 3);
    let flow = Iaf::<Ad>::new(l, 3, 16, &device);
    let q0 = base::<Ad>(n, l, &device);
    let z0_values: Vec<f64> = (0..n * l).map(|i| ((i as f64) * 1.3).sin() * 1.2).collect();
    let z0 = || {
        Tensor::<Ad, 3>::from_data(TensorData::new(z0_values.clone(), [1, n, l]), &device)
            .require_grad()
    };
    let (_, log_det) = flow.forward(z0(), &q0);
    let log_det = values(log_det);
    for example in 0..n {
        // Row i of ∂z/∂z₀ for this example: the gradient of z[example, i].
        let jacobian: Vec<Vec<f64>> = (0..l)
            .map(|i| {
                let z0 = z0();
                let (z, _) = flow.forward(z0.clone(), &q0);
                let grads = z
                    .slice([0..1, example..example + 1, i..i + 1])
                    .sum()
                    .backward();
                let row = values(z0.grad(&grads).unwrap());
                row[example * l..(example + 1) * l].to_vec()
            })
            .collect();
        let expected = determinant(jacobian.clone()).abs().ln();
        assert!(
            (log_det[example] - expected).abs() < 1e-10,
            "example {example}: log-det {} vs log|det J| {expected} (J = {jacobian:?})",
            log_det[example]
        );
        // A diagonal J would pass the determinant check trivially: make sure the flow
        // couples latents.
        let off_diagonal = (0..l)
            .flat_map(|i| (0..l).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| jacobian[i][j].abs())
            .fold(0.0, f64::max);
        assert!(off_diagonal > 1e-3, "the flow mixes latents");
    }
}

#[test]
fn the_iaf_inverse_recovers_its_input_and_the_density_anywhere_matches_the_draws() {
    let device = Default::default();
    let (l, n, s) = (5, 4, 3);
    B::seed(&device, 4);
    let flow = Iaf::<B>::new(l, 2, 12, &device);
    let q0 = base::<B>(n, l, &device);
    let z0 = Tensor::<B, 3>::random([s, n, l], Distribution::Normal(0.0, 1.0), &device);
    let (z, _) = flow.forward(z0.clone(), &q0);
    let back = values(flow.inverse(z, &q0));
    for (a, e) in back.iter().zip(values(z0)) {
        assert!((a - e).abs() < 1e-10, "f⁻¹(f(z₀)) = {a} vs z₀ = {e}");
    }
    let q = FlowPosterior::new(q0, flow);
    let draws = q.rsample_with_log_prob(s);
    let anywhere = values(PosteriorSamples::at(&q, draws.z.clone()).log_q);
    for (a, e) in anywhere.iter().zip(values(draws.log_q)) {
        assert!(
            (a - e).abs() < 1e-9,
            "log q at a draw {e} vs through f⁻¹ {a}"
        );
    }
    assert!(q.entropy().is_none() && q.gaussian().is_none());
}

#[test]
fn the_iaf_density_integrates_to_one() {
    // Two latents: ∫∫ q(z) dz by the midpoint rule on a grid wide enough for the tails.
    let device = Default::default();
    B::seed(&device, 6);
    let (l, side, half_width) = (2, 400, 9.0);
    let q = FlowPosterior::new(base::<B>(1, l, &device), Iaf::<B>::new(l, 2, 8, &device));
    let h = 2.0 * half_width / side as f64;
    let grid: Vec<f64> = (0..side * side)
        .flat_map(|i| {
            let (a, b) = (i / side, i % side);
            [
                -half_width + (a as f64 + 0.5) * h,
                -half_width + (b as f64 + 0.5) * h,
            ]
        })
        .collect();
    let z = Tensor::<B, 3>::from_data(TensorData::new(grid, [side * side, 1, l]), &device);
    let mass: f64 = values(q.log_prob(z)).iter().map(|v| v.exp()).sum::<f64>() * h * h;
    assert!((mass - 1.0).abs() < 1e-4, "∫ q = {mass}");
}

#[test]
fn an_iaf_vae_has_a_monte_carlo_kl_from_its_draws_and_trains_its_flow() {
    let device = Default::default();
    Ad::seed(&device, 7);
    let x = Tensor::<Ad, 2>::random([8, 12], Distribution::Uniform(0.0, 1.0), &device).round();
    let vae = MlpVaeConfig::new(12, vec![8], 3)
        .with_posterior(Some(PosteriorConfig::Iaf {
            steps: 2,
            hidden: 6,
        }))
        .init::<Ad>(&device);
    assert_eq!(vae.flow.as_ref().map(Iaf::steps), Some(2));
    let out = vae.forward(x.clone(), 4, KlEstimator::Analytic);
    assert!(
        out.elbo.kl_per_dim.is_none(),
        "no closed form through a flow"
    );
    let mc = values(
        (out.log_q.clone() - vae.prior().log_prob(out.z.clone()))
            .mean_dim(0)
            .squeeze_dim::<1>(0),
    );
    for (kl, e) in values(out.elbo.kl.clone()).iter().zip(&mc) {
        assert!((kl - e).abs() < 1e-12, "KL {kl} vs mean(log q − log p) {e}");
    }
    // log q at the draws is the flow's density there, not the base Gaussian's.
    let base = values(out.posterior.base().log_prob(out.z.clone()));
    assert!(
        values(out.log_q.clone())
            .iter()
            .zip(&base)
            .any(|(a, b)| (a - b).abs() > 1e-6)
    );
    let grads = out.elbo.loss().backward();
    let flow = vae.flow.clone().unwrap();
    let mut reached = false;
    flow.visit(&mut GradientSeen {
        grads: &grads,
        seen: &mut reached,
    });
    assert!(reached, "the ELBO's gradient reaches the flow's weights");
    let _ = flow.valid();
}

struct GradientSeen<'a> {
    grads: &'a <Ad as burn::tensor::backend::AutodiffBackend>::Gradients,
    seen: &'a mut bool,
}

impl burn::module::ModuleVisitor<Ad> for GradientSeen<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<Ad, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            *self.seen |= values(g).iter().any(|v| *v != 0.0);
        }
    }
}

#[test]
fn posterior_families_are_chosen_in_the_configuration_and_checked() {
    let parsed: Architecture = toml::from_str(
        r#"
        kind = "mlp"
        input_dim = 784
        hidden = [200, 200]
        latent_dim = 50
        activation = "tanh"
        likelihood = { kind = "bernoulli" }
        posterior = { kind = "iaf", steps = 2, hidden = 320 }
        "#,
    )
    .unwrap();
    let Architecture::Mlp(mlp) = &parsed else {
        panic!("expected an MLP")
    };
    assert_eq!(
        mlp.posterior,
        Some(PosteriorConfig::Iaf {
            steps: 2,
            hidden: 320
        })
    );
    assert!(toml::to_string(&parsed).unwrap().contains("hidden = 320"));
    let err = MlpVaeConfig::new(784, vec![400], 20)
        .with_posterior(Some(PosteriorConfig::Iaf {
            steps: 0,
            hidden: 8,
        }))
        .validate()
        .unwrap_err();
    assert_eq!(
        err,
        ArchitectureError::Setting {
            key: "posterior.steps".into(),
            expected: "must be ≥ 1".into()
        }
    );
    assert!(err.to_string().contains("model.posterior.steps"), "{err}");
}
