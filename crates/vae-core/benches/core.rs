//! Hot paths of the ELBO on the CPU backend: the likelihood and KL terms (forward, and forward
//! plus backward), the analytic KL, and the IWAE log-mean-exp.
//!
//! `cargo bench -p vae-core --bench core` measures burn's generic ops; add
//! `--features vae-kernels/fast-kernels` for the Flex fast paths training uses.

// criterion_group! and criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vae_core::{
    Bernoulli, DiagonalGaussian, Elbo, Gaussian, KlEstimator, StandardNormal, log_mean_exp,
};

type B = Flex;
type Ad = Autodiff<Flex>;

fn bench(c: &mut Criterion) {
    let device = Default::default();
    let (n, d, l) = (128, 784, 20);
    let x = Tensor::<B, 2>::random([n, d], Distribution::Uniform(0.0, 1.0), &device);
    let logits = Tensor::<B, 3>::random([1, n, d], Distribution::Normal(0.0, 3.0), &device);
    let mean = Tensor::<B, 2>::random([n, l], Distribution::Normal(0.0, 1.0), &device);
    let log_var = Tensor::<B, 2>::random([n, l], Distribution::Normal(0.0, 1.0), &device);
    let q = DiagonalGaussian::new(mean.clone(), log_var.clone());
    let z = q.rsample(1);

    let mut group = c.benchmark_group("elbo_terms_b128");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("bernoulli_elbo_forward", |b| {
        b.iter(|| {
            let likelihood = Bernoulli::from_logits(logits.clone());
            let elbo = Elbo::estimate(
                x.clone(),
                &q,
                &vae_core::PosteriorSamples::at(&q, z.clone()),
                &likelihood,
                &StandardNormal::new(q.latent_dim()),
                KlEstimator::Analytic,
            );
            black_box(elbo.loss().into_scalar())
        })
    });
    group.bench_function("gaussian_elbo_forward", |b| {
        b.iter(|| {
            let likelihood = Gaussian::fixed(logits.clone(), 0.1);
            let elbo = Elbo::estimate(
                x.clone(),
                &q,
                &vae_core::PosteriorSamples::at(&q, z.clone()),
                &likelihood,
                &StandardNormal::new(q.latent_dim()),
                KlEstimator::Analytic,
            );
            black_box(elbo.loss().into_scalar())
        })
    });
    let x_ad = Tensor::<Ad, 2>::from_inner(x.clone());
    group.bench_function("bernoulli_elbo_forward_backward", |b| {
        b.iter(|| {
            let logits = Tensor::<Ad, 3>::from_inner(logits.clone()).require_grad();
            let mean = Tensor::<Ad, 2>::from_inner(mean.clone()).require_grad();
            let log_var = Tensor::<Ad, 2>::from_inner(log_var.clone()).require_grad();
            let q = DiagonalGaussian::new(mean, log_var);
            let z = q.reparameterize(Tensor::from_inner(z.clone() * 0.0));
            let elbo = Elbo::estimate(
                x_ad.clone(),
                &q,
                &vae_core::PosteriorSamples::at(&q, z),
                &Bernoulli::from_logits(logits),
                &StandardNormal::new(q.latent_dim()),
                KlEstimator::Analytic,
            );
            black_box(elbo.loss().backward())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("kl");
    let wide_mean = Tensor::<B, 2>::random([n, 128], Distribution::Normal(0.0, 1.0), &device);
    let wide = DiagonalGaussian::new(wide_mean.clone(), wide_mean.clone().mul_scalar(0.5));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("analytic_standard_normal_b128_l128", |b| {
        b.iter(|| black_box(wide.kl_standard_normal().sum().into_scalar()))
    });
    group.finish();

    let mut group = c.benchmark_group("iwae");
    let log_w = Tensor::<B, 2>::random([5000, n], Distribution::Normal(-100.0, 5.0), &device);
    group.throughput(Throughput::Elements((5000 * n) as u64));
    group.bench_function("log_mean_exp_k5000_b128", |b| {
        b.iter(|| black_box(log_mean_exp(log_w.clone()).sum().into_scalar()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
