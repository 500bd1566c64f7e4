use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamConfig, AdamState, GradientsParams, LearningRate, Optimizer, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor, TensorData};

use crate::{AdamHyper, adam_step, fast_path_counts};

/// [`adam_step`] as a burn optimizer, the way vae-train's `FusedAdam` wraps it.
#[derive(Clone)]
struct KernelAdam(AdamHyper);

impl<B: Backend> SimpleOptimizer<B> for KernelAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (tensor, state) = adam_step(&self.0, lr, tensor, grad, state);
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

fn values<const D: usize>(t: Tensor<impl Backend, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Equal bit for bit; on failure, the first difference rather than two long vectors.
fn assert_identical(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!("{what}[{i}]: {:e} vs {:e} (and maybe more)", a[i], b[i]);
    }
}

/// Parameters of a linear layer after `steps` Adam steps on `loss = Σ (W x + b)²`, with burn's
/// Adam (`fused = false`) or [`adam_step`].
fn train<B: AutodiffBackend>(fused: bool, steps: usize) -> Vec<f32> {
    let device = Default::default();
    B::seed(&device, 7);
    // 21 000 weights: more than one parallel chunk of the update.
    let mut layer: Linear<B> = LinearConfig::new(300, 70).init(&device);
    let x = Tensor::<B, 2>::random([8, 300], Distribution::Normal(0.0, 1.0), &device);
    let hyper = AdamHyper {
        beta_1: 0.8,
        epsilon: 1e-6,
        ..AdamHyper::default()
    };
    let mut fused_optim: OptimizerAdaptor<KernelAdam, Linear<B>, B> = KernelAdam(hyper).into();
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
    let layer = layer.valid();
    let mut all = values(layer.weight.val());
    all.extend(values(layer.bias.unwrap().val()));
    all
}

#[test]
fn fused_adam_on_flex_is_burns_adam_bit_for_bit() {
    type Ad = Autodiff<Flex>;
    let before = fast_path_counts().adam_step;
    let fused = train::<Ad>(true, 6);
    assert_eq!(
        fast_path_counts().adam_step,
        before + 12,
        "fused path not taken (two parameters, six steps)"
    );
    let reference = train::<Ad>(false, 6);
    let initial = train::<Ad>(false, 0);
    assert_ne!(reference, initial, "the steps moved the parameters");
    assert_identical(&fused, &reference, "parameter");
}

#[test]
fn other_backends_get_burns_adam() {
    type Ad = Autodiff<NdArray>;
    let before = fast_path_counts();
    assert_identical(&train::<Ad>(true, 4), &train::<Ad>(false, 4), "parameter");
    assert_eq!(fast_path_counts(), before, "no fused step off Flex");
}

/// Parameter and both moments, bit for bit, step by step, on tensors with signed zeros: the
/// first step writes m = (1 − β₁)·g as burn does (a −0 gradient gives m = −0, not +0), and
/// later steps, learning rates and a strided (transposed) parameter agree too.
#[test]
fn every_step_and_moment_is_burns_including_negative_zero() {
    let device = Default::default();
    let hyper = AdamHyper::default();
    let burn_adam = AdamConfig::new().build();
    let param: Vec<f32> = (0..40)
        .map(|i| match i % 5 {
            0 => -0.0,
            1 => 0.0,
            _ => (i as f32 * 0.37).sin(),
        })
        .collect();
    let grad_at = |step: usize| {
        let g: Vec<f32> = (0..40)
            .map(|i| match (i + step) % 4 {
                0 => -0.0,
                1 => 0.0,
                _ => ((i * 7 + step * 3) as f32 * 0.21).cos() * 10f32.powi(step as i32 % 3 - 1),
            })
            .collect();
        Tensor::<Flex, 2>::from_data(TensorData::new(g, [8, 5]), &device)
    };
    // A transposed view: the kernel has to make it contiguous first, like burn's ops read it.
    let start = Tensor::<Flex, 2>::from_data(TensorData::new(param, [5, 8]), &device).transpose();
    let (mut ours, mut theirs) = (start.clone(), start);
    let (mut our_state, mut their_state): (Option<AdamState<Flex, 2>>, _) = (None, None);
    let before = fast_path_counts().adam_step;
    for step in 0..5 {
        let lr = 1e-3 * (1.0 + step as f64);
        let (p, s) = adam_step(&hyper, lr, ours, grad_at(step), our_state);
        let (q, t) = burn_adam.step(lr, theirs, grad_at(step), their_state);
        let t = t.expect("burn's Adam returns its state");
        assert_eq!(s.momentum.time, t.momentum.time, "step {step}: time");
        assert_identical(&values(p.clone()), &values(q.clone()), "parameter");
        for (what, a, b) in [
            ("m", &s.momentum.moment_1, &t.momentum.moment_1),
            ("v", &s.momentum.moment_2, &t.momentum.moment_2),
        ] {
            assert_identical(&values(a.clone()), &values(b.clone()), what);
        }
        if step == 0 {
            let m = values(s.momentum.moment_1.clone());
            assert!(
                m.iter().any(|m| m.to_bits() == (-0f32).to_bits()),
                "a −0 gradient leaves m = −0 on the first step"
            );
        }
        (ours, theirs, our_state, their_state) = (p, q, Some(s), Some(t));
    }
    assert_eq!(
        fast_path_counts().adam_step,
        before + 5,
        "fused path not taken"
    );
}
