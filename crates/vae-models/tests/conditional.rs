//! The conditional VAE: the ELBO identity per class on a linear-Gaussian model with a closed
//! form, what the networks receive, and the configuration.

use burn::backend::NdArray;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use vae_core::{
    DiagonalGaussian, Gaussian, ImportanceSampling, KlEstimator, ObservationModel, Prior,
};
use vae_models::{
    Architecture, ArchitectureError, ConditionConfig, ConditionValue, Conditioned, ConvVaeConfig,
    Decoder, Encoder, ImageShape, MlpVaeConfig, PriorConfig, Vae, one_hot_classes,
};

type T = NdArray<f64>;
type Device = burn::tensor::Device<T>;

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

fn matrix(rows: &[Vec<f64>], device: &Device) -> Tensor<T, 2> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [r, c]), device)
}

/// y = [x | c] W + b: a custom encoder that sees what a conditional VAE gives it.
#[derive(Module, Debug)]
struct AffineEncoder<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
    latent: usize,
}

impl<B: Backend> Encoder<B> for AffineEncoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let out = x.matmul(self.weight.val()) + self.bias.val().unsqueeze_dim(0);
        let n = out.dims()[0];
        let l = self.latent;
        DiagonalGaussian::new(out.clone().slice([0..n, 0..l]), out.slice([0..n, l..2 * l]))
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }
}

/// p(x|z, c) = N([z | c] W, σ² I): a custom decoder on what a conditional VAE gives it.
#[derive(Module, Debug)]
struct AffineDecoder<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    log_sigma: f64,
}

impl<B: Backend> Decoder<B> for AffineDecoder<B> {
    type Output = Gaussian<B>;

    fn decode(&self, z: Tensor<B, 3>) -> Gaussian<B> {
        let [s, n, k] = z.dims();
        let d = self.weight.dims()[1];
        let mean = z
            .reshape([s * n, k])
            .matmul(self.weight.val())
            .reshape([s, n, d]);
        let log_scale = Tensor::full([1, 1, 1], self.log_sigma, &mean.device());
        Gaussian::new(mean, log_scale)
    }

    fn data_dim(&self) -> usize {
        self.weight.dims()[1]
    }
}

/// The linear-Gaussian conditional model: z ~ N(0, I₂), x | z, c ~ N(W z + b_c, σ² I₃) with
/// W = [[w₁, 0], [0, w₂], [0, 0]] (orthogonal columns: the true posterior is a diagonal
/// Gaussian and p(x|c) = N(b_c, diag(w₁² + σ², w₂² + σ², σ²)) in closed form).
struct LinearGaussian {
    w: [f64; 2],
    sigma: f64,
    /// b_k per class k, each in ℝ³.
    offsets: Vec<[f64; 3]>,
}

impl LinearGaussian {
    fn classes(&self) -> usize {
        self.offsets.len()
    }

    /// log p(x|c = k), nats.
    fn log_px(&self, x: &[f64; 3], k: usize) -> f64 {
        let variances = [
            self.w[0].powi(2) + self.sigma.powi(2),
            self.w[1].powi(2) + self.sigma.powi(2),
            self.sigma.powi(2),
        ];
        (0..3)
            .map(|i| {
                let r = x[i] - self.offsets[k][i];
                -0.5 * ((2.0 * std::f64::consts::PI * variances[i]).ln() + r * r / variances[i])
            })
            .sum()
    }

    /// The posterior precision of z_j, 1 + w_j² / σ², and the gain a_j of its mean
    /// a_j (x_j − b_{c,j}).
    fn posterior(&self, j: usize) -> (f64, f64) {
        let precision = 1.0 + self.w[j].powi(2) / self.sigma.powi(2);
        (precision, self.w[j] / self.sigma.powi(2) / precision)
    }

    /// The VAE whose encoder is the exact posterior q(z|x, c) = p(z|x, c) (shifted by `error`
    /// in its mean when non-zero) and whose decoder is the model.
    fn vae(&self, error: f64, device: &Device) -> Vae<T, AffineEncoder<T>, AffineDecoder<T>> {
        let (d, l, k) = (3, 2, self.classes());
        // Encoder rows: x₁, x₂, x₃, then the one-hot c; columns: μ₁, μ₂, ln σ₁², ln σ₂².
        let mut enc = vec![vec![0.0; 2 * l]; d + k];
        let mut bias = vec![error, -error, 0.0, 0.0];
        for j in 0..l {
            let (precision, gain) = self.posterior(j);
            enc[j][j] = gain;
            for (class, b) in self.offsets.iter().enumerate() {
                enc[d + class][j] = -gain * b[j];
            }
            bias[l + j] = -precision.ln();
        }
        // Decoder rows: z₁, z₂, then the one-hot c; columns: the three means.
        let mut dec = vec![vec![0.0; d]; l + k];
        dec[0][0] = self.w[0];
        dec[1][1] = self.w[1];
        for (class, b) in self.offsets.iter().enumerate() {
            dec[l + class] = b.to_vec();
        }
        let encoder = AffineEncoder {
            weight: Param::from_tensor(matrix(&enc, device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [2 * l]), device)),
            latent: l,
        };
        let decoder = AffineDecoder {
            weight: Param::from_tensor(matrix(&dec, device)),
            log_sigma: self.sigma.ln(),
        };
        Vae::new(encoder, decoder).with_condition(Some(ConditionConfig::Class { classes: k }))
    }
}

fn model() -> LinearGaussian {
    LinearGaussian {
        w: [1.5, -0.8],
        sigma: 0.6,
        offsets: vec![[0.0, 0.0, 0.0], [2.0, -1.0, 0.5], [-1.5, 0.7, -2.0]],
    }
}

const XS: [[f64; 3]; 3] = [[0.3, -0.2, 0.1], [1.7, -1.4, 0.9], [-1.0, 1.1, -1.6]];

/// Every (x, class) pair of the test, with the data `[N, D]` and one-hot conditions `[N, C]`.
type Pairs = (Vec<([f64; 3], usize)>, Tensor<T, 2>, Tensor<T, 2>);

/// Every (x, c) pair of the test: `[N, D]` data and `[N, C]` one-hot conditions.
fn pairs(classes: usize, device: &Device) -> Pairs {
    let pairs: Vec<_> = XS
        .iter()
        .flat_map(|x| (0..classes).map(move |k| (*x, k)))
        .collect();
    let x = matrix(
        &pairs.iter().map(|(x, _)| x.to_vec()).collect::<Vec<_>>(),
        device,
    );
    let labels: Vec<usize> = pairs.iter().map(|(_, k)| *k).collect();
    let c = one_hot_classes(&labels, classes, device);
    (pairs, x, c)
}

#[test]
fn with_the_exact_posterior_the_elbo_is_log_p_x_given_c_for_every_class_and_draw() {
    let device = Default::default();
    let truth = model();
    let vae = truth.vae(0.0, &device);
    let (pairs, x, c) = pairs(truth.classes(), &device);
    // The same x under different classes has log p(x|c) several nats apart: a model that
    // ignored c in either network would fail the comparison below.
    for x in &XS {
        let per_class: Vec<f64> = (0..3).map(|k| truth.log_px(x, k)).collect();
        let spread = per_class.iter().cloned().fold(f64::MIN, f64::max)
            - per_class.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 1.0, "classes too alike at {x:?}: {per_class:?}");
    }
    // log p(x|z,c) + log p(z) − log q(z|x,c) = log p(x|c) at every z when q = p(z|x,c): the
    // Monte-Carlo ELBO has zero variance and KL(q ‖ p(z|x,c)) = 0.
    let out = vae.forward(
        Conditioned::given(x.clone(), c.clone()),
        7,
        KlEstimator::MonteCarlo,
    );
    let elbo = values(out.elbo.elbo());
    let log_px_is = values(
        vae.log_px(
            Conditioned::given(x, c),
            &ImportanceSampling::new()
                .with_num_samples(3)
                .with_chunk_size(2),
        ),
    );
    for (i, (x, k)) in pairs.iter().enumerate() {
        let exact = truth.log_px(x, *k);
        assert!(
            (elbo[i] - exact).abs() < 1e-10,
            "class {k}, x {x:?}: ELBO {} vs log p(x|c) {exact}",
            elbo[i]
        );
        assert!(
            (log_px_is[i] - exact).abs() < 1e-10,
            "class {k}, x {x:?}: importance-sampled {} vs {exact}",
            log_px_is[i]
        );
    }
}

#[test]
fn with_another_posterior_the_gap_is_the_kl_to_the_true_posterior_per_class() {
    // log p(x|c) − ELBO(x, c) = KL(q(z|x,c) ‖ p(z|x,c)). q is the true posterior with its mean
    // moved by (δ, −δ), so the KL is ½ Σ_j precision_j δ² (equal variances); the ELBO with the
    // analytic KL has E_q log p(x|z,c) in closed form too, so check the library's terms exactly
    // through the Monte-Carlo ELBO's per-draw identity: mean over draws of
    // log p(x|z,c) + log p(z) − log q(z|x,c) = log p(x|c) − KL exactly when the draws are
    // symmetric about the mean (the error is linear in z − μ and the quadratic part is fixed by
    // the equal variances), which ±ε pairs are.
    let device = Default::default();
    let truth = model();
    let delta = 0.4;
    let vae = truth.vae(delta, &device);
    let (pairs, x, c) = pairs(truth.classes(), &device);
    let input = Conditioned::given(x.clone(), c.clone());
    let q = vae.encode(input.clone());
    let n = pairs.len();
    // ε and −ε for every example: [2, N, 2].
    let eps: Vec<f64> = (0..n * 2)
        .map(|i| ((i as f64) * 0.61).sin() * 1.3)
        .collect();
    let eps = Tensor::<T, 1>::from_data(TensorData::new(eps.clone(), [n * 2]), &device)
        .reshape([1, n, 2]);
    let eps = Tensor::cat(vec![eps.clone(), eps.neg()], 0);
    let z = q.reparameterize(eps);
    let log_w = vae.decode(Conditioned::given(z.clone(), c)).log_prob(x)
        + vae.prior().log_prob(z.clone())
        - q.log_prob(z);
    let elbo = values(log_w.mean_dim(0));
    let kl: f64 = (0..2)
        .map(|j| 0.5 * truth.posterior(j).0 * delta * delta)
        .sum();
    for (i, (x, k)) in pairs.iter().enumerate() {
        let expected = truth.log_px(x, *k) - kl;
        assert!(
            (elbo[i] - expected).abs() < 1e-10,
            "class {k}, x {x:?}: ELBO {} vs log p(x|c) − KL = {expected}",
            elbo[i]
        );
    }
}

#[test]
fn the_encoder_gets_x_then_c_and_the_decoder_z_then_c_for_every_sample() {
    let device = Default::default();
    let vae = model().vae(0.0, &device);
    let x = matrix(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]], &device);
    let c = one_hot_classes::<T>(&[2, 0], 3, &device);
    assert_eq!(
        values(vae.encoder_input(Conditioned::given(x, c.clone()))),
        vec![1.0, 2.0, 3.0, 0.0, 0.0, 1.0, 4.0, 5.0, 6.0, 1.0, 0.0, 0.0]
    );
    let z = Tensor::<T, 1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &device)
        .reshape([2, 2, 2]);
    assert_eq!(
        values(vae.decoder_input(Conditioned::given(z, c))),
        vec![
            1.0, 2.0, 0.0, 0.0, 1.0, 3.0, 4.0, 1.0, 0.0, 0.0, // sample 1
            5.0, 6.0, 0.0, 0.0, 1.0, 7.0, 8.0, 1.0, 0.0, 0.0, // sample 2
        ]
    );
}

#[test]
#[should_panic(expected = "this VAE is conditional (3 condition values per example)")]
fn a_conditional_model_without_its_condition_says_so() {
    let device = Default::default();
    let vae = model().vae(0.0, &device);
    vae.elbo(matrix(&[vec![1.0, 2.0, 3.0]], &device));
}

#[test]
fn built_in_models_take_the_condition_and_their_samples_depend_on_it() {
    let device = Default::default();
    let condition = ConditionConfig::Class { classes: 4 };
    let mlp = MlpVaeConfig::new(16, vec![8], 3).with_condition(Some(condition.clone()));
    let conv = ConvVaeConfig::new(ImageShape::new(1, 16, 16), vec![4, 8], 3)
        .with_condition(Some(condition));
    let c = one_hot_classes::<T>(&[0, 1, 2, 3], 4, &device);
    let mlp_vae = mlp.init::<T>(&device);
    let conv_vae = conv.init::<T>(&device);
    for (name, data_dim, elbo, means) in [
        (
            "mlp",
            16,
            {
                let x = Tensor::<T, 2>::full([4, 16], 0.5, &device);
                values(mlp_vae.elbo(Conditioned::given(x, c.clone())).elbo())
            },
            values(mlp_vae.decode_mean(Conditioned::given(
                Tensor::<T, 3>::zeros([1, 4, 3], &device),
                c.clone(),
            ))),
        ),
        (
            "conv",
            256,
            {
                let x = Tensor::<T, 2>::full([4, 256], 0.5, &device);
                values(conv_vae.elbo(Conditioned::given(x, c.clone())).elbo())
            },
            values(conv_vae.decode_mean(Conditioned::given(
                Tensor::<T, 3>::zeros([1, 4, 3], &device),
                c.clone(),
            ))),
        ),
    ] {
        assert!(elbo.iter().all(|v| v.is_finite()), "{name}: {elbo:?}");
        // The same z under four classes decodes to four different images.
        for a in 0..4 {
            for b in a + 1..4 {
                let (ra, rb) = (
                    &means[a * data_dim..(a + 1) * data_dim],
                    &means[b * data_dim..(b + 1) * data_dim],
                );
                let diff: f64 = ra.iter().zip(rb).map(|(u, v)| (u - v).abs()).sum();
                assert!(diff > 1e-6, "{name}: classes {a} and {b} decode alike");
            }
        }
    }
    assert_eq!(mlp_vae.condition_dim(), 4);
    assert_eq!(conv_vae.condition_dim(), 4);
}

#[test]
fn the_condition_is_configured_in_toml_validated_by_key_and_absent_by_default() {
    let toml_text = r#"
        kind = "mlp"
        input_dim = 784
        hidden = [400]
        latent_dim = 20
        activation = "relu"
        likelihood = { kind = "bernoulli" }
        condition = { kind = "class", classes = 10 }
    "#;
    let arch: Architecture = toml::from_str(toml_text).unwrap();
    let Architecture::Mlp(c) = &arch else {
        panic!("mlp expected")
    };
    assert_eq!(c.condition, Some(ConditionConfig::Class { classes: 10 }));
    assert_eq!(c.encoder().input_dim, 794);
    assert_eq!(c.decoder().latent_dim, 30);
    let back: Architecture = toml::from_str(&toml::to_string(&arch).unwrap()).unwrap();
    assert_eq!(
        toml::to_string(&back).unwrap(),
        toml::to_string(&arch).unwrap()
    );

    let plain: Architecture =
        toml::from_str(&toml_text.replace("condition = { kind = \"class\", classes = 10 }", ""))
            .unwrap();
    let Architecture::Mlp(plain) = plain else {
        panic!("mlp expected")
    };
    assert_eq!(plain.condition, None);
    assert_eq!(plain.init::<T>(&Default::default()).condition_dim(), 0);

    let one_class = MlpVaeConfig::new(784, vec![400], 20)
        .with_condition(Some(ConditionConfig::Class { classes: 1 }));
    assert!(matches!(
        one_class.validate(),
        Err(ArchitectureError::Setting { key, .. }) if key == "condition.classes"
    ));
    let vamp = MlpVaeConfig::new(784, vec![400], 20)
        .with_condition(Some(ConditionConfig::Class { classes: 10 }))
        .with_prior(Some(PriorConfig::Vamp { pseudo_inputs: 5 }));
    let error = vamp.validate().unwrap_err();
    assert!(
        matches!(&error, ArchitectureError::Setting { key, .. } if key == "prior"),
        "{error}"
    );
    assert!(error.to_string().contains("VampPrior"), "{error}");
    let mixture = MlpVaeConfig::new(784, vec![400], 20)
        .with_condition(Some(ConditionConfig::Class { classes: 10 }))
        .with_prior(Some(PriorConfig::Mixture { components: 3 }));
    mixture.validate().unwrap();
}

#[test]
fn attributes_are_a_condition_by_name_validated_and_turned_into_vectors() {
    let toml_text = r#"
        kind = "mlp"
        input_dim = 16
        hidden = [8]
        latent_dim = 3
        activation = "relu"
        likelihood = { kind = "bernoulli" }
        condition = { kind = "attributes", names = ["Smiling", "Eyeglasses", "Male"] }
    "#;
    let arch: Architecture = toml::from_str(toml_text).unwrap();
    let Architecture::Mlp(c) = &arch else {
        panic!("mlp expected")
    };
    let condition = c.condition.clone().expect("a condition");
    assert_eq!(condition.width(), 3);
    assert_eq!(c.encoder().input_dim, 19);
    assert_eq!(c.decoder().latent_dim, 6);
    let back: Architecture = toml::from_str(&toml::to_string(&arch).unwrap()).unwrap();
    assert_eq!(
        toml::to_string(&back).unwrap(),
        toml::to_string(&arch).unwrap()
    );

    // A value names the attributes present, in any order; the vector follows the model's.
    let on =
        |names: &[&str]| ConditionValue::Attributes(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        condition.vector(&on(&["Male", "Smiling"])).unwrap(),
        vec![1.0, 0.0, 1.0]
    );
    assert_eq!(condition.vector(&on(&[])).unwrap(), vec![0.0; 3]);
    let unknown = condition.vector(&on(&["Smiling", "Young"])).unwrap_err();
    assert!(
        unknown.to_string().contains("'Young'")
            && unknown.to_string().contains("Smiling, Eyeglasses, Male"),
        "{unknown}"
    );
    assert!(condition.vector(&ConditionValue::Class(0)).is_err());
    // The picture's rows: none, then each attribute alone.
    let rows = condition.picture_rows();
    let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["none", "Smiling", "Eyeglasses", "Male"]);
    assert_eq!(rows[2].1, vec![0.0, 1.0, 0.0]);
    let classes = ConditionConfig::Class { classes: 3 };
    assert_eq!(
        classes.vector(&ConditionValue::Class(2)).unwrap(),
        vec![0.0, 0.0, 1.0]
    );
    assert!(
        classes
            .vector(&ConditionValue::Class(3))
            .unwrap_err()
            .to_string()
            .contains("0 to 2")
    );
    assert_eq!(classes.picture_rows().len(), 3);

    // The model's condition_of: [n, C] rows of the value; refused for an unconditional model.
    let device = Default::default();
    let vae = c.init::<T>(&device);
    let given = vae.condition_of(&on(&["Eyeglasses"]), 2, &device).unwrap();
    assert_eq!(values(given), vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    let plain = MlpVaeConfig::new(16, vec![8], 3).init::<T>(&device);
    let refused = plain
        .condition_of(&ConditionValue::Class(1), 2, &device)
        .unwrap_err();
    assert!(refused.to_string().contains("not conditional"), "{refused}");

    for (names, problem) in [
        (vec![], "at least one"),
        (vec!["Smiling", "Smiling"], "twice"),
        (vec!["Smiling,Male"], "not an attribute name"),
        (vec!["Big Nose"], "not an attribute name"),
    ] {
        let names = names.into_iter().map(String::from).collect();
        let config = MlpVaeConfig::new(16, vec![8], 3)
            .with_condition(Some(ConditionConfig::Attributes { names }));
        let error = config.validate().unwrap_err();
        assert!(
            matches!(&error, ArchitectureError::Setting { key, .. } if key == "condition.names")
                && error.to_string().contains(problem),
            "{error}"
        );
    }
}
