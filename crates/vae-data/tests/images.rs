//! CelebA-layout fixtures and image folders: preprocessing, cache, splits and bad input.

mod common;

use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use common::{jpeg, tempdir, write_celeba_dir};
use vae_data::{
    CelebaOptions, CelebaSplits, ConditionError, ConditionSource, DataError, DataRoots,
    ImageBatcher, ImageFolderOptions, ImageFolderSplits, Preprocess, check_conditions, locate,
};

fn options(cache: Option<&std::path::Path>) -> CelebaOptions {
    CelebaOptions {
        cache_dir: cache.map(|p| p.to_path_buf()),
        progress: false,
        ..CelebaOptions::default()
    }
}

#[test]
fn celeba_loads_with_the_official_split_and_preprocessing() {
    let dir = tempdir();
    write_celeba_dir(dir.path(), 30);
    let splits = CelebaSplits::load(dir.path(), &options(None)).unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (24, 3, 3)
    );
    assert_eq!(splits.train.dims().num_values(), 3 * 64 * 64);
    let item = splits.train.get(0).unwrap();
    assert_eq!(item.pixels.len(), 3 * 64 * 64);
    let attributes = splits.attributes.unwrap();
    assert_eq!(attributes.names, vec!["Smiling", "Young"]);
    assert_eq!(attributes.values["000002.jpg"], vec![-1, -1]);
}

#[test]
fn celeba_items_carry_their_attributes_and_the_chosen_ones_become_the_condition() {
    let dir = tempdir();
    let cache = tempdir();
    let names = write_celeba_dir(dir.path(), 20);
    // The fixture's partition: image i goes to valid when i mod 10 = 8, test when 9.
    let test_files: Vec<usize> = (0..names.len()).filter(|i| i % 10 == 9).collect();
    let train_files: Vec<usize> = (0..names.len()).filter(|i| i % 10 < 8).collect();
    for cache_dir in [None, Some(cache.path())] {
        let splits = CelebaSplits::load(dir.path(), &options(cache_dir)).unwrap();
        for (k, &i) in train_files.iter().enumerate() {
            let attributes = splits.train.get(k).unwrap().attributes.unwrap();
            assert_eq!(
                (attributes.get("Smiling"), attributes.get("Young")),
                (Some(i % 2 == 0), Some(i % 3 == 0)),
                "{}",
                names[i]
            );
        }
        // A batcher conditioned on (Young, Smiling): the model's order, not the file's.
        let source = ConditionSource::Attributes(vec!["Young".into(), "Smiling".into()]);
        check_conditions(&splits.test, &source).unwrap();
        let items: Vec<_> = (0..splits.test.len())
            .map(|k| splits.test.get(k).unwrap())
            .collect();
        let batch = <ImageBatcher as Batcher<NdArray, _, _>>::batch(
            &ImageBatcher::conditioned(source),
            items,
            &Default::default(),
        );
        let conditions = batch.conditions.expect("attribute conditions");
        assert_eq!(conditions.dims(), [test_files.len(), 2]);
        let expected: Vec<f32> = test_files
            .iter()
            .flat_map(|i| [(i % 3 == 0) as u8 as f32, (i % 2 == 0) as u8 as f32])
            .collect();
        assert_eq!(conditions.into_data().to_vec::<f32>().unwrap(), expected);
        let unknown = ConditionSource::Attributes(vec!["Smile".into()]);
        assert_eq!(
            check_conditions(&splits.train, &unknown),
            Err(ConditionError::UnknownAttribute {
                index: 0,
                name: "Smile".into(),
                known: vec!["Smiling".into(), "Young".into()],
            })
        );
    }

    // An image without its attribute row loads without attributes (an unconditional run never
    // asks), and a condition on them names the example.
    let attribute_file = dir.path().join("list_attr_celeba.txt");
    let text = std::fs::read_to_string(&attribute_file).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("000007.jpg"))
        .collect();
    let without = without.join("\n").replacen("20\n", "19\n", 1);
    std::fs::write(&attribute_file, without).unwrap();
    let splits = CelebaSplits::load(dir.path(), &options(None)).unwrap();
    let k = train_files
        .iter()
        .position(|&i| names[i] == "000007.jpg")
        .unwrap();
    assert!(splits.train.get(k).unwrap().attributes.is_none());
    assert!(splits.train.get(k + 1).unwrap().attributes.is_some());
    assert_eq!(
        check_conditions(
            &splits.train,
            &ConditionSource::Attributes(vec!["Young".into()])
        ),
        Err(ConditionError::MissingAttributes { index: k })
    );

    // A header naming an attribute twice is refused, by line.
    std::fs::write(
        &attribute_file,
        text.replacen("Smiling Young", "Smiling Smiling", 1),
    )
    .unwrap();
    let message = CelebaSplits::load(dir.path(), &options(None))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("list_attr_celeba.txt:2") && message.contains("named twice"),
        "{message}"
    );

    // Without the attribute file the images have none, and a condition on them says where
    // they come from.
    std::fs::remove_file(&attribute_file).unwrap();
    let splits = CelebaSplits::load(dir.path(), &options(None)).unwrap();
    assert!(splits.train.get(0).unwrap().attributes.is_none());
    let missing = check_conditions(
        &splits.train,
        &ConditionSource::Attributes(vec!["Smiling".into()]),
    )
    .unwrap_err();
    assert_eq!(missing, ConditionError::MissingAttributes { index: 0 });
    assert!(
        missing.to_string().contains("list_attr_celeba.txt"),
        "{missing}"
    );
}

#[test]
fn the_cache_gives_the_same_pixels_and_is_reused() {
    let dir = tempdir();
    let cache = tempdir();
    write_celeba_dir(dir.path(), 20);
    let decoded = CelebaSplits::load(dir.path(), &options(None)).unwrap();
    let cached = CelebaSplits::load(dir.path(), &options(Some(cache.path()))).unwrap();
    for i in 0..decoded.train.len() {
        assert!(
            decoded.train.get(i) == cached.train.get(i),
            "cached image {i} differs"
        );
    }
    let file = cache.path().join("celeba-train-c148-s64-ch3.u8");
    let built = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = CelebaSplits::load(dir.path(), &options(Some(cache.path()))).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        built,
        "cache rebuilt"
    );
    assert!(again.valid.get(1) == decoded.valid.get(1));
    // Changing a source image invalidates the cache.
    let before = cached.train.get(0);
    std::fs::write(
        dir.path().join("img_align_celeba/000001.jpg"),
        jpeg(178, 218, 200),
    )
    .unwrap();
    let changed = CelebaSplits::load(dir.path(), &options(Some(cache.path()))).unwrap();
    assert!(
        changed.train.get(0) != before,
        "stale cache served after the source changed"
    );
}

#[test]
fn a_partition_naming_missing_images_is_an_error() {
    let dir = tempdir();
    write_celeba_dir(dir.path(), 10);
    std::fs::remove_file(dir.path().join("img_align_celeba/000004.jpg")).unwrap();
    let message = CelebaSplits::load(dir.path(), &options(None))
        .unwrap_err()
        .to_string();
    assert!(message.contains("list_eval_partition.txt"), "{message}");
    assert!(message.contains("1 image(s) missing"), "{message}");
    assert!(message.contains("000004.jpg"), "{message}");
}

#[test]
fn a_malformed_partition_line_is_reported_with_its_number() {
    let dir = tempdir();
    write_celeba_dir(dir.path(), 5);
    let path = dir.path().join("list_eval_partition.txt");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("000006.jpg 7\n");
    std::fs::write(&path, text).unwrap();
    let err = CelebaSplits::load(dir.path(), &options(None)).unwrap_err();
    assert!(matches!(err, DataError::Metadata { line: 6, .. }), "{err}");
    assert!(err.to_string().contains("partition '7' is not 0, 1 or 2"));
}

#[test]
fn corrupt_and_undersized_images_are_named() {
    for (bytes, expect) in [
        (b"definitely not a jpeg".to_vec(), "not a readable image"),
        (jpeg(100, 100, 1), "smaller than the 148×148 centre crop"),
    ] {
        let dir = tempdir();
        write_celeba_dir(dir.path(), 6);
        std::fs::write(dir.path().join("img_align_celeba/000003.jpg"), &bytes).unwrap();
        let message = CelebaSplits::load(dir.path(), &options(None))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("000003.jpg") && message.contains(expect),
            "{message}"
        );
        // Building the cache decodes fully and fails the same way, leaving no cache behind.
        let cache = tempdir();
        let message = CelebaSplits::load(dir.path(), &options(Some(cache.path())))
            .unwrap_err()
            .to_string();
        assert!(message.contains("000003.jpg"), "{message}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    }
}

#[test]
fn missing_celeba_explains_the_manual_download() {
    let dir = tempdir();
    let roots = DataRoots {
        env_root: None,
        download_root: dir.path().to_path_buf(),
        use_system_copies: false,
    };
    let message = locate(
        "celeba",
        None,
        &roots,
        Some(&vae_data::Downloader::default()),
    )
    .unwrap_err()
    .to_string();
    let target = dir.path().join("celeba");
    assert!(message.contains("img_align_celeba"), "{message}");
    assert!(
        message.contains(&format!("{}/img_align_celeba/000001.jpg", target.display())),
        "{message}"
    );
    assert!(message.contains("list_eval_partition.txt"), "{message}");
}

#[test]
fn an_image_folder_splits_deterministically() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("nested")).unwrap();
    for i in 0..40 {
        let sub = if i % 2 == 0 { "" } else { "nested/" };
        std::fs::write(
            dir.path().join(format!("{sub}img{i:02}.jpg")),
            jpeg(50, 40, i as u8),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let options = ImageFolderOptions {
        preprocess: Preprocess::square(16),
        valid_every: 10,
        test_every: 10,
        progress: false,
        ..ImageFolderOptions::default()
    };
    let splits = ImageFolderSplits::load(dir.path(), &options).unwrap();
    // About a tenth each, by a hash of the relative path (the same on every machine).
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (27, 2, 11)
    );
    let again = ImageFolderSplits::load(dir.path(), &options).unwrap();
    assert_eq!(again.valid.paths(), splits.valid.paths());
    assert_eq!(again.test.paths(), splits.test.paths());
    assert_eq!(splits.train.get(0).unwrap().pixels.len(), 3 * 16 * 16);
    let err = ImageFolderSplits::load(&dir.path().join("nope"), &options).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn processes_building_the_same_cache_at_once_all_succeed() {
    let dir = tempdir();
    for i in 0..48 {
        std::fs::write(
            dir.path().join(format!("img{i:02}.jpg")),
            jpeg(60, 50, i as u8),
        )
        .unwrap();
    }
    let cache = tempdir();
    let options = ImageFolderOptions {
        preprocess: Preprocess::square(16),
        valid_every: 8,
        test_every: 8,
        cache_dir: Some(cache.path().to_path_buf()),
        progress: false,
        ..ImageFolderOptions::default()
    };
    let uncached = ImageFolderSplits::load(
        dir.path(),
        &ImageFolderOptions {
            cache_dir: None,
            ..options.clone()
        },
    )
    .unwrap();
    let builders = 6;
    let start = std::sync::Barrier::new(builders);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..builders)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    ImageFolderSplits::load(dir.path(), &options)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        let splits = result.unwrap_or_else(|e| panic!("a concurrent build failed: {e}"));
        for (cached, decoded) in [
            (&splits.train, &uncached.train),
            (&splits.valid, &uncached.valid),
            (&splits.test, &uncached.test),
        ] {
            assert_eq!(cached.len(), decoded.len());
            for i in 0..cached.len() {
                assert!(cached.get(i) == decoded.get(i), "cached image {i} differs");
            }
        }
    }
    // Only the three finished caches remain: no temporary files left behind.
    let mut left: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "folder-test-s16-ch3.u8",
            "folder-train-s16-ch3.u8",
            "folder-valid-s16-ch3.u8"
        ]
    );
}
