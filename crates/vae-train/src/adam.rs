//! Adam whose update is one pass over each parameter on the CPU.
//!
//! burn's `Adam` is a dozen tensor operations per parameter per step; on burn's Flex CPU backend
//! they were 15 % of an MLP VAE training step. [`FusedAdam`] computes the same update with
//! [`vae_kernels::adam_step`]: on Flex, the same f32 operations in the same order — so the same
//! numbers, bit for bit — in one parallel pass that updates the parameter and both moments in
//! place; on every other backend (CUDA fuses these operations itself) burn's `Adam`. Its state
//! is burn's [`AdamState`], so checkpoints written with either optimizer load into the other.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamState, LearningRate, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use vae_kernels::{AdamHyper, adam_step};

/// Settings of [`FusedAdam`]; the defaults are burn's `AdamConfig` defaults.
///
/// With moments m, v (m₀ = v₀ = 0), step t, learning rate η and gradient g:
/// m_t = β₁ m + (1 − β₁) g, v_t = β₂ v + (1 − β₂) g²,
/// θ ← θ − η · m_t·√(1 − β₂ᵗ)/(1 − β₁ᵗ) / (√v_t + ε·√(1 − β₂ᵗ)),
/// which is Kingma & Ba's bias-corrected update with ε added to √v̂_t.
#[derive(Config, Debug)]
pub struct FusedAdamConfig {
    /// Decay of the first moment, β₁ ∈ [0, 1).
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment, β₂ ∈ [0, 1).
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// ε, added to √v̂ for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f32,
}

impl FusedAdamConfig {
    /// The update rule itself (what [`init`](Self::init) wraps for a module).
    pub fn build(&self) -> FusedAdam {
        FusedAdam {
            hyper: AdamHyper {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
        }
    }

    /// The optimizer, for the parameters of modules of type `M`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<FusedAdam, M, B> {
        OptimizerAdaptor::from(self.build())
    }
}

/// Adam, fused into one in-place pass per parameter on Flex with f32 parameters; burn's
/// [`Adam`] with the same settings everywhere else. See [`FusedAdamConfig`] for the update.
#[derive(Clone)]
pub struct FusedAdam {
    hyper: AdamHyper,
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (tensor, state) = adam_step(&self.hyper, lr, tensor, grad, state);
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::backend::Flex;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::{Distribution, Tensor};
    use vae_kernels::fast_path_counts;

    use super::*;

    // The update itself is tested against burn's Adam, bit for bit, in vae-kernels.

    /// Equal bit for bit; on failure, the first difference rather than two long vectors.
    fn assert_identical(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
            panic!("parameter {i}: {} vs {} (and maybe more)", a[i], b[i]);
        }
    }

    /// The state is burn's: through the bytes a checkpoint holds, a fused optimizer resumes
    /// from burn's Adam and burn's Adam from a fused one.
    #[test]
    fn state_round_trips_with_burns_adam() {
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        Ad::seed(&device, 3);
        let layer: Linear<Ad> = LinearConfig::new(5, 3).init(&device);
        let x = Tensor::<Ad, 2>::random([4, 5], Distribution::Normal(0.0, 1.0), &device);
        let grads = |l: &Linear<Ad>| {
            let y = l.forward(x.clone());
            GradientsParams::from_grads((y.clone() * y).sum().backward(), l)
        };
        let weights = |l: Linear<Ad>| l.weight.val().into_data().to_vec::<f32>().unwrap();
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();

        let mut burn_optim = AdamConfig::new().init::<Ad, Linear<Ad>>();
        let g = grads(&layer);
        let layer = burn_optim.step(1e-2, layer, g);
        let bytes = recorder.record(burn_optim.to_record(), ()).unwrap();
        let mut fused_optim = FusedAdamConfig::new()
            .init::<Ad, Linear<Ad>>()
            .load_record(recorder.load(bytes, &device).unwrap());
        let (g1, g2) = (grads(&layer), grads(&layer));
        let before = fast_path_counts().adam_step;
        let by_fused = fused_optim.step(1e-2, layer.clone(), g1);
        assert_eq!(
            fast_path_counts().adam_step,
            before + 2,
            "FusedAdam takes the fused path on Flex"
        );
        let by_burn = burn_optim.step(1e-2, layer, g2);
        assert_identical(&weights(by_fused.clone()), &weights(by_burn));

        let bytes = recorder.record(fused_optim.to_record(), ()).unwrap();
        let mut burn_optim = AdamConfig::new()
            .init::<Ad, Linear<Ad>>()
            .load_record(recorder.load(bytes, &device).unwrap());
        let (g1, g2) = (grads(&by_fused), grads(&by_fused));
        let by_burn = burn_optim.step(1e-2, by_fused.clone(), g1);
        let by_fused = fused_optim.step(1e-2, by_fused, g2);
        assert_identical(&weights(by_fused), &weights(by_burn));
    }
}
