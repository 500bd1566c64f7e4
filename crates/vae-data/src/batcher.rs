//! Items, batches and the burn `Batcher` that turns one into the other.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Tensor, TensorData, backend::Backend};

pub use vae_core::ImageShape;

use crate::condition::ConditionSource;

/// One example: 8-bit pixels in C×H×W order (as the model sees them after the pixel mode:
/// binarised pixels are 0 or 255), and what the dataset knows about it: a class label
/// (MNIST family), named binary attributes (CelebA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageItem {
    /// C·H·W bytes.
    pub pixels: Vec<u8>,
    /// Class index, if known.
    pub label: Option<u32>,
    /// Binary attributes, if the dataset has them.
    pub attributes: Option<ImageAttributes>,
}

impl ImageItem {
    /// An image with no label and no attributes.
    pub fn new(pixels: Vec<u8>) -> Self {
        Self {
            pixels,
            ..Self::default()
        }
    }
}

/// Named binary attributes of one image (CelebA's 40, from `list_attr_celeba.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAttributes {
    /// The attribute names, shared by every image of a dataset (`5_o_Clock_Shadow`, …).
    pub names: Arc<[String]>,
    /// Whether the image has each attribute, in `names`' order.
    pub values: Vec<bool>,
}

impl ImageAttributes {
    /// Whether the image has attribute `name` (`None`: the dataset has no such attribute).
    pub fn get(&self, name: &str) -> Option<bool> {
        let j = self.names.iter().position(|n| n == name)?;
        self.values.get(j).copied()
    }
}

/// A batch of images for a VAE: `[N, C·H·W]` floats in [0, 1] (k / 255), and each image's
/// condition for a conditional VAE.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// The images, flattened, values in [0, 1].
    pub images: Tensor<B, 2>,
    /// The condition per image, `[N, C]` (see [`ConditionSource`]), when the batcher makes
    /// them.
    pub conditions: Option<Tensor<B, 2>>,
}

impl<B: Backend> ImageBatch<B> {
    /// A batch of `images` without conditions.
    pub fn new(images: Tensor<B, 2>) -> Self {
        Self {
            images,
            conditions: None,
        }
    }
}

/// Stacks [`ImageItem`]s into an [`ImageBatch`] on the requested device: the images, and, when
/// made with [`ImageBatcher::conditioned`], each item's condition.
#[derive(Debug, Clone, Default)]
pub struct ImageBatcher {
    condition: Option<ConditionSource>,
}

impl ImageBatcher {
    /// A batcher of images only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batcher that also makes each item's condition from `source`. Every item must have
    /// what `source` reads (check the dataset with [`check_conditions`](crate::check_conditions) first: the batcher
    /// panics otherwise).
    pub fn conditioned(source: ConditionSource) -> Self {
        Self {
            condition: Some(source),
        }
    }

    /// A batcher whose conditions are the items' labels one-hot, e_k ∈ {0, 1}^`classes`:
    /// `conditioned(ConditionSource::Classes(classes))`.
    pub fn one_hot_classes(classes: usize) -> Self {
        Self::conditioned(ConditionSource::Classes(classes))
    }

    /// What the conditions are made from (`None`: the batcher makes none).
    pub fn condition(&self) -> Option<&ConditionSource> {
        self.condition.as_ref()
    }

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
        let conditions = self.condition.as_ref().map(|source| {
            let values = source.values(&items);
            Tensor::from_data(TensorData::new(values, [n, source.width()]), device)
        });
        ImageBatch {
            images: Tensor::from_data(TensorData::new(values, [n, d]), device),
            conditions,
        }
    }
}
