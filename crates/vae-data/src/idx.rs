//! The IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number `00 00 TT NN` (TT the element type, 0x08 for unsigned
//! bytes; NN the number of dimensions), NN big-endian u32 dimension sizes, then the elements in
//! row-major order.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// The largest payload accepted, 4 GiB: far above any MNIST-family file (EMNIST ByClass train
/// images are 547 MB), and a guard against hostile headers that declare petabytes.
pub const MAX_IDX_BYTES: u64 = 4 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimension sizes, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

fn element_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "u8",
        0x09 => "i8",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

/// Parses an IDX stream whose first bytes (`head`, the magic) were already read.
fn parse(path: &Path, mut reader: impl Read, limit: u64) -> Result<IdxArray> {
    let fail = |problem: String| DataError::Idx {
        path: path.to_path_buf(),
        problem,
    };
    let read_err = |e: std::io::Error, what: &str| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            fail(format!("truncated: the file ends inside the {what}"))
        } else {
            fail(format!("unreadable {what}: {e}"))
        }
    };
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|e| read_err(e, "4-byte magic number"))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "not an IDX file: magic number {:02x} {:02x} {:02x} {:02x} does not start with 00 00",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != 0x08 {
        return Err(fail(format!(
            "element type 0x{:02x} ({}) is not supported: MNIST-format images and labels are unsigned bytes (0x08)",
            magic[2],
            element_type_name(magic[2])
        )));
    }
    let ndim = magic[3] as usize;
    if !(1..=4).contains(&ndim) {
        return Err(fail(format!(
            "{ndim} dimensions declared; MNIST-format files have 1 (labels) or 3 (images)"
        )));
    }
    let mut dims = Vec::with_capacity(ndim);
    for i in 0..ndim {
        let mut b = [0u8; 4];
        reader
            .read_exact(&mut b)
            .map_err(|e| read_err(e, &format!("size of dimension {i}")))?;
        dims.push(u32::from_be_bytes(b) as usize);
    }
    let len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            fail(format!(
                "declared dimensions {dims:?} need more than the {limit}-byte limit; the header is corrupt or hostile"
            ))
        })?;
    // Read at most one byte past the declared length, so trailing data is detected without
    // trusting the header for the allocation.
    let mut data = Vec::with_capacity(len.min(64 << 20) as usize);
    reader
        .take(len + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_err(e, "data"))?;
    match (data.len() as u64).cmp(&len) {
        std::cmp::Ordering::Less => Err(fail(format!(
            "truncated: the header declares {dims:?} = {len} bytes of data, the file holds {}",
            data.len()
        ))),
        std::cmp::Ordering::Greater => Err(fail(format!(
            "trailing data after the {len} bytes that the header declares ({dims:?})"
        ))),
        std::cmp::Ordering::Equal => Ok(IdxArray { dims, data }),
    }
}

/// Parses IDX bytes held in memory (raw or gzip), as [`read_idx`] does a file; `name` is used
/// in error messages.
pub fn parse_idx(name: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.is_empty() {
        return Err(DataError::Idx {
            path: name.to_path_buf(),
            problem: "empty file".into(),
        });
    }
    if bytes.starts_with(&GZIP_MAGIC) {
        parse(name, MultiGzDecoder::new(bytes), MAX_IDX_BYTES)
    } else {
        parse(name, bytes, MAX_IDX_BYTES)
    }
}

/// Reads an IDX file of unsigned bytes, gzip-compressed or raw (detected from its first bytes).
///
/// Every malformation — empty, truncated, wrong magic, unsupported element type, dimensions that
/// disagree with the length, corrupt gzip, hostile sizes — is an error naming the file. Nothing
/// is allocated on the header's word beyond 64 MiB before the data is actually there.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if size == 0 {
        return Err(DataError::Idx {
            path: path.to_path_buf(),
            problem: "empty file".into(),
        });
    }
    let mut reader = BufReader::new(file);
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).map_err(|_| DataError::Idx {
        path: path.to_path_buf(),
        problem: format!("truncated: {size} byte(s), shorter than an IDX header"),
    })?;
    let stream = head.as_slice().chain(reader);
    if head == GZIP_MAGIC {
        parse(path, MultiGzDecoder::new(stream), MAX_IDX_BYTES)
    } else {
        parse(path, stream, MAX_IDX_BYTES)
    }
}

/// Images from an IDX file of shape `[N, rows, cols]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images N.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count × rows × cols` bytes, image by image, row-major.
    pub pixels: Vec<u8>,
    /// The file they came from.
    pub path: PathBuf,
}

impl IdxImages {
    /// Reads an images file (`…-images-idx3-ubyte[.gz]`): exactly 3 dimensions, at least one
    /// image, non-empty images.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_array(path, read_idx(path)?)
    }

    /// Interprets a parsed array as images.
    pub fn from_array(path: &Path, array: IdxArray) -> Result<Self> {
        let fail = |problem: String| DataError::Idx {
            path: path.to_path_buf(),
            problem,
        };
        let [count, rows, cols] = array.dims[..] else {
            return Err(fail(format!(
                "expected an images file with 3 dimensions [count, rows, cols], found {:?}",
                array.dims
            )));
        };
        if count == 0 || rows == 0 || cols == 0 {
            return Err(fail(format!(
                "contains no pixels: dimensions {:?}",
                array.dims
            )));
        }
        Ok(Self {
            count,
            rows,
            cols,
            pixels: array.data,
            path: path.to_path_buf(),
        })
    }

    /// Pixels of image `i`, row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Transposes every image in place (EMNIST stores images column-major).
    pub fn transpose_each(&mut self) {
        let (r, c) = (self.rows, self.cols);
        let mut buffer = vec![0u8; r * c];
        for image in self.pixels.chunks_exact_mut(r * c) {
            for (i, row) in image.chunks_exact(c).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    buffer[j * r + i] = v;
                }
            }
            image.copy_from_slice(&buffer);
        }
        std::mem::swap(&mut self.rows, &mut self.cols);
    }
}

/// Labels from an IDX file of shape `[N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxLabels {
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl IdxLabels {
    /// Reads a labels file (`…-labels-idx1-ubyte[.gz]`): exactly one dimension.
    pub fn read(path: &Path) -> Result<Self> {
        let array = read_idx(path)?;
        if array.dims.len() != 1 {
            return Err(DataError::Idx {
                path: path.to_path_buf(),
                problem: format!(
                    "expected a labels file with 1 dimension, found {:?}",
                    array.dims
                ),
            });
        }
        Ok(Self { labels: array.data })
    }
}
