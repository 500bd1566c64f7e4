//! # vae-data — datasets for VAEs
//!
//! Real image datasets, loaded fast, with every bad file answered by an error that names it:
//!
//! * MNIST-format files ([`IdxImages`], [`IdxSplits`]) for MNIST, Fashion-MNIST, KMNIST and
//!   EMNIST, raw or gzip, with continuous pixels or static / fixed / dynamic binarisation
//!   ([`PixelMode`]);
//! * CelebA aligned & cropped ([`CelebaSplits`]) with the official split, centre-crop 148 →
//!   resize 64, parallel decoding and an optional on-disk cache of preprocessed images;
//! * any folder of images ([`ImageFolderSplits`]);
//! * burn [`Dataset`](burn::data::dataset::Dataset)s of [`ImageItem`] (with class labels or
//!   CelebA's attributes where the dataset has them) and the [`ImageBatcher`] that stacks them
//!   into `[N, C·H·W]` tensors in [0, 1], and, for a conditional model, each item's condition
//!   ([`ConditionSource`]: its label one-hot, or chosen attributes as 0/1);
//! * [`load_dataset`]: any of them by name in one call, with [`DataOptions`];
//! * [`locate`]: an explicit directory, then `$VAE_DATA_DIR/<name>`, then a system copy, then a
//!   verified, resumable download from the [`registry`] of official URLs and SHA-256 sums.
//!
//! Guarantees:
//!
//! * **Nothing it did not create is deleted or replaced.** Only missing files are downloaded;
//!   a present file that does not verify is reported ([`DataError::NotReplaced`]) and left as
//!   it is, a symbolic link to nothing is named ([`DataError::DanglingLink`]).
//! * **Shared files are written under unique temporary names**
//!   ([`download::unique_temp_path`]), flushed, then renamed: several processes downloading
//!   the same file or building the same preprocessed cache at once all succeed.
//! * **Splits fit the data.** MNIST-format validation defaults to [`ValidSize::Auto`] (a sixth
//!   of the training file, at most 10 000: 60 000 → 10 000 as in the literature); `valid_size
//!   = 0` gives an empty validation split; settings that leave no training examples are a
//!   [`DataError::Setting`] naming the key. Image folders split by a hash of each image's
//!   relative path, so adding images never moves others, and symbolic link loops are walked
//!   once.
//!
//! This crate stands beside the model crates: it knows nothing of VAEs.

mod batcher;
mod by_name;
mod cache;
mod celeba;
mod condition;
pub mod download;
mod error;
mod idx;
mod image_files;
mod image_folder;
mod locate;
mod mnist;
mod pixels;
mod preprocess;
pub mod registry;
mod settings;

pub use batcher::{ImageAttributes, ImageBatch, ImageBatcher, ImageItem, ImageShape};
pub use by_name::{
    DataHealth, DataOptions, DataSplits, IMAGE_FOLDER, dataset_defaults, dataset_names,
    load_dataset,
};
pub use cache::ImageCache;
pub use celeba::{CelebaAttributes, CelebaOptions, CelebaSplits, read_attributes, read_partition};
pub use condition::{ConditionError, ConditionSource, check_conditions};
pub use download::Downloader;
pub use error::{DataError, Result};
pub use idx::{IdxArray, IdxImages, IdxLabels, MAX_IDX_BYTES, parse_idx, read_idx};
pub use image_files::ImageFiles;
pub use image_folder::{ImageFolderOptions, ImageFolderSplits, list_images};
pub use locate::{DataRoots, Located, Origin, Verification, locate, missing_files, verify_dataset};
pub use mnist::{
    EmnistSplit, IdxDataset, IdxOptions, IdxSplit, IdxSplits, MnistFamily, find_idx_file,
};
pub use pixels::{PixelMode, PixelTransform};
pub use preprocess::{Preprocess, image_size};
pub use settings::ValidSize;
