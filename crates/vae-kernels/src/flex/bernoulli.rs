//! The Bernoulli log-likelihood as one fused operation on burn's Flex CPU backend.
//!
//! The generic path, `Σ_d [x η − softplus(η)]`, is eight elementwise passes forward and as many
//! backward over `[S, N, D]`, plus Flex's scalar `log1pf`/`expf` in `log_sigmoid` and its
//! backward: about a fifth of an MLP VAE training step on the CPU (perf, `cargo xtask bench
//! --cases mlp-b128`). Here, for `Autodiff<Flex>` (and plain `Flex`, for evaluation) and f32
//! only, the forward is one parallel pass that also keeps σ(−|η|), and the backward is one pass
//! with no transcendental function:
//!
//! * value: `Σ_d x·η − max(η, 0) − log1p(e^{−|η|})`, with exp and log1p of its own that the
//!   compiler vectorises ([`super::simd_math`]);
//! * ∂/∂η = g·(x − σ(η)), formed as g·((x − 1) + σ(−η)) for η > 0 and g·(x − σ(η)) otherwise
//!   from the kept σ(−|η|), so a confident logit's small x − σ(η) is not rounded away against
//!   σ(η) ≈ 1 (x = 1, η = 17: 4.1e-8, where 1 − σ(17) in f32 gave 0; η = 16: 5.9 % off);
//!   ∂/∂x = Σ_s g·η.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive, backend::Backend};
use rayon::prelude::*;

use super::simd_math::row_log_prob;
use crate::dispatch::{
    AutodiffFlex, contiguous, dims, flex_primitive, flex_tensor, is_autodiff_flex, is_flex,
    same_type,
};

/// `Σ_d [x η − softplus(η)]` for `x: [1, N, D]`, `eta: [S, N, D]` → `[S, N]`, when `B` is
/// `Autodiff<Flex>` or `Flex` with f32 tensors; otherwise the inputs, untouched.
pub(crate) fn log_prob<B: Backend>(
    x: Tensor<B, 3>,
    eta: Tensor<B, 3>,
) -> Result<Tensor<B, 2>, (Tensor<B, 3>, Tensor<B, 3>)> {
    if x.dtype() != DType::F32 || eta.dtype() != DType::F32 {
        return Err((x, eta));
    }
    if is_flex::<B>() {
        // Evaluation (no autodiff), e.g. importance sampling with thousands of samples.
        let x = flex_primitive(same_type::<_, Tensor<Flex, 3>>(x));
        let eta = flex_primitive(same_type::<_, Tensor<Flex, 3>>(eta));
        let forward = Forward::new(&x, &eta, false);
        return Ok(same_type(flex_tensor::<2>(forward.log_prob)));
    }
    if !is_autodiff_flex::<B>() {
        return Err((x, eta));
    }
    let x = same_type::<_, Tensor<AutodiffFlex, 3>>(x)
        .into_primitive()
        .tensor();
    let eta = same_type::<_, Tensor<AutodiffFlex, 3>>(eta)
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
                sigmoid_of_neg_abs: forward.sigmoid_of_neg_abs,
            },
            forward.log_prob,
        ),
        OpsKind::UnTracked(prep) => prep.finish(forward.log_prob),
    };
    Ok(same_type::<Tensor<AutodiffFlex, 2>, _>(
        Tensor::from_primitive(TensorPrimitive::Float(out)),
    ))
}

#[derive(Debug)]
struct BernoulliLogProb;

#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    eta: FlexTensor,
    sigmoid_of_neg_abs: FlexTensor,
}

struct Forward {
    log_prob: FlexTensor,
    sigmoid_of_neg_abs: FlexTensor,
}

impl Forward {
    /// The row sums, and σ(−|η|) for the backward pass when `keep_sigmoid` (else an empty
    /// tensor).
    fn new(x: &FlexTensor, eta: &FlexTensor, keep_sigmoid: bool) -> Self {
        let [s, n, d] = dims(&eta.shape());
        let x = contiguous(x);
        let eta = contiguous(eta);
        let mut log_prob = vec![0f32; s * n];
        let x_row = |row: usize| &x[(row % n) * d..][..d];
        let mut sigmoid_of_neg_abs = Vec::new();
        if keep_sigmoid {
            sigmoid_of_neg_abs = vec![0f32; s * n * d];
            log_prob
                .par_iter_mut()
                .zip(eta.par_chunks(d))
                .zip(sigmoid_of_neg_abs.par_chunks_mut(d))
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
            sigmoid_of_neg_abs: {
                let len = sigmoid_of_neg_abs.len();
                FlexTensor::from_data(TensorData::new(sigmoid_of_neg_abs, [len]))
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
        let [s, n, d] = dims(&ops.state.eta.shape());
        let x = contiguous(&ops.state.x);
        if let Some(node) = node_eta {
            // ∂/∂η = g·(x − σ(η)) = g·((x − 1) + σ(−η)) for η > 0: both parts exact.
            let sigmoid_of_neg_abs = contiguous(&ops.state.sigmoid_of_neg_abs);
            let eta = contiguous(&ops.state.eta);
            let mut d_eta = vec![0f32; s * n * d];
            d_eta
                .par_chunks_mut(d)
                .zip(sigmoid_of_neg_abs.par_chunks(d))
                .zip(eta.par_chunks(d))
                .enumerate()
                .for_each(|(row, ((out, sig), eta))| {
                    let (g, x) = (g[row], &x[(row % n) * d..][..d]);
                    for (((out, &x), &sig), &eta) in out.iter_mut().zip(x).zip(sig).zip(eta) {
                        *out = g * if eta > 0.0 { (x - 1.0) + sig } else { x - sig };
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

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::{Tensor, TensorData};

    use crate::dispatch::AutodiffFlex;
    use crate::{bernoulli_log_prob, fast_path_counts};

    use super::Flex;

    type Reference = Autodiff<NdArray<f64>>;

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

    /// log p, ∂/∂η and ∂/∂x of Σ w·log p (unequal weights w per (sample, example), so a mix-up
    /// of rows shows in the gradients), through [`bernoulli_log_prob`] on backend `B`.
    fn run<B: AutodiffBackend>(
        x: &[f32],
        eta: &[f32],
        [s, n, d]: [usize; 3],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let dev = Default::default();
        let x =
            Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), [1, n, d]), &dev).require_grad();
        let eta = Tensor::<B, 3>::from_data(TensorData::new(eta.to_vec(), [s, n, d]), &dev)
            .require_grad();
        let log_prob = bernoulli_log_prob(x.clone(), eta.clone());
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
            let before = fast_path_counts().bernoulli_log_prob;
            let fast = run::<AutodiffFlex>(&x, &eta, [s, n, d]);
            assert_eq!(
                fast_path_counts().bernoulli_log_prob,
                before + 1,
                "fused path not taken"
            );
            // Without autodiff (evaluation): the same values, bit for bit.
            let dev = Default::default();
            let inference = bernoulli_log_prob(
                Tensor::<Flex, 3>::from_data(TensorData::new(x.clone(), [1, n, d]), &dev),
                Tensor::<Flex, 3>::from_data(TensorData::new(eta.clone(), [s, n, d]), &dev),
            )
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap();
            assert_eq!(fast_path_counts().bernoulli_log_prob, before + 2);
            assert_eq!(inference, fast.0, "evaluation and training paths agree");
            let reference = run::<Reference>(&x, &eta, [s, n, d]);
            assert_eq!(
                fast_path_counts().bernoulli_log_prob,
                before + 2,
                "NdArray takes the generic path"
            );
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

    /// ∂/∂η = x − σ(η) relative to its own size for confident logits, where it is the tiny
    /// σ(−|η|): at x = 1, η = 17 it is 4.1e-8, which 1 − f32(σ(17)) = 1 − 1 rounded to 0 before.
    #[test]
    fn fused_gradient_is_accurate_for_confident_logits() {
        let x = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5];
        let eta = [17.0f32, -17.0, 12.0, -12.0, 40.0, 0.0, 0.0, 16.0];
        let before = fast_path_counts().bernoulli_log_prob;
        let (_, d_eta, _) = run::<AutodiffFlex>(&x, &eta, [1, 1, x.len()]);
        assert_eq!(fast_path_counts().bernoulli_log_prob, before + 1);
        for ((&x, &eta), &got) in x.iter().zip(&eta).zip(&d_eta) {
            let (x, eta) = (f64::from(x), f64::from(eta));
            let decay = (-eta.abs()).exp();
            let tail = decay / (1.0 + decay);
            // `run` weights its single row by ½.
            let exact = 0.5
                * if eta > 0.0 {
                    (x - 1.0) + tail
                } else {
                    x - tail
                };
            let relative = ((got - exact) / exact).abs();
            assert!(
                relative <= 4.0 * f64::from(f32::EPSILON),
                "x = {x}, η = {eta}: ∂/∂η = {got:e}, exact {exact:e}"
            );
        }
    }

    #[test]
    fn flex_backends_take_the_fused_path_and_others_do_not() {
        let eta = [0.3f32];
        let flex = Default::default();
        let fused = super::log_prob(
            Tensor::<AutodiffFlex, 3>::from_data(TensorData::new(vec![1.0f32], [1, 1, 1]), &flex),
            Tensor::<AutodiffFlex, 3>::from_data(TensorData::new(eta.to_vec(), [1, 1, 1]), &flex),
        );
        // log p(x = 1) = log σ(0.3) = −log1p(e^{−0.3}), to within two f32 ulps.
        let exact = -(-0.3f64).exp().ln_1p();
        let close = |value: f32| {
            let value = f64::from(value);
            (value - exact).abs() <= 2.0 * f64::from(f32::EPSILON) * exact.abs()
        };
        assert!(
            close(fused.unwrap_or_else(|_| panic!("fused path")).into_scalar()),
            "autodiff path"
        );
        let inference = super::log_prob(
            Tensor::<Flex, 3>::from_data(TensorData::new(vec![1.0f32], [1, 1, 1]), &flex),
            Tensor::<Flex, 3>::from_data(TensorData::new(eta.to_vec(), [1, 1, 1]), &flex),
        );
        assert!(
            close(
                inference
                    .unwrap_or_else(|_| panic!("fused path"))
                    .into_scalar()
            ),
            "inference path"
        );
        let ndarray = Default::default();
        let generic = super::log_prob(
            Tensor::<Reference, 3>::from_data(TensorData::new(vec![1.0f64], [1, 1, 1]), &ndarray),
            Tensor::<Reference, 3>::from_data(TensorData::new(vec![0.3f64], [1, 1, 1]), &ndarray),
        );
        assert!(generic.is_err(), "other backends keep the generic path");
    }
}
