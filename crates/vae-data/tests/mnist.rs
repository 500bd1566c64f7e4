//! MNIST-format splits, the batcher, and the real Fashion-MNIST from Debian's package.

mod common;

use std::path::Path;

use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use common::{tempdir, write_mnist_dir};
use vae_data::{
    ConditionError, ConditionSource, DataRoots, IdxOptions, IdxSplits, ImageBatcher, MnistFamily,
    Origin, PixelMode, ValidSize, check_conditions, locate,
};

#[test]
fn splits_cut_validation_from_the_end_of_training() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 50, 12, 6, true);
    let options = IdxOptions {
        valid_size: ValidSize::Count(10),
        ..IdxOptions::default()
    };
    let splits = IdxSplits::load(dir.path(), MnistFamily::Mnist, options).unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (40, 10, 12)
    );
    let first_valid = splits.valid.get(0).unwrap();
    assert_eq!(first_valid.label, Some(0)); // example 40, label 40 % 10
    assert_eq!(first_valid.pixels[0], (40 * 37 % 256) as u8);
    assert!(splits.train.get(40).is_none());
    assert_eq!(splits.train.limit(5).len(), 5);
}

#[test]
fn labels_must_match_images() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 20, 5, 4, false);
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        common::idx_bytes(&[4], &[1, 2, 3, 4]),
    )
    .unwrap();
    let err = IdxSplits::load(
        dir.path(),
        MnistFamily::Mnist,
        IdxOptions {
            valid_size: ValidSize::Count(5),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte: 4 labels for the 5 images"),
        "{err}"
    );
}

#[test]
fn a_missing_dataset_says_what_to_do() {
    let dir = tempdir();
    let err = IdxSplits::load(dir.path(), MnistFamily::Kmnist, IdxOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(err.contains("`data "), "{err}");
}

#[test]
fn batcher_scales_bytes_to_unit_interval() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 30, 5, 4, true);
    let options = IdxOptions {
        valid_size: ValidSize::Count(5),
        train_pixels: PixelMode::Threshold { threshold: 0.5 },
        eval_pixels: PixelMode::Continuous,
    };
    let splits = IdxSplits::load(dir.path(), MnistFamily::FashionMnist, options).unwrap();
    let items: Vec<_> = (0..4).map(|i| splits.train.get(i).unwrap()).collect();
    let batch = <ImageBatcher as Batcher<NdArray, _, _>>::batch(
        &ImageBatcher::new(),
        items,
        &Default::default(),
    );
    assert_eq!(batch.images.dims(), [4, 16]);
    let values = batch.images.into_data().to_vec::<f32>().unwrap();
    assert!(
        values.iter().all(|&v| v == 0.0 || v == 1.0),
        "thresholded pixels must be 0 or 1"
    );
    let items: Vec<_> = (0..2).map(|i| splits.test.get(i).unwrap()).collect();
    let expected: Vec<f32> = items[0].pixels.iter().map(|&k| k as f32 / 255.0).collect();
    let batch = <ImageBatcher as Batcher<NdArray, _, _>>::batch(
        &ImageBatcher::new(),
        items,
        &Default::default(),
    );
    let values = batch.images.into_data().to_vec::<f32>().unwrap();
    for (a, b) in values[..16].iter().zip(&expected) {
        assert!((a - b).abs() < 1e-7);
    }
}

#[test]
fn a_class_batcher_gives_each_label_one_hot_and_labels_are_checked_before() {
    let dir = tempdir();
    write_mnist_dir(dir.path(), 30, 12, 4, true);
    let options = IdxOptions {
        valid_size: ValidSize::Count(5),
        ..IdxOptions::default()
    };
    let splits = IdxSplits::load(dir.path(), MnistFamily::FashionMnist, options).unwrap();
    // The fixture's labels are i mod 10.
    let items: Vec<_> = (0..3).map(|i| splits.test.get(i + 7).unwrap()).collect();
    let batch = <ImageBatcher as Batcher<NdArray, _, _>>::batch(
        &ImageBatcher::one_hot_classes(10),
        items,
        &Default::default(),
    );
    let conditions = batch.conditions.expect("one-hot conditions");
    assert_eq!(conditions.dims(), [3, 10]);
    let values = conditions.into_data().to_vec::<f32>().unwrap();
    for (row, label) in [7, 8, 9].into_iter().enumerate() {
        let expected: Vec<f32> = (0..10).map(|k| (k == label) as u8 as f32).collect();
        assert_eq!(values[row * 10..(row + 1) * 10], expected[..], "row {row}");
    }
    assert!(
        <ImageBatcher as Batcher<NdArray, _, _>>::batch(
            &ImageBatcher::new(),
            vec![splits.test.get(0).unwrap()],
            &Default::default()
        )
        .conditions
        .is_none()
    );

    check_conditions(&splits.test, &ConditionSource::Classes(10)).unwrap();
    assert_eq!(
        check_conditions(&splits.test, &ConditionSource::Classes(8)),
        Err(ConditionError::LabelOutOfRange {
            index: 8,
            label: 8,
            classes: 8
        })
    );
    // Without the labels file the examples have none, and the check says which.
    for split in ["train", "t10k"] {
        std::fs::remove_file(dir.path().join(format!("{split}-labels-idx1-ubyte.gz"))).unwrap();
    }
    let unlabelled = IdxSplits::load(dir.path(), MnistFamily::FashionMnist, options).unwrap();
    let missing = check_conditions(&unlabelled.train, &ConditionSource::Classes(10)).unwrap_err();
    assert_eq!(missing, ConditionError::MissingLabel { index: 0 });
    assert!(
        missing.to_string().contains("labels-idx1-ubyte"),
        "{missing}"
    );
}

const DEBIAN_FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// The real dataset, as CI installs it (`apt-get install dataset-fashion-mnist`).
#[test]
fn debian_fashion_mnist_loads() {
    // Skips where the package is absent, unless VAE_REQUIRE_SYSTEM_DATA is set (as in CI).
    if !Path::new(DEBIAN_FASHION).is_dir() {
        let why = format!(
            "{DEBIAN_FASHION} is missing: install it with `apt-get install -y dataset-fashion-mnist`"
        );
        assert!(
            std::env::var_os("VAE_REQUIRE_SYSTEM_DATA").is_none(),
            "{why}"
        );
        eprintln!("skipped debian_fashion_mnist_loads: {why}");
        return;
    }
    let roots = DataRoots {
        env_root: None,
        download_root: tempdir().path().to_path_buf(),
        use_system_copies: true,
    };
    let located = locate("fashion-mnist", None, &roots, None).unwrap();
    assert_eq!(located.origin, Origin::System);
    let splits = IdxSplits::load(
        &located.dir,
        MnistFamily::FashionMnist,
        IdxOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (50_000, 10_000, 10_000)
    );
    assert_eq!(splits.test.dims().num_values(), 784);
    // Every class appears in the test set, 1000 times each.
    let mut counts = [0usize; 10];
    let mut total = 0u64;
    for i in 0..splits.test.len() {
        let item = splits.test.get(i).unwrap();
        counts[item.label.unwrap() as usize] += 1;
        total += item.pixels.iter().map(|&p| p as u64).sum::<u64>();
    }
    assert_eq!(counts, [1000; 10]);
    // Fashion-MNIST's mean intensity is ≈ 0.286.
    let mean = total as f64 / (10_000.0 * 784.0 * 255.0);
    assert!((mean - 0.286).abs() < 0.01, "mean pixel {mean}");
}

#[test]
fn locate_prefers_explicit_then_environment_then_system() {
    let env_root = tempdir();
    let downloads = tempdir();
    write_mnist_dir(&env_root.path().join("fashion-mnist"), 3, 2, 4, true);
    let roots = DataRoots {
        env_root: Some(env_root.path().to_path_buf()),
        download_root: downloads.path().to_path_buf(),
        use_system_copies: true,
    };
    let found = locate("fashion-mnist", None, &roots, None).unwrap();
    assert_eq!(
        (found.origin, found.dir.clone()),
        (Origin::Environment, env_root.path().join("fashion-mnist"))
    );

    // An explicit directory is the only candidate: no silent fallback when it is incomplete.
    let explicit = tempdir();
    let message = locate("fashion-mnist", Some(explicit.path()), &roots, None)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&explicit.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("train-images-idx3-ubyte.gz"), "{message}");

    // Unknown names list the known ones.
    let message = locate("cifar", None, &roots, None).unwrap_err().to_string();
    assert!(
        message.contains("unknown dataset 'cifar'") && message.contains("emnist-letters"),
        "{message}"
    );
}

#[test]
fn dataset_defaults_come_from_the_shipped_files() {
    let celeba = vae_data::DataOptions::for_dataset("celeba").unwrap();
    assert_eq!((celeba.crop, celeba.size, celeba.channels), (148, 64, 3));
    let emnist = vae_data::DataOptions::for_dataset("emnist-letters").unwrap();
    assert_eq!(emnist, vae_data::DataOptions::for_dataset("mnist").unwrap());
    assert!(matches!(
        vae_data::DataOptions::for_dataset("cifar"),
        Err(vae_data::DataError::UnknownDataset { .. })
    ));
}
