//! Why is the VAE loss −ELBO? Every term of the ELBO for one image, by hand and by the library,
//! with its sign.
//!
//! ```text
//! cargo run --example elbo_by_hand
//! ```
//!
//! Trains the Kingma & Welling MLP briefly on Fashion-MNIST (Debian's copy, or `$VAE_DATA_DIR`;
//! random pixels if neither exists) so the numbers are those of a real model, then takes one
//! test image apart.

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};
use vae::core::{ImportanceSampling, ObservationModel};
use vae::data::{DataRoots, IdxOptions, IdxSplits, ImageBatch, ImageBatcher, ImageItem, locate};
use vae::models::MlpVaeConfig;

type B = Autodiff<Flex>;

type Images = Arc<dyn Dataset<ImageItem>>;

/// Training and test images, and where they came from.
fn data() -> (Images, Images, &'static str) {
    let found = locate("fashion-mnist", None, &DataRoots::from_env(), None)
        .ok()
        .and_then(|l| IdxSplits::load(&l.dir, l.entry.family.unwrap(), IdxOptions::default()).ok());
    match found {
        Some(splits) => (
            Arc::new(splits.train.limit(5000)),
            Arc::new(splits.test),
            "Fashion-MNIST",
        ),
        None => {
            let random = |n: usize| {
                let items: Vec<ImageItem> = (0..n)
                    .map(|i| {
                        ImageItem::new((0..784).map(|p| ((p * 7 + i * 13) % 256) as u8).collect())
                    })
                    .collect();
                Arc::new(burn::data::dataset::InMemDataset::new(items))
                    as Arc<dyn Dataset<ImageItem>>
            };
            (
                random(512),
                random(16),
                "synthetic pixels (Fashion-MNIST not found)",
            )
        }
    }
}

fn batch(data: &dyn Dataset<ImageItem>, range: std::ops::Range<usize>) -> Tensor<B, 2> {
    let items = range.filter_map(|i| data.get(i)).collect();
    let b: ImageBatch<B> = ImageBatcher::new().batch(items, &Default::default());
    b.images
}

fn main() {
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 7);
    let (train, test, source) = data();
    println!("data: {source}");

    // A few hundred steps of Adam on −ELBO.
    let mut vae = MlpVaeConfig::kingma_welling(784).init::<B>(&device);
    let mut optim = AdamConfig::new().init();
    for step in 0..300 {
        let start = (step * 128) % (train.len() - 128);
        let loss = vae.elbo(batch(train.as_ref(), start..start + 128)).loss();
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        vae = optim.step(1e-3, vae, grads);
    }
    let vae = vae.valid();

    // One test image x ∈ [0, 1]^784.
    let x = batch(test.as_ref(), 0..1).inner();
    let pixels: Vec<f64> = x.to_data().convert::<f64>().to_vec().unwrap();

    // 1. Encoder: q(z|x) = N(μ, diag σ²).
    let q = vae.encode(x.clone());
    let mu: Vec<f64> = q.mean().into_data().convert::<f64>().to_vec().unwrap();
    let log_var: Vec<f64> = q.log_var().into_data().convert::<f64>().to_vec().unwrap();

    // 2. Reparameterise: z = μ + σ ⊙ ε with ε ~ N(0, I).
    let eps = Tensor::<Flex, 3>::random([1, 1, 20], Distribution::Normal(0.0, 1.0), &device);
    let z = q.reparameterize(eps.clone());
    let eps: Vec<f64> = eps.into_data().convert::<f64>().to_vec().unwrap();

    // 3. Decoder: Bernoulli logits η(z); log p(x|z) = Σ_d [x_d η_d − log(1 + e^{η_d})].
    let likelihood = vae.decode(z);
    let logits: Vec<f64> = match &likelihood {
        vae::models::DecodedLikelihood::Bernoulli(b) => {
            b.logits().into_data().convert::<f64>().to_vec().unwrap()
        }
        _ => unreachable!("the Kingma & Welling preset is Bernoulli"),
    };
    let log_lik_by_hand: f64 = pixels
        .iter()
        .zip(&logits)
        .map(|(x, eta)| x * eta - (eta.max(0.0) + (-eta.abs()).exp().ln_1p()))
        .sum();
    let log_lik: f64 = likelihood
        .log_prob(x.clone())
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()[0];

    // 4. KL(q ‖ N(0, I)) = Σ_l ½ (μ² + σ² − 1 − log σ²), closed form.
    let kl_by_hand: f64 = mu
        .iter()
        .zip(&log_var)
        .map(|(m, lv)| 0.5 * (m * m + lv.exp() - 1.0 - lv))
        .sum();
    let kl: f64 = q
        .kl_standard_normal()
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()[0];

    let elbo = log_lik - kl;
    println!(
        "\none test image, one latent sample (z = μ + σ ⊙ ε, ε[0..3] = {:.3?})",
        &eps[..3]
    );
    println!(
        "  E_q[log p(x|z)]  ≈ log p(x|z) = {log_lik:>10.3} nats  (by hand {log_lik_by_hand:.3}) — a log-likelihood: negative, higher is better"
    );
    println!(
        "  KL(q(z|x) ‖ p(z))             = {kl:>10.3} nats  (by hand {kl_by_hand:.3}) — never negative, it is subtracted"
    );
    println!(
        "  ELBO = log-lik − KL           = {elbo:>10.3} nats  — a lower bound on log p(x): maximise it"
    );
    println!(
        "  loss = −ELBO                  = {:>10.3} nats  — what the optimiser minimises (Elbo::loss)",
        -elbo
    );

    // 5. The bound: log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)) ≥ ELBO. Estimate log p(x) by importance
    //    sampling and the expected ELBO with many samples.
    let sampling = ImportanceSampling::new().with_num_samples(5000);
    let log_px = vae
        .log_px(x.clone(), &sampling)
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()[0];
    let expected_elbo = vae
        .forward(x, 1000, vae::core::KlEstimator::Analytic)
        .elbo
        .elbo();
    let expected_elbo: f64 = expected_elbo
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()[0];
    println!("\n  E_q[ELBO] (1000 samples)      = {expected_elbo:>10.3} nats");
    println!("  log p(x) (importance, K=5000) ≈ {log_px:>10.3} nats");
    println!(
        "  gap = log p(x) − ELBO ≈ KL(q(z|x) ‖ p(z|x)) = {:.3} nats ≥ 0: how far the encoder is from the true posterior",
        log_px - expected_elbo
    );
    println!(
        "\nMinimising −ELBO raises a lower bound on log p(x): it improves the model, closes the gap, or both."
    );
}
