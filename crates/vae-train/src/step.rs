//! One training / validation step of a VAE, as burn-train sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use vae_core::{
    BetaTcObjective, ElboObjective, ImportanceBound, KlDecomposition, KlEstimator,
    ObservationModel, Posterior, PosteriorSamples, Prior, piwae_loss,
};
use vae_data::ImageBatch;

use crate::data_parallel::{DataParallel, DataParallelError};
use vae_models::{
    Conditioned, Decoder, Encoder, TrainableDecoder, TrainableEncoder, Vae, VaePosterior,
};

/// What a training step maximises. Whatever it is, the step reports the true ELBO terms
/// (E_q log p(x|z) and the KL by the configured estimator) of the samples it drew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepObjective {
    /// The ELBO through [`ElboObjective`] (β, warm-up, free bits): the default.
    Elbo,
    /// An importance-weighted bound (IWAE, MIWAE, CIWAE, PIWAE).
    ImportanceBound(ImportanceBound),
    /// The β-TC-VAE objective for a training set of `dataset_size` examples.
    TotalCorrelation {
        /// The weights and the q(z) estimator.
        objective: BetaTcObjective,
        /// N, the number of training examples (the minibatch estimates of q(z) need it).
        dataset_size: usize,
    },
}

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
    #[module(skip)]
    step_objective: StepObjective,
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
            step_objective: StepObjective::Elbo,
            step: Arc::new(AtomicU64::new(step)),
        }
    }

    /// The same model trained on `objective` instead of the ELBO objective.
    pub fn with_step_objective(self, objective: StepObjective) -> Self {
        Self {
            step_objective: objective,
            ..self
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

    /// The combined output of the same steps on every rank of a data-parallel group (every
    /// rank calls it at the same step with as many examples).
    fn merge_ranks(self, group: &DataParallel) -> Result<Self, DataParallelError>;
}

impl<B: Backend> Accumulate for ElboTerms<B> {
    fn merge(self, other: Self) -> Self {
        ElboTerms::merge(self, other)
    }

    fn merge_ranks(self, group: &DataParallel) -> Result<Self, DataParallelError> {
        let sums = group.sum(
            "adding up the metrics",
            Tensor::cat(vec![self.log_likelihood_sum, self.kl_sum], 0),
        )?;
        Ok(Self {
            log_likelihood_sum: sums.clone().slice(0..1),
            kl_sum: sums.slice(1..2),
            examples: self.examples * group.nodes() as usize,
        })
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
        let x = Conditioned::new(batch.images, batch.conditions);
        let (loss, log_likelihood, kl) = match self.step_objective {
            StepObjective::Elbo => {
                let out = self.vae.forward(x, self.latent_samples, self.kl_estimator);
                // −ELBO unless β / warm-up / free bits are configured.
                let loss = self.objective.loss(&out.elbo, step);
                (loss, out.elbo.log_likelihood, out.elbo.kl)
            }
            StepObjective::ImportanceBound(bound) => self.importance_weighted(x, bound),
            StepObjective::TotalCorrelation {
                objective,
                dataset_size,
            } => {
                let out = self.vae.forward(x, self.latent_samples, self.kl_estimator);
                // Trainer::fit refuses β-TC with a flow: the base is the posterior itself.
                let parts = KlDecomposition::estimate(
                    out.posterior.base(),
                    out.z,
                    dataset_size.max(out.elbo.batch_size()),
                    objective.estimator,
                );
                let loss = objective.loss(out.elbo.log_likelihood.clone(), &parts);
                (loss, out.elbo.log_likelihood, out.elbo.kl)
            }
        };
        let grads = loss.backward();
        let terms = ElboTerms::of_batch(log_likelihood.inner(), kl.inner());
        TrainOutput::new(self, grads, terms)
    }
}

impl<B, E, D> TrainableVae<B, E, D>
where
    B: AutodiffBackend,
    E: TrainableEncoder<B>,
    D: TrainableDecoder<B>,
{
    /// The loss −mean bound, E_q log p(x|z) per example (`[N]`, the mean over the bound's S
    /// samples) and the KL per example.
    fn importance_weighted(
        &self,
        x: Conditioned<B, 2>,
        bound: ImportanceBound,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let posterior = self.vae.posterior(x.clone());
        let draws = posterior.rsample_with_log_prob(bound.samples());
        self.importance_weighted_at(x, &posterior, draws, bound)
    }

    /// [`Self::importance_weighted`] at given draws of `posterior` (the tests fix them; the
    /// shared random generator is not theirs alone).
    fn importance_weighted_at(
        &self,
        x: Conditioned<B, 2>,
        posterior: &VaePosterior<B>,
        draws: PosteriorSamples<B>,
        bound: ImportanceBound,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let Conditioned {
            tensor: x,
            condition,
        } = x;
        let latents = |z: Tensor<B, 3>| Conditioned::new(z, condition.clone());
        let prior = self.vae.prior();
        let (kl, _) = self.kl_estimator.estimate(posterior, &prior, &draws);
        let mean_over_samples = |t: Tensor<B, 2>| t.mean_dim(0).squeeze_dim::<1>(0);
        match bound {
            ImportanceBound::Piwae { outer, .. } => {
                // The decoder (and a learned prior) ascend IWAE_{MK}: z and log q detached.
                let fixed = draws.detach();
                let decoder_log_likelihood = self
                    .vae
                    .decode(latents(fixed.z.clone()))
                    .log_prob(x.clone());
                let decoder_log_w =
                    decoder_log_likelihood.clone() + prior.log_prob(fixed.z) - fixed.log_q;
                // The encoder (and a flow) ascend MIWAE_{M,K}: the decoder's and prior's
                // parameters fixed, gradients through z and log q only.
                let fixed_decoder = self.vae.decoder.clone().no_grad();
                let decoder_input = self.vae.decoder_input(latents(draws.z.clone()));
                let encoder_log_w = fixed_decoder.decode(decoder_input).log_prob(x)
                    + prior.detach().log_prob(draws.z)
                    - draws.log_q;
                let loss = piwae_loss(decoder_log_w, encoder_log_w, outer);
                (loss, mean_over_samples(decoder_log_likelihood), kl)
            }
            _ => {
                let log_likelihood = self.vae.decode(latents(draws.z.clone())).log_prob(x);
                let log_w = log_likelihood.clone() + prior.log_prob(draws.z) - draws.log_q;
                let loss = bound.bound(log_w).mean().neg();
                (loss, mean_over_samples(log_likelihood), kl)
            }
        }
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
        let elbo = self
            .vae
            .elbo(Conditioned::new(batch.images, batch.conditions));
        ElboTerms::of_batch(elbo.log_likelihood, elbo.kl)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::{Distribution, Tensor};
    use vae_core::{ImportanceBound, ObservationModel, Prior, log_mean_exp, miwae_bound};
    use vae_models::MlpVaeConfig;

    use super::*;

    type Ad = Autodiff<NdArray<f64>>;
    type Grads = <Ad as AutodiffBackend>::Gradients;

    /// Every float parameter's gradient, flattened, in visiting order (NaN for none).
    struct GradientValues<'a> {
        grads: &'a Grads,
        values: Vec<f64>,
    }

    impl ModuleVisitor<Ad> for GradientValues<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
            match param.val().grad(self.grads) {
                Some(g) => self
                    .values
                    .extend(g.into_data().convert::<f64>().to_vec::<f64>().unwrap()),
                None => self.values.push(f64::NAN),
            }
        }
    }

    fn gradients<M: Module<Ad>>(module: &M, grads: &Grads) -> Vec<f64> {
        let mut visitor = GradientValues {
            grads,
            values: Vec::new(),
        };
        module.visit(&mut visitor);
        visitor.values
    }

    fn assert_all_close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-9 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    fn model(
        seed: u64,
    ) -> (
        TrainableVae<Ad, vae_models::MlpEncoder<Ad>, vae_models::MlpDecoder<Ad>>,
        Tensor<Ad, 2>,
    ) {
        let device = Default::default();
        Ad::seed(&device, seed);
        let vae = MlpVaeConfig::new(10, vec![6], 2).init::<Ad>(&device);
        let x = Tensor::<Ad, 2>::random([5, 10], Distribution::Uniform(0.0, 1.0), &device).round();
        let model = TrainableVae::new(vae, ElboObjective::default(), KlEstimator::Analytic, 1, 0);
        (model, x)
    }

    /// Fixed standard-normal draws ε `[S, N, L]` for the 2-D latent of [`model`]: every
    /// computation below builds its z = μ + σ ε from them, so they all see the same z.
    fn noise(samples: usize, batch: usize) -> Tensor<Ad, 3> {
        let values: Vec<f64> = (0..samples * batch * 2)
            .map(|i| ((i as f64) * 0.7).sin() * 1.5)
            .collect();
        Tensor::<Ad, 1>::from_floats(values.as_slice(), &Default::default())
            .reshape([samples, batch, 2])
    }

    /// The step's (loss, E_q log p(x|z), KL) at z = μ + σ ε.
    fn step_at(
        model: &TrainableVae<Ad, vae_models::MlpEncoder<Ad>, vae_models::MlpDecoder<Ad>>,
        x: Tensor<Ad, 2>,
        eps: Tensor<Ad, 3>,
        bound: ImportanceBound,
    ) -> (Tensor<Ad, 1>, Tensor<Ad, 1>, Tensor<Ad, 1>) {
        let posterior = model.vae.posterior(x.clone());
        let draws = PosteriorSamples::at(&posterior, posterior.base().reparameterize(eps));
        model.importance_weighted_at(x.into(), &posterior, draws, bound)
    }

    /// The log-weights `[S, N]` of the plain, fully differentiable computation at z = μ + σ ε.
    fn log_weights(
        model: &TrainableVae<Ad, vae_models::MlpEncoder<Ad>, vae_models::MlpDecoder<Ad>>,
        x: Tensor<Ad, 2>,
        eps: Tensor<Ad, 3>,
    ) -> Tensor<Ad, 2> {
        let q = model.vae.encode(x.clone());
        let z = q.reparameterize(eps);
        model.vae.decode(z.clone()).log_prob(x) + model.vae.prior().log_prob(z.clone())
            - q.log_prob(z)
    }

    #[test]
    fn piwae_trains_the_decoder_on_iwae_and_the_encoder_on_miwae() {
        let (model, x) = model(3);
        let (outer, inner) = (2, 3);
        let bound = ImportanceBound::Piwae { outer, inner };
        let [batch, _] = x.dims();
        let eps = || noise(outer * inner, batch);
        let (loss, _, _) = step_at(&model, x.clone(), eps(), bound);
        let piwae = loss.backward();

        let iwae = log_mean_exp(log_weights(&model, x.clone(), eps()))
            .mean()
            .neg()
            .backward();
        let miwae = miwae_bound(log_weights(&model, x, eps()), outer)
            .mean()
            .neg()
            .backward();
        assert_all_close(
            &gradients(&model.vae.decoder, &piwae),
            &gradients(&model.vae.decoder, &iwae),
            "decoder gradient = IWAE_{MK}'s",
        );
        assert_all_close(
            &gradients(&model.vae.encoder, &piwae),
            &gradients(&model.vae.encoder, &miwae),
            "encoder gradient = MIWAE_{M,K}'s",
        );
        // And not the other way round (the two bounds' gradients differ).
        let decoder_miwae = gradients(&model.vae.decoder, &miwae);
        let decoder_piwae = gradients(&model.vae.decoder, &piwae);
        assert!(
            decoder_miwae
                .iter()
                .zip(&decoder_piwae)
                .any(|(a, b)| (a - b).abs() > 1e-6)
        );
    }

    #[test]
    fn importance_weighted_steps_report_the_true_elbo_terms() {
        let (model, x) = model(4);
        let [batch, _] = x.dims();
        for bound in [
            ImportanceBound::Iwae { samples: 5 },
            ImportanceBound::Miwae { outer: 5, inner: 1 },
            ImportanceBound::Ciwae {
                samples: 5,
                beta: 0.5,
            },
            ImportanceBound::Piwae { outer: 1, inner: 5 },
        ] {
            let (loss, log_likelihood, kl) = step_at(&model, x.clone(), noise(5, batch), bound);
            // The ELBO with the same five samples: the terms reported.
            let posterior = model.vae.encode(x.clone());
            let draws = PosteriorSamples::at(&posterior, posterior.reparameterize(noise(5, batch)));
            let likelihood = model.vae.decode(draws.z.clone());
            let elbo = vae_core::Elbo::estimate(
                x.clone(),
                &posterior,
                &draws,
                &likelihood,
                &model.vae.prior(),
                KlEstimator::Analytic,
            );
            let values = |t: Tensor<Ad, 1>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
            assert_all_close(
                &values(log_likelihood),
                &values(elbo.log_likelihood),
                "E_q log p(x|z)",
            );
            assert_all_close(&values(kl), &values(elbo.kl), "KL");
            // The loss is the bound's.
            let expected = bound
                .bound(log_weights(&model, x.clone(), noise(5, batch)))
                .mean()
                .neg();
            let loss = values(loss)[0];
            let expected = values(expected)[0];
            match bound {
                // PIWAE's loss is the sum of two bounds' losses (at M = 1 both are IWAE_5).
                ImportanceBound::Piwae { .. } => assert!((loss - 2.0 * expected).abs() < 1e-9),
                _ => assert!(
                    (loss - expected).abs() < 1e-9,
                    "{bound:?}: {loss} vs {expected}"
                ),
            }
        }
    }
}
