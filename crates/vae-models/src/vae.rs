//! The generic VAE.

use std::marker::PhantomData;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use vae_core::{
    DiagonalGaussian, Elbo, FlowPosterior, ImportanceSampling, KlEstimator, ObservationModel,
    Posterior, Prior, StandardNormal, iwae_bound,
};

use crate::condition::{
    ConditionConfig, ConditionValue, ConditionValueError, Conditioned, condition_vector,
};
use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::iaf::Iaf;
use crate::posterior::VaePosterior;
use crate::prior::{LearnedPrior, PriorDistribution};

/// A variational autoencoder: any [`Encoder`] with any [`Decoder`], a prior p(z) (N(0, I)
/// unless a [`LearnedPrior`] is set: a mixture of Gaussians or a VampPrior), a posterior family
/// (the encoder's Gaussian, or that Gaussian through an [`Iaf`]), optionally a condition (the
/// conditional VAE: q(z|x, c), p(x|z, c)), and the ELBO / IWAE / log p(x) machinery of
/// vae-core, which uses that prior and posterior everywhere.
///
/// Data is `[N, D]` (flattened, values in [0, 1]); every per-example result is `[N]` in nats.
///
/// **Conditioning** ([`Vae::with_condition`]): with C condition values per example, the
/// encoder receives `[x | c]`, `[N, D + C]` ([`Vae::encoder_input`]) and the decoder
/// `[z | c]`, `[S, N, L + C]` ([`Vae::decoder_input`]); the prior stays p(z), so every bound
/// is a bound on log p(x|c). The methods take data and latents as [`Conditioned`] tensors (a
/// plain tensor converts into one without a condition).
///
/// # Panics
/// Every method that takes data or latents panics if a conditional model is called without its
/// condition (or an unconditional one with one), naming the widths: a usage error, like a tensor
/// of the wrong shape.
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
    /// What the model is conditioned on; `None`: unconditional. Not a parameter: a model's
    /// configuration decides it.
    #[module(skip)]
    condition: Option<ConditionConfig>,
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
            condition: None,
            backend: PhantomData,
        }
    }

    /// The same VAE conditioned on `condition` (`None`: unconditional), C =
    /// `condition.width()` values per example. The encoder must take D + C inputs and the
    /// decoder L + C (see [`Vae`]); `condition` should pass [`ConditionConfig::validate`] (the
    /// built-in configurations check it before building).
    pub fn with_condition(self, condition: Option<ConditionConfig>) -> Self {
        Self { condition, ..self }
    }

    /// What the model is conditioned on (`None`: unconditional).
    pub fn condition(&self) -> Option<&ConditionConfig> {
        self.condition.as_ref()
    }

    /// C, the condition values per example (0 for an unconditional VAE).
    pub fn condition_dim(&self) -> usize {
        self.condition.as_ref().map_or(0, ConditionConfig::width)
    }

    /// The condition `[n, C]` that gives each of `n` examples `value` (e.g. to draw 16 of
    /// class 3: `vae.sample_given(vae.condition_of(&ConditionValue::Class(3), 16, &device)?)`);
    /// an error if the model cannot take `value` (unconditional, another kind of condition, a
    /// class out of range, an attribute it does not know).
    pub fn condition_of(
        &self,
        value: &ConditionValue,
        n: usize,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, ConditionValueError> {
        let c = condition_vector(self.condition.as_ref(), value)?;
        let width = c.len();
        Ok(Tensor::from_data(
            TensorData::new(c.repeat(n), [n, width]),
            device,
        ))
    }

    /// The condition of `n` examples, checked against the model's.
    fn checked_condition(&self, condition: Option<Tensor<B, 2>>, n: usize) -> Option<Tensor<B, 2>> {
        match (self.condition_dim(), condition) {
            (0, None) => None,
            (0, Some(c)) => panic!(
                "this VAE is unconditional, but a condition of shape {:?} was given",
                c.dims()
            ),
            (width, None) => panic!(
                "this VAE is conditional ({width} condition values per example): pass data and latents as Conditioned::given(tensor, condition)"
            ),
            (width, Some(c)) => {
                assert_eq!(
                    c.dims(),
                    [n, width],
                    "the condition must be [N, C] = [{n}, {width}]"
                );
                Some(c)
            }
        }
    }

    /// What the encoder receives for data `x` `[N, D]`: `x` itself, or `[x | c]`, `[N, D + C]`,
    /// for a conditional VAE.
    pub fn encoder_input(&self, x: impl Into<Conditioned<B, 2>>) -> Tensor<B, 2> {
        let Conditioned { tensor, condition } = x.into();
        let n = tensor.dims()[0];
        match self.checked_condition(condition, n) {
            None => tensor,
            Some(c) => Tensor::cat(vec![tensor, c], 1),
        }
    }

    /// What the decoder receives for latents `z` `[S, N, L]`: `z` itself, or `[z | c]`,
    /// `[S, N, L + C]` (each example's condition repeated over its S samples), for a
    /// conditional VAE.
    pub fn decoder_input(&self, z: impl Into<Conditioned<B, 3>>) -> Tensor<B, 3> {
        let Conditioned { tensor, condition } = z.into();
        let [s, n, _] = tensor.dims();
        match self.checked_condition(condition, n) {
            None => tensor,
            Some(c) => Tensor::cat(vec![tensor, c.unsqueeze_dim::<3>(0).repeat_dim(0, s)], 2),
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
            Some(learned) => {
                // The pseudo-inputs are data without a condition: ConditionConfig::validate_with
                // refuses the pair in configurations; this catches hand-built models.
                assert!(
                    self.condition.is_none() || !matches!(learned, LearnedPrior::Vamp(_)),
                    "a VampPrior cannot be used with a conditional VAE"
                );
                PriorDistribution::Mixture(learned.distribution(&self.encoder))
            }
        }
    }

    /// The encoder's Gaussian for `x` of shape `[N, D]`: the posterior q(z|x) itself without a
    /// flow, the flow's base q₀(z₀|x) with one (see [`Vae::posterior`]).
    pub fn encode(&self, x: impl Into<Conditioned<B, 2>>) -> DiagonalGaussian<B> {
        self.encoder.encode(self.encoder_input(x))
    }

    /// q(z|x) for `x` of shape `[N, D]`: the encoder's Gaussian, through the flow if there is
    /// one.
    pub fn posterior(&self, x: impl Into<Conditioned<B, 2>>) -> VaePosterior<B> {
        let base = self.encode(x);
        match &self.flow {
            None => VaePosterior::Gaussian(base),
            Some(flow) => VaePosterior::Iaf(FlowPosterior::new(base, flow.clone())),
        }
    }

    /// p(x|z) for `z` of shape `[S, N, L]`.
    pub fn decode(&self, z: impl Into<Conditioned<B, 3>>) -> D::Output {
        self.decoder.decode(self.decoder_input(z))
    }

    /// The forward pass: q(z|x), `samples` reparameterised z per example with their
    /// log-density, p(x|z), and the ELBO with the given KL estimator (a flow posterior has no
    /// closed-form KL: the Monte-Carlo estimate is used whatever `kl` says).
    pub fn forward(
        &self,
        x: impl Into<Conditioned<B, 2>>,
        samples: usize,
        kl: KlEstimator,
    ) -> VaeOutput<B, D::Output> {
        let Conditioned {
            tensor: x,
            condition,
        } = x.into();
        let posterior = self.posterior(Conditioned::new(x.clone(), condition.clone()));
        let draws = posterior.rsample_with_log_prob(samples);
        let likelihood = self.decode(Conditioned::new(draws.z.clone(), condition));
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
    pub fn elbo(&self, x: impl Into<Conditioned<B, 2>>) -> Elbo<B> {
        self.forward(x, 1, KlEstimator::Analytic).elbo
    }

    /// The IWAE bound with `samples` importance samples, per example, shape `[N]`, nats.
    pub fn iwae_bound(&self, x: impl Into<Conditioned<B, 2>>, samples: usize) -> Tensor<B, 1> {
        let Conditioned {
            tensor: x,
            condition,
        } = x.into();
        let posterior = self.posterior(Conditioned::new(x.clone(), condition.clone()));
        let draws = posterior.rsample_with_log_prob(samples);
        let likelihood = self.decode(Conditioned::new(draws.z.clone(), condition));
        iwae_bound(x, &draws, &likelihood, &self.prior())
    }

    /// The importance-sampled estimate of log p(x) per example, shape `[N]`, nats.
    pub fn log_px(
        &self,
        x: impl Into<Conditioned<B, 2>>,
        sampling: &ImportanceSampling,
    ) -> Tensor<B, 1> {
        let Conditioned {
            tensor: x,
            condition,
        } = x.into();
        let posterior = self.posterior(Conditioned::new(x.clone(), condition.clone()));
        sampling.log_px(x, &posterior, &self.prior(), |z| {
            self.decode(Conditioned::new(z, condition.clone()))
        })
    }

    /// Reconstructions E[x | z = z̄(x)], the decoder's mean at the posterior's location (its
    /// mean; the flow's image of the base mean with a flow), `[N, D]`.
    pub fn reconstruct(&self, x: impl Into<Conditioned<B, 2>>) -> Tensor<B, 2> {
        let Conditioned {
            tensor: x,
            condition,
        } = x.into();
        let location = self
            .posterior(Conditioned::new(x, condition.clone()))
            .location()
            .unsqueeze_dim::<3>(0);
        self.decode_mean(Conditioned::new(location, condition))
    }

    /// `n` samples from an unconditional model, shown as decoder means E[x|z] at z ~ p(z),
    /// `[n, D]`.
    pub fn sample(&self, n: usize, device: &B::Device) -> Tensor<B, 2> {
        let z = self.prior().sample(1, n, device);
        self.decode_mean(z)
    }

    /// One sample per row of `condition` `[n, C]` from a conditional model, shown as decoder
    /// means E[x|z, c] at z ~ p(z), `[n, D]`.
    pub fn sample_given(&self, condition: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = condition.dims()[0];
        let z = self.prior().sample(1, n, &condition.device());
        self.decode_mean(Conditioned::given(z, condition))
    }

    /// Decoder means E[x|z] for given latents `[1, n, L]`, `[n, D]` (interpolations,
    /// traversals, manifolds).
    pub fn decode_mean(&self, z: impl Into<Conditioned<B, 3>>) -> Tensor<B, 2> {
        self.decode(z).mean().squeeze_dim::<2>(0)
    }
}
