//! The IDX parser: good files load, every bad one is an error that names the file.

mod common;

use std::path::Path;

use common::{gzip, idx_bytes, tempdir};
use proptest::prelude::*;
use vae_data::{DataError, IdxImages, IdxLabels, parse_idx, read_idx};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error message for reading `bytes` (raw and gzip), which must name the file.
fn errors_for(bytes: &[u8]) -> Vec<String> {
    let dir = tempdir();
    let mut messages = Vec::new();
    for (name, content) in [
        ("raw-idx3-ubyte", bytes.to_vec()),
        ("gz-idx3-ubyte.gz", gzip(bytes)),
    ] {
        let path = write(dir.path(), name, &content);
        let err = IdxImages::read(&path).expect_err("malformed file accepted");
        let message = err.to_string();
        assert!(
            message.contains(name),
            "error does not name the file: {message}"
        );
        messages.push(message);
    }
    messages
}

#[test]
fn good_files_load_raw_and_gzip() {
    let dir = tempdir();
    let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let raw = idx_bytes(&[2, 3, 4], &data);
    for (name, bytes) in [("a", raw.clone()), ("a.gz", gzip(&raw))] {
        let images = IdxImages::read(&write(dir.path(), name, &bytes)).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (2, 3, 4));
        assert_eq!(images.image(1), &data[12..24]);
    }
    let labels = IdxLabels::read(&write(dir.path(), "l", &idx_bytes(&[3], &[7, 8, 9]))).unwrap();
    assert_eq!(labels.labels, vec![7, 8, 9]);
}

#[test]
fn emnist_style_images_transpose() {
    let dir = tempdir();
    // One 2×3 image stored column-major: columns (1,4) (2,5) (3,6).
    let path = write(dir.path(), "e", &idx_bytes(&[1, 3, 2], &[1, 4, 2, 5, 3, 6]));
    let mut images = IdxImages::read(&path).unwrap();
    images.transpose_each();
    assert_eq!((images.rows, images.cols), (2, 3));
    assert_eq!(images.pixels, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn truncated_files_are_rejected() {
    let full = idx_bytes(&[10, 28, 28], &vec![1u8; 10 * 28 * 28]);
    for cut in [1, 3, 6, 15, 100, full.len() - 1] {
        for message in errors_for(&full[..cut]) {
            assert!(message.contains("truncated"), "{message}");
        }
    }
}

#[test]
fn wrong_magic_and_types_are_rejected() {
    let mut bad_magic = idx_bytes(&[1, 2, 2], &[0; 4]);
    bad_magic[0] = 0x50; // "PK.." or anything not an IDX file
    for m in errors_for(&bad_magic) {
        assert!(m.contains("not an IDX file"), "{m}");
    }
    let mut floats = idx_bytes(&[1, 2, 2], &[0; 16]);
    floats[2] = 0x0D;
    for m in errors_for(&floats) {
        assert!(m.contains("0x0d (f32) is not supported"), "{m}");
    }
    let mut many_dims = idx_bytes(&[1, 1, 1], &[0]);
    many_dims[3] = 9;
    for m in errors_for(&many_dims) {
        assert!(m.contains("9 dimensions"), "{m}");
    }
}

#[test]
fn wrong_dimensions_are_rejected() {
    // A labels file where images are expected, and an images file with no images.
    for m in errors_for(&idx_bytes(&[4], &[1, 2, 3, 4])) {
        assert!(m.contains("3 dimensions"), "{m}");
    }
    for m in errors_for(&idx_bytes(&[0, 28, 28], &[])) {
        assert!(m.contains("no pixels"), "{m}");
    }
    // More data than declared.
    for m in errors_for(&idx_bytes(&[1, 2, 2], &[0; 5])) {
        assert!(m.contains("trailing data"), "{m}");
    }
}

#[test]
fn empty_files_are_rejected() {
    let dir = tempdir();
    let path = write(dir.path(), "empty-idx3-ubyte", &[]);
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::Idx { .. }));
    assert!(
        err.to_string().ends_with("empty-idx3-ubyte: empty file"),
        "{err}"
    );
}

#[test]
fn hostile_dimensions_do_not_allocate() {
    // 4 billion × 4 billion × 4 billion bytes: must fail on the header, instantly.
    let hostile = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[0; 16]);
    for m in errors_for(&hostile) {
        assert!(m.contains("limit"), "{m}");
    }
    // Within the limit but absent: 3.9 GB declared, 16 bytes present.
    let claims = idx_bytes(&[60_000, 256, 256], &[0; 16]);
    for m in errors_for(&claims) {
        assert!(m.contains("truncated"), "{m}");
    }
}

#[test]
fn corrupt_gzip_is_rejected() {
    let dir = tempdir();
    let mut bytes = gzip(&idx_bytes(&[2, 2, 2], &[1; 8]));
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF;
    bytes.truncate(n - 4);
    let path = write(dir.path(), "corrupt.gz", &bytes);
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("corrupt.gz"), "{message}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the parser, raw or behind a gzip header.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_idx(Path::new("fuzz"), &bytes);
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&bytes);
        let _ = parse_idx(Path::new("fuzz.gz"), &gz);
    }

    /// Valid headers with random dimensions and payload lengths: an error or an exact parse.
    #[test]
    fn random_headers_parse_exactly_or_fail(
        dims in prop::collection::vec(0u32..64, 1..4),
        extra in -8i64..8,
    ) {
        let len: i64 = dims.iter().map(|&d| d as i64).product();
        let data = vec![7u8; (len + extra).max(0) as usize];
        match parse_idx(Path::new("h"), &idx_bytes(&dims, &data)) {
            Ok(array) => {
                prop_assert_eq!(extra.max(-len), 0);
                prop_assert_eq!(array.data.len() as i64, len);
            }
            Err(e) => prop_assert!(extra != 0, "valid file rejected: {}", e),
        }
    }
}
