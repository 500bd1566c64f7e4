//! The transposed convolution, parallel over images: the decoder's forward pass and every
//! convolution's ∂L/∂x.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{TensorData, TensorMetadata};
use rayon::prelude::*;

use super::Geometry;
use crate::dispatch::{contiguous, dims};

/// `conv_transpose2d(x, W)` for `x: [N, Ci, H, W]`, `W: [Ci, Co, kh, kw]` (no bias,
/// groups 1, dilation 1) into an output of spatial size `out`:
/// y[n, co, s·i + ky − p, s·j + kx − p] += x[n, ci, i, j] · W[ci, co, ky, kx], terms that land
/// outside `out` dropped. Per image, one GEMM cols = Wᵀ · x_n (`[Co·kh·kw, H·W]`) and a
/// col2im scatter-add; images in parallel. (Flex's own runs the images one after another,
/// with a function-pointer add per element: 13 % of a conv VAE training step.)
pub(super) fn transposed_conv(
    x: &FlexTensor,
    w: &FlexTensor,
    Geometry { stride, padding }: Geometry,
    [ho, wo]: [usize; 2],
) -> FlexTensor {
    let [n, ci, h, wd] = dims(&x.shape());
    let [w_ci, co, kh, kw] = dims(&w.shape());
    assert_eq!(ci, w_ci, "input channels of x and W");
    let stride_one_side = |len: usize, k: usize, p: usize| (len + k - 1).checked_sub(2 * p);
    if stride == [1, 1]
        && padding[0] < kh
        && padding[1] < kw
        && [Some(ho), Some(wo)]
            == [
                stride_one_side(h, kh, padding[0]),
                stride_one_side(wd, kw, padding[1]),
            ]
    {
        // With stride 1 it is an ordinary convolution with the kernel flipped and its
        // channel axes swapped, padded k − 1 − p: Flex's im2col convolution, no scatter.
        let options = ConvOptions::new(
            [1, 1],
            [kh - 1 - padding[0], kw - 1 - padding[1]],
            [1, 1],
            1,
        );
        return Flex::conv2d(x.clone(), flipped(w), None, options);
    }
    let (src, weights) = (contiguous(x), contiguous(w));
    let rows = co * kh * kw;
    let mut out = vec![0f32; n * co * ho * wo];
    out.par_chunks_mut(co * ho * wo).enumerate().for_each_init(
        || vec![0f32; rows * h * wd],
        |cols, (b, image)| {
            let x_b = &src[b * ci * h * wd..][..ci * h * wd];
            // SAFETY: cols is [rows, H·W]; W is [Ci, rows] read transposed; x_b is
            // [Ci, H·W]; row-major with the strides given, all in bounds.
            unsafe {
                gemm::gemm(
                    rows,
                    h * wd,
                    ci,
                    cols.as_mut_ptr(),
                    1,
                    (h * wd) as isize,
                    false,
                    weights.as_ptr(),
                    rows as isize,
                    1,
                    x_b.as_ptr(),
                    1,
                    (h * wd) as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            // The input positions i (or j) whose output s·i + k − p lies in [0, len).
            let valid = |k: usize, s: usize, p: usize, len: usize, n_in: usize| {
                let lo = p.saturating_sub(k).div_ceil(s);
                let hi = if len + p > k {
                    (len + p - k - 1) / s + 1
                } else {
                    0
                };
                lo..hi.min(n_in).max(lo)
            };
            for (r, col) in cols.chunks_exact(h * wd).enumerate() {
                let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                let plane = &mut image[c * ho * wo..][..ho * wo];
                let js = valid(kx, stride[1], padding[1], wo, wd);
                for i in valid(ky, stride[0], padding[0], ho, h) {
                    let y = i * stride[0] + ky - padding[0];
                    let out_row = &mut plane[y * wo..][..wo];
                    let in_row = &col[i * wd..][..wd];
                    for j in js.clone() {
                        out_row[j * stride[1] + kx - padding[1]] += in_row[j];
                    }
                }
            }
        },
    );
    FlexTensor::from_data(TensorData::new(out, [n, co, ho, wo]))
}

/// `[Ci, Co, kh, kw]` → `[Co, Ci, kh, kw]` with both kernel axes reversed.
fn flipped(w: &FlexTensor) -> FlexTensor {
    let [ci, co, kh, kw] = dims(&w.shape());
    let src = contiguous(w);
    let mut out = vec![0f32; src.len()];
    for (o, kernels) in out.chunks_exact_mut(ci * kh * kw).enumerate() {
        for (i, kernel) in kernels.chunks_exact_mut(kh * kw).enumerate() {
            let from = &src[(i * co + o) * kh * kw..][..kh * kw];
            for (dst, src) in kernel.iter_mut().zip(from.iter().rev()) {
                *dst = *src;
            }
        }
    }
    FlexTensor::from_data(TensorData::new(out, [co, ci, kh, kw]))
}
