//! The inverse autoregressive flow (Kingma et al. 2016): a posterior family more flexible than
//! the encoder's diagonal Gaussian, with an exact log-density.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use vae_core::{DiagonalGaussian, Flow, log_sigmoid};

/// The gate's bias: σ = sigmoid(s + 1) starts near 0.73, so a fresh flow stays close to the
/// identity (the paper's "forget gate bias").
const GATE_BIAS: f64 = 1.0;

/// A stack of IAF steps over L latents. Step t maps z to
///
/// `z' = σ ⊙ z + (1 − σ) ⊙ m`, with (m, s) = MADE_t(z, c), σ = sigmoid(s + 1),
///
/// where MADE_t is a masked two-layer network in which output l sees only the inputs before l
/// in step t's order (reversed every other step) and the context c = [μ, ln σ²] of the
/// encoder's Gaussian. Each step's Jacobian is triangular in its order, so the flow's
/// log |det ∂z/∂z₀| = Σ_t Σ_l ln σ_{t,l}.
#[derive(Module, Debug)]
pub struct Iaf<B: Backend> {
    steps: Vec<IafStep<B>>,
    latent_dim: usize,
}

/// One autoregressive step: MADE(z, c) → (m, s).
#[derive(Module, Debug)]
struct IafStep<B: Backend> {
    /// z → hidden, masked: `[L, H]`.
    input: Linear<B>,
    /// c = [μ, ln σ²] → hidden, unmasked: `[2L, H]`.
    context: Linear<B>,
    /// hidden → [m, s], masked: `[H, 2L]`.
    output: Linear<B>,
    reversed: bool,
}

impl<B: Backend> Iaf<B> {
    /// `steps` steps with `hidden` units each over `latent_dim` latents, burn's default
    /// initialisation.
    pub fn new(latent_dim: usize, steps: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            steps: (0..steps)
                .map(|t| IafStep {
                    input: LinearConfig::new(latent_dim, hidden).init(device),
                    context: LinearConfig::new(2 * latent_dim, hidden).init(device),
                    output: LinearConfig::new(hidden, 2 * latent_dim).init(device),
                    reversed: t % 2 == 1,
                })
                .collect(),
            latent_dim,
        }
        .initialized()
    }

    /// The same flow with every parameter created now. burn's `Linear` creates its weights
    /// lazily, and a clone of a not-yet-created parameter creates its own: the flow is cloned
    /// into every posterior, so without this each pass would draw fresh weights and the
    /// optimiser would never see their gradients.
    fn initialized(self) -> Self {
        for step in &self.steps {
            for layer in [&step.input, &step.context, &step.output] {
                let _ = layer.weight.val();
                if let Some(bias) = &layer.bias {
                    let _ = bias.val();
                }
            }
        }
        self
    }

    /// The number of steps.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }
}

impl<B: Backend> IafStep<B> {
    /// The order position (1-based) of latent `l` in this step.
    fn degree(&self, l: usize, latent: usize) -> usize {
        if self.reversed { latent - l } else { l + 1 }
    }

    /// The masks of the input `[L, H]` and output `[H, 2L]` layers: hidden unit k has degree
    /// d_k = k mod max(L − 1, 1) + 1 and sees inputs of degree ≤ d_k; output l (for m and s)
    /// sees hidden units of degree < its own.
    fn masks(&self, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let latent = self.input.weight.val().dims()[0];
        let hidden = self.input.weight.val().dims()[1];
        let hidden_degree = |k: usize| k % latent.saturating_sub(1).max(1) + 1;
        let input: Vec<f32> = (0..latent)
            .flat_map(|l| (0..hidden).map(move |k| (l, k)))
            .map(|(l, k)| f32::from(u8::from(hidden_degree(k) >= self.degree(l, latent))))
            .collect();
        let output: Vec<f32> = (0..hidden)
            .flat_map(|k| (0..2 * latent).map(move |j| (k, j)))
            .map(|(k, j)| f32::from(u8::from(self.degree(j % latent, latent) > hidden_degree(k))))
            .collect();
        let dtype = self.input.weight.val().dtype();
        (
            Tensor::from_data(TensorData::new(input, [latent, hidden]), (device, dtype)),
            Tensor::from_data(
                TensorData::new(output, [hidden, 2 * latent]),
                (device, dtype),
            ),
        )
    }

    /// (m, s + gate bias) for z `[S, N, L]` and the context's contribution `[N, H]`.
    fn shift_and_gate(
        &self,
        z: Tensor<B, 3>,
        context: Tensor<B, 2>,
        masks: &(Tensor<B, 2>, Tensor<B, 2>),
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [s, n, l] = z.dims();
        let hidden = self.input.weight.val().dims()[1];
        let masked = |layer: &Linear<B>, mask: &Tensor<B, 2>, x: Tensor<B, 2>| {
            let out = x.matmul(layer.weight.val() * mask.clone());
            match &layer.bias {
                Some(bias) => out + bias.val().unsqueeze_dim::<2>(0),
                None => out,
            }
        };
        let h = masked(&self.input, &masks.0, z.reshape([s * n, l])).reshape([s, n, hidden])
            + context.unsqueeze_dim::<3>(0);
        let out =
            masked(&self.output, &masks.1, relu(h).reshape([s * n, hidden])).reshape([s, n, 2 * l]);
        let m = out.clone().slice([0..s, 0..n, 0..l]);
        let gate = out.slice([0..s, 0..n, l..2 * l]).add_scalar(GATE_BIAS);
        (m, gate)
    }
}

/// (ln σ, 1 − σ) for σ = sigmoid(gate), each in the gate's own float type with no
/// cancellation (1 − σ is σ(−gate)): burn's `sigmoid` rounds through f32, which would leave the
/// log-determinant of an f64 flow 1e-7 off its Jacobian.
fn gates<B: Backend>(gate: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
    (log_sigmoid(gate.clone()), log_sigmoid(gate.neg()).exp())
}

/// The context [μ, ln σ²] of the base Gaussian, `[N, 2L]`.
fn context<B: Backend>(base: &DiagonalGaussian<B>) -> Tensor<B, 2> {
    Tensor::cat(vec![base.mean(), base.log_var()], 1)
}

impl<B: Backend> Flow<B> for Iaf<B> {
    fn forward(
        &self,
        z0: Tensor<B, 3>,
        base: &DiagonalGaussian<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [s, n, _] = z0.dims();
        let c = context(base);
        let mut log_det = Tensor::<B, 2>::zeros([s, n], &z0.device());
        let mut z = z0;
        for step in &self.steps {
            let masks = step.masks(&z.device());
            let (m, gate) = step.shift_and_gate(z.clone(), step.context.forward(c.clone()), &masks);
            let (log_sigma, one_minus_sigma) = gates(gate);
            log_det = log_det + log_sigma.clone().sum_dim(2).squeeze_dim::<2>(2);
            z = log_sigma.exp() * z + one_minus_sigma * m;
        }
        (z, log_det)
    }

    /// Inverts step by step, last first; within a step, L passes: after pass l the first l
    /// latents in the step's order are exact (each depends only on those before it).
    fn inverse(&self, z: Tensor<B, 3>, base: &DiagonalGaussian<B>) -> Tensor<B, 3> {
        let c = context(base);
        let mut z = z;
        for step in self.steps.iter().rev() {
            let masks = step.masks(&z.device());
            let context = step.context.forward(c.clone());
            let target = z.clone();
            for _ in 0..self.latent_dim {
                let (m, gate) = step.shift_and_gate(z.clone(), context.clone(), &masks);
                let (log_sigma, one_minus_sigma) = gates(gate);
                z = (target.clone() - one_minus_sigma * m) / log_sigma.exp();
            }
        }
        z
    }
}
