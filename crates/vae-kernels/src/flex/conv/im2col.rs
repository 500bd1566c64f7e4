//! Patch matrices (im2col) gathered block by block, for the convolutions' weight gradients.

use burn::backend::flex::FlexTensor;
use burn::tensor::{TensorData, TensorMetadata};
use rayon::prelude::*;

use super::Geometry;
use crate::dispatch::{contiguous, dims};

/// Patch-matrix entries per block (4 MiB of f32): a block is gathered and consumed by the
/// GEMM while it is still in cache. Materialising the whole patch matrix instead cost
/// 300 MB per step for the 64×64 output convolution at batch 64 (page faults, DRAM traffic).
/// Tests use tiny blocks, so their small convolutions take many blocks on every thread.
#[cfg(not(test))]
const BLOCK_ENTRIES: usize = 1 << 20;
#[cfg(test)]
const BLOCK_ENTRIES: usize = 64;
/// At least this many patch rows (the GEMM's inner dimension) per block.
#[cfg(not(test))]
const MIN_BLOCK_ROWS: usize = 64;
#[cfg(test)]
const MIN_BLOCK_ROWS: usize = 3;

/// `A · cols(t)` as a row-major `[p, C·kh·kw]` buffer, where `a` is `[p, N·gh·gw]` (one
/// column per patch position) and cols(t) are the patches of `t: [N, C, H, W]` at the
/// positions of a `[gh, gw]` grid ([`im2col_rows`]). The patch matrix is never built whole:
/// each thread gathers blocks of its rows into a scratch buffer and accumulates its own
/// partial product, and the partials are summed.
pub(super) fn patches_product(
    a: &FlexTensor,
    p: usize,
    t: &FlexTensor,
    grid: [usize; 2],
    kernel: [usize; 2],
    geometry: Geometry,
) -> Vec<f32> {
    let [n, c, h, w] = dims(&t.shape());
    let src = contiguous(t);
    let a = contiguous(a);
    let q = c * kernel[0] * kernel[1];
    let rows = n * grid[0] * grid[1];
    assert_eq!(a.len(), p * rows, "A is [p, N·gh·gw]");
    let block = (BLOCK_ENTRIES / q.max(1))
        .max(MIN_BLOCK_ROWS)
        .min(rows)
        .max(1);
    let starts: Vec<usize> = (0..rows).step_by(block).collect();
    // A fixed partition, one contiguous run of blocks per thread, and partials summed in
    // order: the same sums in the same order on every run (rayon's adaptive splitting
    // would make the weight gradient differ in its last bits from run to run).
    let per_thread = starts.len().div_ceil(rayon::current_num_threads()).max(1);
    let partials: Vec<Vec<f32>> = starts
        .par_chunks(per_thread)
        .map(|starts| {
            let mut cols = Vec::new();
            let mut dw = vec![0f32; p * q];
            for &start in starts {
                let end = (start + block).min(rows);
                cols.resize((end - start) * q, 0.0);
                im2col_rows(
                    &src,
                    [n, c, h, w],
                    grid,
                    kernel,
                    geometry,
                    start..end,
                    &mut cols,
                );
                // SAFETY: dw is [p, q], a is [p, rows] read at columns start..end, cols is
                // [end − start, q]; all row-major with the strides given, all in bounds.
                unsafe {
                    gemm::gemm(
                        p,
                        q,
                        end - start,
                        dw.as_mut_ptr(),
                        1,
                        q as isize,
                        true,
                        a.as_ptr().add(start),
                        1,
                        rows as isize,
                        cols.as_ptr(),
                        1,
                        q as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            dw
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![0f32; p * q]);
    for part in partials {
        sum.iter_mut().zip(&part).for_each(|(s, v)| *s += v);
    }
    sum
}

/// `[N, C, H, W]` → `[C, N·H·W]`: N·C contiguous planes moved, no per-element indexing.
pub(super) fn channels_first(t: &FlexTensor) -> FlexTensor {
    let [n, c, h, w] = dims(&t.shape());
    let src = contiguous(t);
    let plane = h * w;
    let mut out = vec![0f32; n * c * plane];
    out.par_chunks_mut(n * plane)
        .enumerate()
        .for_each(|(ch, dst)| {
            for (b, dst) in dst.chunks_exact_mut(plane).enumerate() {
                let start = (b * c + ch) * plane;
                dst.copy_from_slice(&src[start..start + plane]);
            }
        });
    FlexTensor::from_data(TensorData::new(out, [c, n * plane]))
}

/// Rows `rows` of the patch matrix of `src: [N, C, H, W]` at the positions of a grid
/// `[gh, gw]`, into `out` (`rows.len() × C·kh·kw`, every entry written): row (n, i, j),
/// column (c, ky, kx) = src[n, c, s·i + ky − p, s·j + kx − p], zero outside the image.
fn im2col_rows(
    src: &[f32],
    [_, c, h, w]: [usize; 4],
    [gh, gw]: [usize; 2],
    [kh, kw]: [usize; 2],
    Geometry { stride, padding }: Geometry,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    // The in-image part of a kernel window starting at `origin` (may be negative) along
    // an axis of length `len`: kernel offsets lo..hi.
    let inside = |origin: isize, k: usize, len: usize| {
        let lo = (-origin).clamp(0, k as isize) as usize;
        let hi = (len as isize - origin).clamp(lo as isize, k as isize) as usize;
        (lo, hi)
    };
    for (row, patch) in rows.zip(out.chunks_exact_mut(c * kh * kw)) {
        let (b, i, j) = (row / (gh * gw), (row / gw) % gh, row % gw);
        let y0 = (i * stride[0]) as isize - padding[0] as isize;
        let x0 = (j * stride[1]) as isize - padding[1] as isize;
        let (ky_lo, ky_hi) = inside(y0, kh, h);
        let (kx_lo, kx_hi) = inside(x0, kw, w);
        let image = &src[b * c * h * w..(b + 1) * c * h * w];
        for (plane, dst) in image
            .chunks_exact(h * w)
            .zip(patch.chunks_exact_mut(kh * kw))
        {
            for (ky, dst) in dst.chunks_exact_mut(kw).enumerate() {
                if ky < ky_lo || ky >= ky_hi || kx_lo == kx_hi {
                    // The kernel row lies above, below, left or right of the image.
                    dst.fill(0.0);
                    continue;
                }
                let y = (y0 + ky as isize) as usize;
                let x = (x0 + kx_lo as isize) as usize;
                let src = &plane[y * w + x..][..kx_hi - kx_lo];
                if let (Ok(dst), Ok(src)) = (
                    <&mut [f32; 3]>::try_from(&mut *dst),
                    <&[f32; 3]>::try_from(src),
                ) {
                    // The common case, a whole row of a 3-wide kernel: a fixed-size
                    // copy, not a `memmove` call per three floats.
                    *dst = *src;
                    continue;
                }
                for (k, value) in dst.iter_mut().enumerate() {
                    *value = if (kx_lo..kx_hi).contains(&k) {
                        src[k - kx_lo]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}
