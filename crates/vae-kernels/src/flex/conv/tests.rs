use burn::backend::{Autodiff, NdArray};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, TensorData, module};

use super::{Ad, Flex};
use crate::fast_path_counts;

type Reference = Autodiff<NdArray<f32>>;

/// Standard-normal-ish f32 data from a local generator: burn's seeded `random` is global
/// state shared with the other tests running in parallel.
fn random(shape: [usize; 4], seed: u64) -> TensorData {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values = (0..shape.iter().product::<usize>())
        .map(|_| {
            // Sum of four uniforms, centred and scaled to unit variance.
            (0..4)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .sum::<f32>()
                .mul_add(3f32.sqrt(), -2.0 * 3f32.sqrt())
        })
        .collect::<Vec<f32>>();
    TensorData::new(values, shape)
}

fn assert_close(ours: TensorData, reference: TensorData, what: &str) {
    // The reference may run in f64: the NdArray device's default float type is global
    // and other tests in this binary use NdArray<f64>.
    let a = ours.convert::<f32>().to_vec::<f32>().unwrap();
    let b = reference.convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * scale,
            "{what}[{i}]: fast {x} vs burn {y} (scale {scale})"
        );
    }
}

/// Output, ∂/∂x, ∂/∂W and ∂/∂b of Σ y·r (r random) on both paths.
fn check_conv(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize, bias: bool) {
    let (xd, wd) = (random(x, 1), random(w, 2));
    let bd = TensorData::new((0..w[0]).map(|i| i as f32 * 0.1 - 0.3).collect(), [w[0]]);
    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);

    let dev = Default::default();
    let xf = Tensor::<Ad, 4>::from_data(xd.clone(), &dev).require_grad();
    let wf = Tensor::<Ad, 4>::from_data(wd.clone(), &dev).require_grad();
    let bf = Tensor::<Ad, 1>::from_data(bd.clone(), &dev).require_grad();
    let before = fast_path_counts();
    let yf = crate::conv2d(
        xf.clone(),
        wf.clone(),
        bias.then(|| bf.clone()),
        options.clone(),
    );
    assert_eq!(
        fast_path_counts().conv2d,
        before.conv2d + 1,
        "fast path not taken"
    );
    let r = random(yf.dims(), 3);
    let gf = (yf.clone() * Tensor::from_data(r.clone(), &dev))
        .sum()
        .backward();

    let dev = Default::default();
    let xr = Tensor::<Reference, 4>::from_data(xd, &dev).require_grad();
    let wr = Tensor::<Reference, 4>::from_data(wd, &dev).require_grad();
    let br = Tensor::<Reference, 1>::from_data(bd, &dev).require_grad();
    let yr = module::conv2d(xr.clone(), wr.clone(), bias.then(|| br.clone()), options);
    let gr = (yr.clone() * Tensor::from_data(r, &dev)).sum().backward();

    let after = fast_path_counts();
    assert_eq!(
        after.conv_weight_grad,
        before.conv_weight_grad + 1,
        "fast weight gradient not taken"
    );
    assert_eq!(after.conv2d, before.conv2d + 1, "NdArray takes burn's path");
    assert_close(yf.into_data(), yr.into_data(), "y");
    assert_close(
        xf.grad(&gf).unwrap().into_data(),
        xr.grad(&gr).unwrap().into_data(),
        "dx",
    );
    assert_close(
        wf.grad(&gf).unwrap().into_data(),
        wr.grad(&gr).unwrap().into_data(),
        "dW",
    );
    if bias {
        assert_close(
            bf.grad(&gf).unwrap().into_data(),
            br.grad(&gr).unwrap().into_data(),
            "db",
        );
    }
}

fn check_conv_transpose(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize, out: usize) {
    let (xd, wd) = (random(x, 4), random(w, 5));
    let options = ConvTransposeOptions::new([stride; 2], [pad; 2], [out; 2], [1, 1], 1);

    let dev = Default::default();
    let xf = Tensor::<Ad, 4>::from_data(xd.clone(), &dev).require_grad();
    let wf = Tensor::<Ad, 4>::from_data(wd.clone(), &dev).require_grad();
    let before = fast_path_counts();
    let yf = crate::conv_transpose2d(xf.clone(), wf.clone(), None, options.clone());
    // Inference on plain Flex runs the same kernel: the same values, bit for bit.
    let yi = crate::conv_transpose2d(
        Tensor::<Flex, 4>::from_data(xd.clone(), &dev),
        Tensor::<Flex, 4>::from_data(wd.clone(), &dev),
        None,
        options.clone(),
    );
    assert_eq!(yi.into_data(), yf.clone().into_data(), "inference path");
    assert_eq!(
        fast_path_counts().conv_transpose2d,
        before.conv_transpose2d + 2,
        "fast path not taken (training and inference)"
    );
    let r = random(yf.dims(), 6);
    let gf = (yf.clone() * Tensor::from_data(r.clone(), &dev))
        .sum()
        .backward();

    let dev = Default::default();
    let xr = Tensor::<Reference, 4>::from_data(xd, &dev).require_grad();
    let wr = Tensor::<Reference, 4>::from_data(wd, &dev).require_grad();
    let yr = module::conv_transpose2d(xr.clone(), wr.clone(), None, options);
    let gr = (yr.clone() * Tensor::from_data(r, &dev)).sum().backward();

    let after = fast_path_counts();
    assert_eq!(
        after.conv_weight_grad,
        before.conv_weight_grad + 1,
        "fast weight gradient not taken"
    );
    assert_eq!(
        after.conv_transpose2d,
        before.conv_transpose2d + 2,
        "NdArray takes burn's path"
    );
    assert_close(yf.into_data(), yr.into_data(), "y");
    assert_close(
        xf.grad(&gf).unwrap().into_data(),
        xr.grad(&gr).unwrap().into_data(),
        "dx",
    );
    assert_close(
        wf.grad(&gf).unwrap().into_data(),
        wr.grad(&gr).unwrap().into_data(),
        "dW",
    );
}

#[test]
fn conv2d_gradients_match_burn() {
    // The encoder's stride-2 blocks, the decoder's stride-1 output layer, odd sides.
    check_conv([3, 3, 16, 16], [8, 3, 3, 3], 2, 1, false);
    check_conv([2, 5, 9, 9], [4, 5, 3, 3], 2, 1, false);
    check_conv([2, 4, 8, 8], [3, 4, 3, 3], 1, 1, true);
    check_conv([2, 3, 7, 6], [2, 3, 2, 3], 1, 0, true);
    check_conv([2, 3, 7, 6], [2, 3, 2, 3], 2, 1, false);
    // Padding wider than the kernel: whole kernel windows outside the image.
    check_conv([2, 3, 5, 5], [2, 3, 1, 1], 1, 2, false);
    check_conv([2, 3, 6, 6], [2, 3, 1, 1], 2, 2, true);
}

#[test]
fn conv_transpose2d_gradients_match_burn() {
    check_conv_transpose([3, 8, 4, 4], [8, 5, 3, 3], 2, 1, 1);
    check_conv_transpose([2, 4, 5, 5], [4, 3, 3, 3], 2, 1, 0);
    check_conv_transpose([2, 3, 6, 6], [3, 2, 3, 3], 1, 1, 0);
    check_conv_transpose([2, 3, 6, 5], [3, 2, 2, 3], 2, 1, 1);
    check_conv_transpose([2, 3, 6, 6], [3, 2, 1, 1], 2, 2, 0);
}
