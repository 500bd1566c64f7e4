//! burn's Adam update, bit for bit, as one in-place pass over a Flex f32 parameter.
//!
//! burn's `Adam` is a dozen tensor operations per parameter per step (each a pass over the
//! parameter and a fresh buffer); on burn's Flex CPU backend they were 15 % of an MLP VAE
//! training step (perf, `cargo xtask bench --cases mlp-b128`). Here the same update runs with
//! the same f32 operations in the same order — so the same numbers, bit for bit — in one
//! parallel pass that updates the parameter and both moments in place. The state stays burn's
//! `AdamState`, so checkpoints are interchangeable.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::optim::{AdamState, AdaptiveMomentumState};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use crate::dispatch::{flex_primitive, flex_tensor, is_flex, same_type};
use crate::ops::AdamHyper;

/// The inputs of [`step`], handed back when it declines.
pub(crate) type Inputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Option<AdamState<B, D>>);

/// One Adam step of `tensor` with gradient `grad`, when `B` is `Flex` and parameter, gradient
/// and moments are f32 without AMSGrad's maximum; otherwise the inputs, untouched.
pub(crate) fn step<B: Backend, const D: usize>(
    hyper: &AdamHyper,
    lr: f64,
    tensor: Tensor<B, D>,
    grad: Tensor<B, D>,
    state: Option<AdamState<B, D>>,
) -> Result<(Tensor<B, D>, AdamState<B, D>), Inputs<B, D>> {
    let fusable = is_flex::<B>()
        && tensor.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && state.as_ref().is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && s.momentum.moment_1.dtype() == DType::F32
                && s.momentum.moment_2.dtype() == DType::F32
        });
    if !fusable {
        return Err((tensor, grad, state));
    }
    let (tensor, state) = step_flex(
        hyper,
        lr,
        same_type::<_, Tensor<Flex, D>>(tensor),
        same_type::<_, Tensor<Flex, D>>(grad),
        state.map(same_type::<_, AdamState<Flex, D>>),
    );
    Ok((same_type(tensor), same_type(state)))
}

fn step_flex<const D: usize>(
    hyper: &AdamHyper,
    lr: f64,
    tensor: Tensor<Flex, D>,
    grad: Tensor<Flex, D>,
    state: Option<AdamState<Flex, D>>,
) -> (Tensor<Flex, D>, AdamState<Flex, D>) {
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
    let grad = flex_primitive(grad).to_contiguous();

    // The scalars exactly as burn's Adam computes them, in f32.
    let (b1, b2) = (hyper.beta_1, hyper.beta_2);
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    let time_i32 = i32::try_from(time).unwrap_or(i32::MAX);
    let bias_correction2_sqrt = (1.0 - b2.powi(time_i32)).sqrt();
    let combined_factor = bias_correction2_sqrt / (1.0 - b1.powi(time_i32));
    let epsilon = hyper.epsilon * bias_correction2_sqrt;
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
    let momentum = AdaptiveMomentumState::new(time, flex_tensor(m), flex_tensor(v));
    (flex_tensor(param), AdamState::new(momentum))
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
    let t = flex_primitive(t);
    let whole = t
        .layout()
        .contiguous_offsets()
        .is_some_and(|(start, end)| start == 0 && end == t.storage::<f32>().len());
    if whole { t } else { t.to_contiguous() }
}

#[cfg(test)]
mod tests;
