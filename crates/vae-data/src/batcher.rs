//! Items, batches and the burn `Batcher` that turns one into the other.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Tensor, TensorData, backend::Backend};

pub use vae_core::ImageShape;

/// One example: 8-bit pixels in C×H×W order (as the model sees them after the pixel mode:
/// binarised pixels are 0 or 255), and its class label when the dataset has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// C·H·W bytes.
    pub pixels: Vec<u8>,
    /// Class index, if known.
    pub label: Option<u32>,
}

/// A batch of images for a VAE: `[N, C·H·W]` floats in [0, 1] (k / 255).
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// The images, flattened, values in [0, 1].
    pub images: Tensor<B, 2>,
}

/// Stacks [`ImageItem`]s into an [`ImageBatch`] on the requested device.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher;

impl ImageBatcher {
    /// The batch as host floats: `[N · D]` values k / 255, and D.
    pub fn to_floats(items: &[ImageItem]) -> (Vec<f32>, usize) {
        let d = items.first().map_or(0, |i| i.pixels.len());
        let mut values = Vec::with_capacity(items.len() * d);
        for item in items {
            assert_eq!(
                item.pixels.len(),
                d,
                "ImageBatcher: images of different sizes"
            );
            values.extend(item.pixels.iter().map(|&k| k as f32 * (1.0 / 255.0)));
        }
        (values, d)
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let n = items.len();
        let (values, d) = Self::to_floats(&items);
        ImageBatch {
            images: Tensor::from_data(TensorData::new(values, [n, d]), device),
        }
    }
}
