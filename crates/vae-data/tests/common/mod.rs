//! Fixtures for vae-data's tests: IDX files, JPEGs, and a loopback HTTP server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// IDX bytes: magic 00 00 08 ndim, big-endian dims, data.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A deterministic "image" set: image i has every pixel equal to (i * 37 + p) % 256.
pub fn pixel_data(count: usize, side: usize) -> Vec<u8> {
    (0..count * side * side)
        .map(|k| ((k / (side * side)) * 37 + k % (side * side)) as u8)
        .collect()
}

/// Writes an MNIST-layout directory with `train` and `test` images of `side`×`side`.
pub fn write_mnist_dir(dir: &Path, train: usize, test: usize, side: usize, compress: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, count) in [("train", train), ("t10k", test)] {
        let images = idx_bytes(
            &[count as u32, side as u32, side as u32],
            &pixel_data(count, side),
        );
        let labels = idx_bytes(
            &[count as u32],
            &(0..count).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
        );
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte"), images),
            (format!("{prefix}-labels-idx1-ubyte"), labels),
        ] {
            if compress {
                std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

/// A JPEG of `w`×`h` with a gradient that depends on `seed`.
pub fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_add(seed),
            (y as u8).wrapping_mul(2),
            seed,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A CelebA-layout directory: `n` JPEGs of 178×218, a partition file (roughly 80/10/10) and an
/// attribute file. Returns the image names.
pub fn write_celeba_dir(dir: &Path, n: usize) -> Vec<String> {
    let images = dir.join("img_align_celeba");
    std::fs::create_dir_all(&images).unwrap();
    let names: Vec<String> = (1..=n).map(|i| format!("{i:06}.jpg")).collect();
    let mut partition = String::new();
    let mut attrs = format!("{n}\nSmiling Young\n");
    for (i, name) in names.iter().enumerate() {
        std::fs::write(images.join(name), jpeg(178, 218, i as u8)).unwrap();
        let split = match i % 10 {
            8 => 1,
            9 => 2,
            _ => 0,
        };
        partition.push_str(&format!("{name} {split}\n"));
        // Smiling: every second image; Young: every third.
        let sign = |on: bool| if on { 1 } else { -1 };
        attrs.push_str(&format!(
            "{name} {} {}\n",
            sign(i % 2 == 0),
            sign(i % 3 == 0)
        ));
    }
    std::fs::write(dir.join("list_eval_partition.txt"), partition).unwrap();
    std::fs::write(dir.join("list_attr_celeba.txt"), attrs).unwrap();
    names
}

/// How the test server answers a path.
#[derive(Clone)]
pub enum Route {
    /// Serve these bytes; honour `Range: bytes=N-` with 206.
    File(Vec<u8>),
    /// Declare the full length but close after this many bytes.
    Truncated(Vec<u8>, usize),
    /// 404.
    Missing,
}

/// A loopback HTTP/1.1 server answering one request per connection.
pub struct Server {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(routes: Vec<(&str, Route)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Vec<(String, Route)> = routes
            .into_iter()
            .map(|(p, r)| (p.to_string(), r))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                handle(stream, &routes, &log);
            }
        });
        Self { base, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn handle(mut stream: TcpStream, routes: &[(String, Route)], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    log.lock().unwrap().push(format!(
        "{path}{}",
        range_start
            .map(|s| format!(" from {s}"))
            .unwrap_or_default()
    ));
    let route = routes
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone());
    let _ = match route {
        None | Some(Route::Missing) => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Route::File(bytes)) => {
            let start = range_start.unwrap_or(0).min(bytes.len());
            let head = if range_start.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    bytes.len() - start,
                    bytes.len().saturating_sub(1),
                    bytes.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
            };
            stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(&bytes[start..]))
        }
        Some(Route::Truncated(bytes, sent)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(&bytes[..sent]))
        }
    };
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
