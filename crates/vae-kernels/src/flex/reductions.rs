//! Sums written for Flex's autodiff.

use burn::tensor::{Tensor, backend::Backend};

/// Sums `[S, N, D]` over D into `[S, N]`, as a product with a `[D, 1]` vector of ones.
///
/// Computed as a matmul rather than `sum_dim`: the gradient of a matmul is a dense tensor,
/// while `sum_dim`'s is a stride-0 broadcast that burn-flex's elementwise backward kernels walk
/// element by element (6% of a CPU MLP step, measured).
pub(crate) fn sum_last_dim<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 2> {
    let [s, n, d] = t.dims();
    let ones = Tensor::ones([d, 1], &t.device());
    t.reshape([s * n, d]).matmul(ones).reshape([s, n])
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use crate::dispatch::AutodiffFlex;
    use crate::{fast_path_counts, sum_last_dim};

    #[test]
    fn sum_as_matmul_matches_sum_dim_with_gradients() {
        let device = Default::default();
        let t =
            Tensor::<AutodiffFlex, 3>::random([3, 4, 37], Distribution::Normal(0.0, 2.0), &device)
                .require_grad();
        let w = Tensor::<AutodiffFlex, 2>::random([3, 4], Distribution::Normal(0.0, 1.0), &device);
        let before = fast_path_counts().sum_last_dim;
        let ours = sum_last_dim(t.clone());
        assert_eq!(
            fast_path_counts().sum_last_dim,
            before + 1,
            "fast path not taken"
        );
        let theirs = t.clone().sum_dim(2).reshape([3, 4]);
        let d = (ours.clone() - theirs.clone()).abs().max().into_scalar();
        assert!(d < 1e-5, "sums differ by {d}");
        let g1 = (ours * w.clone()).sum().backward();
        let g2 = (theirs * w).sum().backward();
        let (a, b) = (t.grad(&g1).unwrap(), t.grad(&g2).unwrap());
        assert_eq!(a.into_data(), b.into_data(), "∂/∂t = w broadcast, exactly");

        let plain = Tensor::<Flex, 3>::random([2, 3, 5], Distribution::Default, &device);
        let d = (sum_last_dim(plain.clone()) - plain.sum_dim(2).reshape([2, 3]))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(
            fast_path_counts().sum_last_dim,
            before + 2,
            "plain Flex too"
        );
        assert!(d < 1e-5, "sums differ by {d}");
    }
}
