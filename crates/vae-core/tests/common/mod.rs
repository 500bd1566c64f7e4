//! Shared helpers for vae-core's tests: an f64 CPU backend, host-side seeded noise and small
//! dense linear algebra for closed-form references.
#![allow(clippy::needless_range_loop)]
#![allow(dead_code)]

use burn::backend::NdArray;
use burn::tensor::{
    DType, Element, Tensor, TensorData, backend::Backend, get_device_settings, set_default_dtypes,
};

/// f64 keeps reference comparisons about the math, not about rounding.
pub type B = NdArray<f64>;

pub fn device() -> burn::tensor::Device<B> {
    device_at_precision::<B>()
}

/// The float type `Bk` is named for (F32 for `NdArray<f32>`, F64 for `NdArray<f64>`).
pub fn named_dtype<Bk: Backend>() -> DType {
    <Bk::FloatElem as Element>::dtype()
}

/// `Bk`'s default device, with its default float dtype pinned to the one `Bk` is named for,
/// and proof that it is: panics if something in this process fixed it to another dtype first.
///
/// burn 0.21 keeps the default float dtype in a registry keyed by the *device type*
/// (`burn-backend` `backend/device.rs`: key `(DeviceId, TypeId::of::<Device>())`), set once by
/// the first tensor created on it: `NdArray<f32>` and `NdArray<f64>` share `NdArrayDevice::Cpu`,
/// so in one process whichever precision runs first decides what `Tensor::from_data(.., &dev)`,
/// `zeros`, `random`, … produce for both (an "f64" test then silently runs in f32). Tests that
/// name a precision therefore live in a test binary (one process) of their own per precision
/// and call this before creating a tensor.
pub fn device_at_precision<Bk: Backend>() -> Bk::Device {
    let device = Default::default();
    let named = named_dtype::<Bk>();
    // Err(AlreadyInitialized) after the first call in a process; the check below decides.
    let _ = set_default_dtypes::<Bk>(&device, named, <Bk::IntElem as Element>::dtype());
    let actual: DType = get_device_settings::<Bk>(&device).float_dtype.into();
    assert_eq!(
        actual, named,
        "the default float dtype of this device type was fixed to {actual:?} before this test \
         pinned {named:?}: run each precision in a test binary of its own"
    );
    device
}

pub fn tensor<Bk: Backend, const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Bk::Device,
) -> Tensor<Bk, D> {
    Tensor::from_data(
        TensorData::new(values, shape).convert::<Bk::FloatElem>(),
        device,
    )
}

pub fn to_vec<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// SplitMix64: a tiny, seedable generator so noise is identical on every run and thread.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// Row-major dense matrix helpers for small closed-form references.
pub mod dense {
    pub type Mat = Vec<Vec<f64>>;

    pub fn matmul(a: &Mat, b: &Mat) -> Mat {
        let (n, k, m) = (a.len(), b.len(), b[0].len());
        (0..n)
            .map(|i| {
                (0..m)
                    .map(|j| (0..k).map(|t| a[i][t] * b[t][j]).sum())
                    .collect()
            })
            .collect()
    }

    pub fn transpose(a: &Mat) -> Mat {
        (0..a[0].len())
            .map(|j| a.iter().map(|row| row[j]).collect())
            .collect()
    }

    pub fn identity(n: usize) -> Mat {
        (0..n)
            .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect()
    }

    pub fn add_scaled_identity(a: &Mat, s: f64) -> Mat {
        let mut out = a.clone();
        for (i, row) in out.iter_mut().enumerate() {
            row[i] += s;
        }
        out
    }

    /// Lower-triangular Cholesky factor of a symmetric positive-definite matrix.
    pub fn cholesky(a: &Mat) -> Mat {
        let n = a.len();
        let mut l = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
                if i == j {
                    l[i][j] = (a[i][i] - s).sqrt();
                } else {
                    l[i][j] = (a[i][j] - s) / l[j][j];
                }
            }
        }
        l
    }

    pub fn log_det_spd(a: &Mat) -> f64 {
        cholesky(a)
            .iter()
            .enumerate()
            .map(|(i, r)| 2.0 * r[i].ln())
            .sum()
    }

    /// Solves A x = b for symmetric positive-definite A.
    pub fn solve_spd(a: &Mat, b: &[f64]) -> Vec<f64> {
        let l = cholesky(a);
        let n = b.len();
        let mut y = vec![0.0; n];
        for i in 0..n {
            y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
        }
        x
    }

    pub fn inverse_spd(a: &Mat) -> Mat {
        let n = a.len();
        let cols: Vec<Vec<f64>> = (0..n).map(|j| solve_spd(a, &identity(n)[j])).collect();
        transpose(&cols)
    }

    pub fn mat_vec(a: &Mat, v: &[f64]) -> Vec<f64> {
        a.iter()
            .map(|r| r.iter().zip(v).map(|(x, y)| x * y).sum())
            .collect()
    }

    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}
