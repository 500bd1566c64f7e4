//! Learned priors in the VAE: the VampPrior's definition, training, configuration, and loading
//! the weights of runs saved before priors were learnable.

use std::marker::PhantomData;

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use vae_core::{DiagonalGaussian, KlEstimator, Posterior, Prior};
use vae_models::{
    Architecture, ArchitectureError, ConvVaeConfig, Encoder, ImageShape, LearnedPrior, MlpDecoder,
    MlpEncoder, MlpVaeConfig, PriorConfig, persist,
};

type B = NdArray<f64>;
type Ad = Autodiff<B>;

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

#[test]
fn a_vamp_prior_with_one_pseudo_input_is_the_encoders_posterior_there() {
    let device = Default::default();
    let (d, l, s, n) = (12, 3, 2, 4);
    let vae = MlpVaeConfig::new(d, vec![8], l)
        .with_prior(Some(PriorConfig::Vamp { pseudo_inputs: 1 }))
        .init::<B>(&device);
    let Some(LearnedPrior::Vamp(vamp)) = &vae.prior else {
        panic!("a VampPrior was configured")
    };
    let u = vamp.pseudo_inputs.val();
    assert_eq!(u.dims(), [1, d]);
    let q = vae.encode(u);
    let rows = DiagonalGaussian::new(q.mean().repeat_dim(0, n), q.log_var().repeat_dim(0, n));
    let z = Tensor::<B, 3>::random([s, n, l], Distribution::Normal(0.0, 1.0), &device);
    let prior = values(vae.prior().log_prob(z.clone()));
    let gaussian = values(rows.log_prob(z));
    for (p, g) in prior.iter().zip(&gaussian) {
        assert!((p - g).abs() < 1e-12, "VampPrior {p} vs q(z|u) {g}");
    }
}

#[test]
fn learned_priors_enter_the_elbo_and_are_trained() {
    let device = Default::default();
    Ad::seed(&device, 5);
    let x = Tensor::<Ad, 2>::random([16, 12], Distribution::Uniform(0.0, 1.0), &device).round();
    for prior in [
        PriorConfig::Mixture { components: 3 },
        PriorConfig::Vamp { pseudo_inputs: 4 },
    ] {
        let mut vae = MlpVaeConfig::new(12, vec![8], 2)
            .with_prior(Some(prior))
            .init::<Ad>(&device);
        let before = vae.prior.clone().unwrap().valid();
        // The KL is the Monte-Carlo estimate against this prior, from the same z.
        let out = vae.forward(x.clone(), 1, KlEstimator::Analytic);
        assert!(
            out.elbo.kl_per_dim.is_none(),
            "{prior:?}: no closed-form KL"
        );
        let log_ratio = out.posterior.log_prob(out.z.clone()) - vae.prior().log_prob(out.z.clone());
        let expected = values(log_ratio.inner().squeeze_dim::<1>(0));
        for (kl, e) in values(out.elbo.kl.clone().inner()).iter().zip(&expected) {
            assert!((kl - e).abs() < 1e-12, "{prior:?}: KL {kl} vs {e}");
        }
        let mut optim = AdamConfig::new().init();
        let grads = GradientsParams::from_grads(out.elbo.loss().backward(), &vae);
        vae = optim.step(1e-2, vae, grads);
        let after = vae.prior.clone().unwrap().valid();
        let changed = match (before, after) {
            (LearnedPrior::Mixture(a), LearnedPrior::Mixture(b)) => {
                values(a.means.val()) != values(b.means.val())
                    && values(a.logits.val()) != values(b.logits.val())
            }
            (LearnedPrior::Vamp(a), LearnedPrior::Vamp(b)) => {
                values(a.pseudo_inputs.val()) != values(b.pseudo_inputs.val())
            }
            _ => false,
        };
        assert!(changed, "{prior:?}: the prior's parameters did not train");
        // Samples come from the prior and decode to images.
        assert_eq!(vae.valid().sample(5, &device).dims(), [5, 12]);
    }
}

/// The `Vae` module as it was before learned priors: encoder, decoder, nothing else.
#[derive(Module, Debug)]
struct VaeWithoutPrior<B: Backend> {
    encoder: MlpEncoder<B>,
    decoder: MlpDecoder<B>,
    backend: PhantomData<B>,
}

#[test]
fn weights_saved_before_learned_priors_load_with_the_standard_normal() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let config = MlpVaeConfig::new(12, vec![8], 2);
    let old = config.init::<B>(&device);
    let old = VaeWithoutPrior {
        encoder: old.encoder,
        decoder: old.decoder,
        backend: PhantomData,
    };
    let x = Tensor::<B, 2>::random([3, 12], Distribution::Uniform(0.0, 1.0), &device);
    let expected = values(old.encoder.encode(x.clone()).mean());
    let path = dir.path().join("model");
    persist::save_record(old, &path).unwrap();
    let loaded = persist::load_record(config.init::<B>(&device), &path, &device).unwrap();
    assert!(loaded.prior.is_none());
    assert!(loaded.flow.is_none(), "no flow: the encoder's Gaussian");
    // The recorder stores f32.
    for (a, e) in values(loaded.encode(x).mean()).iter().zip(&expected) {
        assert!((a - e).abs() < 1e-6, "{a} vs {e}");
    }
}

#[test]
fn priors_are_chosen_in_the_configuration_and_checked() {
    let parsed: Architecture = toml::from_str(
        r#"
        kind = "mlp"
        input_dim = 784
        hidden = [200, 200]
        latent_dim = 50
        activation = "tanh"
        likelihood = { kind = "bernoulli" }
        prior = { kind = "vamp", pseudo_inputs = 500 }
        "#,
    )
    .unwrap();
    let Architecture::Mlp(mlp) = &parsed else {
        panic!("expected an MLP")
    };
    assert_eq!(mlp.prior, Some(PriorConfig::Vamp { pseudo_inputs: 500 }));
    let text = toml::to_string(&parsed).unwrap();
    assert!(text.contains("pseudo_inputs = 500"), "{text}");

    // Configurations written before priors existed mean the standard normal.
    let old: Architecture =
        toml::from_str(
        "kind = \"mlp\"\ninput_dim = 784\nhidden = [400]\nlatent_dim = 20\nactivation = \"relu\"\nlikelihood = { kind = \"bernoulli\" }\n",
    )
            .unwrap();
    let Architecture::Mlp(old) = old else {
        panic!("expected an MLP")
    };
    assert_eq!(old.prior, None);

    let err = MlpVaeConfig::new(784, vec![400], 20)
        .with_prior(Some(PriorConfig::Mixture { components: 0 }))
        .validate()
        .unwrap_err();
    assert_eq!(
        err,
        ArchitectureError::Setting {
            key: "prior.components".into(),
            expected: "must be ≥ 1".into()
        }
    );
    assert!(err.to_string().contains("model.prior.components"), "{err}");
    let conv = ConvVaeConfig::new(ImageShape::new(1, 16, 16), vec![4], 2)
        .with_prior(Some(PriorConfig::Vamp { pseudo_inputs: 0 }));
    assert!(conv.validate().is_err());
    let bad: Result<Architecture, _> = toml::from_str(
        "kind = \"mlp\"\ninput_dim = 4\nhidden = [4]\nlatent_dim = 2\nactivation = \"relu\"\nlikelihood = { kind = \"bernoulli\" }\nprior = { kind = \"vamp\", components = 3 }\n",
    );
    assert!(bad.is_err(), "a misspelt key is refused");
}
