//! Batch norm's training pass as cubecl kernels for `Fusion<CubeBackend<R, f32, ..>>` (burn's
//! `Wgpu` and `Cuda`): two kernels forward, two backward, each pair one fusion custom
//! operation, so the count does not depend on what burn-fusion's optimiser decides to merge.
//!
//! Over rows `x: [M, C]` (any strides; channel-last conv outputs read coalesced), a grid of
//! cubes of 32 channels × 8 row lanes; the rows are cut into up to 256 blocks, one cube row
//! each, so a big batch spreads over the whole GPU:
//!
//! * forward 1 — per block and channel: the block's mean and Σ(x − mean_block)²;
//! * forward 2 — each cube merges the blocks' partial moments of its channels (Chan et al.'s
//!   pairwise formula, exact in exact arithmetic and free of the E[x²] − μ² cancellation):
//!   μ, σ² = M2/M, s = 1/√(σ² + ε), then writes `y = (x − μ)·γ·s + β` for its rows;
//! * backward 1 — per block and channel: Σ g and Σ g·x̂, x̂ = (x − μ)·s;
//! * backward 2 — each cube sums those partials of its channels, then writes
//!   `∂L/∂x = γ·s·(g − Σg/M − x̂·Σ(g·x̂)/M)` for its rows; the first block row writes
//!   ∂L/∂γ = Σ g·x̂ and ∂L/∂β = Σ g.
//!
//! Outputs are contiguous `[M, C]` / `[C]`. Partial sums live in `[blocks, C]` scratch tensors.

use std::marker::PhantomData;

use burn::backend::ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl;
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionRuntime, FusionTensor};
use cubecl::prelude::{CubeCount, CubeDim};

use super::batch_norm::{RowKernels, RowsForward, RowsGradients};

/// Channels per cube (consecutive units read consecutive channels).
const CHANNELS_PER_CUBE: usize = 32;
/// Row lanes per cube (a power of two: the lanes' sums are a tree reduction).
const ROW_LANES: usize = 8;
/// At most this many row blocks (cube rows); each cube then merges as many partials.
const MAX_ROW_BLOCKS: usize = 256;
/// A row block has at least this many rows where M allows.
const MIN_ROWS_PER_BLOCK: usize = 512;

/// `(blocks, rows per block)` for M rows. Every block but the last is full; none is empty.
fn row_blocks(rows: usize) -> (usize, usize) {
    let blocks = rows.div_ceil(MIN_ROWS_PER_BLOCK).clamp(1, MAX_ROW_BLOCKS);
    let per_block = rows.div_ceil(blocks).max(1);
    (rows.div_ceil(per_block).max(1), per_block)
}

mod kernels {
    use burn_cubecl::cubecl;
    use cubecl::prelude::*;

    /// The sum of `value` over the cube's row lanes, for the unit's channel (all units must
    /// call it: it synchronises the cube).
    #[cube]
    fn sum_over_lanes(
        shared: &mut SharedMemory<f32>,
        value: f32,
        #[comptime] channels_per_cube: usize,
    ) -> f32 {
        let lx = UNIT_POS_X as usize;
        let ly = UNIT_POS_Y as usize;
        shared[ly * channels_per_cube + lx] = value;
        sync_cube();
        let mut k = CUBE_DIM_Y as usize / 2;
        while k > 0 {
            if ly < k {
                let other = shared[(ly + k) * channels_per_cube + lx];
                shared[ly * channels_per_cube + lx] += other;
            }
            sync_cube();
            k /= 2;
        }
        let total = shared[lx];
        // Everyone has read the total before the memory is written again.
        sync_cube();
        total
    }

    /// Rows `[start, end)` of block `block`; `end ≤ start` for a block past the last row.
    #[cube]
    fn block_rows(block: usize, rows_per_block: usize, rows: usize) -> (usize, usize) {
        let start = block * rows_per_block;
        let mut end = start + rows_per_block;
        if end > rows {
            end = rows;
        }
        (start, end)
    }

    #[cube(launch)]
    pub fn partial_moments(
        x: &Tensor<f32>,
        part_mean: &mut Tensor<f32>,
        part_m2: &mut Tensor<f32>,
        rows_per_block: u32,
        #[comptime] channels_per_cube: usize,
        #[comptime] row_lanes: usize,
    ) {
        let lx = UNIT_POS_X as usize;
        let ly = UNIT_POS_Y as usize;
        let c = CUBE_POS_X as usize * channels_per_cube + lx;
        let block = CUBE_POS_Y as usize;
        let rows = x.shape(0);
        let channels = x.shape(1);
        let (row_stride, channel_stride) = (x.stride(0), x.stride(1));
        let live = c < channels;
        let (start, end) = block_rows(block, rows_per_block as usize, rows);
        let mut shared = SharedMemory::<f32>::new(channels_per_cube * row_lanes);

        let mut sum = 0.0f32;
        if live {
            let mut r = start + ly;
            while r < end {
                sum += x[r * row_stride + c * channel_stride];
                r += row_lanes;
            }
        }
        let total = sum_over_lanes(&mut shared, sum, channels_per_cube);
        let mut count = 0.0f32;
        if end > start {
            count = f32::cast_from(end - start);
        }
        let mut mean = 0.0f32;
        if count > 0.0 {
            mean = total / count;
        }
        let mut m2 = 0.0f32;
        if live {
            let mut r = start + ly;
            while r < end {
                let d = x[r * row_stride + c * channel_stride] - mean;
                m2 += d * d;
                r += row_lanes;
            }
        }
        let m2_total = sum_over_lanes(&mut shared, m2, channels_per_cube);
        if live && ly == 0 {
            part_mean[block * channels + c] = mean;
            part_m2[block * channels + c] = m2_total;
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn normalise(
        x: &Tensor<f32>,
        gamma: &Tensor<f32>,
        beta: &Tensor<f32>,
        part_mean: &Tensor<f32>,
        part_m2: &Tensor<f32>,
        y: &mut Tensor<f32>,
        mean_out: &mut Tensor<f32>,
        var_out: &mut Tensor<f32>,
        inv_std_out: &mut Tensor<f32>,
        rows_per_block: u32,
        blocks: u32,
        epsilon: f32,
        #[comptime] channels_per_cube: usize,
        #[comptime] row_lanes: usize,
    ) {
        let lx = UNIT_POS_X as usize;
        let ly = UNIT_POS_Y as usize;
        let c = CUBE_POS_X as usize * channels_per_cube + lx;
        let block = CUBE_POS_Y as usize;
        let rows = x.shape(0);
        let channels = x.shape(1);
        let (row_stride, channel_stride) = (x.stride(0), x.stride(1));
        let live = c < channels;
        let per_block = rows_per_block as usize;
        let mut shared = SharedMemory::<f32>::new(channels_per_cube * row_lanes);
        let count = f32::cast_from(rows);

        // μ = Σ_b n_b·mean_b / M.
        let mut weighted = 0.0f32;
        if live {
            let mut b = ly;
            while b < blocks as usize {
                let (start, end) = block_rows(b, per_block, rows);
                weighted += f32::cast_from(end - start) * part_mean[b * channels + c];
                b += row_lanes;
            }
        }
        let mean = sum_over_lanes(&mut shared, weighted, channels_per_cube) / count;
        // M2 = Σ_b [M2_b + n_b·(mean_b − μ)²].
        let mut m2 = 0.0f32;
        if live {
            let mut b = ly;
            while b < blocks as usize {
                let (start, end) = block_rows(b, per_block, rows);
                let d = part_mean[b * channels + c] - mean;
                m2 += part_m2[b * channels + c] + f32::cast_from(end - start) * d * d;
                b += row_lanes;
            }
        }
        let var = sum_over_lanes(&mut shared, m2, channels_per_cube) / count;
        let inv_std = 1.0f32 / (var + epsilon).sqrt();

        if live {
            let scale = gamma[c * gamma.stride(0)] * inv_std;
            let shift = beta[c * beta.stride(0)];
            let (start, end) = block_rows(block, per_block, rows);
            let mut r = start + ly;
            while r < end {
                y[r * channels + c] =
                    (x[r * row_stride + c * channel_stride] - mean) * scale + shift;
                r += row_lanes;
            }
            if block == 0 && ly == 0 {
                mean_out[c] = mean;
                var_out[c] = var;
                inv_std_out[c] = inv_std;
            }
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn partial_grad_sums(
        g: &Tensor<f32>,
        x: &Tensor<f32>,
        mean: &Tensor<f32>,
        inv_std: &Tensor<f32>,
        part_g: &mut Tensor<f32>,
        part_g_x_hat: &mut Tensor<f32>,
        rows_per_block: u32,
        #[comptime] channels_per_cube: usize,
        #[comptime] row_lanes: usize,
    ) {
        let lx = UNIT_POS_X as usize;
        let ly = UNIT_POS_Y as usize;
        let c = CUBE_POS_X as usize * channels_per_cube + lx;
        let block = CUBE_POS_Y as usize;
        let rows = x.shape(0);
        let channels = x.shape(1);
        let live = c < channels;
        let (start, end) = block_rows(block, rows_per_block as usize, rows);
        let mut shared = SharedMemory::<f32>::new(channels_per_cube * row_lanes);

        let mut sum_g = 0.0f32;
        let mut sum_g_x_hat = 0.0f32;
        if live {
            let (mu, s) = (mean[c], inv_std[c]);
            let mut r = start + ly;
            while r < end {
                let grad = g[r * g.stride(0) + c * g.stride(1)];
                let x_hat = (x[r * x.stride(0) + c * x.stride(1)] - mu) * s;
                sum_g += grad;
                sum_g_x_hat += grad * x_hat;
                r += row_lanes;
            }
        }
        let total_g = sum_over_lanes(&mut shared, sum_g, channels_per_cube);
        let total_g_x_hat = sum_over_lanes(&mut shared, sum_g_x_hat, channels_per_cube);
        if live && ly == 0 {
            part_g[block * channels + c] = total_g;
            part_g_x_hat[block * channels + c] = total_g_x_hat;
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn input_grad(
        g: &Tensor<f32>,
        x: &Tensor<f32>,
        mean: &Tensor<f32>,
        inv_std: &Tensor<f32>,
        gamma: &Tensor<f32>,
        part_g: &Tensor<f32>,
        part_g_x_hat: &Tensor<f32>,
        dx: &mut Tensor<f32>,
        d_gamma: &mut Tensor<f32>,
        d_beta: &mut Tensor<f32>,
        rows_per_block: u32,
        blocks: u32,
        #[comptime] channels_per_cube: usize,
        #[comptime] row_lanes: usize,
    ) {
        let lx = UNIT_POS_X as usize;
        let ly = UNIT_POS_Y as usize;
        let c = CUBE_POS_X as usize * channels_per_cube + lx;
        let block = CUBE_POS_Y as usize;
        let rows = x.shape(0);
        let channels = x.shape(1);
        let live = c < channels;
        let mut shared = SharedMemory::<f32>::new(channels_per_cube * row_lanes);

        let mut sum_g = 0.0f32;
        let mut sum_g_x_hat = 0.0f32;
        if live {
            let mut b = ly;
            while b < blocks as usize {
                sum_g += part_g[b * channels + c];
                sum_g_x_hat += part_g_x_hat[b * channels + c];
                b += row_lanes;
            }
        }
        let total_g = sum_over_lanes(&mut shared, sum_g, channels_per_cube);
        let total_g_x_hat = sum_over_lanes(&mut shared, sum_g_x_hat, channels_per_cube);

        if live {
            let count = f32::cast_from(rows);
            let (mu, s) = (mean[c], inv_std[c]);
            let scale = gamma[c * gamma.stride(0)] * s;
            let mean_g = total_g / count;
            let mean_g_x_hat = total_g_x_hat / count;
            let (start, end) = block_rows(block, rows_per_block as usize, rows);
            let mut r = start + ly;
            while r < end {
                let grad = g[r * g.stride(0) + c * g.stride(1)];
                let x_hat = (x[r * x.stride(0) + c * x.stride(1)] - mu) * s;
                dx[r * channels + c] = scale * (grad - mean_g - x_hat * mean_g_x_hat);
                r += row_lanes;
            }
            if block == 0 && ly == 0 {
                d_gamma[c] = total_g_x_hat;
                d_beta[c] = total_g;
            }
        }
    }
}

/// The grid: (channel tiles, row blocks, 1), and the cube: 32 channels × 8 row lanes.
fn grid(channels: usize, blocks: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(
            channels.div_ceil(CHANNELS_PER_CUBE) as u32,
            blocks as u32,
            1,
        ),
        CubeDim::new_2d(CHANNELS_PER_CUBE as u32, ROW_LANES as u32),
    )
}

fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: &[usize]) -> CubeTensor<R> {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape.to_vec()),
        DType::F32,
    )
}

/// Forward: `(y, μ, σ², s)` from `x: [M, C]`, γ, β.
fn forward_cube<R: CubeRuntime>(
    x: CubeTensor<R>,
    gamma: CubeTensor<R>,
    beta: CubeTensor<R>,
    epsilon: f32,
) -> [CubeTensor<R>; 4] {
    let [rows, channels] = x.meta.shape().dims::<2>();
    let (blocks, per_block) = row_blocks(rows);
    let part_mean = empty(&x, &[blocks, channels]);
    let part_m2 = empty(&x, &[blocks, channels]);
    let outputs = [
        empty(&x, &[rows, channels]),
        empty(&x, &[channels]),
        empty(&x, &[channels]),
        empty(&x, &[channels]),
    ];
    let client = x.client.clone();
    let (count, dim) = grid(channels, blocks);
    kernels::partial_moments::launch::<R>(
        &client,
        count.clone(),
        dim,
        x.clone().into_tensor_arg(),
        part_mean.clone().into_tensor_arg(),
        part_m2.clone().into_tensor_arg(),
        per_block as u32,
        CHANNELS_PER_CUBE,
        ROW_LANES,
    );
    let [y, mean, var, inv_std] = outputs.clone();
    kernels::normalise::launch::<R>(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        part_mean.into_tensor_arg(),
        part_m2.into_tensor_arg(),
        y.into_tensor_arg(),
        mean.into_tensor_arg(),
        var.into_tensor_arg(),
        inv_std.into_tensor_arg(),
        per_block as u32,
        blocks as u32,
        epsilon,
        CHANNELS_PER_CUBE,
        ROW_LANES,
    );
    outputs
}

/// Backward: `(∂L/∂x, ∂L/∂γ, ∂L/∂β)` from g, x, μ, s, γ.
fn backward_cube<R: CubeRuntime>(
    g: CubeTensor<R>,
    x: CubeTensor<R>,
    mean: CubeTensor<R>,
    inv_std: CubeTensor<R>,
    gamma: CubeTensor<R>,
) -> [CubeTensor<R>; 3] {
    let [rows, channels] = x.meta.shape().dims::<2>();
    let (blocks, per_block) = row_blocks(rows);
    let part_g = empty(&x, &[blocks, channels]);
    let part_g_x_hat = empty(&x, &[blocks, channels]);
    let outputs = [
        empty(&x, &[rows, channels]),
        empty(&x, &[channels]),
        empty(&x, &[channels]),
    ];
    let client = x.client.clone();
    let (count, dim) = grid(channels, blocks);
    kernels::partial_grad_sums::launch::<R>(
        &client,
        count.clone(),
        dim,
        g.clone().into_tensor_arg(),
        x.clone().into_tensor_arg(),
        mean.clone().into_tensor_arg(),
        inv_std.clone().into_tensor_arg(),
        part_g.clone().into_tensor_arg(),
        part_g_x_hat.clone().into_tensor_arg(),
        per_block as u32,
        CHANNELS_PER_CUBE,
        ROW_LANES,
    );
    let [dx, d_gamma, d_beta] = outputs.clone();
    kernels::input_grad::launch::<R>(
        &client,
        count,
        dim,
        g.into_tensor_arg(),
        x.into_tensor_arg(),
        mean.into_tensor_arg(),
        inv_std.into_tensor_arg(),
        gamma.into_tensor_arg(),
        part_g.into_tensor_arg(),
        part_g_x_hat.into_tensor_arg(),
        dx.into_tensor_arg(),
        d_gamma.into_tensor_arg(),
        d_beta.into_tensor_arg(),
        per_block as u32,
        blocks as u32,
        CHANNELS_PER_CUBE,
        ROW_LANES,
    );
    outputs
}

type Runtime<R> = FusionCubeRuntime<R>;
type Inner<R, BT> = CubeBackend<R, f32, i32, BT>;

/// The forward kernels as one fusion operation.
#[derive(Debug)]
struct ForwardOp<R: CubeRuntime, BT: BoolElement> {
    desc: CustomOpIr,
    epsilon: f32,
    _backend: PhantomData<(R, BT)>,
}

impl<R: CubeRuntime, BT: BoolElement> Operation<Runtime<R>> for ForwardOp<R, BT> {
    fn execute(&self, handles: &mut HandleContainer<<Runtime<R> as FusionRuntime>::FusionHandle>) {
        let ([x, gamma, beta], outputs) = self.desc.as_fixed::<3, 4>();
        let results = forward_cube::<R>(
            handles.get_float_tensor::<Inner<R, BT>>(x),
            handles.get_float_tensor::<Inner<R, BT>>(gamma),
            handles.get_float_tensor::<Inner<R, BT>>(beta),
            self.epsilon,
        );
        for (ir, tensor) in outputs.iter().zip(results) {
            handles.register_float_tensor::<Inner<R, BT>>(&ir.id, tensor);
        }
    }
}

/// The backward kernels as one fusion operation.
#[derive(Debug)]
struct BackwardOp<R: CubeRuntime, BT: BoolElement> {
    desc: CustomOpIr,
    _backend: PhantomData<(R, BT)>,
}

impl<R: CubeRuntime, BT: BoolElement> Operation<Runtime<R>> for BackwardOp<R, BT> {
    fn execute(&self, handles: &mut HandleContainer<<Runtime<R> as FusionRuntime>::FusionHandle>) {
        let ([g, x, mean, inv_std, gamma], outputs) = self.desc.as_fixed::<5, 3>();
        let mut get = |ir| handles.get_float_tensor::<Inner<R, BT>>(ir);
        let results = backward_cube::<R>(get(g), get(x), get(mean), get(inv_std), get(gamma));
        for (ir, tensor) in outputs.iter().zip(results) {
            handles.register_float_tensor::<Inner<R, BT>>(&ir.id, tensor);
        }
    }
}

/// [`RowKernels`] as the cubecl kernels above, for `Fusion<CubeBackend<R, f32, i32, BT>>`.
#[derive(Debug)]
pub(crate) struct CubeRowKernels<R, BT>(PhantomData<(R, BT)>);

type Fused<R, BT> = Fusion<Inner<R, BT>>;

fn primitive<R: CubeRuntime, BT: BoolElement, const D: usize>(
    t: Tensor<Fused<R, BT>, D>,
) -> FusionTensor<Runtime<R>> {
    t.into_primitive().tensor()
}

fn tensor<R: CubeRuntime, BT: BoolElement, const D: usize>(
    t: FusionTensor<Runtime<R>>,
) -> Tensor<Fused<R, BT>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn uninit<R: CubeRuntime>(like: &FusionTensor<Runtime<R>>, shape: &[usize]) -> TensorIr {
    TensorIr::uninit(
        like.client.create_empty_handle(),
        Shape::from(shape.to_vec()),
        DType::F32,
    )
}

impl<R: CubeRuntime, BT: BoolElement> RowKernels<Fused<R, BT>> for CubeRowKernels<R, BT> {
    fn forward(
        x: Tensor<Fused<R, BT>, 2>,
        gamma: Tensor<Fused<R, BT>, 1>,
        beta: Tensor<Fused<R, BT>, 1>,
        epsilon: f64,
    ) -> RowsForward<Fused<R, BT>> {
        let [rows, channels] = x.dims();
        let (x, gamma, beta) = (primitive(x), primitive(gamma), primitive(beta));
        let client = x.client.clone();
        let streams = OperationStreams::with_inputs([&x, &gamma, &beta]);
        let outputs = [
            uninit(&x, &[rows, channels]),
            uninit(&x, &[channels]),
            uninit(&x, &[channels]),
            uninit(&x, &[channels]),
        ];
        let desc = CustomOpIr::new(
            "vae_batch_norm_forward",
            &[x.into_ir(), gamma.into_ir(), beta.into_ir()],
            &outputs,
        );
        let op = ForwardOp::<R, BT> {
            desc: desc.clone(),
            epsilon: epsilon as f32,
            _backend: PhantomData,
        };
        let [y, mean, var, inv_std] = client
            .register(streams, OperationIr::Custom(desc), op)
            .outputs();
        RowsForward {
            y: tensor(y),
            mean: tensor(mean),
            var: tensor(var),
            inv_std: tensor(inv_std),
        }
    }

    fn backward(
        g: Tensor<Fused<R, BT>, 2>,
        x: Tensor<Fused<R, BT>, 2>,
        mean: Tensor<Fused<R, BT>, 1>,
        inv_std: Tensor<Fused<R, BT>, 1>,
        gamma: Tensor<Fused<R, BT>, 1>,
    ) -> RowsGradients<Fused<R, BT>> {
        let [rows, channels] = x.dims();
        let inputs = [
            primitive(g),
            primitive(x),
            primitive(mean),
            primitive(inv_std),
            primitive(gamma),
        ];
        let client = inputs[0].client.clone();
        let streams = OperationStreams::with_inputs(inputs.iter());
        let outputs = [
            uninit(&inputs[0], &[rows, channels]),
            uninit(&inputs[0], &[channels]),
            uninit(&inputs[0], &[channels]),
        ];
        let inputs = inputs.map(|t| t.into_ir());
        let desc = CustomOpIr::new("vae_batch_norm_backward", &inputs, &outputs);
        let op = BackwardOp::<R, BT> {
            desc: desc.clone(),
            _backend: PhantomData,
        };
        let [dx, d_gamma, d_beta] = client
            .register(streams, OperationIr::Custom(desc), op)
            .outputs();
        RowsGradients {
            x: tensor(dx),
            gamma: tensor(d_gamma),
            beta: tensor(d_beta),
        }
    }
}
