//! Any folder of images, for your own data.

use std::path::{Path, PathBuf};

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
    /// Every n-th image (in sorted path order) goes to validation (0 = none).
    pub valid_every: usize,
    /// Every n-th image, offset by one, goes to test (0 = none).
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

/// Every `.jpg`, `.jpeg` and `.png` under `dir` (recursively), sorted.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))?;
        for entry in entries {
            let path = entry.map_err(|e| DataError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

impl ImageFolderSplits {
    /// Loads every image under `dir` and splits them deterministically by position.
    pub fn load(dir: &Path, options: &ImageFolderOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                dataset: "image-folder".into(),
                dir: dir.to_path_buf(),
                missing: vec!["the directory itself".into()],
                help: "Give the path of a folder of .jpg/.png images.".into(),
            });
        }
        let all = list_images(dir)?;
        let (mut train, mut valid, mut test) = (vec![], vec![], vec![]);
        for (i, path) in all.into_iter().enumerate() {
            if options.valid_every > 0 && i % options.valid_every == 0 {
                valid.push(path);
            } else if options.test_every > 0 && i % options.test_every == 1 {
                test.push(path);
            } else {
                train.push(path);
            }
        }
        if let Some(n) = options.limit {
            train.truncate(n);
        }
        if train.is_empty() {
            return Err(DataError::NoImages {
                dir: dir.to_path_buf(),
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
