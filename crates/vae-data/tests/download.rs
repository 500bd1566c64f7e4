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

#[test]
fn a_corrupt_existing_file_is_replaced() {
    let bytes = payload();
    let server = Server::start(vec![("/a/file.gz", Route::File(bytes.clone()))]);
    let file = remote("file.gz", &bytes, vec![server.url("/a")]);
    let dir = tempdir();
    std::fs::write(dir.path().join("file.gz"), b"not the file").unwrap();
    let path = downloader().fetch(&file, dir.path()).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}
