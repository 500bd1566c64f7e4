//! One training / validation step of a VAE, as burn-train sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, Transaction};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use vae_core::{ElboObjective, KlEstimator};
use vae_data::ImageBatch;
use vae_models::{Decoder, Encoder, TrainableDecoder, TrainableEncoder, Vae};

/// The VAE with what a training step needs besides the weights: the objective (β, warm-up, free
/// bits), the estimator settings and the optimizer-step counter the warm-up reads.
#[derive(Module, Debug)]
pub struct TrainableVae<B: Backend, E: Module<B>, D: Module<B>> {
    /// The model.
    pub vae: Vae<B, E, D>,
    #[module(skip)]
    objective: ElboObjective,
    #[module(skip)]
    kl_estimator: KlEstimator,
    #[module(skip)]
    latent_samples: usize,
    /// Optimizer steps taken (shared by clones, restored on resume).
    #[module(skip)]
    step: Arc<AtomicU64>,
}

impl<B: Backend, E: Encoder<B>, D: Decoder<B>> TrainableVae<B, E, D> {
    /// Wraps `vae` for training; `step` is the optimizer step to continue from.
    pub fn new(
        vae: Vae<B, E, D>,
        objective: ElboObjective,
        kl_estimator: KlEstimator,
        latent_samples: usize,
        step: u64,
    ) -> Self {
        Self {
            vae,
            objective,
            kl_estimator,
            latent_samples,
            step: Arc::new(AtomicU64::new(step)),
        }
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step.load(Ordering::Relaxed)
    }

    /// The shared step counter (the training loop records it in checkpoints).
    pub fn step_counter(&self) -> Arc<AtomicU64> {
        self.step.clone()
    }
}

/// Per-example ELBO terms of one batch, for metrics: `[N]` each, nats, no autodiff graph.
#[derive(Debug, Clone)]
pub struct ElboTerms<B: Backend> {
    /// E_q[log p(x|z)] per example.
    pub log_likelihood: Tensor<B, 1>,
    /// KL(q(z|x) ‖ p(z)) per example.
    pub kl: Tensor<B, 1>,
}

impl<B: Backend> ItemLazy for ElboTerms<B> {
    type ItemSync = ElboTerms<Flex>;

    /// One device read for both terms, rebuilt on the CPU backend the metrics use.
    fn sync(self) -> ElboTerms<Flex> {
        let [log_likelihood, kl] = Transaction::default()
            .register(self.log_likelihood)
            .register(self.kl)
            .execute()
            .try_into()
            .expect("two tensors registered");
        let device = Default::default();
        ElboTerms {
            log_likelihood: Tensor::from_data(log_likelihood, &device),
            kl: Tensor::from_data(kl, &device),
        }
    }
}

impl<B, E, D> TrainStep for TrainableVae<B, E, D>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    type Input = ImageBatch<B>;
    type Output = ElboTerms<B::InnerBackend>;

    fn step(&self, batch: ImageBatch<B>) -> TrainOutput<ElboTerms<B::InnerBackend>> {
        let step = self.step.fetch_add(1, Ordering::Relaxed);
        let out = self
            .vae
            .forward(batch.images, self.latent_samples, self.kl_estimator);
        // The objective is −ELBO unless β / warm-up / free bits are configured; the metrics
        // always report the true ELBO terms.
        let loss = self.objective.loss(&out.elbo, step);
        let grads = loss.backward();
        let terms = ElboTerms {
            log_likelihood: out.elbo.log_likelihood.inner(),
            kl: out.elbo.kl.inner(),
        };
        TrainOutput::new(self, grads, terms)
    }
}

impl<B, E, D> InferenceStep for TrainableVae<B, E, D>
where
    B: Backend,
    E: Encoder<B>,
    D: Decoder<B>,
{
    type Input = ImageBatch<B>;
    type Output = ElboTerms<B>;

    fn step(&self, batch: ImageBatch<B>) -> ElboTerms<B> {
        let elbo = self.vae.elbo(batch.images);
        ElboTerms {
            log_likelihood: elbo.log_likelihood,
            kl: elbo.kl,
        }
    }
}
