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

/// A batch of images for a VAE: `[N, C·H·W]` floats in [0, 1] (k / 255), and each image's
/// condition for a conditional VAE.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// The images, flattened, values in [0, 1].
    pub images: Tensor<B, 2>,
    /// The condition per image, `[N, C]` (one-hot class labels), when the batcher makes them.
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
/// made with [`ImageBatcher::one_hot_classes`], their labels one-hot as the conditions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher {
    classes: Option<usize>,
}

impl ImageBatcher {
    /// A batcher of images only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batcher that also makes each item's label k one-hot, e_k ∈ {0, 1}^`classes`, as its
    /// condition. Every item must have a label below `classes` (check the dataset with
    /// [`check_labels`] first: the batcher panics otherwise).
    pub fn one_hot_classes(classes: usize) -> Self {
        Self {
            classes: Some(classes),
        }
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

    /// The one-hot conditions of `items` as host floats, `[N · classes]`.
    ///
    /// # Panics
    /// If an item has no label, or one ≥ `classes` ([`check_labels`] finds both first).
    pub fn one_hot(items: &[ImageItem], classes: usize) -> Vec<f32> {
        let labels = items.iter().map(|item| {
            item.label
                .expect("ImageBatcher: an item without a label in a class-conditional batch")
                as usize
        });
        vae_core::one_hot(labels, classes)
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let n = items.len();
        let (values, d) = Self::to_floats(&items);
        let conditions = self.classes.map(|classes| {
            let one_hot = Self::one_hot(&items, classes);
            Tensor::from_data(TensorData::new(one_hot, [n, classes]), device)
        });
        ImageBatch {
            images: Tensor::from_data(TensorData::new(values, [n, d]), device),
            conditions,
        }
    }
}

/// Checks that every item of `dataset` has a class label below `classes` (what a class-
/// conditional VAE needs); the error names the first item that has none, or a label out of
/// range.
pub fn check_labels<D: burn::data::dataset::Dataset<ImageItem> + ?Sized>(
    dataset: &D,
    classes: usize,
) -> Result<(), LabelError> {
    for index in 0..dataset.len() {
        let Some(item) = dataset.get(index) else {
            continue;
        };
        match item.label {
            None => return Err(LabelError::Missing { index }),
            Some(label) if label as usize >= classes => {
                return Err(LabelError::OutOfRange {
                    index,
                    label,
                    classes,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Why a dataset cannot condition a class-conditional VAE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// An example without a class label (an MNIST-family dataset without its labels file, or
    /// an image folder).
    #[error(
        "example {index} has no class label (an MNIST-family dataset takes them from its …-labels-idx1-ubyte files; image folders have none)"
    )]
    Missing {
        /// Its index in the split.
        index: usize,
    },
    /// A label the model has no class for.
    #[error("example {index} has label {label}, but the model has {classes} classes (0 to {})", classes - 1)]
    OutOfRange {
        /// Its index in the split.
        index: usize,
        /// Its label.
        label: u32,
        /// The model's classes.
        classes: usize,
    },
}
