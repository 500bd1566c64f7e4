//! How 8-bit pixels become model inputs: continuous, or binarised (statically or dynamically).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// How grey levels k ∈ {0..255} are presented to the model.
///
/// Items stay bytes until batching: binarised pixels are 0 or 255, which the batcher maps to
/// exactly 0.0 and 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PixelMode {
    /// x = k / 255 ∈ [0, 1] (PyTorch's and Kingma & Welling's MNIST examples).
    #[default]
    Continuous,
    /// x = 1 if k / 255 > `threshold`, else 0; the same every epoch.
    Threshold {
        /// Cut-off in [0, 1].
        threshold: f32,
    },
    /// x ~ Bernoulli(k / 255) drawn once per example from `seed` and then fixed: the fixed
    /// binarisation used for test sets.
    FixedBinarization {
        /// Seed of the draw.
        seed: u64,
    },
    /// x ~ Bernoulli(k / 255) drawn afresh every time an example is read, i.e. every epoch
    /// (Salakhutdinov & Murray 2008; the IWAE paper): how published MNIST log-likelihoods are
    /// trained. Repeatable: the n-th read of example i uses a seed derived from (`seed`, i, n).
    DynamicBinarization {
        /// Base seed.
        seed: u64,
    },
}

/// SplitMix64 step: fast, well-mixed, seedable per (seed, example, epoch).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bernoulli(k / 255) per pixel from a seed, as 0 / 255 bytes.
fn bernoulli_bytes(pixels: &[u8], seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut bits = 0u64;
    pixels
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            // 8 uniform bytes per 64-bit draw; u < k/255 ⇔ (byte·255 + 127) / 256 < k, close
            // enough for 8-bit data and exactly 0 / 1 at k = 0 / 255.
            if i % 8 == 0 {
                bits = splitmix(&mut state);
            }
            let u = ((bits >> ((i % 8) * 8)) & 0xFF) as u32;
            if u * 255 + 127 < (k as u32) * 256 {
                255
            } else {
                0
            }
        })
        .collect()
}

/// Applies a [`PixelMode`] to the examples of one dataset, keeping the per-example read counts
/// that dynamic binarisation needs.
#[derive(Debug)]
pub struct PixelTransform {
    mode: PixelMode,
    reads: Vec<AtomicU32>,
}

impl PixelTransform {
    /// A transform for `len` examples.
    pub fn new(mode: PixelMode, len: usize) -> Self {
        let reads = match mode {
            PixelMode::DynamicBinarization { .. } => (0..len).map(|_| AtomicU32::new(0)).collect(),
            _ => Vec::new(),
        };
        Self { mode, reads }
    }

    /// The mode.
    pub fn mode(&self) -> PixelMode {
        self.mode
    }

    /// The pixels of example `index` as the model should see them (bytes; 0/255 if binarised).
    pub fn apply(&self, index: usize, pixels: &[u8]) -> Vec<u8> {
        let example_seed = |seed: u64, salt: u64| {
            let mut s = seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ salt;
            splitmix(&mut s)
        };
        match self.mode {
            PixelMode::Continuous => pixels.to_vec(),
            PixelMode::Threshold { threshold } => pixels
                .iter()
                .map(|&k| if k as f32 / 255.0 > threshold { 255 } else { 0 })
                .collect(),
            PixelMode::FixedBinarization { seed } => bernoulli_bytes(pixels, example_seed(seed, 0)),
            PixelMode::DynamicBinarization { seed } => {
                let n = self.reads[index].fetch_add(1, Ordering::Relaxed) as u64;
                bernoulli_bytes(
                    pixels,
                    example_seed(seed, n.wrapping_mul(0xA24B_AED4_963E_E407)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binarisation_keeps_black_and_white_and_matches_grey_levels() {
        let pixels: Vec<u8> = (0..20_000).map(|i| [0, 64, 128, 255][i % 4]).collect();
        let t = PixelTransform::new(PixelMode::FixedBinarization { seed: 1 }, 1);
        let out = t.apply(0, &pixels);
        assert!(out.iter().all(|&v| v == 0 || v == 255));
        for (level, expected) in [
            (0usize, 0.0),
            (1, 64.0 / 255.0),
            (2, 128.0 / 255.0),
            (3, 1.0),
        ] {
            let ones = out
                .iter()
                .skip(level)
                .step_by(4)
                .filter(|&&v| v == 255)
                .count();
            let rate = ones as f64 / 5000.0;
            // 5 standard errors of a Bernoulli(p) mean over 5000 draws.
            let bound = 5.0 * (expected * (1.0 - expected) / 5000.0f64).sqrt() + 1e-12;
            assert!(
                (rate - expected).abs() <= bound,
                "level {level}: {rate} vs {expected}"
            );
        }
    }

    #[test]
    fn fixed_is_fixed_and_dynamic_changes_every_read_repeatably() {
        let pixels = vec![128u8; 256];
        let fixed = PixelTransform::new(PixelMode::FixedBinarization { seed: 7 }, 2);
        assert_eq!(fixed.apply(1, &pixels), fixed.apply(1, &pixels));
        assert_ne!(fixed.apply(0, &pixels), fixed.apply(1, &pixels));

        let dynamic = PixelTransform::new(PixelMode::DynamicBinarization { seed: 7 }, 2);
        let (first, second) = (dynamic.apply(1, &pixels), dynamic.apply(1, &pixels));
        assert_ne!(first, second, "dynamic binarisation must resample per read");
        let again = PixelTransform::new(PixelMode::DynamicBinarization { seed: 7 }, 2);
        assert_eq!(again.apply(1, &pixels), first, "same seed, same sequence");
    }

    #[test]
    fn threshold_is_strictly_greater() {
        let t = PixelTransform::new(PixelMode::Threshold { threshold: 0.5 }, 1);
        assert_eq!(t.apply(0, &[127, 128, 0, 255]), vec![0, 255, 0, 255]);
    }
}
