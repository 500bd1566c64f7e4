//! A dataset over a list of image files: decoded on the fly, or read from an [`ImageCache`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::data::dataset::Dataset;
use rayon::prelude::*;

use crate::batcher::{ImageAttributes, ImageItem, ImageShape};
use crate::cache::ImageCache;
use crate::error::{DataError, Result};
use crate::preprocess::{Preprocess, image_size};

#[derive(Debug)]
enum Storage {
    Cached(ImageCache),
    /// Decoded from [`ImageFiles::paths`] at every read.
    Decode,
}

/// Preprocessed images from files, one item per file (with its attributes, when given with
/// [`ImageFiles::with_attributes`]).
///
/// Without a cache every read decodes a file (the loader's worker threads do this in parallel);
/// with one, reads are a positioned read of C·H·W bytes. Either way the dataset is never held in
/// memory. Headers (existence, format, size against the crop) are checked when the dataset is
/// built; a file that fails to decode later is recorded ([`ImageFiles::take_error`]) and ends the
/// epoch, rather than panicking a loader thread.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    paths: Arc<[PathBuf]>,
    storage: Arc<Storage>,
    preprocess: Preprocess,
    attributes: Option<Attributes>,
    error: Arc<Mutex<Option<DataError>>>,
}

/// The attributes of every item: names shared, one row per file (`None`: none known).
#[derive(Debug, Clone)]
struct Attributes {
    names: Arc<[String]>,
    rows: Arc<[Option<Vec<bool>>]>,
}

impl ImageFiles {
    /// Images from `paths`, decoded at read time. Every header is checked now.
    pub fn decode(paths: Vec<PathBuf>, preprocess: Preprocess) -> Result<Self> {
        preprocess.validate()?;
        paths.par_iter().try_for_each(|p| {
            let (w, h) = image_size(p)?;
            preprocess.check_fits(p, w, h)
        })?;
        Ok(Self::with(paths, Storage::Decode, preprocess))
    }

    /// Images from `paths`, preprocessed once into the cache file `cache` (reused when it
    /// matches the files and settings).
    pub fn cached(
        paths: Vec<PathBuf>,
        preprocess: Preprocess,
        cache: &Path,
        progress: bool,
    ) -> Result<Self> {
        preprocess.validate()?;
        let cache = ImageCache::open_or_build(cache, &paths, &preprocess, progress)?;
        Ok(Self::with(paths, Storage::Cached(cache), preprocess))
    }

    fn with(paths: Vec<PathBuf>, storage: Storage, preprocess: Preprocess) -> Self {
        Self {
            paths: paths.into(),
            storage: Arc::new(storage),
            preprocess,
            attributes: None,
            error: Arc::new(Mutex::new(None)),
        }
    }

    /// The same images, each with its attributes: `rows[i]` (one value per name; `None`: the
    /// image has none) for item i.
    ///
    /// # Panics
    /// If there is not one row per file, each with one value per name.
    pub fn with_attributes(self, names: Arc<[String]>, rows: Vec<Option<Vec<bool>>>) -> Self {
        assert_eq!(rows.len(), self.paths.len(), "one attribute row per image");
        assert!(
            rows.iter().flatten().all(|r| r.len() == names.len()),
            "one value per attribute"
        );
        Self {
            attributes: Some(Attributes {
                names,
                rows: rows.into(),
            }),
            ..self
        }
    }

    /// The source file of each item, in item order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Shape of each item.
    pub fn dims(&self) -> ImageShape {
        self.preprocess.dims()
    }

    /// The first read error since the last call, if any.
    pub fn take_error(&self) -> Option<DataError> {
        self.error.lock().map(|mut e| e.take()).unwrap_or(None)
    }

    /// Reads image `index`.
    pub fn read(&self, index: usize) -> Result<Vec<u8>> {
        match &*self.storage {
            Storage::Cached(cache) => cache.read(index),
            Storage::Decode => self.preprocess.load(&self.paths[index]),
        }
    }
}

impl Dataset<ImageItem> for ImageFiles {
    fn get(&self, index: usize) -> Option<ImageItem> {
        if index >= self.len() {
            return None;
        }
        match self.read(index) {
            Ok(pixels) => Some(ImageItem {
                pixels,
                label: None,
                attributes: self.attributes.as_ref().and_then(|a| {
                    Some(ImageAttributes {
                        names: a.names.clone(),
                        values: a.rows[index].clone()?,
                    })
                }),
            }),
            Err(e) => {
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                None
            }
        }
    }

    fn len(&self) -> usize {
        self.paths.len()
    }
}
