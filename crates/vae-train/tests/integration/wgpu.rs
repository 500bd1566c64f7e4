//! The GPU code path (burn's cubecl JIT + fusion, through wgpu) agrees with the CPU: the same
//! weights give the same encoder and decoder outputs, and training from the same weights gives
//! the same curves to Monte Carlo noise. On a machine without a GPU this runs on Mesa's software
//! Vulkan driver (`apt install mesa-vulkan-drivers libvulkan1`); CI sets `VAE_REQUIRE_WGPU` so
//! it cannot skip there.

#![cfg(feature = "wgpu")]

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use vae_core::{Elbo, KlEstimator};
use vae_data::ImageItem;

use crate::common::squares_8x8;
use vae_models::{Encoder, MlpDecoder, MlpEncoder, MlpVaeConfig, Vae};
use vae_train::backend::{WgpuAdapter, WgpuGpu, wgpu_device, wgpu_probe};
use vae_train::{History, Trainer};

type Cpu = Autodiff<Flex>;
type Gpu = Autodiff<WgpuGpu>;
const D: usize = 64;

fn adapter_available(test: &str) -> bool {
    match wgpu_probe(WgpuAdapter::Default) {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("VAE_REQUIRE_WGPU").is_none(),
                "{test}: no wgpu adapter: {why}"
            );
            eprintln!("skipped {test}: no wgpu adapter: {why}");
            false
        }
    }
}

type Model<B> = Vae<B, MlpEncoder<B>, MlpDecoder<B>>;

/// One set of initial weights on the CPU and on the GPU. (burn initialises parameters lazily,
/// and each clone of an uninitialised module draws its own values: the weights are drawn once,
/// as a record, and loaded into both.)
fn same_weights(config: &MlpVaeConfig, seed: u64) -> (Model<Cpu>, Model<Gpu>) {
    let cpu_device = Default::default();
    Cpu::seed(&cpu_device, seed);
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let record = config.init::<Cpu>(&cpu_device).into_record();
    let bytes = Recorder::<Cpu>::record(&recorder, record, ()).unwrap();
    let cpu_record = Recorder::<Cpu>::load(&recorder, bytes.clone(), &cpu_device).unwrap();
    let gpu_device = wgpu_device(WgpuAdapter::Default);
    let gpu_record = Recorder::<Gpu>::load(&recorder, bytes, &gpu_device).unwrap();
    (
        config.init::<Cpu>(&cpu_device).load_record(cpu_record),
        config.init::<Gpu>(&gpu_device).load_record(gpu_record),
    )
}

fn max_abs_diff<B1: Backend, B2: Backend>(a: Tensor<B1, 2>, b: Tensor<B2, 2>) -> f32 {
    let a = a.into_data().to_vec::<f32>().unwrap();
    let b = b.into_data().to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_same_weights_give_the_same_outputs_on_cpu_and_wgpu() {
    if !adapter_available("the_same_weights_give_the_same_outputs_on_cpu_and_wgpu") {
        return;
    }
    let config = MlpVaeConfig::new(D, vec![32], 4);
    let (cpu, gpu) = same_weights(&config, 3);
    let (cpu_device, gpu_device) = (Default::default(), wgpu_device(WgpuAdapter::Default));

    let values: Vec<f32> = squares_8x8(16)
        .iter()
        .flat_map(|i| i.pixels.iter().map(|&p| f32::from(p) / 255.0))
        .collect();
    let x_cpu = Tensor::<Cpu, 2>::from_data(TensorData::new(values.clone(), [16, D]), &cpu_device);
    let x_gpu = Tensor::<Gpu, 2>::from_data(TensorData::new(values, [16, D]), &gpu_device);
    let (q_cpu, q_gpu) = (cpu.encoder.encode(x_cpu), gpu.encoder.encode(x_gpu));
    let mean_diff = max_abs_diff(q_cpu.mean(), q_gpu.mean());
    let log_var_diff = max_abs_diff(q_cpu.log_var(), q_gpu.log_var());
    assert!(mean_diff < 1e-4, "posterior means differ by {mean_diff}");
    assert!(
        log_var_diff < 1e-4,
        "posterior log-variances differ by {log_var_diff}"
    );
}

/// Trains 3 epochs from `model` on `device`.
fn train<B: burn::tensor::backend::AutodiffBackend>(model: Model<B>, device: B::Device) -> History {
    let train: Arc<dyn Dataset<ImageItem>> = Arc::new(InMemDataset::new(squares_8x8(256)));
    let valid: Arc<dyn Dataset<ImageItem>> = Arc::new(InMemDataset::new(squares_8x8(64)));
    Trainer::new(model, device)
        .data(train, valid)
        .epochs(3)
        .batch_size(32)
        .fit()
        .unwrap()
        .history
}

#[test]
fn training_from_the_same_weights_gives_the_same_curves_on_cpu_and_wgpu() {
    if !adapter_available("training_from_the_same_weights_gives_the_same_curves_on_cpu_and_wgpu") {
        return;
    }
    let config = MlpVaeConfig::new(D, vec![32], 4);
    let (cpu, gpu) = same_weights(&config, 5);
    let (on_cpu, on_gpu) = (
        train(cpu, Default::default()),
        train(gpu, wgpu_device(WgpuAdapter::Default)),
    );
    // The latent noise comes from each backend's own generator, so the curves agree to Monte
    // Carlo noise: within 2 % of −ELBO per epoch (it falls by far more than that).
    for (c, g) in on_cpu.valid.iter().zip(&on_gpu.valid) {
        let (a, b) = (c.elbo.neg_elbo_nats, g.elbo.neg_elbo_nats);
        assert!(
            (a - b).abs() < 0.02 * a.abs(),
            "epoch {}: valid −ELBO {a} on the CPU, {b} on wgpu",
            c.epoch
        );
    }
    assert_eq!(on_cpu.valid.len(), 3);
    assert_eq!(on_gpu.valid.len(), 3);
    let first = on_cpu.valid[0].elbo.neg_elbo_nats;
    let last = on_gpu.valid[2].elbo.neg_elbo_nats;
    assert!(last < first, "wgpu training lowers −ELBO: {first} → {last}");
}

/// The loss and the gradient with respect to the input of one training step of `model`, with
/// the reparameterisation noise `eps` given (each backend draws its own otherwise).
fn first_step<B: burn::tensor::backend::AutodiffBackend>(
    model: &Model<B>,
    x: Vec<f32>,
    eps: Vec<f32>,
    device: &B::Device,
) -> (f32, Vec<f32>) {
    let n = x.len() / D;
    let x = Tensor::<B, 2>::from_data(TensorData::new(x, [n, D]), device).require_grad();
    let eps = Tensor::<B, 3>::from_data(TensorData::new(eps, [1, n, 4]), device);
    let posterior = model.encode(x.clone());
    let z = posterior.reparameterize(eps);
    let likelihood = model.decode(z.clone());
    let loss = Elbo::estimate(
        x.clone(),
        &posterior,
        &vae_core::PosteriorSamples::at(&posterior, z),
        &likelihood,
        &vae_core::StandardNormal::new(posterior.latent_dim()),
        KlEstimator::Analytic,
    )
    .loss();
    let grads = loss.backward();
    let gradient = x.grad(&grads).expect("x requires grad");
    (
        loss.into_scalar().elem::<f32>(),
        gradient.into_data().to_vec::<f32>().unwrap(),
    )
}

#[test]
fn the_first_step_loss_and_gradients_agree_on_cpu_and_wgpu() {
    if !adapter_available("the_first_step_loss_and_gradients_agree_on_cpu_and_wgpu") {
        return;
    }
    let config = MlpVaeConfig::new(D, vec![32], 4);
    let (cpu, gpu) = same_weights(&config, 7);
    let x: Vec<f32> = squares_8x8(16)
        .iter()
        .flat_map(|i| i.pixels.iter().map(|&p| f32::from(p) / 255.0))
        .collect();
    // Fixed standard-normal-like noise: the sum of four uniforms, centred and scaled.
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let eps: Vec<f32> = (0..16 * 4)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f32>() - 2.0) * 3f32.sqrt())
        .collect();
    let (loss_cpu, grad_cpu) = first_step(&cpu, x.clone(), eps.clone(), &Default::default());
    let (loss_gpu, grad_gpu) = first_step(&gpu, x, eps, &wgpu_device(WgpuAdapter::Default));
    assert!(
        (loss_cpu - loss_gpu).abs() < 1e-4 * loss_cpu.abs(),
        "first-step −ELBO: {loss_cpu} nats on the CPU, {loss_gpu} on wgpu"
    );
    let scale = grad_cpu.iter().fold(0f32, |m, g| m.max(g.abs()));
    let diff = grad_cpu
        .iter()
        .zip(&grad_gpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff < 1e-3 * scale,
        "∂loss/∂x differs by {diff} (largest component {scale})"
    );
}

/// On the GPU code path `vae_kernels::batch_norm` trains with its cubecl kernels (its fast
/// path on `Autodiff<Wgpu>`, counted); it must be burn's `BatchNorm` there too: output, the
/// gradients of the input (through the convolution's weight), γ and β, and the running
/// statistics, in training and in inference.
#[test]
fn batch_norm_on_wgpu_is_burns_batch_norm() {
    if !adapter_available("batch_norm_on_wgpu_is_burns_batch_norm") {
        return;
    }
    // A conv output (channel-last in memory) of 4 channels, 48 rows; one of 40 channels (a
    // full and a partial tile of 32) and 1200 rows (three row blocks of the kernels); and a
    // channel-first tensor that is no conv output (strided reads).
    assert_batch_norm_is_burns([3, 2, 8, 8], 4, true);
    assert_batch_norm_is_burns([3, 2, 40, 40], 40, true);
    assert_batch_norm_is_burns([2, 5, 9, 7], 5, false);
}

/// burn's `BatchNorm` and `vae_kernels::batch_norm` on the same inputs: `x` is a stride-2
/// convolution of an `image`-shaped tensor to `channels` channels (`conv`), else `image` itself.
fn assert_batch_norm_is_burns(image: [usize; 4], channels: usize, conv: bool) {
    use burn::module::{AutodiffModule, Param};
    use burn::nn::{BatchNorm, BatchNormConfig};
    use burn::tensor::{Distribution, Tolerance, module::conv2d, ops::ConvOptions};

    let device = wgpu_device(WgpuAdapter::Default);
    let gamma = Tensor::<Gpu, 1>::random([channels], Distribution::Uniform(-2.0, 2.0), &device);
    let beta = Tensor::<Gpu, 1>::random([channels], Distribution::Uniform(-1.0, 3.0), &device);
    // Two modules, not clones: clones share their running statistics.
    let norm = || BatchNorm {
        gamma: Param::from_tensor(gamma.clone()),
        beta: Param::from_tensor(beta.clone()),
        ..BatchNormConfig::new(channels)
            .with_momentum(0.3)
            .init::<Gpu>(&device)
    };
    let (ours, theirs) = (norm(), norm());
    let close = || Tolerance::<f32>::rel_abs(1e-4, 1e-4);
    for _ in 0..2 {
        let input = Tensor::<Gpu, 4>::random(image, Distribution::Normal(2.0, 1.0), &device);
        let weight = Tensor::<WgpuGpu, 4>::random(
            [channels, image[1], 3, 3],
            Distribution::Default,
            &device,
        );
        // One leaf per graph: a backward pass consumes its graph.
        let leaf = || Tensor::<Gpu, 4>::from_inner(weight.clone()).require_grad();
        let (w_ours, w_theirs) = (leaf(), leaf());
        let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let x = |w: &Tensor<Gpu, 4>| match conv {
            true => conv2d(input.clone(), w.clone(), None, options.clone()),
            false => {
                input.clone()
                    * w.clone()
                        .sum()
                        .mul_scalar(1e-3)
                        .add_scalar(1.0)
                        .reshape([1, 1, 1, 1])
            }
        };
        let (x_ours, x_theirs) = (x(&w_ours), x(&w_theirs));
        let before = vae_kernels::fast_path_counts().batch_norm;
        let y_ours = vae_kernels::batch_norm(&ours, x_ours);
        assert_eq!(
            vae_kernels::fast_path_counts().batch_norm,
            before + 1,
            "batch norm's kernels on Autodiff<Wgpu>"
        );
        let y_theirs = theirs.forward(x_theirs);
        y_ours
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&y_theirs.clone().into_data(), close());
        let target = Tensor::<Gpu, 4>::random(y_ours.dims(), Distribution::Default, &device);
        let grads_ours = (y_ours * target.clone()).sum().backward();
        let grads_theirs = (y_theirs * target).sum().backward();
        let data = |t: Option<Tensor<WgpuGpu, 4>>| t.expect("a gradient").into_data();
        // ∂L/∂x sums to 0 over each channel's rows, so the weight gradient Σ ∂L/∂x·input is a
        // small difference of terms about |input| times larger (inputs ~ N(2, 1)); f32
        // rounding, amplified by that cancellation, leaves two correct orders of summation
        // ~1e-4 relative apart there (measured), and a wrong formula O(1) apart.
        data(w_ours.grad(&grads_ours)).assert_approx_eq::<f32>(
            &data(w_theirs.grad(&grads_theirs)),
            Tolerance::rel_abs(1e-3, 1e-3),
        );
        for (p_ours, p_theirs) in [(&ours.gamma, &theirs.gamma), (&ours.beta, &theirs.beta)] {
            let grad = |p: &Param<Tensor<Gpu, 1>>, g| p.grad(g).expect("a gradient").into_data();
            // Sums of up to 1200 rows in f32, in different orders (row blocks here, burn's
            // reductions there): up to 1.5e-3 apart on values of ~10, measured.
            grad(p_ours, &grads_ours).assert_approx_eq::<f32>(
                &grad(p_theirs, &grads_theirs),
                Tolerance::rel_abs(1e-3, 3e-3),
            );
        }
        for (r_ours, r_theirs) in [
            (&ours.running_mean, &theirs.running_mean),
            (&ours.running_var, &theirs.running_var),
        ] {
            r_ours
                .value()
                .into_data()
                .assert_approx_eq::<f32>(&r_theirs.value().into_data(), close());
        }
    }
    let x = Tensor::<WgpuGpu, 4>::random([2, channels, 3, 3], Distribution::Default, &device);
    vae_kernels::batch_norm(&ours.valid(), x.clone())
        .into_data()
        .assert_approx_eq::<f32>(&theirs.valid().forward(x).into_data(), close());
}
