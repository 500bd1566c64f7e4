//! End to end: the `cargo xtask` commands on the real Fashion-MNIST (Debian's copy), on
//! generated CelebA-layout fixtures and image folders, and their error paths.

mod common;

use std::path::Path;

use common::{fails, fashion_mnist_installed, metrics, ok};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

const RUN_FILES: [&str; 9] = [
    "config.toml",
    "metrics.json",
    "model.safetensors",
    "reconstructions.png",
    "samples.png",
    "interpolation.png",
    "traversal.png",
    "curves.png",
    "checkpoints/checkpoint/latest.json",
];

fn assert_run_files(run: &Path) {
    for f in RUN_FILES {
        assert!(run.join(f).is_file(), "{} missing", run.join(f).display());
    }
}

#[test]
fn fashion_mnist_trains_evaluates_samples_and_resumes() {
    if !fashion_mnist_installed("fashion_mnist_trains_evaluates_samples_and_resumes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    ok(&[
        "train",
        "fashion-mnist",
        "--limit",
        "2000",
        "--epochs",
        "2",
        "--out",
        r,
        "--backend",
        "cpu",
    ]);
    assert_run_files(&run);
    let m = metrics(&run);
    assert_eq!(m["dataset"], "fashion-mnist");
    assert_eq!(m["epochs"], 2);
    for split in ["train", "valid"] {
        let curve = floats(&m[split]["neg_elbo_nats"]);
        assert_eq!(curve.len(), 2);
        assert!(curve[1] < curve[0], "{split} −ELBO did not fall: {curve:?}");
        // The named terms are consistent: −ELBO = KL − log-likelihood, KL ≥ 0.
        let ll = floats(&m[split]["log_likelihood_nats"]);
        let kl = floats(&m[split]["kl_nats"]);
        for i in 0..2 {
            assert!(kl[i] >= 0.0);
            assert!((curve[i] - (kl[i] - ll[i])).abs() < 1e-3 * curve[i].abs());
        }
    }
    let test = &m["test"];
    for key in ["neg_elbo_nats", "log_likelihood_nats", "kl_nats"] {
        assert!(test[key].as_f64().unwrap().is_finite(), "test.{key}");
    }
    // Continuous pixels: a Bernoulli "likelihood" is no code length, so no bits/dim.
    assert!(test.get("bits_per_dim").is_none(), "{test}");
    assert!(
        test["bits_per_dim_note"]
            .as_str()
            .is_some_and(|n| n.contains("continuous pixels")),
        "{test}"
    );
    assert!(m["train_images_per_second"].as_f64().unwrap() > 0.0);

    // eval adds the importance-sampled log p(x), which beats the ELBO.
    ok(&[
        "eval",
        "--run",
        r,
        "--importance-samples",
        "64",
        "--limit",
        "500",
        "--backend",
        "cpu",
    ]);
    let m = metrics(&run);
    let log_px = m["test"]["is_log_px_nats"].as_f64().unwrap();
    assert_eq!(m["test"]["importance_samples"], 64);
    assert!(
        log_px > -m["test"]["neg_elbo_nats"].as_f64().unwrap(),
        "IS log p(x) {log_px} below the ELBO"
    );

    let png = dir.path().join("s.png");
    ok(&[
        "sample",
        "--run",
        r,
        "--n",
        "9",
        "--out",
        png.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (3 * 58 + 2, 3 * 58 + 2));

    // Resume continues at epoch 3 with the saved optimizer state.
    let text = ok(&[
        "train",
        "fashion-mnist",
        "--resume",
        "--epochs",
        "3",
        "--out",
        r,
        "--backend",
        "cpu",
    ]);
    assert!(text.contains("epoch 3/3 train"), "{text}");
    assert!(!text.contains("epoch 1/3"), "{text}");
    let m = metrics(&run);
    assert_eq!(m["train"]["epoch"], serde_json::json!([1, 2, 3]));
    let marker: Value = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/checkpoint/latest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["epoch"], 3);
    assert_eq!(marker["optimizer_steps"], 3 * 2000usize.div_ceil(128));

    // A finished run is not silently overwritten.
    let err = fails(&[
        "train",
        "fashion-mnist",
        "--limit",
        "100",
        "--epochs",
        "1",
        "--out",
        r,
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("--resume"), "{err}");
}

/// A CelebA-layout directory of 178×218 JPEGs with the official partition and attribute
/// formats (two attributes: `Smiling` for odd-numbered images, `Young` for none).
fn celeba_fixture(dir: &Path, n: usize) {
    let images = dir.join("img_align_celeba");
    std::fs::create_dir_all(&images).unwrap();
    let mut partition = String::new();
    let mut attributes = format!("{n}\nSmiling Young\n");
    for i in 1..=n {
        let img = image::RgbImage::from_fn(178, 218, |x, y| {
            image::Rgb([(x + i as u32) as u8, (y * 2) as u8, (i * 9) as u8])
        });
        img.save(images.join(format!("{i:06}.jpg"))).unwrap();
        partition.push_str(&format!("{i:06}.jpg {}\n", [0, 0, 0, 0, 0, 0, 1, 2][i % 8]));
        let smiling = if i % 2 == 1 { 1 } else { -1 };
        attributes.push_str(&format!("{i:06}.jpg  {smiling} -1\n"));
    }
    std::fs::write(dir.join("list_eval_partition.txt"), partition).unwrap();
    std::fs::write(dir.join("list_attr_celeba.txt"), attributes).unwrap();
}

#[test]
fn celeba_attributes_condition_a_run_and_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("celeba");
    celeba_fixture(&data, 24);
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let mut args = vec!["train", "celeba", "--data-dir", data.to_str().unwrap()];
    args.extend([
        "--out",
        r,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--backend",
        "cpu",
    ]);
    args.extend(TINY_CONV);
    args.extend([
        "--set",
        "model.condition={ kind = \"attributes\", names = [\"Smiling\", \"Young\"] }",
    ]);
    ok(&args);
    assert_run_files(&run);
    // samples.png: no attribute, Smiling alone, Young alone; 8 columns of 16×16 images.
    let (w, h) = image::image_dimensions(run.join("samples.png")).unwrap();
    // Square cells behind a 2-pixel gutter: (w − 2) / 8 = (h − 2) / 3.
    assert_eq!((w - 2) * 3, (h - 2) * 8, "3 rows of 8: {w}×{h}");
    let said = ok(&[
        "sample",
        "--run",
        r,
        "--attributes",
        "Smiling",
        "--n",
        "4",
        "--backend",
        "cpu",
    ]);
    assert!(run.join("samples-Smiling-4.png").is_file(), "{said}");
    let unknown = fails(&[
        "sample",
        "--run",
        r,
        "--attributes",
        "Smiling,Bald",
        "--backend",
        "cpu",
    ]);
    assert!(
        unknown.contains("--attributes") && unknown.contains("'Bald'"),
        "{unknown}"
    );
    let class = fails(&["sample", "--run", r, "--class", "1", "--backend", "cpu"]);
    assert!(
        class.contains("--class") && class.contains("not on a class"),
        "{class}"
    );
    // A condition on an attribute CelebA does not have stops before training.
    let other = dir.path().join("other");
    let mut args = vec!["train", "celeba", "--data-dir", data.to_str().unwrap()];
    args.extend([
        "--out",
        other.to_str().unwrap(),
        "--epochs",
        "1",
        "--backend",
        "cpu",
    ]);
    args.extend(TINY_CONV);
    args.extend([
        "--set",
        "model.condition={ kind = \"attributes\", names = [\"Bald\"] }",
    ]);
    let refused = fails(&args);
    assert!(
        refused.contains("model.condition") && refused.contains("'Bald'"),
        "{refused}"
    );
    assert!(!other.join("config.toml").exists(), "nothing written");
}

const TINY_CONV: [&str; 8] = [
    "--set",
    "data.size=16",
    "--set",
    "model.image={ channels = 3, height = 16, width = 16 }",
    "--set",
    "model.channels=[4, 8]",
    "--set",
    "model.latent_dim=2",
];

#[test]
fn celeba_layout_fixtures_train() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("celeba");
    celeba_fixture(&data, 40);
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "celeba",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(["--epochs", "2", "--batch-size", "8", "--backend", "cpu"]);
    args.extend(TINY_CONV);
    ok(&args);
    assert_run_files(&run);
    assert!(
        run.join("manifold.png").is_file(),
        "2-D latent space draws a manifold"
    );
    let m = metrics(&run);
    // A density of pixels that were not dequantised: no bits/dim, and the reason.
    assert!(m["test"].get("bits_per_dim").is_none(), "{}", m["test"]);
    assert!(
        m["test"]["bits_per_dim_note"]
            .as_str()
            .is_some_and(|n| n.contains("dequantised")),
        "{}",
        m["test"]
    );
    assert_eq!(m["test"]["examples"], 5);
}

#[test]
fn an_image_folder_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pictures");
    std::fs::create_dir_all(data.join("a")).unwrap();
    for i in 0..45u32 {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * i) as u8, y as u8, 100]));
        let sub = if i % 3 == 0 { "a/" } else { "" };
        img.save(data.join(format!("{sub}p{i}.png"))).unwrap();
    }
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "image-folder",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend([
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--backend",
        "cpu",
        "--set",
        "data.valid_every=5",
        "--set",
        "data.test_every=5",
    ]);
    args.extend(TINY_CONV);
    ok(&args);
    assert_run_files(&run);
}

#[test]
fn errors_are_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();

    let err = fails(&[
        "train",
        "mnist",
        "--data-dir",
        empty.to_str().unwrap(),
        "--out",
        o,
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains(empty.to_str().unwrap()),
        "{err}"
    );
    assert!(
        !out.exists(),
        "a run that never started leaves no directory"
    );

    let err = fails(&[
        "train",
        "fashion-mnist",
        "--set",
        "training.epohcs=1",
        "--out",
        o,
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("training.epohcs"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );

    // NaN, infinity and integers no setting can hold say so.
    for (set, says) in [
        ("training.learning_rate=nan", "must be a finite number"),
        ("training.learning_rate=inf", "must be a finite number"),
        ("training.epochs=99999999999999999999999", "too large"),
    ] {
        let err = fails(&[
            "train",
            "fashion-mnist",
            "--set",
            set,
            "--out",
            o,
            "--backend",
            "cpu",
        ]);
        let key = set.split('=').next().unwrap();
        assert!(err.contains(key) && err.contains(says), "{set}: {err}");
        assert!(!err.contains("invalid type"), "{set}: {err}");
    }

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = fails(&[
        "train",
        "fashion-mnist",
        "--out",
        file.join("run").to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("--out") && err.contains("a-file"), "{err}");

    let err = fails(&[
        "train",
        "celeba",
        "--data-dir",
        empty.to_str().unwrap(),
        "--out",
        o,
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("img_align_celeba") && err.contains("list_eval_partition.txt"),
        "{err}"
    );

    let err = fails(&["eval", "--run", empty.to_str().unwrap(), "--backend", "cpu"]);
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    if !fashion_mnist_installed("a_diverging_run_stops_with_a_clear_message") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let err = fails(&[
        "train",
        "fashion-mnist",
        "--limit",
        "3000",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
        "--set",
        "training.learning_rate=1e9",
    ]);
    assert!(
        err.contains("training diverged") && (err.contains("NaN") || err.contains("inf")),
        "{err}"
    );
    assert!(
        !run.join("model.safetensors").exists(),
        "a diverged model must not be published"
    );
}

#[test]
fn valid_size_zero_trains_on_every_example_without_validation() {
    if !fashion_mnist_installed("valid_size_zero_trains_on_every_example_without_validation") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let text = ok(&[
        "train",
        "fashion-mnist",
        "--limit",
        "1000",
        "--epochs",
        "2",
        "--set",
        "data.valid_size=0",
        "--out",
        run.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(text.contains("1000 train / 0 valid"), "{text}");
    let m = metrics(&run);
    assert_eq!(m["train"]["epoch"], serde_json::json!([1, 2]));
    assert_eq!(m["valid"]["epoch"], serde_json::json!([]));
    assert!(m["test"]["neg_elbo_nats"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_same_seed_repeats_a_cpu_run_exactly() {
    if !fashion_mnist_installed("the_same_seed_repeats_a_cpu_run_exactly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let curves: Vec<Value> = ["a", "b"]
        .iter()
        .map(|name| {
            let run = dir.path().join(name);
            ok(&[
                "train",
                "fashion-mnist",
                "--limit",
                "1000",
                "--epochs",
                "1",
                "--seed",
                "7",
                "--out",
                run.to_str().unwrap(),
                "--backend",
                "cpu",
            ]);
            let m = metrics(&run);
            serde_json::json!([
                m["train"]["neg_elbo_nats"],
                m["valid"]["neg_elbo_nats"],
                m["test"]["neg_elbo_nats"]
            ])
        })
        .collect();
    assert_eq!(curves[0], curves[1]);
}
