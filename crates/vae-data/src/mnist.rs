//! MNIST-format datasets: MNIST, Fashion-MNIST, KMNIST and EMNIST.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use serde::{Deserialize, Serialize};

use crate::batcher::{ImageItem, ImageShape};
use crate::error::{DataError, Result};
use crate::idx::{IdxImages, IdxLabels};
use crate::pixels::{PixelMode, PixelTransform};
use crate::settings::ValidSize;

/// The EMNIST splits (Cohen et al. 2017).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmnistSplit {
    /// 47 balanced classes.
    Balanced,
    /// 62 unbalanced classes.
    ByClass,
    /// 47 unbalanced classes.
    ByMerge,
    /// 10 digit classes.
    Digits,
    /// 26 letter classes.
    Letters,
    /// MNIST-sized digits.
    Mnist,
}

impl EmnistSplit {
    fn file_tag(self) -> &'static str {
        match self {
            Self::Balanced => "balanced",
            Self::ByClass => "byclass",
            Self::ByMerge => "bymerge",
            Self::Digits => "digits",
            Self::Letters => "letters",
            Self::Mnist => "mnist",
        }
    }
}

/// A dataset in MNIST's file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MnistFamily {
    /// LeCun et al.'s handwritten digits.
    Mnist,
    /// Zalando's clothing images.
    FashionMnist,
    /// Kuzushiji (cursive Japanese) characters.
    Kmnist,
    /// Extended MNIST; images are stored transposed and are transposed back on load.
    Emnist(EmnistSplit),
}

/// Train or test file of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxSplit {
    /// The training file (60 000 images for MNIST).
    Train,
    /// The test file (10 000 images for MNIST).
    Test,
}

impl MnistFamily {
    /// The names of the images and labels files of a split, without `.gz`.
    pub fn file_names(self, split: IdxSplit) -> [String; 2] {
        let (prefix, part) = match (self, split) {
            (Self::Emnist(s), IdxSplit::Train) => (format!("emnist-{}-", s.file_tag()), "train"),
            (Self::Emnist(s), IdxSplit::Test) => (format!("emnist-{}-", s.file_tag()), "test"),
            (_, IdxSplit::Train) => (String::new(), "train"),
            (_, IdxSplit::Test) => (String::new(), "t10k"),
        };
        [
            format!("{prefix}{part}-images-idx3-ubyte"),
            format!("{prefix}{part}-labels-idx1-ubyte"),
        ]
    }

    /// Whether images are stored column-major (EMNIST).
    pub fn transposed(self) -> bool {
        matches!(self, Self::Emnist(_))
    }
}

/// Finds `<dir>/<name>.gz` or `<dir>/<name>`.
pub fn find_idx_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// One split of an MNIST-format dataset, in memory (bytes), shared between splits cut from the
/// same file.
#[derive(Debug, Clone)]
pub struct IdxDataset {
    images: Arc<IdxImages>,
    labels: Option<Arc<IdxLabels>>,
    range: Range<usize>,
    transform: Arc<PixelTransform>,
}

impl IdxDataset {
    /// Examples `range` of `images` (and `labels`), presented with `mode`.
    pub fn new(
        images: Arc<IdxImages>,
        labels: Option<Arc<IdxLabels>>,
        range: Range<usize>,
        mode: PixelMode,
    ) -> Self {
        assert!(
            range.end <= images.count,
            "IdxDataset: range beyond the images"
        );
        let transform = Arc::new(PixelTransform::new(mode, range.len()));
        Self {
            images,
            labels,
            range,
            transform,
        }
    }

    /// Image shape (one channel).
    pub fn dims(&self) -> ImageShape {
        ImageShape {
            channels: 1,
            height: self.images.rows,
            width: self.images.cols,
        }
    }

    /// The first `n` examples only (quick runs).
    pub fn limit(&self, n: usize) -> Self {
        let end = self.range.start + n.min(self.range.len());
        Self::new(
            self.images.clone(),
            self.labels.clone(),
            self.range.start..end,
            self.transform.mode(),
        )
    }
}

impl Dataset<ImageItem> for IdxDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        if index >= self.range.len() {
            return None;
        }
        let i = self.range.start + index;
        Some(ImageItem {
            pixels: self.transform.apply(index, self.images.image(i)),
            label: self.labels.as_ref().map(|l| l.labels[i] as u32),
            attributes: None,
        })
    }

    fn len(&self) -> usize {
        self.range.len()
    }
}

/// How an MNIST-format dataset is split and presented.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdxOptions {
    /// Examples held out from the end of the training file for validation (0: none, the
    /// validation split is empty).
    pub valid_size: ValidSize,
    /// Pixel mode of the training split.
    pub train_pixels: PixelMode,
    /// Pixel mode of the validation and test splits (use a fixed binarisation when training
    /// with a dynamic one, so evaluation is repeatable).
    pub eval_pixels: PixelMode,
}

impl Default for IdxOptions {
    fn default() -> Self {
        Self {
            valid_size: ValidSize::Auto,
            train_pixels: PixelMode::Continuous,
            eval_pixels: PixelMode::Continuous,
        }
    }
}

/// Train / validation / test splits of an MNIST-format dataset.
#[derive(Debug, Clone)]
pub struct IdxSplits {
    /// The training file minus its last `valid_size` examples.
    pub train: IdxDataset,
    /// The last `valid_size` examples of the training file; empty (`len() == 0`) when
    /// `valid_size` is 0.
    pub valid: IdxDataset,
    /// The test file.
    pub test: IdxDataset,
}

fn load_pair(
    dir: &Path,
    family: MnistFamily,
    split: IdxSplit,
) -> Result<(IdxImages, Option<IdxLabels>)> {
    let [images_name, labels_name] = family.file_names(split);
    let images_path = find_idx_file(dir, &images_name).ok_or_else(|| DataError::NotFound {
        dataset: format!("{family:?}"),
        dir: dir.to_path_buf(),
        missing: vec![format!("{images_name}[.gz]")],
        help: "Put the files there (the command line's `data <name>` downloads them), or give the directory that holds them.".into(),
    })?;
    let mut images = IdxImages::read(&images_path)?;
    if family.transposed() {
        images.transpose_each();
    }
    let labels = match find_idx_file(dir, &labels_name) {
        None => None,
        Some(path) => {
            let labels = IdxLabels::read(&path)?;
            if labels.labels.len() != images.count {
                return Err(DataError::Inconsistent {
                    path,
                    problem: format!(
                        "{} labels for the {} images of {}",
                        labels.labels.len(),
                        images.count,
                        images_path.display()
                    ),
                });
            }
            Some(labels)
        }
    };
    Ok((images, labels))
}

impl IdxSplits {
    /// Loads a family's files from `dir` (gzip or raw; labels optional).
    pub fn load(dir: &Path, family: MnistFamily, options: IdxOptions) -> Result<Self> {
        let (train_images, train_labels) = load_pair(dir, family, IdxSplit::Train)?;
        let (test_images, test_labels) = load_pair(dir, family, IdxSplit::Test)?;
        if (train_images.rows, train_images.cols) != (test_images.rows, test_images.cols) {
            return Err(DataError::Inconsistent {
                path: test_images.path.clone(),
                problem: format!(
                    "{}×{} images, but the training images are {}×{}",
                    test_images.rows, test_images.cols, train_images.rows, train_images.cols
                ),
            });
        }
        if train_images.count == 0 {
            return Err(DataError::Idx {
                path: train_images.path.clone(),
                problem: "holds no images; there is nothing to train on".into(),
            });
        }
        let valid_size = options.valid_size.resolve(train_images.count);
        if valid_size >= train_images.count {
            return Err(DataError::Setting {
                key: "valid_size",
                value: options.valid_size.to_string(),
                expected: format!(
                    "leaves no training examples ({} has {} images); it must be smaller",
                    train_images.path.display(),
                    train_images.count,
                ),
            });
        }
        let split_at = train_images.count - valid_size;
        let total = train_images.count;
        let (train_images, train_labels) = (Arc::new(train_images), train_labels.map(Arc::new));
        let test_count = test_images.count;
        Ok(Self {
            train: IdxDataset::new(
                train_images.clone(),
                train_labels.clone(),
                0..split_at,
                options.train_pixels,
            ),
            valid: IdxDataset::new(
                train_images,
                train_labels,
                split_at..total,
                options.eval_pixels,
            ),
            test: IdxDataset::new(
                Arc::new(test_images),
                test_labels.map(Arc::new),
                0..test_count,
                options.eval_pixels,
            ),
        })
    }
}
