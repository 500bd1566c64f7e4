//! Bring your own networks: a small residual-MLP encoder and decoder, written here, trained
//! through the same generic `Vae` as the built-in models.
//!
//! ```text
//! cargo run --example custom_model
//! ```
//!
//! Implementing [`Encoder`] (data → q(z|x)) and [`Decoder`] (z → p(x|z)) is all it takes; the
//! ELBO, its loss, the IWAE bound, log p(x), sampling and reconstruction come with `Vae`.

use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, Module};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, backend::Backend};
use vae::core::{Bernoulli, DiagonalGaussian, ImportanceSampling};
use vae::data::{DataRoots, IdxOptions, IdxSplits, ImageBatch, ImageBatcher, locate};
use vae::models::{Decoder, Encoder, Vae};

/// x + W₂ gelu(W₁ LayerNorm(x)).
#[derive(Module, Debug)]
struct ResidualBlock<B: Backend> {
    norm: LayerNorm<B>,
    up: Linear<B>,
    down: Linear<B>,
}

impl<B: Backend> ResidualBlock<B> {
    fn new(width: usize, device: &B::Device) -> Self {
        Self {
            norm: LayerNormConfig::new(width).init(device),
            up: LinearConfig::new(width, 2 * width).init(device),
            down: LinearConfig::new(2 * width, width).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone()
            + self
                .down
                .forward(gelu(self.up.forward(self.norm.forward(x))))
    }
}

#[derive(Module, Debug)]
struct ResEncoder<B: Backend> {
    input: Linear<B>,
    blocks: Vec<ResidualBlock<B>>,
    mean: Linear<B>,
    log_var: Linear<B>,
}

impl<B: Backend> Encoder<B> for ResEncoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let h = self
            .blocks
            .iter()
            .fold(self.input.forward(x), |h, b| b.forward(h));
        DiagonalGaussian::new(self.mean.forward(h.clone()), self.log_var.forward(h))
    }

    fn latent_dim(&self) -> usize {
        self.mean.weight.dims()[1]
    }
}

#[derive(Module, Debug)]
struct ResDecoder<B: Backend> {
    input: Linear<B>,
    blocks: Vec<ResidualBlock<B>>,
    logits: Linear<B>,
}

impl<B: Backend> Decoder<B> for ResDecoder<B> {
    /// Bernoulli from logits: the last layer is linear, no sigmoid.
    type Output = Bernoulli<B>;

    fn decode(&self, z: Tensor<B, 3>) -> Bernoulli<B> {
        let [s, n, l] = z.dims();
        let h = self
            .blocks
            .iter()
            .fold(self.input.forward(z.reshape([s * n, l])), |h, b| {
                b.forward(h)
            });
        let logits = self.logits.forward(h);
        let d = logits.dims()[1];
        Bernoulli::from_logits(logits.reshape([s, n, d]))
    }

    fn data_dim(&self) -> usize {
        self.logits.weight.dims()[1]
    }
}

fn model<B: Backend>(
    d: usize,
    width: usize,
    latent: usize,
    device: &B::Device,
) -> Vae<B, ResEncoder<B>, ResDecoder<B>> {
    let blocks = || (0..2).map(|_| ResidualBlock::new(width, device)).collect();
    Vae::new(
        ResEncoder {
            input: LinearConfig::new(d, width).init(device),
            blocks: blocks(),
            mean: LinearConfig::new(width, latent).init(device),
            log_var: LinearConfig::new(width, latent).init(device),
        },
        ResDecoder {
            input: LinearConfig::new(latent, width).init(device),
            blocks: blocks(),
            logits: LinearConfig::new(width, d).init(device),
        },
    )
}

type B = Autodiff<Flex>;

fn main() {
    let device = Default::default();
    B::seed(&device, 3);
    let located = locate("fashion-mnist", None, &DataRoots::from_env(), None).expect(
        "Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or `cargo xtask data fashion-mnist`",
    );
    let splits = IdxSplits::load(
        &located.dir,
        located.entry.family.unwrap(),
        IdxOptions::default(),
    )
    .expect("loads");
    let batch =
        |data: &dyn Dataset<vae::data::ImageItem>, start: usize, n: usize| -> Tensor<B, 2> {
            let items = (start..start + n).filter_map(|i| data.get(i)).collect();
            let b: ImageBatch<B> = ImageBatcher.batch(items, &device);
            b.images
        };

    let mut vae = model::<B>(784, 256, 16, &device);
    println!("custom residual-MLP VAE: {} parameters", vae.num_params());
    let mut optim = AdamConfig::new().init();
    let valid = batch(&splits.valid, 0, 1000).inner();
    let report = |vae: &Vae<B, ResEncoder<B>, ResDecoder<B>>, step: usize| {
        let summary = vae.valid().elbo(valid.clone()).summary();
        println!(
            "step {step:>4}: valid neg_elbo_nats={:.2} log_likelihood_nats={:.2} kl_nats={:.2}",
            summary.neg_elbo_nats, summary.log_likelihood_nats, summary.kl_nats
        );
    };
    report(&vae, 0);
    for step in 1..=400 {
        let x = batch(&splits.train, (step * 128) % 49_000, 128);
        let loss = vae.elbo(x).loss(); // −ELBO
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        vae = optim.step(1e-3, vae, grads);
        if step % 100 == 0 {
            report(&vae, step);
        }
    }
    let vae = vae.valid();
    let x = valid.slice([0..100, 0..784]);
    let log_px = vae
        .log_px(x.clone(), &ImportanceSampling::new().with_num_samples(500))
        .mean()
        .into_scalar();
    let iwae = vae.iwae_bound(x.clone(), 50).mean().into_scalar();
    let elbo = vae.elbo(x).elbo().mean().into_scalar();
    println!(
        "100 validation images: ELBO {elbo:.2} ≤ IWAE(K=50) {iwae:.2} ≤ log p(x) (IS, K=500) ≈ {log_px:.2} nats"
    );
}
