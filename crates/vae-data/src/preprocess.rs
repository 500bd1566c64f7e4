//! Decoding and preprocessing images: centre crop, then resize (CelebA's convention).

use std::path::Path;

use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::batcher::ImageShape;
use crate::error::{DataError, Result};

/// Centre crop to a square, then resize, as the CelebA VAE literature does (crop 148, resize
/// 64, from the 178×218 aligned images). No random augmentation: the same image always gives the
/// same pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the centred square crop; `None` takes the largest centred square.
    pub crop: Option<u32>,
    /// Side of the output image.
    pub size: u32,
    /// Output channels: 3 (RGB) or 1 (grey).
    pub channels: u8,
}

impl Preprocess {
    /// CelebA's standard: crop 148, resize to 64, RGB.
    pub fn celeba() -> Self {
        Self {
            crop: Some(148),
            size: 64,
            channels: 3,
        }
    }

    /// Largest centred square, resized to `size`, RGB.
    pub fn square(size: u32) -> Self {
        Self {
            crop: None,
            size,
            channels: 3,
        }
    }

    /// The shape of a preprocessed image.
    pub fn dims(&self) -> ImageShape {
        ImageShape {
            channels: self.channels as usize,
            height: self.size as usize,
            width: self.size as usize,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, value: String, expected: &str| DataError::Setting {
            key,
            value,
            expected: expected.to_string(),
        };
        if self.size == 0 {
            return Err(bad("size", "0".into(), "the output side must be ≥ 1"));
        }
        if self.crop == Some(0) {
            return Err(bad("crop", "0".into(), "a crop side must be ≥ 1"));
        }
        if !matches!(self.channels, 1 | 3) {
            return Err(bad(
                "channels",
                self.channels.to_string(),
                "must be 1 (grey) or 3 (RGB)",
            ));
        }
        Ok(())
    }

    /// Checks that an image of `width × height` can be cropped as configured.
    pub fn check_fits(&self, path: &Path, width: u32, height: u32) -> Result<()> {
        match self.crop {
            Some(c) if c > width || c > height => Err(DataError::Image {
                path: path.to_path_buf(),
                problem: format!("{width}×{height} is smaller than the {c}×{c} centre crop"),
            }),
            _ => Ok(()),
        }
    }

    /// Decodes image bytes and preprocesses them into C×H×W bytes.
    pub fn apply(&self, path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
        let image = image::load_from_memory(bytes).map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            problem: format!("cannot decode: {e}"),
        })?;
        let (w, h) = (image.width(), image.height());
        self.check_fits(path, w, h)?;
        let side = self.crop.unwrap_or(w.min(h));
        let cropped = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
        let resized = if side == self.size {
            cropped
        } else {
            // Triangle = bilinear with a support scaled to the reduction, i.e. antialiased like
            // PIL's / torchvision's bilinear resize.
            cropped.resize_exact(self.size, self.size, FilterType::Triangle)
        };
        let n = (self.size * self.size) as usize;
        Ok(if self.channels == 1 {
            resized.to_luma8().into_raw()
        } else {
            // H×W×C → C×H×W.
            let hwc = resized.to_rgb8().into_raw();
            let mut chw = vec![0u8; 3 * n];
            for (i, px) in hwc.chunks_exact(3).enumerate() {
                chw[i] = px[0];
                chw[n + i] = px[1];
                chw[2 * n + i] = px[2];
            }
            chw
        })
    }

    /// Reads and preprocesses an image file.
    pub fn load(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        self.apply(path, &bytes)
    }
}

/// Reads an image's dimensions from its header only.
pub fn image_size(path: &Path) -> Result<(u32, u32)> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .into_dimensions()
        .map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            problem: format!("not a readable image: {e}"),
        })
}
