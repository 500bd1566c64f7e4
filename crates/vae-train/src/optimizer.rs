//! The optimizer of a run: Adam or AdamW, optional weight decay and gradient clipping.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamState, LearningRate, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::adam::{FusedAdam, FusedAdamConfig};
use crate::error::TrainError;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015); a `weight_decay` λ is an L2 penalty: g ← g + λθ before the
    /// moments (PyTorch's `Adam(weight_decay=λ)`).
    #[default]
    Adam,
    /// AdamW (Loshchilov & Hutter 2019): decoupled weight decay θ ← θ·(1 − η·λ) before the
    /// Adam update (PyTorch's `AdamW`).
    #[serde(rename = "adamw")]
    AdamW,
}

/// The optimizer settings of a run (the `[training.optimizer]` table); defaults are burn's
/// Adam defaults, PyTorch's except ε (burn: 1e-5, PyTorch: 1e-8).
///
/// With moments m, v, step t, learning rate η and gradient g:
/// m_t = β₁ m + (1 − β₁) g, v_t = β₂ v + (1 − β₂) g²,
/// θ ← θ − η · m_t·√(1 − β₂ᵗ)/(1 − β₁ᵗ) / (√v_t + ε·√(1 − β₂ᵗ)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Adam or AdamW.
    pub kind: OptimizerKind,
    /// Decay of the first moment, β₁ ∈ [0, 1).
    pub beta_1: f32,
    /// Decay of the second moment, β₂ ∈ [0, 1).
    pub beta_2: f32,
    /// ε, added to √v̂ for numerical stability.
    pub epsilon: f32,
    /// λ ≥ 0: an L2 penalty for Adam, decoupled decay for AdamW (0 = none).
    pub weight_decay: f32,
    /// Rescales each parameter tensor's gradient to at most this L2 norm before the update
    /// (burn's per-parameter `GradientClipping::Norm`); `None` = no clipping.
    pub clip_grad_norm: Option<f32>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 0.0,
            clip_grad_norm: None,
        }
    }
}

impl OptimizerConfig {
    /// Adam with the default moments (see [`OptimizerConfig`]).
    pub fn adam() -> Self {
        Self::default()
    }

    /// AdamW with decoupled weight decay λ.
    pub fn adamw(weight_decay: f32) -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            weight_decay,
            ..Self::default()
        }
    }

    /// The same settings with gradient-norm clipping at `max_norm` per parameter tensor.
    pub fn with_clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// Checks every setting; errors name the key under `training.optimizer`.
    pub fn validate(&self) -> Result<(), TrainError> {
        let key = |k: &str| format!("training.optimizer.{k}");
        for (name, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::setting(key(name), beta, "must be in [0, 1)"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(TrainError::setting(
                key("epsilon"),
                self.epsilon,
                "must be a finite positive number",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::setting(
                key("weight_decay"),
                self.weight_decay,
                "must be a finite number ≥ 0",
            ));
        }
        if let Some(norm) = self.clip_grad_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(TrainError::setting(
                key("clip_grad_norm"),
                norm,
                "must be a finite positive number",
            ));
        }
        Ok(())
    }

    /// The optimizer for the parameters of modules of type `M` on backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<VaeOptimizer, M, B> {
        let adam = FusedAdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .build();
        let optimizer = OptimizerAdaptor::from(VaeOptimizer {
            kind: self.kind,
            weight_decay: self.weight_decay,
            adam,
        });
        match self.clip_grad_norm {
            Some(norm) => optimizer.with_grad_clipping(GradientClippingConfig::Norm(norm).init()),
            None => optimizer,
        }
    }
}

/// The optimizer [`OptimizerConfig::init`] builds: weight decay as configured, then the Adam
/// update ([`FusedAdam`]: one in-place pass on the CPU, burn's Adam elsewhere). Its state is
/// burn's `AdamState`, so checkpoints are those of burn's Adam.
#[derive(Clone)]
pub struct VaeOptimizer {
    kind: OptimizerKind,
    weight_decay: f32,
    adam: FusedAdam,
}

impl<B: Backend> SimpleOptimizer<B> for VaeOptimizer {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let lambda = f64::from(self.weight_decay);
        let (tensor, grad) = match self.kind {
            _ if self.weight_decay == 0.0 => (tensor, grad),
            OptimizerKind::Adam => {
                let grad = grad + tensor.clone().mul_scalar(lambda);
                (tensor, grad)
            }
            OptimizerKind::AdamW => (tensor.mul_scalar(1.0 - lr * lambda), grad),
        };
        self.adam.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <FusedAdam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    type B = Autodiff<NdArray<f32>>;

    /// A 1×1 linear layer y = w·x + b with w = 2, b = 0 and loss y (so ∂/∂w = x = 3).
    fn one_step(config: &OptimizerConfig, lr: f64) -> f32 {
        let device = Default::default();
        let mut layer: Linear<B> = LinearConfig::new(1, 1).with_bias(false).init(&device);
        layer.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![2.0f32], [1, 1]),
            &device,
        ));
        let mut optim = config.init::<B, Linear<B>>();
        let x = Tensor::<B, 2>::from_data(TensorData::new(vec![3.0f32], [1, 1]), &device);
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let layer = optim.step(lr, layer, grads);
        layer.weight.val().into_scalar()
    }

    #[test]
    fn the_first_adam_step_moves_by_the_learning_rate() {
        // m̂ = g, v̂ = g², so the step is η·g/(|g| + ε): almost exactly η, against the gradient.
        let w = one_step(&OptimizerConfig::adam(), 0.1);
        let expected = 2.0 - 0.1 * 3.0 / (3.0 + 1e-5);
        assert!((w - expected).abs() < 1e-6, "{w} vs {expected}");
    }

    #[test]
    fn adamw_decays_the_weight_before_the_update_and_adam_adds_an_l2_gradient() {
        let (lr, lambda) = (0.1f64, 0.5f32);
        let w = one_step(&OptimizerConfig::adamw(lambda), lr);
        let decayed = 2.0 * (1.0 - 0.1 * 0.5);
        let expected = decayed - 0.1 * 3.0 / (3.0 + 1e-5);
        assert!((w - expected).abs() < 1e-6, "AdamW: {w} vs {expected}");

        // L2: g = 3 + λ·w = 4, and the first Adam step is still ≈ η (the sign of g).
        let l2 = OptimizerConfig {
            weight_decay: lambda,
            ..OptimizerConfig::adam()
        };
        let w = one_step(&l2, lr);
        let expected = 2.0 - 0.1 * 4.0 / (4.0 + 1e-5);
        assert!((w - expected).abs() < 1e-6, "Adam + L2: {w} vs {expected}");
    }

    #[test]
    fn clipping_bounds_the_gradient_norm() {
        // With β₁ = 0 and β₂ → 0 the update is η·g/(|g| + ε), so a clipped g = 1e-3 (from 3)
        // moves the weight by η·1e-3/(1e-3 + ε) instead of ≈ η.
        let config = OptimizerConfig {
            beta_1: 0.0,
            beta_2: 0.0,
            ..OptimizerConfig::adam()
        }
        .with_clip_grad_norm(1e-3);
        let w = one_step(&config, 0.1);
        let expected = 2.0 - 0.1 * 1e-3 / (1e-3 + 1e-5);
        assert!((w - expected).abs() < 1e-5, "{w} vs {expected}");
    }

    #[test]
    fn settings_are_checked_by_key() {
        let bad = OptimizerConfig {
            beta_2: 1.0,
            ..OptimizerConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("training.optimizer.beta_2"), "{err}");
        let bad = OptimizerConfig::adamw(f32::NAN);
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("training.optimizer.weight_decay"), "{err}");
    }
}
