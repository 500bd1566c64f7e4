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
//! * burn [`Dataset`](burn::data::dataset::Dataset)s of [`ImageItem`] and the [`ImageBatcher`]
//!   that stacks them into `[N, C·H·W]` tensors in [0, 1];
//! * [`load_dataset`]: any of them by name in one call, with [`DataOptions`];
//! * [`locate`]: an explicit directory, then `$VAE_DATA_DIR/<name>`, then a system copy, then a
//!   verified, resumable download from the [`registry`] of official URLs and SHA-256 sums.
//!
//! This crate stands beside the model crates: it knows nothing of VAEs.

mod batcher;
mod by_name;
mod cache;
mod celeba;
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

pub use batcher::{ImageBatch, ImageBatcher, ImageItem, ImageShape};
pub use by_name::{
    DataHealth, DataOptions, DataSplits, IMAGE_FOLDER, dataset_defaults, dataset_names,
    load_dataset,
};
pub use cache::ImageCache;
pub use celeba::{CelebaAttributes, CelebaOptions, CelebaSplits, read_attributes, read_partition};
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
