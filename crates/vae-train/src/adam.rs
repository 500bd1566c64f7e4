//! Adam whose update is one pass over each parameter on the CPU.
//!
//! burn's `Adam` is a dozen tensor operations per parameter per step (each a pass over the
//! parameter and a fresh buffer); on burn's Flex CPU backend they were 15 % of an MLP VAE
//! training step (perf, `cargo xtask bench --cases mlp-b128`). [`FusedAdam`] computes the same
//! update with the same f32 operations in the same order — so the same numbers, bit for bit —
//! in one parallel pass that updates the parameter and both moments in place. On every other
//! backend (CUDA fuses these operations itself) it *is* burn's `Adam`. Its state is burn's
//! [`AdamState`], so checkpoints written with either optimizer load into the other.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

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
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            generic: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        }
    }

    /// The optimizer, for the parameters of modules of type `M`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<FusedAdam, M, B> {
        OptimizerAdaptor::from(FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            generic: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        })
    }
}

/// Adam, fused into one in-place pass per parameter on Flex with f32 parameters; burn's
/// [`Adam`] with the same settings everywhere else. See [`FusedAdamConfig`] for the update.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    generic: Adam,
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
        let fusable = TypeId::of::<B>() == TypeId::of::<Flex>()
            && tensor.dtype() == DType::F32
            && grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.max_moment_2.is_none()
                    && s.momentum.moment_1.dtype() == DType::F32
                    && s.momentum.moment_2.dtype() == DType::F32
            });
        if !fusable {
            return self.generic.step(lr, tensor, grad, state);
        }
        let (tensor, state) = self.step_flex(
            lr,
            same_type::<_, Tensor<Flex, D>>(tensor),
            same_type::<_, Tensor<Flex, D>>(grad),
            state.map(same_type::<_, AdamState<Flex, D>>),
        );
        (same_type(tensor), Some(same_type(state)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

impl FusedAdam {
    fn step_flex<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<Flex, D>,
        grad: Tensor<Flex, D>,
        state: Option<AdamState<Flex, D>>,
    ) -> (Tensor<Flex, D>, AdamState<Flex, D>) {
        #[cfg(test)]
        tests::FUSED_STEPS.with(|n| n.set(n.get() + 1));
        let shape = tensor.shape();
        let (time, m, v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                s.momentum.moment_1,
                s.momentum.moment_2,
            ),
            None => (
                1,
                Tensor::zeros(shape.clone(), &tensor.device()),
                Tensor::zeros(shape, &tensor.device()),
            ),
        };
        let mut param = writable(tensor);
        let mut m = writable(m);
        let mut v = writable(v);
        let grad = grad.into_primitive().tensor().to_contiguous();

        // The scalars exactly as burn's Adam computes them, in f32.
        let (b1, b2) = (self.beta_1, self.beta_2);
        let (c1, c2) = (1.0 - b1, 1.0 - b2);
        let time_i32 = i32::try_from(time).unwrap_or(i32::MAX);
        let bias_correction2_sqrt = (1.0 - b2.powi(time_i32)).sqrt();
        let combined_factor = bias_correction2_sqrt / (1.0 - b1.powi(time_i32));
        let epsilon = self.epsilon * bias_correction2_sqrt;
        let lr = lr as f32;

        let scalars = Scalars {
            first: time == 1,
            b1,
            b2,
            c1,
            c2,
            combined_factor,
            epsilon,
            lr,
        };
        const CHUNK: usize = 1 << 14;
        let g = grad.as_slice::<f32>().expect("contiguous");
        let len = param.storage::<f32>().len();
        assert!(
            [g.len(), m.storage::<f32>().len(), v.storage::<f32>().len()] == [len; 3],
            "Adam: a parameter of {len} elements with a gradient of {} and moments of {} and {}",
            g.len(),
            m.storage::<f32>().len(),
            v.storage::<f32>().len()
        );
        param
            .storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(&scalars, p, m, v, g));
        let tensor = |t: FlexTensor| Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t));
        let momentum = AdaptiveMomentumState::new(time, tensor(m), tensor(v));
        (tensor(param), AdamState::new(momentum))
    }
}

/// The per-step constants of the update, as burn's Adam computes them.
struct Scalars {
    /// The first step: burn sets m = (1 − β₁)·g rather than adding it to zeros (which would
    /// turn a −0 into +0).
    first: bool,
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    combined_factor: f32,
    epsilon: f32,
    lr: f32,
}

/// One chunk of the update; the AVX2 copy is chosen at run time where the CPU has it. Without
/// `-ffast-math`-style contraction, both copies round exactly like burn's separate operations.
fn update(s: &Scalars, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the feature `update_avx2` is compiled for.
        return unsafe { update_avx2(s, p, m, v, g) };
    }
    update_portable(s, p, m, v, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2(s: &Scalars, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    update_portable(s, p, m, v, g);
}

#[inline(always)]
fn update_portable(s: &Scalars, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    let step = |p: &mut f32, m: f32, v: f32| {
        let update = (m * s.combined_factor) / (v.sqrt() + s.epsilon);
        *p -= update * s.lr;
    };
    if s.first {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = g * s.c1;
            *v = (g * g) * s.c2;
            step(p, *m, *v);
        }
    } else {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = *m * s.b1 + g * s.c1;
            *v = *v * s.b2 + (g * g) * s.c2;
            step(p, *m, *v);
        }
    }
}

/// The tensor's elements, contiguous from offset 0 and owned, ready to be updated in place
/// (a copy only when they are shared or strided).
fn writable<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    let t = t.into_primitive().tensor();
    let whole = t
        .layout()
        .contiguous_offsets()
        .is_some_and(|(start, end)| start == 0 && end == t.storage::<f32>().len());
    if whole { t } else { t.to_contiguous() }
}

/// `value` as type `U`; called only once `T` and `U` are known to be the same type.
fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn Any> = Box::new(value);
    *boxed
        .downcast::<U>()
        .unwrap_or_else(|_| unreachable!("types checked by the caller"))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use burn::backend::{Autodiff, NdArray};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::{Distribution, Tensor, backend::AutodiffBackend};

    use super::*;

    thread_local! {
        /// Fused steps taken on this test's thread (proves the Flex path ran, or did not).
        pub(super) static FUSED_STEPS: Cell<usize> = const { Cell::new(0) };
    }

    fn fused_steps() -> usize {
        FUSED_STEPS.with(Cell::get)
    }

    /// Equal bit for bit; on failure, the first difference rather than two long vectors.
    fn assert_identical(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
            panic!("parameter {i}: {} vs {} (and maybe more)", a[i], b[i]);
        }
    }

    /// Parameters of a linear layer after `steps` Adam steps on `loss = Σ (W x + b)²`-like
    /// gradients, with burn's Adam (`fused = false`) or [`FusedAdam`].
    fn train<B: AutodiffBackend>(fused: bool, steps: usize) -> Vec<f32> {
        let device = Default::default();
        B::seed(&device, 7);
        // 21 000 weights: more than one parallel chunk of the update.
        let mut layer: Linear<B> = LinearConfig::new(300, 70).init(&device);
        let x = Tensor::<B, 2>::random([8, 300], Distribution::Normal(0.0, 1.0), &device);
        let config = FusedAdamConfig::new().with_beta_1(0.8).with_epsilon(1e-6);
        let mut fused_optim = config.init::<B, Linear<B>>();
        let mut burn_optim = AdamConfig::new()
            .with_beta_1(0.8)
            .with_epsilon(1e-6)
            .init::<B, Linear<B>>();
        for step in 0..steps {
            let y = layer.forward(x.clone());
            let loss = (y.clone() * y).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            let lr = 1e-2 / (1.0 + step as f64);
            layer = if fused {
                fused_optim.step(lr, layer, grads)
            } else {
                burn_optim.step(lr, layer, grads)
            };
        }
        let mut values = layer
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        values.extend(
            layer
                .bias
                .unwrap()
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap(),
        );
        values
    }

    #[test]
    fn fused_adam_on_flex_is_burns_adam_bit_for_bit() {
        type Ad = Autodiff<Flex>;
        let before = fused_steps();
        let fused = train::<Ad>(true, 6);
        assert!(fused_steps() >= before + 12, "fused path not taken");
        let reference = train::<Ad>(false, 6);
        let initial = train::<Ad>(false, 0);
        assert_ne!(reference, initial, "the steps moved the parameters");
        assert_identical(&fused, &reference);
    }

    #[test]
    fn other_backends_get_burns_adam() {
        type Ad = Autodiff<NdArray>;
        let before = fused_steps();
        assert_identical(&train::<Ad>(true, 4), &train::<Ad>(false, 4));
        assert_eq!(fused_steps(), before, "no fused step off Flex");
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
        let by_fused = fused_optim.step(1e-2, layer.clone(), g1);
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
