//! The observation model p(x|z): what a decoder's output parameterises.

use burn::tensor::{Tensor, activation::log_sigmoid, backend::Backend};

/// A batch of factorised distributions over data x, one per (latent sample, example): the
/// decoder's p(x|z).
///
/// Parameters have shape `[S, N, D]` (latent samples × batch × data dimensions, images
/// flattened); data has shape `[N, D]` and is broadcast over the S samples.
pub trait ObservationModel<B: Backend> {
    /// log p(x|z) summed over the D data dimensions, shape `[S, N]`, nats.
    ///
    /// A log-*likelihood*: higher is better; for densities it can be positive.
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// E[x|z], the mean in data space, shape `[S, N, D]`: what a "reconstruction" shows.
    fn mean(&self) -> Tensor<B, 3>;

    /// One draw x ~ p(x|z), shape `[S, N, D]`.
    fn sample(&self) -> Tensor<B, 3>;

    /// The shape `[S, N, D]` of the parameters.
    fn dims(&self) -> [usize; 3];
}

/// Checks that data `[N, D]` matches parameters `[S, N, D]` and returns it as `[1, N, D]`.
pub(crate) fn broadcast_data<B: Backend>(
    model: &str,
    x: Tensor<B, 2>,
    params: [usize; 3],
) -> Tensor<B, 3> {
    let [_, n, d] = params;
    assert_eq!(
        x.dims(),
        [n, d],
        "{model}::log_prob: data must be [batch, features] = [{n}, {d}] to match parameters [samples, batch, features]"
    );
    x.unsqueeze_dim::<3>(0)
}

/// softplus(η) = ln(1 + e^η) = −log σ(−η), finite for every finite η, with the exact
/// derivative σ(η) everywhere (including η = 0, where a `relu` / `abs` formulation would take a
/// one-sided derivative). `log_sigmoid` is a backend primitive: one fused pass on the CPU
/// backends, fused by burn's kernel fusion on the GPU.
pub(crate) fn softplus<B: Backend>(eta: Tensor<B, 3>) -> Tensor<B, 3> {
    log_sigmoid(eta.neg()).neg()
}
