use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor, backend::AutodiffBackend};
use std::time::Instant;
use vae_models::{ConvVaeConfig, GaussianScale, Likelihood, MlpVaeConfig};

fn mlp<B: AutodiffBackend>(name: &str, batch: usize) {
    let device = Default::default();
    let mut vae = MlpVaeConfig::kingma_welling(784).init::<B>(&device);
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<B, 2>::random([batch, 784], Distribution::Uniform(0.0, 1.0), &device);
    let mut run = |steps: usize| {
        for _ in 0..steps {
            let loss = vae.elbo(x.clone()).loss();
            let grads = GradientsParams::from_grads(loss.backward(), &vae);
            vae = optim.step(1e-3, vae.clone(), grads);
        }
        let _ = vae.elbo(x.clone()).loss().into_scalar();
    };
    run(5);
    let t = Instant::now();
    run(50);
    println!(
        "{name} mlp batch {batch}: {:.0} img/s",
        50.0 * batch as f64 / t.elapsed().as_secs_f64()
    );
}

fn conv<B: AutodiffBackend>(name: &str, batch: usize) {
    let device = Default::default();
    let mut vae = ConvVaeConfig::celeba_64(Likelihood::Gaussian {
        scale: GaussianScale::Fixed { sigma: 0.1 },
    })
    .init::<B>(&device);
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<B, 2>::random(
        [batch, 3 * 64 * 64],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let mut run = |steps: usize| {
        for _ in 0..steps {
            let loss = vae.elbo(x.clone()).loss();
            let grads = GradientsParams::from_grads(loss.backward(), &vae);
            vae = optim.step(1e-3, vae.clone(), grads);
        }
        let _ = vae.elbo(x.clone()).loss().into_scalar();
    };
    run(1);
    let t = Instant::now();
    run(3);
    println!(
        "{name} conv batch {batch}: {:.1} img/s",
        3.0 * batch as f64 / t.elapsed().as_secs_f64()
    );
}

fn main() {
    mlp::<Autodiff<NdArray<f32>>>("ndarray", 128);
    mlp::<Autodiff<Flex>>("flex", 128);
    conv::<Autodiff<Flex>>("flex", 16);
    conv::<Autodiff<NdArray<f32>>>("ndarray", 16);
}
