//! Verified, resumable, atomic downloads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::registry::RemoteFile;

/// Fetches [`RemoteFile`]s over HTTP(S).
///
/// A file is written to `<name>.part`, resumed from there with a `Range` request after an
/// interruption, checked against its size and SHA-256, and only then renamed to `<name>`; a
/// file is therefore either absent, partial under a different name, or complete and verified.
pub struct Downloader {
    agent: ureq::Agent,
    progress: bool,
}

impl Default for Downloader {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), true)
    }
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks `path` against `file`'s size and SHA-256.
pub fn verify(path: &Path, file: &RemoteFile) -> Result<()> {
    verify_sha256(path, Some(file.size), file.sha256)
}

/// Checks `path` against an expected size (if given) and SHA-256.
pub fn verify_sha256(path: &Path, size: Option<u64>, sha256: &str) -> Result<()> {
    let actual_size = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if let Some(size) = size
        && actual_size != size
    {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: format!("{sha256} ({size} bytes)"),
            actual: format!("unknown ({actual_size} bytes)"),
        });
    }
    let actual = sha256_file(path)?;
    if actual != sha256 {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

enum Attempt {
    Done,
    /// Failed; the `.part` file may hold a resumable prefix.
    Failed(String),
}

impl Downloader {
    /// A downloader whose connections time out after `timeout` without progress; `progress`
    /// prints one line per file to stderr.
    pub fn new(timeout: Duration, progress: bool) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(None)
            .http_status_as_error(false)
            .build();
        Self {
            agent: config.new_agent(),
            progress,
        }
    }

    /// Downloads `file` into `dir` (trying each mirror in turn) unless a verified copy is
    /// already there, and returns its path.
    pub fn fetch(&self, file: &RemoteFile, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let target = dir.join(file.name);
        if target.is_file() {
            match verify(&target, file) {
                Ok(()) => return Ok(target),
                Err(e) => {
                    eprintln!("{e}; downloading it again");
                    fs::remove_file(&target).map_err(|e| DataError::io(&target, e))?;
                }
            }
        }
        let part = dir.join(format!("{}.part", file.name));
        let mut attempts = Vec::new();
        for url in file.urls() {
            match self.attempt(&url, &part, file) {
                Attempt::Done => {
                    fs::rename(&part, &target).map_err(|e| DataError::io(&target, e))?;
                    if self.progress {
                        eprintln!(
                            "downloaded {} ({} bytes, SHA-256 verified)",
                            target.display(),
                            file.size
                        );
                    }
                    return Ok(target);
                }
                Attempt::Failed(why) => attempts.push(format!("{url}: {why}")),
            }
        }
        Err(DataError::Download {
            file: file.name.to_string(),
            dir: dir.to_path_buf(),
            attempts,
        })
    }

    fn attempt(&self, url: &str, part: &Path, file: &RemoteFile) -> Attempt {
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let have = if have >= file.size { 0 } else { have };
        if self.progress {
            if have > 0 {
                eprintln!("resuming {url} at byte {have} of {}", file.size);
            } else {
                eprintln!("downloading {url} ({} bytes)", file.size);
            }
        }
        let mut request = self.agent.get(url);
        if have > 0 {
            request = request.header("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let status = response.status().as_u16();
        let append = match status {
            206 if have > 0 => true,
            200 => false,
            _ => return Attempt::Failed(format!("HTTP {status}")),
        };
        let opened = if append {
            OpenOptions::new().append(true).open(part)
        } else {
            File::create(part)
        };
        let mut out = match opened {
            Ok(f) => f,
            Err(e) => return Attempt::Failed(format!("{}: {e}", part.display())),
        };
        let mut body = response.into_body().into_reader();
        let copied = io::copy(&mut body, &mut out).and_then(|n| out.sync_all().map(|_| n));
        let received = have * append as u64 + copied.as_ref().copied().unwrap_or(0);
        if let Err(e) = copied {
            let on_disk = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            return Attempt::Failed(format!(
                "transfer interrupted after {on_disk} of {} bytes ({e}); run again to resume",
                file.size
            ));
        }
        if received != file.size {
            let on_disk = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if on_disk > file.size {
                let _ = fs::remove_file(part);
            }
            return Attempt::Failed(format!(
                "incomplete transfer: {on_disk} of {} bytes; run again to resume",
                file.size
            ));
        }
        match verify(part, file) {
            Ok(()) => Attempt::Done,
            Err(e) => {
                // A complete file with the wrong content cannot be resumed: start over next time.
                let _ = fs::remove_file(part);
                Attempt::Failed(e.to_string())
            }
        }
    }

    /// Extracts `members` (names inside the archive, after `prefix`) from a zip archive into
    /// `dir`, each written to `<name>.part` and renamed when complete.
    pub fn extract_zip(
        &self,
        archive: &Path,
        prefix: &str,
        members: &[String],
        dir: &Path,
    ) -> Result<()> {
        let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| DataError::Inconsistent {
            path: archive.to_path_buf(),
            problem: format!("not a readable zip archive: {e}"),
        })?;
        for member in members {
            let inner = format!("{prefix}{member}");
            let mut entry = zip.by_name(&inner).map_err(|e| DataError::Inconsistent {
                path: archive.to_path_buf(),
                problem: format!("no member {inner}: {e}"),
            })?;
            let target = dir.join(member);
            let part = dir.join(format!("{member}.part"));
            let mut out = File::create(&part).map_err(|e| DataError::io(&part, e))?;
            io::copy(&mut entry, &mut out)
                .and_then(|_| out.sync_all())
                .map_err(|e| DataError::io(&part, e))?;
            fs::rename(&part, &target).map_err(|e| DataError::io(&target, e))?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = path.with_extension(format!(
        "{}tmp",
        path.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let mut f = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| DataError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}
