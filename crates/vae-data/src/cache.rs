//! A one-time cache of preprocessed images, so later epochs skip JPEG decoding.
//!
//! Layout: a 64-byte header (`VAEIMG01`, count, channels, height, width, and a SHA-256 key of
//! the sources and preprocessing), then the images as C×H×W bytes back to back. Images are read
//! one at a time with positioned reads, so the dataset never has to fit in memory.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::batcher::ImageShape;
use crate::download::unique_temp_path;
use crate::error::{DataError, Result};
use crate::preprocess::Preprocess;

const MAGIC: &[u8; 8] = b"VAEIMG01";
const HEADER: usize = 64;
/// Images decoded in parallel before being appended to the cache.
const CHUNK: usize = 2048;

/// A file of preprocessed images.
#[derive(Debug)]
pub struct ImageCache {
    file: File,
    path: PathBuf,
    count: usize,
    dims: ImageShape,
}

/// The identity of a set of source images under a preprocessing: paths, sizes, modification
/// times and the settings. A change to any of them invalidates the cache.
pub fn cache_key(sources: &[PathBuf], preprocess: &Preprocess) -> Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    hasher.update(format!("{preprocess:?}").as_bytes());
    for path in sources {
        let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(meta.len().to_le_bytes());
        hasher.update(mtime.to_le_bytes());
    }
    Ok(hasher.finalize().into())
}

fn header(count: usize, dims: ImageShape, key: &[u8; 32]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&(count as u64).to_le_bytes());
    h[16..20].copy_from_slice(&(dims.channels as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(dims.height as u32).to_le_bytes());
    h[24..28].copy_from_slice(&(dims.width as u32).to_le_bytes());
    h[32..64].copy_from_slice(key);
    h
}

impl ImageCache {
    /// Opens the cache at `path` if it was built from exactly these sources and settings;
    /// otherwise decodes every source in parallel and writes a new one atomically: under a
    /// temporary name unique to the process and call, flushed to disk, then renamed. Several
    /// processes building the same cache at once all succeed.
    ///
    /// A source that cannot be decoded stops the build with an error naming it.
    pub fn open_or_build(
        path: &Path,
        sources: &[PathBuf],
        preprocess: &Preprocess,
        progress: bool,
    ) -> Result<Self> {
        let key = cache_key(sources, preprocess)?;
        let dims = preprocess.dims();
        if let Some(cache) = Self::open_matching(path, sources.len(), dims, &key)? {
            return Ok(cache);
        }
        Self::build(path, sources, preprocess, &key, progress)?;
        Self::open_matching(path, sources.len(), dims, &key)?.ok_or_else(|| {
            DataError::Inconsistent {
                path: path.to_path_buf(),
                problem: "cache does not match its sources right after being built".into(),
            }
        })
    }

    fn open_matching(
        path: &Path,
        count: usize,
        dims: ImageShape,
        key: &[u8; 32],
    ) -> Result<Option<Self>> {
        let Ok(mut file) = File::open(path) else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER];
        if file.read_exact(&mut h).is_err() || h != header(count, dims, key) {
            return Ok(None);
        }
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        if len != (HEADER + count * dims.num_values()) as u64 {
            return Ok(None);
        }
        Ok(Some(Self {
            file,
            path: path.to_path_buf(),
            count,
            dims,
        }))
    }

    fn build(
        path: &Path,
        sources: &[PathBuf],
        preprocess: &Preprocess,
        key: &[u8; 32],
        progress: bool,
    ) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        // A name of this process and call alone: several processes (or threads) building the
        // same cache at once each write their own file, and the last rename wins with a
        // complete cache identical to the others.
        let tmp = unique_temp_path(path, "partial");
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write_err = |e: std::io::Error| DataError::io(&tmp, e);
        out.write_all(&header(sources.len(), preprocess.dims(), key))
            .map_err(write_err)?;
        let done = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let result = sources.chunks(CHUNK).try_for_each(|chunk| -> Result<()> {
            let decoded: Vec<Vec<u8>> = chunk
                .par_iter()
                .map(|p| preprocess.load(p))
                .collect::<Result<_>>()?;
            for image in decoded {
                out.write_all(&image).map_err(write_err)?;
            }
            let n = done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if progress && (n % (CHUNK * 10) < CHUNK || n == sources.len()) {
                eprintln!(
                    "caching preprocessed images: {n}/{} ({:.0} images/s)",
                    sources.len(),
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        });
        let finished = result.and_then(|()| {
            let file = out
                .into_inner()
                .map_err(|e| DataError::io(&tmp, e.into_error()))?;
            file.sync_all().map_err(|e| DataError::io(&tmp, e))
        });
        // Flushed to disk (above) before the rename, so a crash never leaves a cache under its
        // final name with missing pixels.
        let renamed =
            finished.and_then(|()| fs::rename(&tmp, path).map_err(|e| DataError::io(path, e)));
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        renamed
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the cache holds no image.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Shape of each image.
    pub fn dims(&self) -> ImageShape {
        self.dims
    }

    /// Image `index` as C×H×W bytes.
    pub fn read(&self, index: usize) -> Result<Vec<u8>> {
        let size = self.dims.num_values();
        let mut buffer = vec![0u8; size];
        let offset = (HEADER + index * size) as u64;
        read_exact_at(&self.file, &mut buffer, offset).map_err(|e| DataError::io(&self.path, e))?;
        Ok(buffer)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
