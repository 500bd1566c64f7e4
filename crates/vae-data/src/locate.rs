//! Where a dataset lives: an explicit directory, `$VAE_DATA_DIR/<name>`, a system copy, or a
//! download.

use std::path::{Path, PathBuf};

use crate::download::{Downloader, verify_sha256};
use crate::error::{DataError, Result};
use crate::registry::{CELEBA_METADATA_SHA256, DatasetEntry, Source, dataset_names, lookup};

/// Directories consulted, in order, by [`locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoots {
    /// `$VAE_DATA_DIR`, if set.
    pub env_root: Option<PathBuf>,
    /// Where downloads go when nothing else is set: `$XDG_CACHE_HOME/vae` or `~/.cache/vae`.
    pub download_root: PathBuf,
    /// Whether system-wide copies (e.g. `/usr/share/datasets/fashion-mnist`) may be used.
    pub use_system_copies: bool,
}

impl DataRoots {
    /// The roots from the environment.
    pub fn from_env() -> Self {
        let download_root = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("vae");
        Self {
            env_root: std::env::var_os("VAE_DATA_DIR").map(PathBuf::from),
            download_root,
            use_system_copies: true,
        }
    }
}

/// Why a directory was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A directory the caller named explicitly.
    Explicit,
    /// `$VAE_DATA_DIR/<name>`.
    Environment,
    /// A system-wide copy.
    System,
    /// The download directory.
    Download,
}

/// A dataset directory that holds every required file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The registry entry.
    pub entry: DatasetEntry,
    /// The directory.
    pub dir: PathBuf,
    /// Why this directory.
    pub origin: Origin,
    /// Files fetched by this call.
    pub downloaded: Vec<PathBuf>,
}

/// The required entries missing from `dir` (`a|b` alternatives: either satisfies).
pub fn missing_files(entry: &DatasetEntry, dir: &Path) -> Vec<String> {
    entry
        .required
        .iter()
        .filter(|req| !req.split('|').any(|name| dir.join(name).exists()))
        .map(|req| req.split('|').next().unwrap_or(req).to_string())
        .collect()
}

/// The first name of a missing required entry of `dir` that is a symbolic link to nothing, as
/// an error naming it.
fn dangling_link(entry: &DatasetEntry, dir: &Path) -> Option<DataError> {
    entry
        .required
        .iter()
        .filter(|req| !req.split('|').any(|name| dir.join(name).exists()))
        .flat_map(|req| req.split('|'))
        .map(|name| dir.join(name))
        .find(|path| path.symlink_metadata().is_ok() && !path.exists())
        .map(|path| DataError::DanglingLink {
            target: std::fs::read_link(&path).unwrap_or_default(),
            path,
        })
}

/// Finds `name` and, when `download` is set and the registry allows, downloads what is missing.
///
/// Order: `explicit` (only it, if given); else `$VAE_DATA_DIR/<name>`; else the system copy;
/// else the download directory. Downloads go into the first of explicit / env / download root.
///
/// Only missing files are downloaded; nothing already in a directory is deleted or replaced. A
/// required name that is a symbolic link to nothing is reported ([`DataError::DanglingLink`]),
/// and a file in the way of a download that is not the registered one is reported
/// ([`DataError::NotReplaced`]) and left as it is.
pub fn locate(
    name: &str,
    explicit: Option<&Path>,
    roots: &DataRoots,
    downloader: Option<&Downloader>,
) -> Result<Located> {
    let entry = lookup(name).ok_or_else(|| DataError::UnknownDataset {
        name: name.to_string(),
        known: dataset_names(),
    })?;
    let mut candidates: Vec<(PathBuf, Origin)> = Vec::new();
    if let Some(dir) = explicit {
        candidates.push((dir.to_path_buf(), Origin::Explicit));
    } else {
        if let Some(root) = &roots.env_root {
            candidates.push((root.join(name), Origin::Environment));
        }
        if roots.use_system_copies
            && let Some(system) = entry.system_dir
        {
            candidates.push((PathBuf::from(system), Origin::System));
        }
        candidates.push((roots.download_root.join(name), Origin::Download));
    }
    for (dir, origin) in &candidates {
        if missing_files(&entry, dir).is_empty() {
            return Ok(Located {
                entry,
                dir: dir.clone(),
                origin: *origin,
                downloaded: vec![],
            });
        }
    }
    // Nothing complete: the download destination is the first writable-by-intent candidate.
    let (dir, origin) = candidates
        .into_iter()
        .find(|(_, o)| *o != Origin::System)
        .expect("a non-system candidate always exists");
    let missing = missing_files(&entry, &dir);
    let not_found = |help: String| DataError::NotFound {
        dataset: name.to_string(),
        dir: dir.clone(),
        missing: missing.clone(),
        help,
    };
    let Some(downloader) = downloader else {
        return Err(not_found(match entry.source {
            Source::Manual { instructions } => {
                instructions.replace("{dir}", &dir.display().to_string())
            }
            _ => format!(
                "Download it into {} (the command line's `data {name}` does), or give the directory that holds it.",
                dir.display()
            ),
        }));
    };
    // A link to nothing is the user's to fix: name it rather than download over it.
    if let Some(link) = dangling_link(&entry, &dir) {
        return Err(link);
    }
    let downloaded = match entry.source {
        Source::Manual { instructions } => {
            return Err(not_found(
                instructions.replace("{dir}", &dir.display().to_string()),
            ));
        }
        // Only what is missing: files already present (perhaps an uncompressed or re-compressed
        // copy of the user's own) are left as they are and checked by the loader.
        Source::Files(files) => files
            .iter()
            .filter(|f| missing.iter().any(|m| m == f.name))
            .map(|f| downloader.fetch(f, &dir))
            .collect::<Result<Vec<_>>>()?,
        Source::Archive {
            archive,
            member_prefix,
        } => {
            let zip = downloader.fetch(&archive, &dir)?;
            let members = missing.clone();
            downloader.extract_zip(&zip, member_prefix, &members, &dir)?;
            members.iter().map(|m| dir.join(m)).collect()
        }
    };
    Ok(Located {
        entry,
        dir,
        origin,
        downloaded,
    })
}

/// What [`verify_dataset`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Files whose SHA-256 matched the registry.
    pub checksummed: Vec<PathBuf>,
    /// Files present whose bytes differ from the registry's copy (e.g. re-compressed by a
    /// distribution), checked structurally instead.
    pub structural_only: Vec<PathBuf>,
}

/// Verifies a located dataset: registry checksums where the files are the downloaded originals;
/// for anything else the loader's own structural checks (run by the caller when loading).
///
/// Only the download directory is this crate's own: a file there whose checksum differs is
/// an error. Files in a directory the user chose (explicit, `$VAE_DATA_DIR`) or a system copy
/// may legitimately differ byte-wise (re-compressed, uncompressed, hand-placed) and are
/// reported in [`Verification::structural_only`]. Nothing is modified either way.
pub fn verify_dataset(located: &Located) -> Result<Verification> {
    let mut report = Verification {
        checksummed: vec![],
        structural_only: vec![],
    };
    let mut check = |path: PathBuf, size: Option<u64>, sha: &str| -> Result<()> {
        if !path.is_file() {
            return Ok(());
        }
        match verify_sha256(&path, size, sha) {
            Ok(()) => report.checksummed.push(path),
            // System copies (e.g. Debian's, re-compressed), files the user placed and
            // hand-placed CelebA metadata may differ byte-wise from the originals; the loaders
            // check their structure. Downloads are verified before they are moved into place,
            // so a mismatch in the download directory means later corruption.
            Err(_) if located.origin != Origin::Download || size.is_none() => {
                report.structural_only.push(path)
            }
            Err(e) => return Err(e),
        }
        Ok(())
    };
    match located.entry.source {
        Source::Files(files) => {
            for f in files {
                check(located.dir.join(f.name), Some(f.size), f.sha256)?;
            }
        }
        Source::Archive { archive, .. } => check(
            located.dir.join(archive.name),
            Some(archive.size),
            archive.sha256,
        )?,
        Source::Manual { .. } => {
            for (name, sha) in CELEBA_METADATA_SHA256 {
                check(located.dir.join(name), None, sha)?;
            }
        }
    }
    Ok(report)
}
