//! The Bernoulli log-likelihood as one fused operation when training on burn's Flex CPU backend.
//!
//! The generic path, `Σ_d [x η − softplus(η)]`, is eight elementwise passes forward and as many
//! backward over `[S, N, D]`, plus Flex's scalar `log1pf`/`expf` in `log_sigmoid` and its
//! backward: about a fifth of an MLP VAE training step on the CPU (perf, `cargo xtask bench
//! --cases mlp-b128`). Here, for `Autodiff<Flex>` and f32 only, the forward is one parallel pass
//! that also keeps σ(η), and the backward is one pass with no transcendental function:
//!
//! * value: `Σ_d x·η − max(η, 0) − log1p(e^{−|η|})`, with exp and log1p of its own that the
//!   compiler vectorises ([`crate::bernoulli_kernel`]);
//! * ∂/∂η = g·(x − σ(η)) and ∂/∂x = Σ_s g·η.
//!
//! Every other backend, and every other element type, takes the generic path.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive, backend::Backend};
use rayon::prelude::*;

use crate::bernoulli_kernel::row_log_prob;

type Ad = Autodiff<Flex, NoCheckpointing>;

/// `value` as type `U`; called only once `T` and `U` are known to be the same type.
fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn Any> = Box::new(value);
    *boxed
        .downcast::<U>()
        .unwrap_or_else(|_| unreachable!("B is Autodiff<Flex>"))
}

/// `Σ_d [x η − softplus(η)]` for `x: [1, N, D]`, `eta: [S, N, D]` → `[S, N]`, when `B` is
/// `Autodiff<Flex>` or `Flex` with f32 tensors; `None` otherwise (nothing consumed).
pub(crate) fn log_prob<B: Backend>(x: &Tensor<B, 3>, eta: &Tensor<B, 3>) -> Option<Tensor<B, 2>> {
    if x.dtype() != DType::F32 || eta.dtype() != DType::F32 {
        return None;
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        // Evaluation (no autodiff), e.g. importance sampling with thousands of samples.
        let x = same_type::<_, Tensor<Flex, 3>>(x.clone())
            .into_primitive()
            .tensor();
        let eta = same_type::<_, Tensor<Flex, 3>>(eta.clone())
            .into_primitive()
            .tensor();
        let forward = Forward::new(&x, &eta, false);
        return Some(same_type::<Tensor<Flex, 2>, _>(Tensor::from_primitive(
            TensorPrimitive::Float(forward.log_prob),
        )));
    }
    if TypeId::of::<B>() != TypeId::of::<Ad>() {
        return None;
    }
    let x = same_type::<_, Tensor<Ad, 3>>(x.clone())
        .into_primitive()
        .tensor();
    let eta = same_type::<_, Tensor<Ad, 3>>(eta.clone())
        .into_primitive()
        .tensor();
    let forward = Forward::new(&x.primitive, &eta.primitive, true);
    let out = match BernoulliLogProb
        .prepare::<NoCheckpointing>([x.node.clone(), eta.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            State {
                x: x.primitive,
                eta: eta.primitive,
                sigmoid: forward.sigmoid,
            },
            forward.log_prob,
        ),
        OpsKind::UnTracked(prep) => prep.finish(forward.log_prob),
    };
    Some(same_type::<Tensor<Ad, 2>, _>(Tensor::from_primitive(
        TensorPrimitive::Float(out),
    )))
}

#[derive(Debug)]
struct BernoulliLogProb;

#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    eta: FlexTensor,
    sigmoid: FlexTensor,
}

struct Forward {
    log_prob: FlexTensor,
    sigmoid: FlexTensor,
}

impl Forward {
    /// The row sums, and σ(η) for the backward pass when `keep_sigmoid` (else an empty tensor).
    fn new(x: &FlexTensor, eta: &FlexTensor, keep_sigmoid: bool) -> Self {
        #[cfg(test)]
        tests::FUSED_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (s, n, d) = dims(eta);
        let x = contiguous(x);
        let eta = contiguous(eta);
        let mut log_prob = vec![0f32; s * n];
        let x_row = |row: usize| &x[(row % n) * d..][..d];
        let mut sigmoid = Vec::new();
        if keep_sigmoid {
            sigmoid = vec![0f32; s * n * d];
            log_prob
                .par_iter_mut()
                .zip(eta.par_chunks(d))
                .zip(sigmoid.par_chunks_mut(d))
                .enumerate()
                .for_each(|(row, ((out, eta), sig))| *out = row_log_prob(x_row(row), eta, sig));
        } else {
            log_prob
                .par_iter_mut()
                .zip(eta.par_chunks(d))
                .enumerate()
                .for_each(|(row, (out, eta))| *out = row_log_prob(x_row(row), eta, &mut []));
        }
        Self {
            log_prob: FlexTensor::from_data(TensorData::new(log_prob, [s, n])),
            sigmoid: {
                let len = sigmoid.len();
                FlexTensor::from_data(TensorData::new(sigmoid, [len]))
            },
        }
    }
}

impl Backward<Flex, 2> for BernoulliLogProb {
    type State = State;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_eta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let g = contiguous(&grad);
        let (s, n, d) = dims(&ops.state.eta);
        let x = contiguous(&ops.state.x);
        if let Some(node) = node_eta {
            // ∂/∂η = g·(x − σ(η)).
            let sigmoid = contiguous(&ops.state.sigmoid);
            let mut d_eta = vec![0f32; s * n * d];
            d_eta
                .par_chunks_mut(d)
                .zip(sigmoid.par_chunks(d))
                .enumerate()
                .for_each(|(row, (out, sig))| {
                    let (g, x) = (g[row], &x[(row % n) * d..][..d]);
                    for ((out, &x), &sig) in out.iter_mut().zip(x).zip(sig) {
                        *out = g * (x - sig);
                    }
                });
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(d_eta, [s, n, d])),
            );
        }
        if let Some(node) = node_x {
            // ∂/∂x = Σ_s g·η, shaped like x: [1, N, D].
            let eta = contiguous(&ops.state.eta);
            let mut d_x = vec![0f32; n * d];
            for sample in 0..s {
                for (i, out) in d_x.chunks_mut(d).enumerate() {
                    let row = sample * n + i;
                    let eta = &eta[row * d..][..d];
                    for (out, &eta) in out.iter_mut().zip(eta) {
                        *out += g[row] * eta;
                    }
                }
            }
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(d_x, [1, n, d])),
            );
        }
    }
}

fn dims(t: &FlexTensor) -> (usize, usize, usize) {
    let shape = t.shape();
    (shape[0], shape[1], shape[2])
}

fn contiguous(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a fresh contiguous copy starts at offset 0")
                .to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Tensor, TensorData};

    use super::{Ad, Flex};
    use crate::{Bernoulli, ObservationModel};

    type Reference = Autodiff<NdArray<f64>>;

    /// Fused forward passes run (proves `Bernoulli::log_prob` reached this module).
    pub(super) static FUSED_CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Logits across the whole range: exact zero, tiny, moderate, and |η| where e^{−|η|}
    /// underflows f32's `1 + e` (> 17) or e itself (> 104).
    fn logits(len: usize) -> Vec<f32> {
        let special = [
            0.0, 1e-7, -1e-7, 1e-3, -0.5, 2.0, -17.0, 18.0, 40.0, -90.0, 120.0,
        ];
        (0..len)
            .map(|i| match i % 3 {
                0 => special[(i / 3) % special.len()],
                _ => ((i as f32 * 0.618_034).fract() - 0.5) * 24.0,
            })
            .collect()
    }

    fn run<B: burn::tensor::backend::AutodiffBackend>(
        x: &[f32],
        eta: &[f32],
        [s, n, d]: [usize; 3],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [n, d]), &dev).require_grad();
        let eta = Tensor::<B, 3>::from_data(TensorData::new(eta.to_vec(), [s, n, d]), &dev)
            .require_grad();
        let log_prob = Bernoulli::from_logits(eta.clone()).log_prob(x.clone());
        // Unequal weights per (sample, example), so a mix-up of rows shows in the gradients.
        let weights: Vec<f32> = (0..s * n).map(|i| 0.5 + i as f32).collect();
        let grads = (log_prob.clone() * Tensor::from_data(TensorData::new(weights, [s, n]), &dev))
            .sum()
            .backward();
        let values = |t: TensorData| t.convert::<f64>().to_vec::<f64>().unwrap();
        (
            values(log_prob.into_data()),
            values(eta.grad(&grads).unwrap().into_data()),
            values(x.grad(&grads).unwrap().into_data()),
        )
    }

    #[test]
    fn fused_log_prob_and_gradients_match_the_generic_path() {
        let [s, n, d] = [2, 5, 33];
        let eta = logits(s * n * d);
        for binary in [true, false] {
            let x: Vec<f32> = (0..n * d)
                .map(|i| {
                    let v = (i as f32 * 0.377).fract();
                    if binary { v.round() } else { v }
                })
                .collect();
            let calls = FUSED_CALLS.load(Ordering::Relaxed);
            let fast = run::<Ad>(&x, &eta, [s, n, d]);
            assert!(
                FUSED_CALLS.load(Ordering::Relaxed) > calls,
                "fused path not taken"
            );
            // Without autodiff (evaluation): the same values, bit for bit.
            let dev = Default::default();
            let inference = Bernoulli::from_logits(Tensor::<Flex, 3>::from_data(
                TensorData::new(eta.clone(), [s, n, d]),
                &dev,
            ))
            .log_prob(Tensor::from_data(TensorData::new(x.clone(), [n, d]), &dev))
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap();
            assert_eq!(inference, fast.0, "evaluation and training paths agree");
            let reference = run::<Reference>(&x, &eta, [s, n, d]);
            for (what, a, b) in [
                ("log p", &fast.0, &reference.0),
                ("d/d eta", &fast.1, &reference.1),
                ("d/dx", &fast.2, &reference.2),
            ] {
                assert_eq!(a.len(), b.len());
                for (i, (a, b)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (a - b).abs() <= 2e-6 * b.abs().max(1.0) * d as f64,
                        "{what}[{i}] (binary x: {binary}): fused {a} vs generic {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn flex_backends_take_the_fused_path_and_others_do_not() {
        let eta = [0.3f32];
        let flex = Default::default();
        let fused = super::log_prob(
            &Tensor::<Ad, 3>::from_data(TensorData::new(vec![1.0f32], [1, 1, 1]), &flex),
            &Tensor::<Ad, 3>::from_data(TensorData::new(eta.to_vec(), [1, 1, 1]), &flex),
        );
        // log p(x = 1) = log σ(0.3) = −log1p(e^{−0.3}), to within two f32 ulps.
        let exact = -(-0.3f64).exp().ln_1p();
        let close = |value: Option<f32>| {
            let value = f64::from(value.expect("fused path"));
            (value - exact).abs() <= 2.0 * f64::from(f32::EPSILON) * exact.abs()
        };
        assert!(close(fused.map(|t| t.into_scalar())), "autodiff path");
        let inference = super::log_prob(
            &Tensor::<Flex, 3>::from_data(TensorData::new(vec![1.0f32], [1, 1, 1]), &flex),
            &Tensor::<Flex, 3>::from_data(TensorData::new(eta.to_vec(), [1, 1, 1]), &flex),
        );
        assert!(close(inference.map(|t| t.into_scalar())), "inference path");
        let ndarray = Default::default();
        let generic = super::log_prob(
            &Tensor::<Reference, 3>::from_data(TensorData::new(vec![1.0f64], [1, 1, 1]), &ndarray),
            &Tensor::<Reference, 3>::from_data(TensorData::new(vec![0.3f64], [1, 1, 1]), &ndarray),
        );
        assert!(generic.is_none(), "other backends keep the generic path");
    }
}
