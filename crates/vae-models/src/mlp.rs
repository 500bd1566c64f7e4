//! Multi-layer perceptron encoder and decoder.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
use vae_core::DiagonalGaussian;

use crate::activation::Activation;
use crate::architecture::ArchitectureError;
use crate::condition::{ConditionConfig, validate_condition};
use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::likelihood::{DecodedLikelihood, Likelihood, LikelihoodHead};
use crate::posterior::PosteriorConfig;
use crate::prior::PriorConfig;
use crate::vae::Vae;

/// An MLP encoder: `input_dim → hidden[0] → … → hidden[k−1] → (μ, ln σ²) ∈ ℝ^latent_dim`.
#[derive(Config, Debug)]
pub struct MlpEncoderConfig {
    /// D, the flattened data size.
    pub input_dim: usize,
    /// Hidden layer widths, first to last.
    pub hidden: Vec<usize>,
    /// L, the latent size.
    pub latent_dim: usize,
    /// Nonlinearity after each hidden layer.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
}

/// See [`MlpEncoderConfig`].
#[derive(Module, Debug)]
pub struct MlpEncoder<B: Backend> {
    hidden: Vec<Linear<B>>,
    /// One layer producing [μ, ln σ²] side by side: one matmul instead of two.
    posterior: Linear<B>,
    #[module(skip)]
    activation: Activation,
    latent_dim: usize,
}

impl MlpEncoderConfig {
    /// Builds the encoder with burn's default (Kaiming-uniform) initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MlpEncoder<B> {
        let widths: Vec<usize> = std::iter::once(self.input_dim)
            .chain(self.hidden.iter().copied())
            .collect();
        MlpEncoder {
            hidden: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            posterior: LinearConfig::new(*widths.last().unwrap(), 2 * self.latent_dim).init(device),
            activation: self.activation,
            latent_dim: self.latent_dim,
        }
    }
}

impl<B: Backend> Encoder<B> for MlpEncoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let h = self
            .hidden
            .iter()
            .fold(x, |h, layer| self.activation.apply(layer.forward(h)));
        let [mean, log_var] = split_posterior(self.posterior.forward(h), self.latent_dim);
        DiagonalGaussian::new(mean, log_var)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}

/// Splits `[N, 2L]` into μ `[N, L]` and ln σ² `[N, L]`.
pub(crate) fn split_posterior<B: Backend>(out: Tensor<B, 2>, latent: usize) -> [Tensor<B, 2>; 2] {
    let n = out.dims()[0];
    [
        out.clone().slice([0..n, 0..latent]),
        out.slice([0..n, latent..2 * latent]),
    ]
}

/// An MLP decoder: `latent_dim → hidden[0] → … → output_dim`, then the likelihood head.
#[derive(Config, Debug)]
pub struct MlpDecoderConfig {
    /// L, the latent size.
    pub latent_dim: usize,
    /// Hidden layer widths, first to last (usually the encoder's, reversed).
    pub hidden: Vec<usize>,
    /// D, the flattened data size.
    pub output_dim: usize,
    /// Nonlinearity after each hidden layer.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// The observation model of the output.
    #[config(default = "Likelihood::Bernoulli")]
    pub likelihood: Likelihood,
}

/// See [`MlpDecoderConfig`].
#[derive(Module, Debug)]
pub struct MlpDecoder<B: Backend> {
    hidden: Vec<Linear<B>>,
    output: Linear<B>,
    head: LikelihoodHead<B>,
    #[module(skip)]
    activation: Activation,
    output_dim: usize,
}

impl MlpDecoderConfig {
    /// Builds the decoder with burn's default (Kaiming-uniform) initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MlpDecoder<B> {
        let widths: Vec<usize> = std::iter::once(self.latent_dim)
            .chain(self.hidden.iter().copied())
            .collect();
        MlpDecoder {
            hidden: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            output: LinearConfig::new(*widths.last().unwrap(), self.output_dim).init(device),
            head: self.likelihood.init(self.output_dim, device),
            activation: self.activation,
            output_dim: self.output_dim,
        }
    }
}

impl<B: Backend> Decoder<B> for MlpDecoder<B> {
    type Output = DecodedLikelihood<B>;

    fn decode(&self, z: Tensor<B, 3>) -> DecodedLikelihood<B> {
        let [s, n, l] = z.dims();
        let h = self.hidden.iter().fold(z.reshape([s * n, l]), |h, layer| {
            self.activation.apply(layer.forward(h))
        });
        let out = self.output.forward(h).reshape([s, n, self.output_dim]);
        self.head.apply(out)
    }

    fn data_dim(&self) -> usize {
        self.output_dim
    }
}

/// A symmetric MLP VAE: the encoder's hidden widths, reversed, for the decoder.
#[derive(Config, Debug)]
pub struct MlpVaeConfig {
    /// D, the flattened data size (784 for 28×28 images).
    pub input_dim: usize,
    /// Encoder hidden widths; the decoder uses them reversed.
    pub hidden: Vec<usize>,
    /// L, the latent size.
    pub latent_dim: usize,
    /// Nonlinearity after each hidden layer.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// The decoder's observation model.
    #[config(default = "Likelihood::Bernoulli")]
    pub likelihood: Likelihood,
    /// The prior p(z); absent (`None`) is the standard normal N(0, I), which is also what
    /// configurations written before priors were configurable mean.
    pub prior: Option<PriorConfig>,
    /// The posterior family; absent (`None`) is the encoder's diagonal Gaussian, which is also
    /// what configurations written before posterior families existed mean.
    pub posterior: Option<PosteriorConfig>,
    /// What the model is conditioned on (a conditional VAE: the encoder takes `[x | c]`, the
    /// decoder `[z | c]`); absent (`None`): unconditional.
    pub condition: Option<ConditionConfig>,
}

impl MlpVaeConfig {
    /// Kingma & Welling (2014) / PyTorch's `examples/vae`: D-400-20, ReLU, Bernoulli.
    pub fn kingma_welling(input_dim: usize) -> Self {
        Self::new(input_dim, vec![400], 20)
    }

    /// Burda et al. (2016), the IWAE paper's one-stochastic-layer MNIST model: D-200-200-50,
    /// tanh, Bernoulli.
    pub fn iwae_paper(input_dim: usize) -> Self {
        Self::new(input_dim, vec![200, 200], 50).with_activation(Activation::Tanh)
    }

    /// C, the condition values per example (0: unconditional).
    pub fn condition_dim(&self) -> usize {
        self.condition.as_ref().map_or(0, ConditionConfig::width)
    }

    /// The encoder half (its input is `[x | c]`, D + C values).
    pub fn encoder(&self) -> MlpEncoderConfig {
        let input = self.input_dim + self.condition_dim();
        MlpEncoderConfig::new(input, self.hidden.clone(), self.latent_dim)
            .with_activation(self.activation)
    }

    /// The decoder half (its input is `[z | c]`, L + C values).
    pub fn decoder(&self) -> MlpDecoderConfig {
        let hidden = self.hidden.iter().rev().copied().collect();
        let input = self.latent_dim + self.condition_dim();
        MlpDecoderConfig::new(input, hidden, self.input_dim)
            .with_activation(self.activation)
            .with_likelihood(self.likelihood)
    }

    /// Checks the configuration: positive widths, a latent space, a valid likelihood.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        if self.input_dim == 0 || self.hidden.contains(&0) {
            return Err(ArchitectureError::Channels(
                std::iter::once(self.input_dim)
                    .chain(self.hidden.iter().copied())
                    .collect(),
            ));
        }
        if self.latent_dim == 0 {
            return Err(ArchitectureError::LatentDim);
        }
        self.prior.unwrap_or_default().validate()?;
        self.posterior.unwrap_or_default().validate()?;
        validate_condition(self.condition.as_ref(), self.prior)?;
        self.likelihood.validate()
    }

    /// Builds the VAE, or says why this configuration cannot be built.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<Vae<B, MlpEncoder<B>, MlpDecoder<B>>, ArchitectureError> {
        self.validate()?;
        let prior = self
            .prior
            .unwrap_or_default()
            .init(self.latent_dim, self.input_dim, device);
        let flow = self
            .posterior
            .unwrap_or_default()
            .init(self.latent_dim, device);
        Ok(
            Vae::new(self.encoder().init(device), self.decoder().init(device))
                .with_prior(prior)
                .with_flow(flow)
                .with_condition(self.condition.clone()),
        )
    }

    /// Builds the VAE (burn's `init` convention).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vae<B, MlpEncoder<B>, MlpDecoder<B>> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("MlpVaeConfig: {e}"))
    }
}
