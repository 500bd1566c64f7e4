//! CelebA, aligned and cropped: `img_align_celeba/*.jpg` with the official split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image_files::ImageFiles;
use crate::preprocess::Preprocess;

/// How CelebA is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CelebaOptions {
    /// Crop and resize (default: crop 148, resize 64).
    pub preprocess: Preprocess,
    /// Where to keep the preprocessed cache; `None` decodes JPEGs at every read.
    pub cache_dir: Option<PathBuf>,
    /// Use only the first `n` images of each split (quick runs).
    pub limit: Option<usize>,
    /// Print cache-building progress.
    pub progress: bool,
}

impl Default for CelebaOptions {
    fn default() -> Self {
        Self {
            preprocess: Preprocess::celeba(),
            cache_dir: None,
            limit: None,
            progress: true,
        }
    }
}

/// CelebA's 40 binary attributes per image (from `list_attr_celeba.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelebaAttributes {
    /// Attribute names, in file order (`5_o_Clock_Shadow`, …, `Young`).
    pub names: Vec<String>,
    /// Per image file name: +1 / −1 per attribute.
    pub values: HashMap<String, Vec<i8>>,
}

/// The official train / valid / test split of CelebA (162 770 / 19 867 / 19 962 images).
#[derive(Debug, Clone)]
pub struct CelebaSplits {
    /// Partition 0.
    pub train: ImageFiles,
    /// Partition 1.
    pub valid: ImageFiles,
    /// Partition 2.
    pub test: ImageFiles,
    /// The attributes, if `list_attr_celeba.txt` is present.
    pub attributes: Option<CelebaAttributes>,
}

/// Parses `list_eval_partition.txt`: `<file> <0|1|2>` per line, into the three file lists.
pub fn read_partition(path: &Path) -> Result<[Vec<String>; 3]> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut splits: [Vec<String>; 3] = Default::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fail = |problem: String| DataError::Metadata {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let mut parts = line.split_whitespace();
        let (Some(file), Some(split), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(fail(format!(
                "expected '<image file> <0|1|2>', found '{line}'"
            )));
        };
        let split: usize = match split {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            other => return Err(fail(format!("partition '{other}' is not 0, 1 or 2"))),
        };
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(fail(format!("'{file}' is not a plain file name")));
        }
        splits[split].push(file.to_string());
    }
    if splits.iter().all(Vec::is_empty) {
        return Err(DataError::Metadata {
            path: path.to_path_buf(),
            line: 1,
            problem: "no images listed".into(),
        });
    }
    Ok(splits)
}

/// Parses `list_attr_celeba.txt`: a count line, a line of attribute names, then
/// `<file> <±1>…` per image.
pub fn read_attributes(path: &Path) -> Result<CelebaAttributes> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let fail = |line: usize, problem: String| DataError::Metadata {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut lines = text.lines().enumerate();
    let count: usize = lines
        .next()
        .and_then(|(_, l)| l.trim().parse().ok())
        .ok_or_else(|| fail(1, "first line must be the number of images".into()))?;
    let names: Vec<String> = lines
        .next()
        .map(|(_, l)| l.split_whitespace().map(String::from).collect())
        .filter(|n: &Vec<String>| !n.is_empty())
        .ok_or_else(|| fail(2, "second line must list the attribute names".into()))?;
    if let Some((j, name)) = names
        .iter()
        .enumerate()
        .find(|(j, name)| names[..*j].contains(name))
    {
        return Err(fail(
            2,
            format!("attribute '{name}' is named twice (column {})", j + 1),
        ));
    }
    let mut values = HashMap::with_capacity(count);
    for (i, line) in lines {
        let mut parts = line.split_whitespace();
        let Some(file) = parts.next() else { continue };
        let row: Vec<i8> = parts
            .map(|v| match v {
                "1" => Ok(1),
                "-1" => Ok(-1),
                other => Err(fail(
                    i + 1,
                    format!("attribute value '{other}' is not 1 or -1"),
                )),
            })
            .collect::<Result<_>>()?;
        if row.len() != names.len() {
            return Err(fail(
                i + 1,
                format!("{} values for {} attributes", row.len(), names.len()),
            ));
        }
        values.insert(file.to_string(), row);
    }
    if values.len() != count {
        return Err(fail(
            1,
            format!("declares {count} images but lists {}", values.len()),
        ));
    }
    Ok(CelebaAttributes { names, values })
}

impl CelebaAttributes {
    /// The attributes of `files` (true: +1), one row each; `None` for a file the table has no
    /// row for (a conditional run then names the example, an unconditional one never asks).
    fn rows<'a>(&self, files: impl Iterator<Item = &'a String>) -> Vec<Option<Vec<bool>>> {
        files
            .map(|file| {
                let row = self.values.get(file)?;
                Some(row.iter().map(|&v| v > 0).collect())
            })
            .collect()
    }
}

impl CelebaSplits {
    /// Loads CelebA from `dir` (holding `img_align_celeba/` and `list_eval_partition.txt`).
    ///
    /// Every image the partition names must exist; with `list_attr_celeba.txt`, each item
    /// carries its row of attributes (none if the file has no row for it); with a cache directory, each split is
    /// decoded once (in parallel) into `<cache_dir>/celeba-<split>-c<crop>-s<size>.u8`.
    pub fn load(dir: &Path, options: &CelebaOptions) -> Result<Self> {
        let images = dir.join("img_align_celeba");
        let partition = dir.join("list_eval_partition.txt");
        let mut missing_meta = vec![];
        if !images.is_dir() {
            missing_meta.push("img_align_celeba/".to_string());
        }
        if !partition.is_file() {
            missing_meta.push("list_eval_partition.txt".to_string());
        }
        if !missing_meta.is_empty() {
            let help = match crate::registry::lookup("celeba").map(|e| e.source) {
                Some(crate::registry::Source::Manual { instructions }) => {
                    instructions.replace("{dir}", &dir.display().to_string())
                }
                _ => String::new(),
            };
            return Err(DataError::NotFound {
                dataset: "celeba".into(),
                dir: dir.to_path_buf(),
                missing: missing_meta,
                help,
            });
        }
        let splits = read_partition(&partition)?;
        let absent: Vec<&String> = splits
            .iter()
            .flatten()
            .filter(|f| !images.join(f).is_file())
            .collect();
        if !absent.is_empty() {
            let shown: Vec<&str> = absent.iter().take(5).map(|s| s.as_str()).collect();
            return Err(DataError::Inconsistent {
                path: partition,
                problem: format!(
                    "names {} image(s) missing from {}: {}{}",
                    absent.len(),
                    images.display(),
                    shown.join(", "),
                    if absent.len() > 5 { ", …" } else { "" }
                ),
            });
        }
        let attributes_path = dir.join("list_attr_celeba.txt");
        let attributes = if attributes_path.is_file() {
            Some(read_attributes(&attributes_path)?)
        } else {
            None
        };
        let p = &options.preprocess;
        let take = options.limit.unwrap_or(usize::MAX);
        let rows = attributes.as_ref().map(|table| {
            let names = Arc::<[String]>::from(table.names.clone());
            let rows: Vec<_> = splits
                .iter()
                .map(|files| table.rows(files.iter().take(take)))
                .collect();
            (names, rows)
        });
        let build = |split: usize, name: &str| -> Result<ImageFiles> {
            let paths: Vec<PathBuf> = splits[split]
                .iter()
                .take(take)
                .map(|f| images.join(f))
                .collect();
            let files = match &options.cache_dir {
                Some(cache_dir) => {
                    let crop = p.crop.map_or("sq".to_string(), |c| c.to_string());
                    let limit = options.limit.map_or(String::new(), |n| format!("-n{n}"));
                    let file = format!(
                        "celeba-{name}-c{crop}-s{}-ch{}{limit}.u8",
                        p.size, p.channels
                    );
                    ImageFiles::cached(paths, *p, &cache_dir.join(file), options.progress)?
                }
                None => ImageFiles::decode(paths, *p)?,
            };
            Ok(match &rows {
                Some((names, rows)) => files.with_attributes(names.clone(), rows[split].clone()),
                None => files,
            })
        };
        Ok(Self {
            train: build(0, "train")?,
            valid: build(1, "valid")?,
            test: build(2, "test")?,
            attributes,
        })
    }
}
