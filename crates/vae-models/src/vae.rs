//! The generic VAE.

use std::marker::PhantomData;

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use vae_core::{
    DiagonalGaussian, Elbo, ImportanceSampling, KlEstimator, ObservationModel, Prior,
    StandardNormal, iwae_bound,
};

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::prior::{LearnedPrior, PriorDistribution};

/// A variational autoencoder: any [`Encoder`] with any [`Decoder`], a prior p(z) (N(0, I)
/// unless a [`LearnedPrior`] is set: a mixture of Gaussians or a VampPrior), and the ELBO /
/// IWAE / log p(x) machinery of vae-core, which uses that prior everywhere.
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
    backend: PhantomData<B>,
}

/// Everything one forward pass computes: the ELBO terms and the distributions behind them.
#[derive(Debug, Clone)]
pub struct VaeOutput<B: Backend, O> {
    /// The ELBO per example, term by term.
    pub elbo: Elbo<B>,
    /// q(z|x), parameters `[N, L]`.
    pub posterior: DiagonalGaussian<B>,
    /// The latent samples used, `[S, N, L]`.
    pub z: Tensor<B, 3>,
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
            backend: PhantomData,
        }
    }

    /// The same VAE with the prior `prior` (`None`: N(0, I)).
    pub fn with_prior(self, prior: Option<LearnedPrior<B>>) -> Self {
        Self { prior, ..self }
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

    /// q(z|x) for `x` of shape `[N, D]`.
    pub fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        self.encoder.encode(x)
    }

    /// p(x|z) for `z` of shape `[S, N, L]`.
    pub fn decode(&self, z: Tensor<B, 3>) -> D::Output {
        self.decoder.decode(z)
    }

    /// The forward pass: encode, draw `samples` reparameterised z per example, decode, and
    /// estimate the ELBO with the given KL estimator.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        samples: usize,
        kl: KlEstimator,
    ) -> VaeOutput<B, D::Output> {
        let posterior = self.encode(x.clone());
        let z = posterior.rsample(samples);
        let likelihood = self.decode(z.clone());
        let elbo = Elbo::estimate(x, &posterior, z.clone(), &likelihood, &self.prior(), kl);
        VaeOutput {
            elbo,
            posterior,
            z,
            likelihood,
        }
    }

    /// The single-sample ELBO with the analytic KL, per example: what training maximises.
    /// `elbo(x).loss()` is the loss.
    pub fn elbo(&self, x: Tensor<B, 2>) -> Elbo<B> {
        self.forward(x, 1, KlEstimator::Analytic).elbo
    }

    /// The IWAE bound with `samples` importance samples, per example, shape `[N]`, nats.
    pub fn iwae_bound(&self, x: Tensor<B, 2>, samples: usize) -> Tensor<B, 1> {
        let posterior = self.encode(x.clone());
        let z = posterior.rsample(samples);
        let likelihood = self.decode(z.clone());
        iwae_bound(x, &posterior, z, &likelihood, &self.prior())
    }

    /// The importance-sampled estimate of log p(x) per example, shape `[N]`, nats.
    pub fn log_px(&self, x: Tensor<B, 2>, sampling: &ImportanceSampling) -> Tensor<B, 1> {
        let posterior = self.encode(x.clone());
        sampling.log_px(x, &posterior, &self.prior(), |z| self.decode(z))
    }

    /// Reconstructions E[x | z = μ(x)], the decoder's mean at the posterior mean, `[N, D]`.
    pub fn reconstruct(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mean = self.encode(x).mean().unsqueeze_dim::<3>(0);
        self.decode(mean).mean().squeeze_dim::<2>(0)
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
