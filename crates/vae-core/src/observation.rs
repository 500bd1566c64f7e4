//! The observation model p(x|z): what a decoder's output parameterises.

use burn::tensor::{Tensor, backend::Backend};

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

/// Sums `[S, N, D]` over D into `[S, N]`.
pub(crate) fn sum_features<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 2> {
    t.sum_dim(2).squeeze_dim::<2>(2)
}

/// softplus(η) = ln(1 + e^η) = max(η, 0) + ln(1 + e^(−|η|)), finite for every finite η, with
/// the exact derivative σ(η) everywhere — including η = 0, where the usual `relu` / `abs`
/// formulation gets the one-sided derivative 1 (or 0) instead of ½.
pub(crate) fn softplus<B: Backend>(eta: Tensor<B, 3>) -> Tensor<B, 3> {
    let positive = eta.clone().greater_elem(0.0);
    let pos_part = eta.clone().mask_fill(positive.clone().bool_not(), 0.0);
    let neg_part = eta.mask_fill(positive, 0.0);
    // −|η| = min(η, 0) − max(η, 0); each part carries the gradient on its own side of 0.
    pos_part.clone() + (neg_part - pos_part).exp().log1p()
}
