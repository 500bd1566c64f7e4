//! Finding and loading a run's dataset, and `cargo xtask data`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::data::dataset::Dataset;
use vae_data::{
    CelebaOptions, CelebaSplits, DataRoots, Downloader, IdxOptions, IdxSplits, ImageDims,
    ImageFiles, ImageFolderOptions, ImageFolderSplits, ImageItem, Located, Preprocess, locate,
    verify_dataset,
};
use vae_train::strategy::DataHealth;

use crate::settings::RunConfig;

/// The three splits of a run's data.
pub struct LoadedData {
    /// Training examples.
    pub train: Arc<dyn Dataset<ImageItem>>,
    /// Validation examples.
    pub valid: Arc<dyn Dataset<ImageItem>>,
    /// Test examples.
    pub test: Arc<dyn Dataset<ImageItem>>,
    /// Shape of each example.
    pub dims: ImageDims,
    /// Reports decoding failures of lazily decoded images.
    pub health: Option<DataHealth>,
    /// Where the data was found.
    pub dir: PathBuf,
}

fn preprocess(config: &RunConfig) -> Preprocess {
    Preprocess {
        crop: (config.data.crop > 0).then_some(config.data.crop),
        size: config.data.size,
        channels: config.data.channels,
    }
}

/// Preprocessed-image caches go under the download root, one directory per source folder.
fn cache_dir(roots: &DataRoots, name: &str, source: &Path) -> PathBuf {
    let canonical = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
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
    Arc::new(move || {
        splits
            .iter()
            .find_map(|s| s.take_error())
            .map(|e| e.to_string())
    })
}

/// Locates (downloading if allowed and needed) and loads the data of a run.
pub fn load(config: &RunConfig, data_dir: Option<&Path>, progress: bool) -> Result<LoadedData> {
    let roots = DataRoots::from_env();
    let limit = config.data.limit;
    let name = config.dataset.as_str();
    if name == "image-folder" {
        let Some(dir) = data_dir else {
            bail!("image-folder needs --data-dir DIR, a folder of .jpg/.png images");
        };
        let options = ImageFolderOptions {
            preprocess: preprocess(config),
            valid_every: config.data.valid_every,
            test_every: config.data.test_every,
            cache_dir: config.data.cache.then(|| cache_dir(&roots, name, dir)),
            limit: (limit > 0).then_some(limit),
            progress,
        };
        let splits = ImageFolderSplits::load(dir, &options)?;
        let dims = splits.train.dims();
        return Ok(LoadedData {
            health: Some(health([splits.train.clone(), splits.valid.clone()])),
            train: Arc::new(splits.train),
            valid: Arc::new(splits.valid),
            test: Arc::new(splits.test),
            dims,
            dir: dir.to_path_buf(),
        });
    }
    let downloader = Downloader::default();
    let located = locate(name, data_dir, &roots, Some(&downloader))?;
    if progress {
        eprintln!(
            "data: {name} from {} ({:?})",
            located.dir.display(),
            located.origin
        );
    }
    match located.entry.family {
        Some(family) => {
            let options = IdxOptions {
                valid_size: config.data.valid_size,
                train_pixels: config.data.train_pixels,
                eval_pixels: config.data.eval_pixels,
            };
            let splits = IdxSplits::load(&located.dir, family, options)?;
            let train = if limit > 0 {
                splits.train.limit(limit)
            } else {
                splits.train
            };
            Ok(LoadedData {
                dims: train.dims(),
                train: Arc::new(train),
                valid: Arc::new(splits.valid),
                test: Arc::new(splits.test),
                health: None,
                dir: located.dir,
            })
        }
        None => {
            let options = CelebaOptions {
                preprocess: preprocess(config),
                cache_dir: config
                    .data
                    .cache
                    .then(|| cache_dir(&roots, name, &located.dir)),
                limit: (limit > 0).then_some(limit),
                progress,
            };
            let splits = CelebaSplits::load(&located.dir, &options)?;
            let dims = splits.train.dims();
            Ok(LoadedData {
                health: Some(health([splits.train.clone(), splits.valid.clone()])),
                train: Arc::new(splits.train),
                valid: Arc::new(splits.valid),
                test: Arc::new(splits.test),
                dims,
                dir: located.dir,
            })
        }
    }
}

/// `cargo xtask data <name>`: locate or download, verify checksums, load to check structure.
pub fn command(name: &str, data_dir: Option<&Path>) -> Result<()> {
    if name == "image-folder" {
        let Some(dir) = data_dir else {
            bail!("image-folder needs --data-dir DIR")
        };
        let images = vae_data::list_images(dir)?;
        println!(
            "image-folder: {} images under {}",
            images.len(),
            dir.display()
        );
        return Ok(());
    }
    let roots = DataRoots::from_env();
    let located: Located = locate(name, data_dir, &roots, Some(&Downloader::default()))?;
    println!("{name}: {} ({:?})", located.dir.display(), located.origin);
    for path in &located.downloaded {
        println!("  downloaded {}", path.display());
    }
    let report = verify_dataset(&located)?;
    for path in &report.checksummed {
        println!("  SHA-256 ok     {}", path.display());
    }
    for path in &report.structural_only {
        println!(
            "  structure only {} (not byte-identical to the registry's copy)",
            path.display()
        );
    }
    let config = RunConfig::for_dataset(name, &crate::settings::Overrides::default())?;
    let data = load(&config, Some(&located.dir), true)?;
    println!(
        "  loaded: {} train / {} valid / {} test examples of {}×{}×{}",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        data.dims.channels,
        data.dims.height,
        data.dims.width
    );
    Ok(())
}
