//! Verified, resumable, atomic downloads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::registry::RemoteFile;

/// Fetches [`RemoteFile`]s over HTTP(S).
///
/// A file is written to a temporary name that no other process or thread uses
/// ([`unique_temp_path`]), checked against its size and SHA-256, and only then moved to
/// `<name>`; a file is therefore either absent, partial under another name, or complete and
/// verified. An interrupted transfer is parked as `<name>.part` and resumed from there with a
/// `Range` request by the next call (which first claims it by renaming it, so two processes
/// never append to the same file).
///
/// Nothing this type did not create is ever deleted or replaced: a file already at `<name>`
/// that does not verify is reported ([`DataError::NotReplaced`]) and left as it is, and a
/// finished download is never moved over a file that appeared meanwhile.
pub struct Downloader {
    agent: ureq::Agent,
    progress: bool,
    mirrors: Option<Vec<String>>,
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

/// A path beside `path` that no other process or thread will pick:
/// `.<file name>.<pid>.<counter>.<nanoseconds>.<suffix>` in the same directory (so a rename
/// into place stays on one filesystem and is atomic). Hidden, so a half-written file is not
/// mistaken for data by tools that list the directory.
pub fn unique_temp_path(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The clock only separates processes that reuse a pid (e.g. in containers).
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{name}.{}.{n}.{nanos:09}.{suffix}",
        std::process::id()
    ))
}

/// Whether something is at `path`, without following a final symbolic link blindly: a link
/// whose target is missing and anything that is not a file are errors naming `path`.
fn present_file(path: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DataError::io(path, e)),
    };
    if meta.file_type().is_symlink() && fs::metadata(path).is_err() {
        return Err(DataError::DanglingLink {
            path: path.to_path_buf(),
            target: fs::read_link(path).unwrap_or_default(),
        });
    }
    if path.is_dir() {
        return Err(DataError::NotReplaced {
            path: path.to_path_buf(),
            problem: "is a directory where a file was expected".into(),
        });
    }
    Ok(true)
}

/// Moves the finished temporary file `tmp` to `target` unless something is already there.
/// Returns whether it was placed; when not, `tmp` is left for the caller.
fn place_new(tmp: &Path, target: &Path) -> io::Result<bool> {
    // A hard link fails atomically when `target` exists, so even a file that appeared since
    // the last look is never replaced.
    match fs::hard_link(tmp, target) {
        Ok(()) => {
            fs::remove_file(tmp)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Filesystems without hard links: check, then rename (a narrow race, but still never
        // over a file that was there when we looked).
        Err(_) => {
            if fs::symlink_metadata(target).is_ok() {
                return Ok(false);
            }
            fs::rename(tmp, target)?;
            Ok(true)
        }
    }
}

/// What is wrong with a file that failed [`verify`], in words for [`DataError::NotReplaced`].
fn verification_problem(error: DataError) -> String {
    match error {
        DataError::Checksum {
            expected, actual, ..
        } => format!("SHA-256 is {actual}, expected {expected} (not the registered file)"),
        other => other.to_string(),
    }
}

enum Attempt {
    Done,
    /// Failed; the work file may hold a resumable prefix.
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
            mirrors: None,
        }
    }

    /// Tries these base URLs (the file name is appended), in order, instead of each file's
    /// registered mirrors: a local mirror, a proxy, or a test server.
    pub fn with_mirrors(mut self, bases: Vec<String>) -> Self {
        self.mirrors = Some(bases);
        self
    }

    fn urls(&self, file: &RemoteFile) -> Vec<String> {
        match &self.mirrors {
            Some(bases) => bases
                .iter()
                .map(|base| format!("{}/{}", base.trim_end_matches('/'), file.name))
                .collect(),
            None => file.urls(),
        }
    }

    /// Downloads `file` into `dir` (trying each mirror in turn) unless a verified copy is
    /// already there, and returns its path.
    ///
    /// A file already at the destination that does not verify is left untouched and reported
    /// ([`DataError::NotReplaced`]); so is a symbolic link whose target is missing
    /// ([`DataError::DanglingLink`]).
    pub fn fetch(&self, file: &RemoteFile, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let target = dir.join(file.name);
        if present_file(&target)? {
            return match verify(&target, file) {
                Ok(()) => Ok(target),
                Err(e) => Err(DataError::NotReplaced {
                    path: target,
                    problem: verification_problem(e),
                }),
            };
        }
        let parked = dir.join(format!("{}.part", file.name));
        let work = unique_temp_path(&target, "part");
        // Claim the prefix an earlier, interrupted call left: the rename is atomic, so of two
        // processes only one resumes it (the other starts afresh under its own name).
        match fs::rename(&parked, &work) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(DataError::io(&parked, e)),
        }
        let mut attempts = Vec::new();
        for url in self.urls(file) {
            match self.attempt(&url, &work, file) {
                Attempt::Done => return self.finish(file, &work, target),
                Attempt::Failed(why) => attempts.push(format!("{url}: {why}")),
            }
        }
        // Keep a prefix for the next call to resume; an empty file is worth nothing.
        match fs::metadata(&work) {
            Ok(m) if m.len() > 0 => {
                let _ = fs::rename(&work, &parked);
            }
            _ => {
                let _ = fs::remove_file(&work);
            }
        }
        Err(DataError::Download {
            file: file.name.to_string(),
            dir: dir.to_path_buf(),
            attempts,
        })
    }

    /// Moves a verified download into place, never over a file that appeared meanwhile.
    fn finish(&self, file: &RemoteFile, work: &Path, target: PathBuf) -> Result<PathBuf> {
        let placed = place_new(work, &target).map_err(|e| DataError::io(&target, e));
        if !matches!(placed, Ok(true)) {
            let _ = fs::remove_file(work);
        }
        if !placed? {
            // Another process finished the same download first; theirs is as good as ours.
            // Anything else that appeared there is not ours to replace.
            verify(&target, file).map_err(|e| DataError::NotReplaced {
                path: target.clone(),
                problem: format!(
                    "appeared during the download and {}",
                    verification_problem(e)
                ),
            })?;
        } else if self.progress {
            eprintln!(
                "downloaded {} ({} bytes, SHA-256 verified)",
                target.display(),
                file.size
            );
        }
        Ok(target)
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
    /// `dir`, each written to a unique temporary name and moved into place when complete. A
    /// member already present in `dir` is left as it is.
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
            let target = dir.join(member);
            if present_file(&target)? {
                continue;
            }
            let inner = format!("{prefix}{member}");
            let mut entry = zip.by_name(&inner).map_err(|e| DataError::Inconsistent {
                path: archive.to_path_buf(),
                problem: format!("no member {inner}: {e}"),
            })?;
            let part = unique_temp_path(&target, "part");
            let written = File::create(&part).and_then(|mut out| {
                io::copy(&mut entry, &mut out)?;
                out.sync_all()
            });
            let placed = written.and_then(|()| place_new(&part, &target));
            if !matches!(placed, Ok(true)) {
                let _ = fs::remove_file(&part);
            }
            // `false`: another process extracted the same member meanwhile.
            placed.map_err(|e| DataError::io(&target, e))?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it under a name unique to
/// this process and call ([`unique_temp_path`]), flushed to disk, then renamed over `path`.
/// Several processes writing the same file at once all succeed, and a reader sees one whole
/// version or another, never a mixture.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = unique_temp_path(path, "tmp");
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}
