//! Shapes, output ranges, learning, persistence and configuration of the built-in models.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use vae_core::{ImportanceSampling, ObservationModel};
use vae_models::{
    Activation, Architecture, ArchitectureError, ConvVaeConfig, Decoder, Encoder, GaussianScale,
    ImageShape, Likelihood, MlpVaeConfig, TrainableDecoder, TrainableEncoder, Vae, persist,
};

type B = NdArray<f32>;
type Ad = Autodiff<B>;

const LIKELIHOODS: [Likelihood; 6] = [
    Likelihood::Bernoulli,
    Likelihood::ContinuousBernoulli,
    Likelihood::Gaussian {
        scale: GaussianScale::Fixed { sigma: 0.1 },
    },
    Likelihood::Gaussian {
        scale: GaussianScale::LearnedShared,
    },
    Likelihood::Gaussian {
        scale: GaussianScale::LearnedPerDim,
    },
    Likelihood::Gaussian {
        scale: GaussianScale::Optimal,
    },
];

fn pixels<Bk: Backend>(n: usize, d: usize, device: &Bk::Device) -> Tensor<Bk, 2> {
    Tensor::random([n, d], Distribution::Uniform(0.0, 1.0), device)
}

fn values(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Checks every public shape of a model and that its means lie in [0, 1].
fn check_shapes<E: Encoder<B>, D: Decoder<B>>(vae: &Vae<B, E, D>, d: usize, l: usize) {
    let device = Default::default();
    let (n, s) = (3, 2);
    let x = pixels::<B>(n, d, &device);
    let q = vae.encode(x.clone());
    assert_eq!(q.mean().dims(), [n, l]);
    let out = vae.forward(x.clone(), s, vae_core::KlEstimator::Analytic);
    assert_eq!(out.z.dims(), [s, n, l]);
    assert_eq!(out.likelihood.dims(), [s, n, d]);
    assert_eq!(out.elbo.log_likelihood.dims(), [n]);
    assert_eq!(vae.iwae_bound(x.clone(), 4).dims(), [n]);
    let log_px = vae.log_px(
        x.clone(),
        &ImportanceSampling::new()
            .with_num_samples(6)
            .with_chunk_size(4),
    );
    assert_eq!(log_px.dims(), [n]);
    for image in [vae.reconstruct(x.clone()), vae.sample(5, &device)] {
        let v = image.into_data().to_vec::<f32>().unwrap();
        assert!(
            v.iter().all(|p| (0.0..=1.0).contains(p)),
            "mean outside [0, 1]"
        );
    }
    let kl = values(out.elbo.kl);
    assert!(kl.iter().all(|k| *k >= 0.0 && k.is_finite()));
    assert!(
        values(out.elbo.log_likelihood)
            .iter()
            .all(|v| v.is_finite())
    );
}

#[test]
fn mlp_presets_have_the_published_shapes() {
    let device = Default::default();
    let kw = MlpVaeConfig::kingma_welling(784);
    assert_eq!((kw.hidden.clone(), kw.latent_dim), (vec![400], 20));
    let iwae = MlpVaeConfig::iwae_paper(784);
    assert_eq!(
        (iwae.hidden.clone(), iwae.latent_dim, iwae.activation),
        (vec![200, 200], 50, Activation::Tanh)
    );
    for config in [kw, iwae] {
        let vae = config.init::<B>(&device);
        check_shapes(&vae, 784, config.latent_dim);
        // 784·400 + 400 + 400·40 + 40 + 20·400 + 400 + 400·784 + 784 for Kingma & Welling.
        if config.hidden == [400] {
            assert_eq!(vae.num_params(), 652_824);
        }
    }
}

#[test]
fn every_likelihood_gives_finite_terms_and_means_in_range() {
    let device = Default::default();
    for likelihood in LIKELIHOODS {
        let vae = MlpVaeConfig::new(12, vec![8], 3)
            .with_likelihood(likelihood)
            .init::<B>(&device);
        check_shapes(&vae, 12, 3);
    }
}

#[test]
fn conv_models_fit_every_power_of_two_image() {
    let device = Default::default();
    for (channels, side, widths) in [
        (1, 16, vec![4, 8]),
        (3, 16, vec![4, 8, 8, 8]),
        (3, 32, vec![4, 8, 16]),
        (1, 64, vec![4, 8, 8, 8, 8, 8]),
    ] {
        let config = ConvVaeConfig::new(ImageShape::new(channels, side, side), widths, 5)
            .with_likelihood(Likelihood::Gaussian {
                scale: GaussianScale::LearnedShared,
            });
        let vae = config.init::<B>(&device);
        check_shapes(&vae, channels * side * side, 5);
    }
}

#[test]
fn celeba_preset_matches_the_common_64x64_vae() {
    let device = Default::default();
    let config = ConvVaeConfig::celeba_64(Likelihood::Gaussian {
        scale: GaussianScale::LearnedShared,
    });
    assert_eq!(config.channels, vec![32, 64, 128, 256, 512]);
    assert_eq!(
        (config.latent_dim, config.image.num_values()),
        (128, 3 * 64 * 64)
    );
    let vae = config.init::<B>(&device);
    // One image through each half (the full shape suite runs on the smaller conv models; at
    // 64×64 with 512 channels it is CPU-minutes on ndarray).
    let start = std::time::Instant::now();
    let x = pixels::<B>(1, 3 * 64 * 64, &device);
    let q = vae.encode(x.clone());
    assert_eq!(q.mean().dims(), [1, 128]);
    let decoded = vae.decode(q.rsample(1));
    assert_eq!(decoded.dims(), [1, 1, 3 * 64 * 64]);
    eprintln!(
        "celeba preset: one encode + decode in {:?}",
        start.elapsed()
    );
}

#[test]
fn bad_architectures_are_rejected_with_a_reason() {
    let not_square = ConvVaeConfig::new(ImageShape::new(3, 64, 32), vec![8], 4);
    assert!(matches!(
        not_square.validate(),
        Err(ArchitectureError::ImageShape(_))
    ));
    let too_deep = ConvVaeConfig::new(ImageShape::new(3, 16, 16), vec![8; 5], 4);
    let err = too_deep.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "5 downsampling blocks would shrink a 16×16 image below 1×1"
    );
    let mlp = Architecture::Mlp(MlpVaeConfig::kingma_welling(784));
    assert!(mlp.validate(Some(784)).is_ok());
    assert_eq!(
        mlp.validate(Some(3072)).unwrap_err(),
        ArchitectureError::InputDim {
            expected: 784,
            actual: 3072
        }
    );
    let bad_sigma = Architecture::Mlp(MlpVaeConfig::new(4, vec![4], 2).with_likelihood(
        Likelihood::Gaussian {
            scale: GaussianScale::Fixed { sigma: 0.0 },
        },
    ));
    assert!(
        bad_sigma
            .validate(None)
            .unwrap_err()
            .to_string()
            .contains("sigma")
    );
}

/// A few Adam steps on one fixed batch: returns (loss before, loss after, ELBO before, after),
/// each loss evaluated with the same latent noise (same backend seed).
fn train_steps<E, D>(mut vae: Vae<Ad, E, D>, x: Tensor<Ad, 2>, steps: usize, lr: f64) -> [f32; 2]
where
    E: TrainableEncoder<Ad>,
    D: TrainableDecoder<Ad>,
{
    let device = x.device();
    let mut optim = AdamConfig::new().init();
    let evaluate = |vae: &Vae<Ad, E, D>| {
        Ad::seed(&device, 99);
        vae.elbo(x.clone()).loss().into_scalar()
    };
    let before = evaluate(&vae);
    for _ in 0..steps {
        let loss = vae.elbo(x.clone()).loss();
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        vae = optim.step(lr, vae, grads);
    }
    [before, evaluate(&vae)]
}

#[test]
fn a_few_steps_lower_the_loss_and_raise_the_elbo() {
    let device = Default::default();
    Ad::seed(&device, 1);
    let x = pixels::<Ad>(16, 64, &device).round(); // binary 8×8 "images"
    let mlp = MlpVaeConfig::new(64, vec![32], 4).init::<Ad>(&device);
    let [before, after] = train_steps(mlp, x.clone(), 30, 1e-2);
    eprintln!("mlp: −ELBO {before:.2} → {after:.2}");
    assert!(after < before - 1.0, "mlp −ELBO {before} → {after}");

    let x = pixels::<Ad>(8, 3 * 16 * 16, &device);
    let conv = ConvVaeConfig::new(ImageShape::new(3, 16, 16), vec![8, 16], 4)
        .with_likelihood(Likelihood::Gaussian {
            scale: GaussianScale::LearnedShared,
        })
        .init::<Ad>(&device);
    let [before, after] = train_steps(conv, x, 20, 1e-2);
    eprintln!("conv: −ELBO {before:.2} → {after:.2}");
    assert!(after < before - 1.0, "conv −ELBO {before} → {after}");
}

/// Outputs that depend on every weight and buffer: posterior means and reconstructions.
fn fingerprint<E: Encoder<B>, D: Decoder<B>>(vae: &Vae<B, E, D>, x: Tensor<B, 2>) -> Vec<f32> {
    let mut v = vae
        .encode(x.clone())
        .mean()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    v.extend(vae.reconstruct(x).into_data().to_vec::<f32>().unwrap());
    v
}

#[test]
fn save_then_load_is_bit_identical() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    // Train the conv model a step so batch-norm running statistics are not their defaults.
    let config = ConvVaeConfig::new(ImageShape::new(1, 16, 16), vec![4, 8], 3).with_likelihood(
        Likelihood::Gaussian {
            scale: GaussianScale::LearnedPerDim,
        },
    );
    let x = pixels::<Ad>(4, 256, &device);
    let mut trained = config.init::<Ad>(&device);
    let grads = GradientsParams::from_grads(trained.elbo(x.clone()).loss().backward(), &trained);
    trained = AdamConfig::new().init().step(1e-2, trained, grads);
    let trained = trained.valid();
    let x = x.inner();
    let expected = fingerprint(&trained, x.clone());

    let record = dir.path().join("model");
    persist::save_record(trained.clone(), &record).unwrap();
    let loaded = persist::load_record(config.init::<B>(&device), &record, &device).unwrap();
    assert_eq!(
        fingerprint(&loaded, x.clone()),
        expected,
        "recorder round trip"
    );

    let tensors = dir.path().join("model.safetensors");
    persist::save_safetensors(&trained, &tensors).unwrap();
    let loaded = persist::load_safetensors(config.init::<B>(&device), &tensors).unwrap();
    assert_eq!(
        fingerprint(&loaded, x.clone()),
        expected,
        "safetensors round trip"
    );

    // A file for another architecture is refused, naming the file.
    let other = MlpVaeConfig::new(256, vec![8], 3).init::<B>(&device);
    let err = persist::load_safetensors(other, &tensors).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    let err = persist::load_safetensors(config.init::<B>(&device), &dir.path().join("missing"))
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn configurations_round_trip_through_json_and_toml() {
    for architecture in [
        Architecture::Mlp(MlpVaeConfig::iwae_paper(784)),
        Architecture::Conv(ConvVaeConfig::celeba_64(Likelihood::Gaussian {
            scale: GaussianScale::Fixed { sigma: 0.05 },
        })),
    ] {
        let json = serde_json::to_string(&architecture).unwrap();
        let back: Architecture = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let toml_text = toml::to_string(&architecture).unwrap();
        let back: Architecture = toml::from_str(&toml_text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
    let parsed: Architecture = toml::from_str(
        r#"
        kind = "mlp"
        input_dim = 784
        hidden = [400]
        latent_dim = 20
        activation = "leaky-relu"
        likelihood = { kind = "gaussian", scale = "learned-shared" }
        "#,
    )
    .unwrap();
    let Architecture::Mlp(mlp) = parsed else {
        panic!("expected an MLP")
    };
    assert_eq!(mlp.activation, Activation::LeakyRelu);
    assert_eq!(
        mlp.likelihood,
        Likelihood::Gaussian {
            scale: GaussianScale::LearnedShared
        }
    );
}
