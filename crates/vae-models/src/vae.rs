//! The generic VAE.

use std::marker::PhantomData;

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use vae_core::{
    DiagonalGaussian, Elbo, FlowPosterior, ImportanceSampling, KlEstimator, ObservationModel,
    Posterior, Prior, StandardNormal, iwae_bound,
};

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::iaf::Iaf;
use crate::posterior::VaePosterior;
use crate::prior::{LearnedPrior, PriorDistribution};

/// A variational autoencoder: any [`Encoder`] with any [`Decoder`], a prior p(z) (N(0, I)
/// unless a [`LearnedPrior`] is set: a mixture of Gaussians or a VampPrior), a posterior family
/// (the encoder's Gaussian, or that Gaussian through an [`Iaf`]), and the ELBO / IWAE /
/// log p(x) machinery of vae-core, which uses that prior and posterior everywhere.
///
/// Data is `[N, D]` (flattened, values in [0, 1]); every per-example result is `[N]` in nats.
#[derive(Module, Debug)]
pub struct Vae<B: Backend, E: Module<B>, D: Module<B>> {
    /// q(z|x).
    pub encoder: E,
    /// p(x|z).
    pub decoder: D,
    /// p(z)'s parameters; `None` is N(0, I) (and what the weights of runs from before learned
    /// priors existed load as).
    pub prior: Option<LearnedPrior<B>>,
    /// The posterior's flow; `None` is the encoder's Gaussian (and what the weights of runs
    /// from before flows existed load as).
    pub flow: Option<Iaf<B>>,
    backend: PhantomData<B>,
}

/// Everything one forward pass computes: the ELBO terms and the distributions behind them.
#[derive(Debug, Clone)]
pub struct VaeOutput<B: Backend, O> {
    /// The ELBO per example, term by term.
    pub elbo: Elbo<B>,
    /// q(z|x) for the batch.
    pub posterior: VaePosterior<B>,
    /// The latent samples used, `[S, N, L]`.
    pub z: Tensor<B, 3>,
    /// log q(z|x) at those samples, `[S, N]`, nats.
    pub log_q: Tensor<B, 2>,
    /// p(x|z) at those samples, parameters `[S, N, D]`.
    pub likelihood: O,
}

impl<B: Backend, E: Encoder<B>, D: Decoder<B>> Vae<B, E, D> {
    /// Joins an encoder and a decoder.
    pub fn new(encoder: E, decoder: D) -> Self {
        Self {
            encoder,
            decoder,
            prior: None,
            flow: None,
            backend: PhantomData,
        }
    }

    /// The same VAE with the prior `prior` (`None`: N(0, I)).
    pub fn with_prior(self, prior: Option<LearnedPrior<B>>) -> Self {
        Self { prior, ..self }
    }

    /// The same VAE with the posterior flow `flow` (`None`: the encoder's Gaussian).
    pub fn with_flow(self, flow: Option<Iaf<B>>) -> Self {
        Self { flow, ..self }
    }

    /// The latent size L.
    pub fn latent_dim(&self) -> usize {
        self.encoder.latent_dim()
    }

    /// The data size D.
    pub fn data_dim(&self) -> usize {
        self.decoder.data_dim()
    }

    /// p(z) for one forward pass (a VampPrior encodes its pseudo-inputs here).
    pub fn prior(&self) -> PriorDistribution<B> {
        match &self.prior {
            None => PriorDistribution::StandardNormal(StandardNormal::new(self.latent_dim())),
            Some(learned) => PriorDistribution::Mixture(learned.distribution(&self.encoder)),
        }
    }

    /// The encoder's Gaussian for `x` of shape `[N, D]`: the posterior q(z|x) itself without a
    /// flow, the flow's base q₀(z₀|x) with one (see [`Vae::posterior`]).
    pub fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        self.encoder.encode(x)
    }

    /// q(z|x) for `x` of shape `[N, D]`: the encoder's Gaussian, through the flow if there is
    /// one.
    pub fn posterior(&self, x: Tensor<B, 2>) -> VaePosterior<B> {
        let base = self.encode(x);
        match &self.flow {
            None => VaePosterior::Gaussian(base),
            Some(flow) => VaePosterior::Iaf(FlowPosterior::new(base, flow.clone())),
        }
    }

    /// p(x|z) for `z` of shape `[S, N, L]`.
    pub fn decode(&self, z: Tensor<B, 3>) -> D::Output {
        self.decoder.decode(z)
    }

    /// The forward pass: q(z|x), `samples` reparameterised z per example with their
    /// log-density, p(x|z), and the ELBO with the given KL estimator (a flow posterior has no
    /// closed-form KL: the Monte-Carlo estimate is used whatever `kl` says).
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        samples: usize,
        kl: KlEstimator,
    ) -> VaeOutput<B, D::Output> {
        let posterior = self.posterior(x.clone());
        let draws = posterior.rsample_with_log_prob(samples);
        let likelihood = self.decode(draws.z.clone());
        let elbo = Elbo::estimate(x, &posterior, &draws, &likelihood, &self.prior(), kl);
        VaeOutput {
            elbo,
            posterior,
            z: draws.z,
            log_q: draws.log_q,
            likelihood,
        }
    }

    /// The single-sample ELBO with the analytic KL (where there is one), per example: what
    /// training maximises. `elbo(x).loss()` is the loss.
    pub fn elbo(&self, x: Tensor<B, 2>) -> Elbo<B> {
        self.forward(x, 1, KlEstimator::Analytic).elbo
    }

    /// The IWAE bound with `samples` importance samples, per example, shape `[N]`, nats.
    pub fn iwae_bound(&self, x: Tensor<B, 2>, samples: usize) -> Tensor<B, 1> {
        let draws = self.posterior(x.clone()).rsample_with_log_prob(samples);
        let likelihood = self.decode(draws.z.clone());
        iwae_bound(x, &draws, &likelihood, &self.prior())
    }

    /// The importance-sampled estimate of log p(x) per example, shape `[N]`, nats.
    pub fn log_px(&self, x: Tensor<B, 2>, sampling: &ImportanceSampling) -> Tensor<B, 1> {
        let posterior = self.posterior(x.clone());
        sampling.log_px(x, &posterior, &self.prior(), |z| self.decode(z))
    }

    /// Reconstructions E[x | z = z̄(x)], the decoder's mean at the posterior's location (its
    /// mean; the flow's image of the base mean with a flow), `[N, D]`.
    pub fn reconstruct(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let location = self.posterior(x).location().unsqueeze_dim::<3>(0);
        self.decode(location).mean().squeeze_dim::<2>(0)
    }

    /// `n` samples from the model, shown as decoder means E[x|z] at z ~ p(z), `[n, D]`.
    pub fn sample(&self, n: usize, device: &B::Device) -> Tensor<B, 2> {
        let z = self.prior().sample(1, n, device);
        self.decode_mean(z)
    }

    /// Decoder means E[x|z] for given latents `[1, n, L]`, `[n, D]` (interpolations,
    /// traversals, manifolds).
    pub fn decode_mean(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        self.decode(z).mean().squeeze_dim::<2>(0)
    }
}
