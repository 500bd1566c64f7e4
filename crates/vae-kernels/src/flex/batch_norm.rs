//! Batch normalisation over `[N, C, H, W]`, computed with per-channel affine maps instead of
//! `[1, C, 1, 1]` broadcasts.
//!
//! Same parameters, running statistics and results as burn's `BatchNorm::forward` (it operates on
//! burn's `BatchNorm` module, so records are unchanged), but arranged for speed on the CPU: the
//! statistics are products with a ones vector over `[N·C, H·W]` (dense gradients), and the
//! normalisation is one multiply-add with per-(n, c) scalars, a broadcast pattern burn-flex runs
//! with SIMD. burn's formulation copies the activation twice (`swap_dims` + `reshape`) and
//! walks four `[1, C, 1, 1]` broadcasts element by element; on the CelebA conv VAE this
//! arrangement made a CPU training step several times faster (see `cargo xtask bench`).

use burn::nn::BatchNorm;
use burn::tensor::{Tensor, backend::Backend};

/// `norm(x)` for `x` of shape `[N, C, H, W]`; batch statistics (and a running-statistics update)
/// when autodiff is enabled, running statistics otherwise — burn's semantics.
pub(crate) fn batch_norm<B: Backend>(norm: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let hw = h * w;
    let rows = x.reshape([n * c, hw]);
    let (mean, var) = if B::ad_enabled(&device) {
        let ones = Tensor::<B, 2>::ones([hw, 1], &device);
        let count = (n * hw) as f64;
        // Per-channel E[x] and E[x²]: row sums over H·W, then over the batch.
        let per_channel = |t: Tensor<B, 2>| {
            t.matmul(ones.clone())
                .reshape([n, c])
                .sum_dim(0)
                .div_scalar(count)
        };
        let mean = per_channel(rows.clone());
        let var =
            (per_channel(rows.clone() * rows.clone()) - mean.clone().powi_scalar(2)).clamp_min(0.0);
        crate::ops::update_running_statistics(
            norm,
            mean.clone().reshape([c]),
            var.clone().reshape([c]),
        );
        (mean, var)
    } else {
        (
            norm.running_mean.value().to_device(&device).reshape([1, c]),
            norm.running_var.value().to_device(&device).reshape([1, c]),
        )
    };
    // y = (x − μ) γ / √(σ² + ε) + β = x · a + b, with a and b per channel.
    let a = norm.gamma.val().reshape([1, c]) / var.add_scalar(norm.epsilon).sqrt();
    let b = norm.beta.val().reshape([1, c]) - mean * a.clone();
    // Materialised per (n, c), so the multiply-add is the per-row-scalar broadcast.
    let a = a.repeat_dim(0, n).reshape([n * c, 1]);
    let b = b.repeat_dim(0, n).reshape([n * c, 1]);
    (rows * a + b).reshape([n, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::nn::BatchNormConfig;
    use burn::tensor::Distribution;

    use crate::dispatch::AutodiffFlex;
    use crate::fast_path_counts;

    type B = Autodiff<NdArray<f64>>;

    fn max_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
        (a - b).abs().max().into_scalar()
    }

    /// The arrangement itself, in f64, against burn's `BatchNorm::forward`.
    #[test]
    fn matches_burns_batch_norm_in_training_and_inference() {
        let device = Default::default();
        let ours = BatchNormConfig::new(3).init::<B>(&device);
        let theirs = BatchNormConfig::new(3).init::<B>(&device);
        for step in 0..3 {
            let x = Tensor::<B, 4>::random(
                [4, 3, 5, 6],
                Distribution::Normal(step as f64, 2.0),
                &device,
            );
            assert!(max_diff(batch_norm(&ours, x.clone()), theirs.forward(x)) < 1e-10);
        }
        let diff = (ours.running_var.value() - theirs.running_var.value())
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-10, "running variance differs by {diff}");
        let x = Tensor::<NdArray<f64>, 4>::random(
            [2, 3, 5, 6],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (ours, theirs) = (
            burn::module::AutodiffModule::valid(&ours),
            burn::module::AutodiffModule::valid(&theirs),
        );
        let d = (batch_norm(&ours, x.clone()) - theirs.forward(x))
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-10, "inference differs by {d}");
    }

    #[test]
    fn gradients_match_burns_batch_norm() {
        let device = Default::default();
        let norm = BatchNormConfig::new(2).init::<B>(&device);
        let x = Tensor::<B, 4>::random([3, 2, 4, 4], Distribution::Normal(1.0, 3.0), &device)
            .require_grad();
        let w = Tensor::<B, 4>::random([3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let g1 = (batch_norm(&norm, x.clone()) * w.clone()).sum().backward();
        let g2 = (norm.forward(x.clone()) * w).sum().backward();
        let (a, b) = (x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
        let d = (a - b).abs().max().into_scalar();
        assert!(d < 1e-7, "input gradients differ by {d}");
        let (a, b) = (
            norm.gamma.val().grad(&g1).unwrap(),
            norm.gamma.val().grad(&g2).unwrap(),
        );
        assert!((a - b).abs().max().into_scalar() < 1e-7);
    }

    /// Through the dispatch on Flex (f32): the arrangement runs, and agrees with burn's
    /// `BatchNorm` on Flex in value, gradient and running statistics.
    #[test]
    fn flex_takes_the_arranged_batch_norm() {
        let device = Default::default();
        let ours = BatchNormConfig::new(3).init::<AutodiffFlex>(&device);
        let theirs = BatchNormConfig::new(3).init::<AutodiffFlex>(&device);
        let x = Tensor::<AutodiffFlex, 4>::random(
            [4, 3, 5, 6],
            Distribution::Normal(1.0, 2.0),
            &device,
        )
        .require_grad();
        let w = Tensor::<AutodiffFlex, 4>::random(
            [4, 3, 5, 6],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before = fast_path_counts().batch_norm;
        let y1 = crate::batch_norm(&ours, x.clone());
        assert_eq!(
            fast_path_counts().batch_norm,
            before + 1,
            "fast path not taken"
        );
        let y2 = theirs.forward(x.clone());
        let d = (y1.clone() - y2.clone()).abs().max().into_scalar();
        assert!(d < 1e-5, "values differ by {d}");
        let g1 = (y1 * w.clone()).sum().backward();
        let g2 = (y2 * w).sum().backward();
        let d = (x.grad(&g1).unwrap() - x.grad(&g2).unwrap())
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-4, "input gradients differ by {d}");
        let d = (ours.running_var.value() - theirs.running_var.value())
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-5, "running variance differs by {d}");
        let plain = Tensor::<Flex, 4>::random([2, 3, 4, 4], Distribution::Default, &device);
        let (ours, theirs) = (
            burn::module::AutodiffModule::valid(&ours),
            burn::module::AutodiffModule::valid(&theirs),
        );
        let d = (crate::batch_norm(&ours, plain.clone()) - theirs.forward(plain))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(fast_path_counts().batch_norm, before + 2, "plain Flex too");
        assert!(d < 1e-5, "inference differs by {d}");
    }
}
