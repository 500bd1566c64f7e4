//! Convolutional encoder and decoder for square images.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, backend::Backend};
use vae_core::DiagonalGaussian;
use vae_kernels::{batch_norm, leaky_relu};

use crate::architecture::{ArchitectureError, ImageShape, validate_square_power_of_two};
use crate::condition::{ConditionConfig, validate_condition};
use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::likelihood::{DecodedLikelihood, Likelihood, LikelihoodHead};
use crate::mlp::split_posterior;
use crate::posterior::PosteriorConfig;
use crate::prior::PriorConfig;
use crate::vae::Vae;

const LEAKY_SLOPE: f64 = 0.01;

/// Convolutional encoder: per width in `channels`, a 3×3 stride-2 convolution, batch norm and
/// LeakyReLU (each halves the side), then one linear layer to (μ, ln σ²).
///
/// Input is flattened `[N, C·H·W]` and reshaped to `[N, C, H, W]` internally. A conditional
/// encoder takes `[N, C·H·W + K]`, the image then K condition values, which join the flattened
/// features before the last linear layer.
#[derive(Config, Debug)]
pub struct ConvEncoderConfig {
    /// The input image shape.
    pub image: ImageShape,
    /// Output channels of each downsampling block.
    pub channels: Vec<usize>,
    /// L, the latent size.
    pub latent_dim: usize,
    /// K, the condition values after the image in each input row (0: unconditional).
    #[config(default = 0)]
    pub condition_dim: usize,
}

/// A 3×3 stride-2 convolution (or transposed convolution), batch norm, LeakyReLU.
#[derive(Module, Debug)]
struct DownBlock<B: Backend> {
    conv: Conv2d<B>,
    norm: BatchNorm<B>,
}

#[derive(Module, Debug)]
struct UpBlock<B: Backend> {
    conv: ConvTranspose2d<B>,
    norm: BatchNorm<B>,
}

impl<B: Backend> DownBlock<B> {
    fn new(channels_in: usize, channels_out: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                // Batch norm subtracts the channel mean right after: a bias would cancel.
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        leaky_relu(batch_norm(&self.norm, conv(&self.conv, x)), LEAKY_SLOPE)
    }
}

impl<B: Backend> UpBlock<B> {
    fn new(channels_in: usize, channels_out: usize, device: &B::Device) -> Self {
        Self {
            conv: ConvTranspose2dConfig::new([channels_in, channels_out], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_padding_out([1, 1])
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        leaky_relu(
            batch_norm(&self.norm, conv_transpose(&self.conv, x)),
            LEAKY_SLOPE,
        )
    }
}

/// `conv.forward(x)` through [`vae_kernels::conv2d`] (our convolutions use symmetric explicit
/// padding).
fn conv<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return conv.forward(x),
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    vae_kernels::conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `conv.forward(x)` through [`vae_kernels::conv_transpose2d`].
fn conv_transpose<B: Backend>(conv: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let options = ConvTransposeOptions::new(
        conv.stride,
        conv.padding,
        conv.padding_out,
        conv.dilation,
        conv.groups,
    );
    vae_kernels::conv_transpose2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// See [`ConvEncoderConfig`].
#[derive(Module, Debug)]
pub struct ConvEncoder<B: Backend> {
    blocks: Vec<DownBlock<B>>,
    posterior: Linear<B>,
    channels: usize,
    side: usize,
    latent_dim: usize,
    /// Not a parameter (and absent from the records of runs from before conditioning).
    #[module(skip)]
    condition_dim: usize,
}

impl ConvEncoderConfig {
    /// Side length after all downsampling blocks.
    fn final_side(&self) -> usize {
        self.image.height >> self.channels.len()
    }

    /// Checks the image shape against the number of blocks.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        validate_conv(&self.image, &self.channels, self.latent_dim)
    }

    /// Builds the encoder, or says why this configuration cannot be built.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<ConvEncoder<B>, ArchitectureError> {
        self.validate()?;
        let widths: Vec<usize> = std::iter::once(self.image.channels)
            .chain(self.channels.iter().copied())
            .collect();
        let side = self.final_side();
        Ok(ConvEncoder {
            blocks: widths
                .windows(2)
                .map(|w| DownBlock::new(w[0], w[1], device))
                .collect(),
            posterior: LinearConfig::new(
                self.channels.last().unwrap() * side * side + self.condition_dim,
                2 * self.latent_dim,
            )
            .init(device),
            channels: self.image.channels,
            side: self.image.height,
            latent_dim: self.latent_dim,
            condition_dim: self.condition_dim,
        })
    }

    /// Builds the encoder (burn's `init` convention).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvEncoder<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("ConvEncoderConfig: {e}"))
    }
}

impl<B: Backend> Encoder<B> for ConvEncoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let [n, width] = x.dims();
        let pixels = self.channels * self.side * self.side;
        let (image, condition) = match self.condition_dim {
            0 => (x, None),
            k => (
                x.clone().slice([0..n, 0..pixels]),
                Some(x.slice([0..n, pixels..pixels + k])),
            ),
        };
        assert_eq!(
            width,
            pixels + self.condition_dim,
            "ConvEncoder: {width} input values, expected {pixels} pixels and {} condition values",
            self.condition_dim
        );
        let image = image.reshape([n, self.channels, self.side, self.side]);
        let h = self.blocks.iter().fold(image, |h, block| block.forward(h));
        let features = match condition {
            None => h.flatten(1, 3),
            Some(c) => Tensor::cat(vec![h.flatten(1, 3), c], 1),
        };
        let [mean, log_var] = split_posterior(self.posterior.forward(features), self.latent_dim);
        DiagonalGaussian::new(mean, log_var)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}

/// Convolutional decoder, the mirror of [`ConvEncoderConfig`]: a linear layer to the smallest
/// feature map, per width in `channels` (reversed) a 3×3 stride-2 transposed convolution, batch
/// norm and LeakyReLU (each doubles the side), then a 3×3 convolution to the image channels and
/// the likelihood head.
#[derive(Config, Debug)]
pub struct ConvDecoderConfig {
    /// The output image shape.
    pub image: ImageShape,
    /// The encoder's channel widths, in encoder order.
    pub channels: Vec<usize>,
    /// L, the latent size.
    pub latent_dim: usize,
    /// The observation model of the output.
    #[config(default = "Likelihood::Bernoulli")]
    pub likelihood: Likelihood,
}

/// See [`ConvDecoderConfig`].
#[derive(Module, Debug)]
pub struct ConvDecoder<B: Backend> {
    input: Linear<B>,
    blocks: Vec<UpBlock<B>>,
    output: Conv2d<B>,
    head: LikelihoodHead<B>,
    top_channels: usize,
    top_side: usize,
    data_dim: usize,
}

impl ConvDecoderConfig {
    /// Checks the image shape against the number of blocks.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        validate_conv(&self.image, &self.channels, self.latent_dim)?;
        self.likelihood.validate()
    }

    /// Builds the decoder, or says why this configuration cannot be built.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<ConvDecoder<B>, ArchitectureError> {
        self.validate()?;
        let top = *self.channels.last().unwrap();
        let side = self.image.height >> self.channels.len();
        // Reversed widths, ending with the first width again: one upsampling per encoder block.
        let widths: Vec<usize> = self
            .channels
            .iter()
            .rev()
            .copied()
            .chain(std::iter::once(self.channels[0]))
            .collect();
        Ok(ConvDecoder {
            input: LinearConfig::new(self.latent_dim, top * side * side).init(device),
            blocks: widths
                .windows(2)
                .map(|w| UpBlock::new(w[0], w[1], device))
                .collect(),
            output: Conv2dConfig::new([self.channels[0], self.image.channels], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            head: self.likelihood.init(self.image.num_values(), device),
            top_channels: top,
            top_side: side,
            data_dim: self.image.num_values(),
        })
    }

    /// Builds the decoder (burn's `init` convention).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvDecoder<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("ConvDecoderConfig: {e}"))
    }
}

impl<B: Backend> Decoder<B> for ConvDecoder<B> {
    type Output = DecodedLikelihood<B>;

    fn decode(&self, z: Tensor<B, 3>) -> DecodedLikelihood<B> {
        let [s, n, l] = z.dims();
        let h = self.input.forward(z.reshape([s * n, l])).reshape([
            s * n,
            self.top_channels,
            self.top_side,
            self.top_side,
        ]);
        let h = self.blocks.iter().fold(h, |h, block| block.forward(h));
        let out = conv(&self.output, h).reshape([s, n, self.data_dim]);
        self.head.apply(out)
    }

    fn data_dim(&self) -> usize {
        self.data_dim
    }
}

fn validate_conv(
    image: &ImageShape,
    channels: &[usize],
    latent_dim: usize,
) -> Result<(), ArchitectureError> {
    validate_square_power_of_two(image)?;
    if channels.is_empty() || channels.contains(&0) {
        return Err(ArchitectureError::Channels(channels.to_vec()));
    }
    if latent_dim == 0 {
        return Err(ArchitectureError::LatentDim);
    }
    if image.height >> channels.len() == 0 {
        return Err(ArchitectureError::TooManyBlocks {
            side: image.height,
            blocks: channels.len(),
        });
    }
    Ok(())
}

/// A convolutional VAE: [`ConvEncoderConfig`] and its mirror [`ConvDecoderConfig`].
#[derive(Config, Debug)]
pub struct ConvVaeConfig {
    /// Image shape (square, side a power of two ≥ 16).
    pub image: ImageShape,
    /// Channel widths of the downsampling blocks.
    pub channels: Vec<usize>,
    /// L, the latent size.
    pub latent_dim: usize,
    /// The decoder's observation model.
    #[config(default = "Likelihood::Bernoulli")]
    pub likelihood: Likelihood,
    /// The prior p(z); absent (`None`) is the standard normal N(0, I), which is also what
    /// configurations written before priors were configurable mean.
    pub prior: Option<PriorConfig>,
    /// The posterior family; absent (`None`) is the encoder's diagonal Gaussian, which is also
    /// what configurations written before posterior families existed mean.
    pub posterior: Option<PosteriorConfig>,
    /// What the model is conditioned on (a conditional VAE: the condition joins the encoder's
    /// features before its last layer and the decoder's input `[z | c]`); absent (`None`):
    /// unconditional.
    pub condition: Option<ConditionConfig>,
}

impl ConvVaeConfig {
    /// The common CelebA 64×64 VAE (e.g. PyTorch-VAE's `VanillaVAE`): channels
    /// 32-64-128-256-512, latent 128, on 3×64×64 images, with the given likelihood.
    pub fn celeba_64(likelihood: Likelihood) -> Self {
        Self::new(ImageShape::new(3, 64, 64), vec![32, 64, 128, 256, 512], 128)
            .with_likelihood(likelihood)
    }

    /// C, the condition values per example (0: unconditional).
    pub fn condition_dim(&self) -> usize {
        self.condition.as_ref().map_or(0, ConditionConfig::width)
    }

    /// The encoder half.
    pub fn encoder(&self) -> ConvEncoderConfig {
        ConvEncoderConfig::new(self.image, self.channels.clone(), self.latent_dim)
            .with_condition_dim(self.condition_dim())
    }

    /// The decoder half (its input is `[z | c]`, L + C values).
    pub fn decoder(&self) -> ConvDecoderConfig {
        let input = self.latent_dim + self.condition_dim();
        ConvDecoderConfig::new(self.image, self.channels.clone(), input)
            .with_likelihood(self.likelihood)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        self.prior.unwrap_or_default().validate()?;
        self.posterior.unwrap_or_default().validate()?;
        validate_condition(self.condition.as_ref(), self.prior)?;
        if self.latent_dim == 0 {
            return Err(ArchitectureError::LatentDim);
        }
        self.decoder().validate()
    }

    /// Builds the VAE, or says why this configuration cannot be built.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<Vae<B, ConvEncoder<B>, ConvDecoder<B>>, ArchitectureError> {
        self.validate()?;
        let prior =
            self.prior
                .unwrap_or_default()
                .init(self.latent_dim, self.image.num_values(), device);
        Ok(Vae::new(
            self.encoder().try_init(device)?,
            self.decoder().try_init(device)?,
        )
        .with_prior(prior)
        .with_flow(
            self.posterior
                .unwrap_or_default()
                .init(self.latent_dim, device),
        )
        .with_condition(self.condition.clone()))
    }

    /// Builds the VAE (burn's `init` convention).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vae<B, ConvEncoder<B>, ConvDecoder<B>> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("ConvVaeConfig: {e}"))
    }
}
