//! One training / validation step of a VAE, as burn-train sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
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

/// Sums of the ELBO terms over the examples of one or more batches, kept on the device.
///
/// A training step returns these instead of numbers so that it never waits for the device:
/// the loop adds the steps of a window with [`ElboTerms::merge`] (device work, no read) and
/// reads the sums once per window (`training.metrics_every_steps`), which is also when a NaN
/// or ∞ is noticed.
#[derive(Debug, Clone)]
pub struct ElboTerms<B: Backend> {
    /// Σₙ E_q[log p(xₙ|z)], nats, shape `[1]`, no autodiff graph.
    pub log_likelihood_sum: Tensor<B, 1>,
    /// Σₙ KL(q(z|xₙ) ‖ p(z)), nats, shape `[1]`.
    pub kl_sum: Tensor<B, 1>,
    /// The number of examples summed.
    pub examples: usize,
}

/// A step output the training loop can add up on the device between reads.
pub trait Accumulate: Sized {
    /// The combined output of both sets of steps (device work only; nothing is read).
    fn merge(self, other: Self) -> Self;
}

impl<B: Backend> Accumulate for ElboTerms<B> {
    fn merge(self, other: Self) -> Self {
        ElboTerms::merge(self, other)
    }
}

impl<B: Backend> ElboTerms<B> {
    /// The sums of one batch's per-example terms (`[N]` each, nats).
    pub fn of_batch(log_likelihood: Tensor<B, 1>, kl: Tensor<B, 1>) -> Self {
        let [examples] = kl.dims();
        Self {
            log_likelihood_sum: log_likelihood.sum(),
            kl_sum: kl.sum(),
            examples,
        }
    }

    /// The sums over both sets of examples (device additions; nothing is read).
    pub fn merge(self, other: Self) -> Self {
        Self {
            log_likelihood_sum: self.log_likelihood_sum + other.log_likelihood_sum,
            kl_sum: self.kl_sum + other.kl_sum,
            examples: self.examples + other.examples,
        }
    }
}

/// [`ElboTerms`] read back to the host: sums in nats over `examples` examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElboSums {
    /// Σₙ E_q[log p(xₙ|z)], nats.
    pub log_likelihood_sum: f64,
    /// Σₙ KL(q(z|xₙ) ‖ p(z)), nats.
    pub kl_sum: f64,
    /// The number of examples summed.
    pub examples: usize,
}

impl<B: Backend> ItemLazy for ElboTerms<B> {
    type ItemSync = ElboSums;

    /// One device read for both sums.
    fn sync(self) -> ElboSums {
        let both = Tensor::cat(vec![self.log_likelihood_sum, self.kl_sum], 0)
            .into_data()
            .convert::<f64>();
        let both = both.as_slice::<f64>().expect("f64 after convert");
        ElboSums {
            log_likelihood_sum: both[0],
            kl_sum: both[1],
            examples: self.examples,
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
        let terms = ElboTerms::of_batch(out.elbo.log_likelihood.inner(), out.elbo.kl.inner());
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
        ElboTerms::of_batch(elbo.log_likelihood, elbo.kl)
    }
}
