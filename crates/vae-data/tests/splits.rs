//! Data splits: the validation size adapts to the data, empty splits are caught naming the
//! setting, settings parse with clear messages, and image folders split by a stable hash.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use common::{jpeg, tempdir, write_mnist_dir};
use vae_data::{
    DataError, DataOptions, IdxOptions, ImageFolderOptions, ImageFolderSplits, Preprocess,
    ValidSize, list_images, load_dataset,
};

#[test]
fn the_default_validation_size_adapts_to_a_small_dataset() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 8_000, 100, 4, false);
    let splits = load_dataset("mnist", Some(dir.path()), &DataOptions::default(), false).unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (6_667, 1_333, 100)
    );
    // The shipped MNIST defaults too (they used to say 10 000).
    let shipped = DataOptions::for_dataset("mnist").unwrap();
    let splits = load_dataset("mnist", Some(dir.path()), &shipped, false).unwrap();
    assert_eq!(splits.valid.len(), 1_333);
}

#[test]
fn the_default_keeps_fashion_mnists_split_of_the_literature() {
    for name in ["fashion-mnist", "mnist", "kmnist", "emnist-letters"] {
        let options = DataOptions::for_dataset(name).unwrap();
        assert_eq!(options.valid_size, ValidSize::Auto, "{name}");
        assert_eq!(options.valid_size.resolve(60_000), 10_000, "{name}");
    }
    assert_eq!(IdxOptions::default().valid_size.resolve(60_000), 10_000);
    // Capped for big files, a sixth (rounded) below, and never everything.
    assert_eq!(ValidSize::Auto.resolve(697_932), 10_000);
    assert_eq!(ValidSize::Auto.resolve(8_000), 1_333);
    assert_eq!(ValidSize::Auto.resolve(9), 2);
    assert_eq!(ValidSize::Auto.resolve(2), 0);
    for n in 1..100 {
        assert!(ValidSize::Auto.resolve(n) < n, "{n}");
    }
    assert_eq!(ValidSize::Count(7).resolve(3), 7);
}

#[test]
fn valid_size_zero_trains_on_everything_with_an_empty_validation_split() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 50, 10, 4, true);
    let options = DataOptions {
        valid_size: ValidSize::Count(0),
        ..DataOptions::default()
    };
    let splits = load_dataset("mnist", Some(dir.path()), &options, false).unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (50, 0, 10)
    );
    assert!(splits.valid.get(0).is_none());
    assert!(splits.valid.is_empty());
}

#[test]
fn a_validation_split_that_leaves_no_training_examples_names_the_key() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 8_000, 10, 4, false);
    let options = DataOptions {
        valid_size: ValidSize::Count(9_000),
        ..DataOptions::default()
    };
    let err = load_dataset("mnist", Some(dir.path()), &options, false).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Setting {
                key: "valid_size",
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.starts_with("data.valid_size = 9000"), "{message}");
    assert!(message.contains("leaves no training examples"), "{message}");
    assert!(message.contains("8000"), "{message}");
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
}

#[test]
fn valid_size_round_trips_through_toml_and_old_numbers_still_parse() {
    let text = toml::to_string(&DataOptions::default()).unwrap();
    assert!(text.contains("valid_size = \"auto\""), "{text}");
    assert_eq!(
        toml::from_str::<DataOptions>(&text).unwrap(),
        DataOptions::default()
    );
    let old: DataOptions = toml::from_str("valid_size = 10000").unwrap();
    assert_eq!(old.valid_size, ValidSize::Count(10_000));
    let explicit = toml::to_string(&old).unwrap();
    assert!(explicit.contains("valid_size = 10000"), "{explicit}");
    assert_eq!(toml::from_str::<DataOptions>(&explicit).unwrap(), old);
    let zero: DataOptions = toml::from_str("valid_size = 0").unwrap();
    assert_eq!(zero.valid_size, ValidSize::Count(0));
}

fn parse_error(text: &str) -> String {
    toml::from_str::<DataOptions>(text)
        .map(|o| panic!("{text} parsed as {o:?}"))
        .unwrap_err()
        .message()
        .to_string()
}

#[test]
fn bad_setting_values_say_what_is_wrong() {
    for (text, says) in [
        (
            "size = 5000000000",
            "5000000000 is too large (at most 4294967295)",
        ),
        ("channels = 300", "300 is too large (at most 255)"),
        ("limit = \"99999999999999999999\"", "is too large"),
        ("limit = -1", "-1 is negative"),
        ("valid_size = -5", "-5 is negative"),
        ("limit = inf", "inf is not finite"),
        ("valid_every = nan", "NaN is not finite"),
        ("test_every = 2.5", "2.5 is not a whole number"),
        ("valid_size = \"lots\"", "\"auto\""),
    ] {
        let message = parse_error(text);
        assert!(message.contains(says), "{text}: {message}");
    }
    // Whole numbers in other spellings are fine.
    let options: DataOptions = toml::from_str("limit = \"12\"\nsize = 32.0").unwrap();
    assert_eq!((options.limit, options.size), (12, 32));
}

fn write_images(dir: &Path, names: impl IntoIterator<Item = String>) {
    for name in names {
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, jpeg(12, 10, name.len() as u8)).unwrap();
    }
}

fn folder_options() -> ImageFolderOptions {
    ImageFolderOptions {
        preprocess: Preprocess::square(4),
        valid_every: 5,
        test_every: 5,
        progress: false,
        ..ImageFolderOptions::default()
    }
}

/// Each image's split, by path relative to `root`.
fn membership(root: &Path, options: &ImageFolderOptions) -> BTreeMap<PathBuf, &'static str> {
    let splits = ImageFolderSplits::load(root, options).unwrap();
    let mut out = BTreeMap::new();
    for (files, name) in [
        (&splits.train, "train"),
        (&splits.valid, "valid"),
        (&splits.test, "test"),
    ] {
        for path in files.paths() {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            assert!(out.insert(relative, name).is_none(), "{path:?} twice");
        }
    }
    out
}

#[test]
fn adding_an_image_never_moves_another_between_splits() {
    let dir = tempdir();
    write_images(
        dir.path(),
        (0..60).map(|i| format!("d{}/img{i:03}.jpg", i % 3)),
    );
    let before = membership(dir.path(), &folder_options());
    assert_eq!(before.len(), 60);
    for split in ["train", "valid", "test"] {
        assert!(before.values().any(|s| *s == split), "no {split} image");
    }
    // New images sorted before, between and after the others.
    write_images(
        dir.path(),
        ["a.jpg", "d1/img0005.jpg", "d2/zzz.jpg", "d0/new/x.jpg"].map(String::from),
    );
    let after = membership(dir.path(), &folder_options());
    assert_eq!(after.len(), 64);
    for (path, split) in &before {
        assert_eq!(after[path], *split, "{path:?} moved");
    }
    // The same folder under another name splits the same way (relative paths are hashed).
    let copy = tempdir();
    for path in before.keys() {
        let to = copy.path().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(dir.path().join(path), to).unwrap();
    }
    assert_eq!(membership(copy.path(), &folder_options()), before);
}

#[test]
fn split_settings_that_leave_nothing_to_train_on_name_the_key() {
    let dir = tempdir();
    write_images(dir.path(), (0..10).map(|i| format!("i{i}.jpg")));
    for (valid_every, test_every) in [(1, 0), (2, 2), (1, 7)] {
        let options = ImageFolderOptions {
            valid_every,
            test_every,
            ..folder_options()
        };
        let err = ImageFolderSplits::load(dir.path(), &options).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Setting {
                    key: "valid_every",
                    ..
                }
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("data.valid_every = {valid_every}")),
            "{message}"
        );
        assert!(message.contains("none for training"), "{message}");
    }
    // No validation and no test: everything trains.
    let options = ImageFolderOptions {
        valid_every: 0,
        test_every: 0,
        ..folder_options()
    };
    let splits = ImageFolderSplits::load(dir.path(), &options).unwrap();
    assert_eq!((splits.train.len(), splits.valid.len()), (10, 0));
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_terminates_and_each_image_is_listed_once() {
    use std::os::unix::fs::symlink;
    let dir = tempdir();
    write_images(
        dir.path(),
        ["a.jpg", "sub/b.jpg", "sub/deeper/c.jpg"].map(String::from),
    );
    // A link back to the root, one to a parent, and a second name for one image.
    symlink(dir.path(), dir.path().join("sub/deeper/to-root")).unwrap();
    symlink("..", dir.path().join("sub/up")).unwrap();
    symlink("a.jpg", dir.path().join("also-a.jpg")).unwrap();
    let images = list_images(dir.path()).unwrap();
    let names: Vec<String> = images
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["a.jpg", "sub/b.jpg", "sub/deeper/c.jpg"]);
    let options = ImageFolderOptions {
        valid_every: 0,
        test_every: 0,
        ..folder_options()
    };
    let splits = ImageFolderSplits::load(dir.path(), &options).unwrap();
    assert_eq!(splits.train.len(), 3);
}
