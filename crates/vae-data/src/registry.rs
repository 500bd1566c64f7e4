//! Where each dataset comes from: official URLs with mirrors and the SHA-256 of every file.
//!
//! Checksums are those published with TensorFlow Datasets' download records, which match the
//! files as the official servers deliver them.

use crate::mnist::{EmnistSplit, MnistFamily};

/// One file to download, with mirrors tried in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name on disk.
    pub name: &'static str,
    /// Base URLs (the name is appended), official first.
    pub mirrors: &'static [&'static str],
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: &'static str,
}

impl RemoteFile {
    /// The full URLs, in the order to try them.
    pub fn urls(&self) -> Vec<String> {
        self.mirrors
            .iter()
            .map(|base| format!("{}/{}", base.trim_end_matches('/'), self.name))
            .collect()
    }
}

/// How a dataset gets onto disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Download these files into the dataset directory.
    Files(&'static [RemoteFile]),
    /// Download one archive and extract members from it (`archive_prefix` + required name).
    Archive {
        /// The archive.
        archive: RemoteFile,
        /// Path of the members inside the archive, before the file name.
        member_prefix: &'static str,
    },
    /// No automatic download (licence or host forbids it): what to place where.
    Manual {
        /// Instructions shown to the user, with `{dir}` standing for the dataset directory.
        instructions: &'static str,
    },
}

/// A dataset the tools know by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetEntry {
    /// Name used on the command line and for `$VAE_DATA_DIR/<name>`.
    pub name: String,
    /// MNIST-format family, or `None` for image datasets (CelebA).
    pub family: Option<MnistFamily>,
    /// Files (or directories) that must exist in the dataset directory; `a|b` means either.
    pub required: Vec<String>,
    /// How to get it.
    pub source: Source,
    /// A system-wide copy to use when present (e.g. from a Debian package).
    pub system_dir: Option<&'static str>,
}

const MNIST_MIRRORS: &[&str] = &[
    "https://storage.googleapis.com/cvdf-datasets/mnist",
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "http://yann.lecun.com/exdb/mnist",
];

const MNIST_FILES: &[RemoteFile] = &[
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        mirrors: MNIST_MIRRORS,
        size: 9_912_422,
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        mirrors: MNIST_MIRRORS,
        size: 28_881,
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        mirrors: MNIST_MIRRORS,
        size: 1_648_877,
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        mirrors: MNIST_MIRRORS,
        size: 4_542,
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
];

const FASHION_MIRRORS: &[&str] = &[
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
];

const FASHION_FILES: &[RemoteFile] = &[
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        mirrors: FASHION_MIRRORS,
        size: 26_421_880,
        sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        mirrors: FASHION_MIRRORS,
        size: 29_515,
        sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        mirrors: FASHION_MIRRORS,
        size: 4_422_102,
        sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        mirrors: FASHION_MIRRORS,
        size: 5_148,
        sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
];

const KMNIST_MIRRORS: &[&str] = &[
    "http://codh.rois.ac.jp/kmnist/dataset/kmnist",
    "https://codh.rois.ac.jp/kmnist/dataset/kmnist",
];

const KMNIST_FILES: &[RemoteFile] = &[
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        mirrors: KMNIST_MIRRORS,
        size: 18_165_135,
        sha256: "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        mirrors: KMNIST_MIRRORS,
        size: 29_497,
        sha256: "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        mirrors: KMNIST_MIRRORS,
        size: 3_041_136,
        sha256: "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        mirrors: KMNIST_MIRRORS,
        size: 5_120,
        sha256: "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
];

const EMNIST_ARCHIVE: RemoteFile = RemoteFile {
    name: "gzip.zip",
    mirrors: &[
        "https://biometrics.nist.gov/cs_links/EMNIST",
        "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST",
    ],
    size: 561_753_746,
    sha256: "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e",
};

/// SHA-256 of CelebA's metadata files as Google Drive serves them, to verify a manual download.
pub const CELEBA_METADATA_SHA256: &[(&str, &str)] = &[
    (
        "list_eval_partition.txt",
        "fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7",
    ),
    (
        "list_attr_celeba.txt",
        "f0e5da289d5ccf75ffe8811132694922b60f2af59256ed362afa03fefba324d0",
    ),
];

const CELEBA_INSTRUCTIONS: &str =
    "CelebA is distributed through Google Drive and cannot be downloaded automatically.
From https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (\"Align&Cropped Images\"), download
  Img/img_align_celeba.zip        and unzip it so that {dir}/img_align_celeba/000001.jpg exists
  Eval/list_eval_partition.txt    into {dir}/list_eval_partition.txt
  Anno/list_attr_celeba.txt       into {dir}/list_attr_celeba.txt (optional: attributes)
then verify them (the command line's `data celeba` does).";

fn idx_required(family: MnistFamily) -> Vec<String> {
    use crate::mnist::IdxSplit;
    [IdxSplit::Train, IdxSplit::Test]
        .into_iter()
        .flat_map(|split| family.file_names(split))
        .map(|name| format!("{name}.gz|{name}"))
        .collect()
}

const EMNIST_SPLITS: [(&str, EmnistSplit); 6] = [
    ("balanced", EmnistSplit::Balanced),
    ("byclass", EmnistSplit::ByClass),
    ("bymerge", EmnistSplit::ByMerge),
    ("digits", EmnistSplit::Digits),
    ("letters", EmnistSplit::Letters),
    ("mnist", EmnistSplit::Mnist),
];

/// Every dataset name the tools accept.
pub fn dataset_names() -> Vec<String> {
    let mut names: Vec<String> = ["mnist", "fashion-mnist", "kmnist", "celeba"]
        .map(String::from)
        .to_vec();
    names.extend(EMNIST_SPLITS.iter().map(|(tag, _)| format!("emnist-{tag}")));
    names
}

/// The registry entry for `name`, if known.
pub fn lookup(name: &str) -> Option<DatasetEntry> {
    let idx = |family: MnistFamily, files, system_dir| DatasetEntry {
        name: name.to_string(),
        family: Some(family),
        required: idx_required(family),
        source: Source::Files(files),
        system_dir,
    };
    match name {
        "mnist" => Some(idx(MnistFamily::Mnist, MNIST_FILES, None)),
        "fashion-mnist" => Some(idx(
            MnistFamily::FashionMnist,
            FASHION_FILES,
            Some("/usr/share/datasets/fashion-mnist"),
        )),
        "kmnist" => Some(idx(MnistFamily::Kmnist, KMNIST_FILES, None)),
        "celeba" => Some(DatasetEntry {
            name: name.to_string(),
            family: None,
            required: vec!["img_align_celeba".into(), "list_eval_partition.txt".into()],
            source: Source::Manual {
                instructions: CELEBA_INSTRUCTIONS,
            },
            system_dir: None,
        }),
        _ => {
            let tag = name.strip_prefix("emnist-")?;
            let (_, split) = EMNIST_SPLITS.iter().find(|(t, _)| *t == tag)?;
            let family = MnistFamily::Emnist(*split);
            Some(DatasetEntry {
                name: name.to_string(),
                family: Some(family),
                required: idx_required(family),
                source: Source::Archive {
                    archive: EMNIST_ARCHIVE,
                    member_prefix: "gzip/",
                },
                system_dir: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_checksums_are_well_formed() {
        for name in dataset_names() {
            let entry = lookup(&name).unwrap_or_else(|| panic!("{name} not in the registry"));
            let files: Vec<RemoteFile> = match entry.source {
                Source::Files(files) => files.to_vec(),
                Source::Archive { archive, .. } => vec![archive],
                Source::Manual { instructions } => {
                    assert!(instructions.contains("{dir}"));
                    vec![]
                }
            };
            for file in files {
                assert_eq!(file.sha256.len(), 64, "{}", file.name);
                assert!(file.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(file.urls().len() >= 2, "{}: mirrors", file.name);
            }
        }
        assert!(lookup("emnist-nope").is_none());
        assert!(lookup("cifar").is_none());
    }
}
