//! Downloads against a loopback HTTP server: good, wrong checksum, truncated, resumed, 404.

mod common;

use common::{Route, Server, gzip, idx_bytes, sha256_hex, tempdir};
use vae_data::registry::RemoteFile;
use vae_data::{DataError, Downloader};

fn leak<T: ?Sized>(b: Box<T>) -> &'static T {
    Box::leak(b)
}

/// A registry entry for `bytes` served under `name` from the given mirrors.
fn remote(name: &str, bytes: &[u8], mirrors: Vec<String>) -> RemoteFile {
    let mirrors: Vec<&'static str> = mirrors
        .into_iter()
        .map(|m| leak(m.into_boxed_str()))
        .collect();
    RemoteFile {
        name: leak(name.to_string().into_boxed_str()),
        mirrors: leak(mirrors.into_boxed_slice()),
        size: bytes.len() as u64,
        sha256: leak(sha256_hex(bytes).into_boxed_str()),
    }
}

fn payload() -> Vec<u8> {
    gzip(&idx_bytes(&[100, 28, 28], &common::pixel_data(100, 28)))
}

fn downloader() -> Downloader {
    Downloader::new(std::time::Duration::from_secs(10), false)
}

#[test]
fn a_good_file_is_downloaded_verified_and_reused() {
    let bytes = payload();
    let server = Server::start(vec![("/a/file.gz", Route::File(bytes.clone()))]);
    let file = remote("file.gz", &bytes, vec![server.url("/a")]);
    let dir = tempdir();
    let path = downloader().fetch(&file, dir.path()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(!dir.path().join("file.gz.part").exists());
    // Already there and verified: no second request.
    downloader().fetch(&file, dir.path()).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[test]
fn a_404_falls_through_to_the_next_mirror() {
    let bytes = payload();
    let server = Server::start(vec![
        ("/dead/file.gz", Route::Missing),
        ("/alive/file.gz", Route::File(bytes.clone())),
    ]);
    let file = remote(
        "file.gz",
        &bytes,
        vec![server.url("/dead"), server.url("/alive")],
    );
    let dir = tempdir();
    downloader().fetch(&file, dir.path()).unwrap();
    assert_eq!(
        *server.requests.lock().unwrap(),
        vec!["/dead/file.gz".to_string(), "/alive/file.gz".to_string()]
    );
}

#[test]
fn every_mirror_failing_reports_each_attempt() {
    let bytes = payload();
    let server = Server::start(vec![("/x/file.gz", Route::Missing)]);
    let file = remote(
        "file.gz",
        &bytes,
        vec![server.url("/x"), "http://127.0.0.1:9/y".into()],
    );
    let dir = tempdir();
    let err = downloader().fetch(&file, dir.path()).unwrap_err();
    let DataError::Download { attempts, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0].contains("HTTP 404"), "{}", attempts[0]);
    assert!(!dir.path().join("file.gz").exists());
}

#[test]
fn a_wrong_checksum_is_rejected_and_nothing_is_kept() {
    let bytes = payload();
    let mut tampered = bytes.clone();
    tampered[100] ^= 1;
    let server = Server::start(vec![("/m/file.gz", Route::File(tampered))]);
    let file = remote("file.gz", &bytes, vec![server.url("/m")]);
    let dir = tempdir();
    let message = downloader()
        .fetch(&file, dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("SHA-256"), "{message}");
    assert!(!dir.path().join("file.gz").exists());
    assert!(
        !dir.path().join("file.gz.part").exists(),
        "a bad complete file must not be resumed"
    );
}

#[test]
fn a_truncated_transfer_is_resumed_from_where_it_stopped() {
    let bytes = payload();
    let half = bytes.len() / 2;
    let server = Server::start(vec![
        ("/flaky/file.gz", Route::Truncated(bytes.clone(), half)),
        ("/good/file.gz", Route::File(bytes.clone())),
    ]);
    let dir = tempdir();
    // First only the flaky mirror: the transfer breaks, the prefix is kept.
    let flaky = remote("file.gz", &bytes, vec![server.url("/flaky")]);
    let message = downloader()
        .fetch(&flaky, dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("run again to resume"), "{message}");
    assert!(!dir.path().join("file.gz").exists());
    assert_eq!(
        std::fs::read(dir.path().join("file.gz.part")).unwrap(),
        bytes[..half]
    );
    // Then a working mirror: a Range request fetches only the rest.
    let good = remote("file.gz", &bytes, vec![server.url("/good")]);
    let path = downloader().fetch(&good, dir.path()).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(
        requests.last().unwrap(),
        &format!("/good/file.gz from {half}")
    );
}

/// Every entry of `dir` whose name starts with a dot: the temporary files of downloads.
fn temporary_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_present_file_with_unknown_content_is_left_alone() {
    let bytes = payload();
    let dir = tempdir();
    let users = b"the user's own copy, not the registered file".to_vec();
    std::fs::write(dir.path().join("file.gz"), &users).unwrap();
    // No server: were the file deleted, nothing could bring it back.
    let file = remote("file.gz", &bytes, vec!["http://127.0.0.1:9/none".into()]);
    let err = downloader().fetch(&file, dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NotReplaced { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("file.gz"), "{message}");
    assert!(message.contains("SHA-256"), "{message}");
    assert!(message.contains("left untouched"), "{message}");
    assert_eq!(std::fs::read(dir.path().join("file.gz")).unwrap(), users);
}

#[test]
fn a_corrupt_existing_file_is_reported_not_replaced() {
    let bytes = payload();
    let server = Server::start(vec![("/a/file.gz", Route::File(bytes.clone()))]);
    let file = remote("file.gz", &bytes, vec![server.url("/a")]);
    let dir = tempdir();
    std::fs::write(dir.path().join("file.gz"), b"not the file").unwrap();
    let err = downloader().fetch(&file, dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NotReplaced { .. }), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("file.gz")).unwrap(),
        b"not the file"
    );
    assert!(
        server.requests.lock().unwrap().is_empty(),
        "nothing to download"
    );
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink_is_named_and_kept() {
    let bytes = payload();
    let server = Server::start(vec![("/a/file.gz", Route::File(bytes.clone()))]);
    let file = remote("file.gz", &bytes, vec![server.url("/a")]);
    let dir = tempdir();
    let link = dir.path().join("file.gz");
    std::os::unix::fs::symlink(dir.path().join("elsewhere/file.gz"), &link).unwrap();
    let err = downloader().fetch(&file, dir.path()).unwrap_err();
    assert!(matches!(err, DataError::DanglingLink { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&link.display().to_string()), "{message}");
    assert!(message.contains("elsewhere"), "{message}");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
}

#[test]
fn downloads_use_a_unique_temporary_name_and_leave_none_behind() {
    let bytes = payload();
    let server = Server::start(vec![("/a/file.gz", Route::File(bytes.clone()))]);
    let file = remote("file.gz", &bytes, vec![server.url("/a")]);
    let dir = tempdir();
    // Several downloads of the same file at once all succeed with the same bytes.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| downloader().fetch(&file, dir.path()).unwrap());
        }
    });
    assert_eq!(std::fs::read(dir.path().join("file.gz")).unwrap(), bytes);
    assert!(!dir.path().join("file.gz.part").exists());
    assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
    let a = vae_data::download::unique_temp_path(&dir.path().join("x.bin"), "part");
    let b = vae_data::download::unique_temp_path(&dir.path().join("x.bin"), "part");
    assert_ne!(a, b);
    assert!(
        a.file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&std::process::id().to_string())
    );
}

/// An MNIST-layout directory with one file missing and another replaced by the user's own
/// bytes; a downloader whose only mirror is `mirror`.
fn incomplete_mnist(mirror: String) -> (tempfile::TempDir, Vec<u8>, vae_data::Downloader) {
    let dir = tempdir();
    common::write_mnist_dir(dir.path(), 30, 10, 4, true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let users = common::gzip(&common::idx_bytes(&[30], &[7; 30]));
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), &users).unwrap();
    (dir, users, downloader().with_mirrors(vec![mirror]))
}

#[test]
fn locate_never_touches_present_files_when_a_download_fails() {
    let (dir, users, downloader) = incomplete_mnist("http://127.0.0.1:9/none".into());
    let roots = vae_data::DataRoots {
        env_root: None,
        download_root: dir.path().join("unused"),
        use_system_copies: false,
    };
    let before: Vec<Vec<u8>> = ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
        .iter()
        .map(|n| std::fs::read(dir.path().join(n)).unwrap())
        .collect();
    let err = vae_data::locate("mnist", Some(dir.path()), &roots, Some(&downloader)).unwrap_err();
    let DataError::Download { file, .. } = &err else {
        panic!("{err}")
    };
    // Only the missing file was tried.
    assert_eq!(file, "t10k-labels-idx1-ubyte.gz");
    assert_eq!(
        std::fs::read(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap(),
        users,
        "the user's file was modified"
    );
    for (name, bytes) in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
        .iter()
        .zip(before)
    {
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), bytes);
    }
    assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
}

#[test]
fn locate_downloads_only_what_is_missing() {
    // The registered t10k labels of MNIST are not these bytes, so the download cannot verify:
    // what matters is that only the missing file is asked for and the rest is left alone.
    let labels = common::gzip(&common::idx_bytes(&[10], &[1; 10]));
    let server = Server::start(vec![("/m/t10k-labels-idx1-ubyte.gz", Route::File(labels))]);
    let (dir, users, downloader) = incomplete_mnist(server.url("/m"));
    let roots = vae_data::DataRoots {
        env_root: None,
        download_root: dir.path().join("unused"),
        use_system_copies: false,
    };
    let err = vae_data::locate("mnist", Some(dir.path()), &roots, Some(&downloader)).unwrap_err();
    assert!(
        matches!(&err, DataError::Download { file, .. } if file == "t10k-labels-idx1-ubyte.gz"),
        "{err}"
    );
    assert_eq!(
        *server.requests.lock().unwrap(),
        vec!["/m/t10k-labels-idx1-ubyte.gz".to_string()]
    );
    assert_eq!(
        std::fs::read(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap(),
        users
    );
    assert!(!dir.path().join("t10k-labels-idx1-ubyte.gz").exists());
}

#[cfg(unix)]
#[test]
fn locate_names_a_dangling_symlink() {
    let (dir, _, downloader) = incomplete_mnist("http://127.0.0.1:9/none".into());
    let link = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::os::unix::fs::symlink("/nonexistent/t10k-labels-idx1-ubyte.gz", &link).unwrap();
    let roots = vae_data::DataRoots {
        env_root: None,
        download_root: dir.path().join("unused"),
        use_system_copies: false,
    };
    let err = vae_data::locate("mnist", Some(dir.path()), &roots, Some(&downloader)).unwrap_err();
    assert!(matches!(err, DataError::DanglingLink { .. }), "{err}");
    assert!(
        err.to_string().contains("t10k-labels-idx1-ubyte.gz"),
        "{err}"
    );
    assert!(link.symlink_metadata().is_ok(), "the link was removed");
}

#[test]
fn verify_dataset_reports_a_users_own_copy_as_structural_and_changes_nothing() {
    let dir = tempdir();
    common::write_mnist_dir(dir.path(), 30, 10, 4, true);
    let roots = vae_data::DataRoots {
        env_root: None,
        download_root: dir.path().join("unused"),
        use_system_copies: false,
    };
    let located = vae_data::locate("mnist", Some(dir.path()), &roots, None).unwrap();
    let before = std::fs::read(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap();
    let report = vae_data::verify_dataset(&located).unwrap();
    assert_eq!(report.checksummed, Vec::<std::path::PathBuf>::new());
    assert_eq!(report.structural_only.len(), 4);
    assert_eq!(
        std::fs::read(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap(),
        before
    );
}
