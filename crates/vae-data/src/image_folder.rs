//! Any folder of images, for your own data.
//!
//! Each image's split is decided by a hash of its path relative to the folder (SHA-256, so it
//! is the same on every machine and run), not by its position: adding or removing an image
//! never moves any other image between train, validation and test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image_files::ImageFiles;
use crate::preprocess::Preprocess;

const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// How an image folder is split and preprocessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageFolderOptions {
    /// Crop and resize (default: largest centred square, resized to 64, RGB).
    pub preprocess: Preprocess,
    /// About one image in n goes to validation (0 = none): those whose path hash falls in
    /// the first 1/n of the hash range.
    pub valid_every: usize,
    /// About one image in n goes to test (0 = none): the next 1/n of the hash range.
    pub test_every: usize,
    /// Where to keep the preprocessed cache; `None` decodes at every read.
    pub cache_dir: Option<PathBuf>,
    /// Use only the first `n` training images.
    pub limit: Option<usize>,
    /// Print cache-building progress.
    pub progress: bool,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            preprocess: Preprocess::square(64),
            valid_every: 20,
            test_every: 20,
            cache_dir: None,
            limit: None,
            progress: true,
        }
    }
}

/// Train / valid / test splits of an image folder.
#[derive(Debug, Clone)]
pub struct ImageFolderSplits {
    /// The training images.
    pub train: ImageFiles,
    /// The validation images.
    pub valid: ImageFiles,
    /// The test images.
    pub test: ImageFiles,
}

/// Every `.jpg`, `.jpeg` and `.png` under `dir` (recursively, following symbolic links),
/// sorted. A directory or image reached twice (a symbolic link loop, or two links to one
/// place) is listed once, under the first path met in a depth-first walk in name order.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let canonical = |p: &Path| p.canonicalize().map_err(|e| DataError::io(p, e));
    let mut found = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut seen_images = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Checked when visited, not when queued, so the first path in walk order wins.
        if !seen_dirs.insert(canonical(&d)?) {
            continue;
        }
        let mut entries = std::fs::read_dir(&d)
            .map_err(|e| DataError::io(&d, e))?
            .map(|entry| entry.map(|e| e.path()).map_err(|e| DataError::io(&d, e)))
            .collect::<Result<Vec<_>>>()?;
        entries.sort();
        let mut subdirs = Vec::new();
        for path in entries {
            if path.is_dir() {
                subdirs.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                // A link to nothing cannot be canonicalised; it is kept under its own name
                // and reported by the header check.
                let key = path.canonicalize().unwrap_or_else(|_| path.clone());
                if seen_images.insert(key) {
                    found.push(path);
                }
            }
        }
        // Reversed onto the stack, so subdirectories are visited in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    found.sort();
    Ok(found)
}

/// Which split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Valid,
    Test,
}

/// The position of `path` in the hash range: the first 8 bytes of the SHA-256 of its path
/// relative to `root`, components joined by `/` (the same on every platform).
fn path_hash(root: &Path, path: &Path) -> u64 {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let text = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let digest = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The split of an image whose path hashes to `hash`: validation takes the first
/// 1/`valid_every` of the range, test the next 1/`test_every`, training the rest.
fn split_of(hash: u64, valid_every: usize, test_every: usize) -> Split {
    let share = |every: usize| match every {
        0 => 0u128,
        n => (1u128 << 64) / n as u128,
    };
    let valid_end = share(valid_every);
    let test_end = valid_end + share(test_every);
    match hash as u128 {
        h if h < valid_end => Split::Valid,
        h if h < test_end => Split::Test,
        _ => Split::Train,
    }
}

/// Rejects split settings that leave no room for training whatever the images.
fn check_split_settings(options: &ImageFolderOptions) -> Result<()> {
    let (v, t) = (options.valid_every, options.test_every);
    let share = |n: usize| if n == 0 { 0.0 } else { 1.0 / n as f64 };
    if share(v) + share(t) >= 1.0 {
        return Err(DataError::Setting {
            key: "valid_every",
            value: v.to_string(),
            expected: format!(
                "with data.test_every = {t}, validation (1/{v}) and test (1/{t}) take every \
                 image and leave none for training; use larger values (or 0 for none)"
            ),
        });
    }
    Ok(())
}

impl ImageFolderSplits {
    /// Loads every image under `dir` and splits them by a stable hash of each image's path
    /// relative to `dir` (see the module documentation). The validation and test splits may be
    /// empty; an empty training split is an error naming the settings.
    pub fn load(dir: &Path, options: &ImageFolderOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                dataset: "image-folder".into(),
                dir: dir.to_path_buf(),
                missing: vec!["the directory itself".into()],
                help: "Give the path of a folder of .jpg/.png images.".into(),
            });
        }
        check_split_settings(options)?;
        let all = list_images(dir)?;
        if all.is_empty() {
            return Err(DataError::NoImages {
                dir: dir.to_path_buf(),
            });
        }
        let total = all.len();
        let (mut train, mut valid, mut test) = (vec![], vec![], vec![]);
        for path in all {
            match split_of(
                path_hash(dir, &path),
                options.valid_every,
                options.test_every,
            ) {
                Split::Valid => valid.push(path),
                Split::Test => test.push(path),
                Split::Train => train.push(path),
            }
        }
        if train.is_empty() {
            return Err(DataError::Setting {
                key: "valid_every",
                value: options.valid_every.to_string(),
                expected: format!(
                    "with data.test_every = {}, all {total} image(s) of {} fell into validation \
                     or test, leaving none for training; add images or use larger values",
                    options.test_every,
                    dir.display()
                ),
            });
        }
        if let Some(n) = options.limit {
            train.truncate(n);
        }
        if train.is_empty() {
            return Err(DataError::Setting {
                key: "limit",
                value: "0".into(),
                expected:
                    "leaves no training examples; use at least 1 (0 in the settings means all)"
                        .into(),
            });
        }
        let p = &options.preprocess;
        let build = |paths: Vec<PathBuf>, name: &str| match &options.cache_dir {
            Some(cache_dir) => {
                let file = format!("folder-{name}-s{}-ch{}.u8", p.size, p.channels);
                ImageFiles::cached(paths, *p, &cache_dir.join(file), options.progress)
            }
            None => ImageFiles::decode(paths, *p),
        };
        Ok(Self {
            train: build(train, "train")?,
            valid: build(valid, "valid")?,
            test: build(test, "test")?,
        })
    }
}
