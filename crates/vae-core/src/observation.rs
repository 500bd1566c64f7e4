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

/// The logistic sigmoid σ(η) = 1 / (1 + e^{−η}) elementwise, a probability in [0, 1], accurate
/// to a few units of the tensor's own float type relative to σ(η) for every η, with the exact
/// derivative σ(η)(1 − σ(η)) everywhere.
///
/// burn 0.21's generic `sigmoid` (the one NdArray runs) evaluates in f32 whatever the tensor's
/// type, so an f64 σ carried an absolute error up to 9e-8. Here each side uses the form whose
/// exponential cannot overflow: 1 / (1 + e^{−η}) for η ≥ 0 and e^η / (1 + e^η) for η < 0, each
/// fed only its own half of η (0 elsewhere, so the unselected branch stays finite and its zero
/// gradient cannot become NaN); splitting by masks rather than through |η| keeps the
/// derivative ¼ at η = 0, where burn's `abs` has derivative 0.
pub fn sigmoid<B: Backend, const D: usize>(eta: Tensor<B, D>) -> Tensor<B, D> {
    let negative = eta.clone().lower_elem(0.0);
    let non_negative_half = eta.clone().mask_fill(negative.clone(), 0.0);
    let negative_half = eta.mask_fill(negative.clone().bool_not(), 0.0);
    let upper = non_negative_half.neg().exp().add_scalar(1.0).recip();
    let growth = negative_half.exp();
    let lower = growth.clone() / growth.add_scalar(1.0);
    upper.mask_where(negative, lower)
}

/// ln σ(η) = −ln(1 + e^{−η}) elementwise, in nats (≤ 0), accurate in the tensor's own float
/// type for every η and finite wherever η is: −ln(1 + e^{−η}) for η ≥ 0 and η − ln(1 + e^η)
/// for η < 0, split by masks as in [`sigmoid`] so the derivative σ(−η) is ½ at η = 0. (ln of
/// burn's `sigmoid` rounds through f32 and is −∞ once σ underflows; `−softplus(−η)`
/// overflows to −∞ for η below about −88 in f32.)
pub fn log_sigmoid<B: Backend, const D: usize>(eta: Tensor<B, D>) -> Tensor<B, D> {
    let negative = eta.clone().lower_elem(0.0);
    let non_negative_half = eta.clone().mask_fill(negative.clone(), 0.0);
    let negative_half = eta.mask_fill(negative.clone().bool_not(), 0.0);
    let upper = non_negative_half.neg().exp().log1p().neg();
    let lower = negative_half.clone() - negative_half.exp().log1p();
    upper.mask_where(negative, lower)
}
