//! A mixture of diagonal Gaussians: the mixture-of-Gaussians prior and the VampPrior.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, Tensor, backend::Backend};

use crate::diagonal_gaussian::DiagonalGaussian;
use crate::importance::log_sum_exp_dim;
use crate::prior::Prior;
use crate::units::LN_2PI;

/// Elements of the `[S, N, K_block, L]` difference tensor [`GaussianMixture::log_prob`] builds
/// at once (16 MiB in f32). Components are evaluated in blocks of this size, so the memory is
/// O(S·N·K) whatever L, and each density is computed from z − μ_k directly (the expanded
/// quadratic form would cancel when |z|, |μ| ≫ σ).
const BLOCK_ELEMENTS: usize = 1 << 22;

/// p(z) = Σ_k π_k N(z; μ_k, diag σ_k²): K diagonal Gaussians over L dimensions with weights
/// π = softmax(logits).
///
/// Parameters: means `[K, L]`, log-variances `[K, L]` (clamped as by
/// [`DiagonalGaussian::new`]), logits `[K]`. Gradients flow to all three, so a learned prior
/// builds one per forward pass from its parameters. It has no closed-form KL to a Gaussian
/// posterior: the ELBO uses the Monte-Carlo KL with it.
///
/// * The mixture prior: K learned components and weights.
/// * The VampPrior (Tomczak & Welling 2018): the encoder's posteriors at K learned
///   pseudo-inputs, equal weights ([`GaussianMixture::uniform`]).
#[derive(Debug, Clone)]
pub struct GaussianMixture<B: Backend> {
    means: Tensor<B, 2>,
    log_vars: Tensor<B, 2>,
    log_weights: Tensor<B, 1>,
}

impl<B: Backend> GaussianMixture<B> {
    /// Σ_k softmax(logits)_k N(μ_k, diag exp(log_var_k)).
    ///
    /// # Panics
    /// If `means` and `log_vars` are not both `[K, L]`, or `logits` is not `[K]`.
    pub fn new(means: Tensor<B, 2>, log_vars: Tensor<B, 2>, logits: Tensor<B, 1>) -> Self {
        assert_eq!(
            means.dims(),
            log_vars.dims(),
            "GaussianMixture: means and log_vars must both be [components, latent]"
        );
        assert_eq!(
            logits.dims()[0],
            means.dims()[0],
            "GaussianMixture: one logit per component"
        );
        Self {
            means,
            log_vars: log_vars.clamp(
                DiagonalGaussian::<B>::LOG_VAR_MIN,
                DiagonalGaussian::<B>::LOG_VAR_MAX,
            ),
            log_weights: log_softmax(logits, 0),
        }
    }

    /// The equally weighted mixture (1/K) Σ_k N(μ_k, diag exp(log_var_k)), e.g. of the
    /// posteriors an encoder gives K pseudo-inputs (the VampPrior).
    pub fn uniform(components: DiagonalGaussian<B>) -> Self {
        let logits = Tensor::zeros([components.batch_size()], &components.device());
        Self::new(components.mean(), components.log_var(), logits)
    }

    /// The same mixture with gradients stopped at its parameters.
    pub fn detach(&self) -> Self {
        Self {
            means: self.means.clone().detach(),
            log_vars: self.log_vars.clone().detach(),
            log_weights: self.log_weights.clone().detach(),
        }
    }

    /// K, the number of components.
    pub fn components(&self) -> usize {
        self.means.dims()[0]
    }

    /// log π_k, shape `[K]`.
    pub fn log_weights(&self) -> Tensor<B, 1> {
        self.log_weights.clone()
    }

    /// log π_k + log N(z; μ_k, σ_k²) for every sample and component, shape `[S, N, K]`, nats.
    pub fn log_joint_per_component(&self, z: Tensor<B, 3>) -> Tensor<B, 3> {
        let [s, n, l] = z.dims();
        let block = (BLOCK_ELEMENTS / (s * n * l).max(1)).max(1);
        self.log_joint_in_blocks(z, block)
    }

    /// [`log_joint_per_component`](Self::log_joint_per_component), `block` components at a
    /// time.
    pub(crate) fn log_joint_in_blocks(&self, z: Tensor<B, 3>, block: usize) -> Tensor<B, 3> {
        let [k, l] = self.means.dims();
        let z = z.unsqueeze_dim::<4>(2); // [S, N, 1, L]
        let per_block = (0..k)
            .step_by(block)
            .map(|start| {
                let end = (start + block).min(k);
                let mean = self.means.clone().slice([start..end, 0..l]);
                let log_var = self.log_vars.clone().slice([start..end, 0..l]);
                let inv_var = log_var.clone().neg().exp().unsqueeze::<4>();
                // −½ [ln 2π + ln σ² + (z − μ)² / σ²], summed over L: [S, N, block]
                ((z.clone() - mean.unsqueeze::<4>()).powi_scalar(2) * inv_var
                    + log_var.unsqueeze::<4>()
                    + LN_2PI)
                    .mul_scalar(-0.5)
                    .sum_dim(3)
                    .squeeze_dim::<3>(3)
            })
            .collect();
        Tensor::cat(per_block, 2) + self.log_weights.clone().unsqueeze::<3>()
    }
}

impl<B: Backend> Prior<B> for GaussianMixture<B> {
    fn latent_dim(&self) -> usize {
        self.means.dims()[1]
    }

    /// log Σ_k π_k N(z; μ_k, σ_k²), computed stably (log-sum-exp over k).
    fn log_prob(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        log_sum_exp_dim(self.log_joint_per_component(z), 2).squeeze_dim::<2>(2)
    }

    /// A component per draw by the Gumbel-max trick (argmax_k log π_k + G_k, G ~ Gumbel),
    /// then z = μ_k + σ_k ε: all on the device, nothing read back. The draws do not carry
    /// gradients to the weights (the choice of component is discrete).
    fn sample(&self, samples: usize, batch: usize, device: &B::Device) -> Tensor<B, 3> {
        let [k, l] = self.means.dims();
        let draws = samples * batch;
        let dtype = self.means.dtype();
        let uniform = Tensor::<B, 2>::random([draws, k], Distribution::Default, (device, dtype));
        // −ln(−ln u): u = 0 gives −∞ (never chosen), as it should.
        let gumbel = uniform.log().neg().log().neg();
        let chosen = (gumbel + self.log_weights.clone().to_device(device).unsqueeze::<2>())
            .argmax(1)
            .reshape([draws]);
        let mean = self
            .means
            .clone()
            .to_device(device)
            .select(0, chosen.clone());
        let std = self
            .log_vars
            .clone()
            .to_device(device)
            .select(0, chosen)
            .mul_scalar(0.5)
            .exp();
        let eps = Tensor::random([draws, l], Distribution::Normal(0.0, 1.0), (device, dtype));
        (mean + std * eps).reshape([samples, batch, l])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    use super::*;

    type B = NdArray<f64>;

    #[test]
    fn blocks_of_components_give_the_same_densities() {
        let device = Default::default();
        let random = |shape: [usize; 2]| {
            Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        let mixture =
            GaussianMixture::new(random([7, 3]), random([7, 3]), random([1, 7]).reshape([7]));
        let z = random([10, 3]).reshape([2, 5, 3]);
        let whole = mixture.log_joint_in_blocks(z.clone(), 7).into_data();
        for block in [1, 2, 3, 6] {
            let blocked = mixture.log_joint_in_blocks(z.clone(), block).into_data();
            whole.assert_approx_eq::<f64>(&blocked, burn::tensor::Tolerance::absolute(1e-12));
        }
        let expected_shape = TensorData::zeros::<f64, _>([2, 5, 7]).shape;
        assert_eq!(whole.shape, expected_shape);
    }
}
