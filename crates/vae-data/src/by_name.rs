//! A dataset by name in one call:
//! `load_dataset("fashion-mnist", None, &DataOptions::for_dataset("fashion-mnist")?, true)`.
//!
//! Finds the files ([`locate`]: an explicit directory, `$VAE_DATA_DIR/<name>`, a system copy,
//! or a verified download), then loads the three splits as burn datasets of [`ImageItem`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use serde::{Deserialize, Serialize};

use crate::batcher::{ImageItem, ImageShape};
use crate::celeba::{CelebaOptions, CelebaSplits};
use crate::download::Downloader;
use crate::error::{DataError, Result};
use crate::image_files::ImageFiles;
use crate::image_folder::{ImageFolderOptions, ImageFolderSplits};
use crate::locate::{DataRoots, locate};
use crate::mnist::{IdxOptions, IdxSplits};
use crate::pixels::PixelMode;
use crate::preprocess::Preprocess;
use crate::settings::{ValidSize, count};

/// The name of the dataset that is a folder of the user's own images.
pub const IMAGE_FOLDER: &str = "image-folder";

/// How a dataset is split and preprocessed; each dataset reads the options that apply to it
/// (the `[data]` table of a run's `config.toml`).
///
/// Counts are whole numbers ≥ 0; a value that is negative, fractional, not finite or too large
/// for its field is rejected with a message saying which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataOptions {
    /// MNIST-format: examples held out from the end of the training file for validation:
    /// `"auto"` (the default: one sixth, at most 10 000, see [`ValidSize::Auto`]) or a number;
    /// 0 leaves the validation split empty (train on every example, no validation).
    pub valid_size: ValidSize,
    /// MNIST-format: pixel mode for training.
    pub train_pixels: PixelMode,
    /// MNIST-format: pixel mode for validation and test.
    pub eval_pixels: PixelMode,
    /// Use only the first N training examples (0 = all).
    #[serde(deserialize_with = "count")]
    pub limit: usize,
    /// Images: centre-crop side (0 = the largest centred square).
    #[serde(deserialize_with = "count")]
    pub crop: u32,
    /// Images: output side.
    #[serde(deserialize_with = "count")]
    pub size: u32,
    /// Images: 1 (grey) or 3 (RGB).
    #[serde(deserialize_with = "count")]
    pub channels: u8,
    /// Images: keep a cache of preprocessed pixels.
    pub cache: bool,
    /// Image folder: about one image in n goes to validation, chosen by a hash of its path
    /// (0 = none; see [`ImageFolderOptions`]).
    #[serde(deserialize_with = "count")]
    pub valid_every: usize,
    /// Image folder: about one image in n goes to test, chosen by a hash of its path (0 = none).
    #[serde(deserialize_with = "count")]
    pub test_every: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            valid_size: ValidSize::Auto,
            train_pixels: PixelMode::Continuous,
            eval_pixels: PixelMode::Continuous,
            limit: 0,
            crop: 0,
            size: 64,
            channels: 3,
            cache: true,
            valid_every: 20,
            test_every: 20,
        }
    }
}

/// The per-dataset defaults shipped in the workspace's `datasets/<name>.toml` (their `[data]`
/// tables are read here; the command line also reads `[training]`), or `None` for an unknown
/// name.
pub fn dataset_defaults(name: &str) -> Option<&'static str> {
    match name {
        "mnist" => Some(include_str!("../../../datasets/mnist.toml")),
        "fashion-mnist" => Some(include_str!("../../../datasets/fashion-mnist.toml")),
        "kmnist" => Some(include_str!("../../../datasets/kmnist.toml")),
        "celeba" => Some(include_str!("../../../datasets/celeba.toml")),
        IMAGE_FOLDER => Some(include_str!("../../../datasets/image-folder.toml")),
        // EMNIST splits share MNIST's settings.
        n if n.starts_with("emnist-") => Some(include_str!("../../../datasets/mnist.toml")),
        _ => None,
    }
}

impl DataOptions {
    /// The options `datasets/<name>.toml` sets for dataset `name` (e.g. CelebA's centre crop of
    /// 148 pixels), over [`DataOptions::default`].
    pub fn for_dataset(name: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            data: DataOptions,
        }
        let text = dataset_defaults(name).ok_or_else(|| DataError::UnknownDataset {
            name: name.to_string(),
            known: dataset_names(),
        })?;
        let file: File = toml::from_str(text).map_err(|e| DataError::Inconsistent {
            path: PathBuf::from(format!("datasets/{name}.toml")),
            problem: e.message().to_string(),
        })?;
        Ok(file.data)
    }

    /// Checks the options that do not depend on the files.
    pub fn validate(&self) -> Result<()> {
        self.preprocess().validate()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess {
            crop: (self.crop > 0).then_some(self.crop),
            size: self.size,
            channels: self.channels,
        }
    }
}

/// A check of lazily decoded sources, run after each epoch: the first read error since the
/// last check (an image that no longer decodes), if any.
pub type DataHealth = Arc<dyn Fn() -> Option<DataError> + Send + Sync>;

/// The three splits of a dataset, as burn datasets.
#[derive(Clone)]
pub struct DataSplits {
    /// Training examples.
    pub train: Arc<dyn Dataset<ImageItem>>,
    /// Validation examples. May be empty (`len() == 0`): `data.valid_size = 0` for
    /// MNIST-format data, `data.valid_every = 0` or a small image folder; a trainer then
    /// skips validation.
    pub valid: Arc<dyn Dataset<ImageItem>>,
    /// Test examples.
    pub test: Arc<dyn Dataset<ImageItem>>,
    /// The shape of every example.
    pub shape: ImageShape,
    /// Reports decoding failures of lazily decoded images (`None`: nothing decoded lazily).
    pub health: Option<DataHealth>,
    /// Where the files were found.
    pub dir: PathBuf,
}

impl std::fmt::Debug for DataSplits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSplits")
            .field("train", &self.train.len())
            .field("valid", &self.valid.len())
            .field("test", &self.test.len())
            .field("shape", &self.shape)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Every dataset name [`load_dataset`] accepts.
pub fn dataset_names() -> Vec<String> {
    let mut names = crate::registry::dataset_names();
    names.push(IMAGE_FOLDER.to_string());
    names
}

/// Preprocessed-image caches go under the download root, one directory per source folder.
fn cache_dir(roots: &DataRoots, name: &str, source: &Path) -> PathBuf {
    let canonical = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
    // FNV-1a of the path: a stable, dependency-free directory name.
    let hash = canonical
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    roots
        .download_root
        .join("cache")
        .join(format!("{name}-{hash:016x}"))
}

fn health(splits: [ImageFiles; 2]) -> DataHealth {
    Arc::new(move || splits.iter().find_map(|s| s.take_error()))
}

fn image_splits(
    train: ImageFiles,
    valid: ImageFiles,
    test: ImageFiles,
    dir: PathBuf,
) -> DataSplits {
    DataSplits {
        shape: train.dims(),
        health: Some(health([train.clone(), valid.clone()])),
        train: Arc::new(train),
        valid: Arc::new(valid),
        test: Arc::new(test),
        dir,
    }
}

/// Finds (downloading where allowed and needed) and loads dataset `name`: from `data_dir`
/// when given, else `$VAE_DATA_DIR/<name>`, a system copy, or the verified download cache
/// (see [`locate`]). `progress` prints where the data came from and cache-building progress
/// to stderr.
///
/// Names: see [`dataset_names`]; `image-folder` needs `data_dir`.
pub fn load_dataset(
    name: &str,
    data_dir: Option<&Path>,
    options: &DataOptions,
    progress: bool,
) -> Result<DataSplits> {
    options.validate()?;
    let roots = DataRoots::from_env();
    let limit = (options.limit > 0).then_some(options.limit);
    if name == IMAGE_FOLDER {
        let Some(dir) = data_dir else {
            return Err(DataError::NeedsDirectory {
                dataset: name.to_string(),
            });
        };
        let folder = ImageFolderOptions {
            preprocess: options.preprocess(),
            valid_every: options.valid_every,
            test_every: options.test_every,
            cache_dir: options.cache.then(|| cache_dir(&roots, name, dir)),
            limit,
            progress,
        };
        let splits = ImageFolderSplits::load(dir, &folder)?;
        return Ok(image_splits(
            splits.train,
            splits.valid,
            splits.test,
            dir.to_path_buf(),
        ));
    }
    let located = locate(name, data_dir, &roots, Some(&Downloader::default()))?;
    if progress {
        eprintln!(
            "data: {name} from {} ({:?})",
            located.dir.display(),
            located.origin
        );
    }
    match located.entry.family {
        Some(family) => {
            let idx = IdxOptions {
                valid_size: options.valid_size,
                train_pixels: options.train_pixels,
                eval_pixels: options.eval_pixels,
            };
            let splits = IdxSplits::load(&located.dir, family, idx)?;
            let train = match limit {
                Some(n) => splits.train.limit(n),
                None => splits.train,
            };
            Ok(DataSplits {
                shape: train.dims(),
                train: Arc::new(train),
                valid: Arc::new(splits.valid),
                test: Arc::new(splits.test),
                health: None,
                dir: located.dir,
            })
        }
        None => {
            let celeba = CelebaOptions {
                preprocess: options.preprocess(),
                cache_dir: options.cache.then(|| cache_dir(&roots, name, &located.dir)),
                limit,
                progress,
            };
            let splits = CelebaSplits::load(&located.dir, &celeba)?;
            Ok(image_splits(
                splits.train,
                splits.valid,
                splits.test,
                located.dir,
            ))
        }
    }
}
