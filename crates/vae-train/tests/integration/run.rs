//! Runs through the library on in-memory data: `train_run` writes a complete run directory,
//! refuses to overwrite one, resumes; `evaluate_run` adds log p(x) to `metrics.json`;
//! `sample_run` draws a grid.

use crate::common::{B, config, labelled_splits, splits};
use vae_core::{BetaTcObjective, ImportanceBound};
use vae_models::ConditionValue::{Attributes, Class};
use vae_models::{Architecture, ConditionConfig, MlpVaeConfig, PosteriorConfig, PriorConfig};
use vae_train::{
    EvalOptions, RunConfig, RunDir, RunOptions, TrainError, evaluate_run, sample_run, train_run,
};

#[test]
fn a_run_trains_resumes_evaluates_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();

    let outcome =
        train_run::<Architecture, B>(&run, &config(2), &data, &device, RunOptions::new("cpu"))
            .unwrap();
    assert!(outcome.finished());
    for file in [
        "config.toml",
        "run.json",
        "metrics.json",
        "model.safetensors",
        "reconstructions.png",
        "samples.png",
        "interpolation.png",
        "traversal.png",
        "manifold.png",
        "curves.png",
    ] {
        assert!(run.path().join(file).is_file(), "{file} missing");
    }
    let metrics = run.read_metrics().unwrap();
    let test = metrics.test.clone().expect("test metrics");
    assert_eq!(test.examples, 16);
    assert!(test.elbo.kl_nats >= 0.0);
    assert_eq!(
        test.elbo.neg_elbo_nats,
        test.elbo.kl_nats - test.elbo.log_likelihood_nats
    );
    // A Bernoulli likelihood of continuous pixels is no probability of the data.
    assert_eq!(test.bits_per_dim, None);
    assert!(
        test.bits_per_dim_note
            .as_deref()
            .is_some_and(|n| n.contains("continuous")),
        "{test:?}"
    );
    assert_eq!(test.epoch, Some(2));
    assert_eq!(metrics.train.epoch, [1, 2]);

    // A second new run in the same directory is refused before anything is rewritten.
    let before = std::fs::read(run.config_file()).unwrap();
    let mut other = config(2);
    other.training.learning_rate = 0.5;
    let refused =
        train_run::<Architecture, B>(&run, &other, &data, &device, RunOptions::new("cpu"));
    assert!(matches!(
        refused,
        Err(TrainError::RunExists { epoch: 2, .. })
    ));
    assert_eq!(std::fs::read(run.config_file()).unwrap(), before);
    let finished = train_run::<Architecture, B>(
        &run,
        &config(2),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    );
    assert!(matches!(
        finished,
        Err(TrainError::AlreadyTrained { epoch: 2, .. })
    ));

    let resumed = train_run::<Architecture, B>(
        &RunDir::open(run.path()).unwrap(),
        &config(3),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap();
    assert_eq!(resumed.first_epoch, 3);
    assert_eq!(resumed.metrics.train.epoch, [1, 2, 3]);

    let with_log_px = evaluate_run::<Architecture, B>(
        &run,
        &data,
        &device,
        &EvalOptions {
            importance_samples: 20,
            limit: 0,
        },
    )
    .unwrap();
    let log_px = with_log_px.is_log_px_nats.expect("log p(x)");
    assert!(log_px.is_finite() && log_px <= 0.0, "{log_px}");
    // Without importance samples the earlier log p(x) stays in metrics.json.
    evaluate_run::<Architecture, B>(
        &run,
        &data,
        &device,
        &EvalOptions {
            importance_samples: 0,
            limit: 0,
        },
    )
    .unwrap();
    let stored = run.read_metrics().unwrap().test.unwrap();
    assert_eq!(stored.is_log_px_nats, Some(log_px));
    assert_eq!(stored.importance_samples, Some(20));

    let grid = run.path().join("four.png");
    sample_run::<Architecture, B>(&run, 4, None, 7, &grid, &device).unwrap();
    let (width, height) = image::image_dimensions(&grid).unwrap();
    // 2 × 2 images of 4×4 pixels enlarged 16× to 64×64, 2-pixel gutters.
    assert_eq!((width, height), (2 * 66 + 2, 2 * 66 + 2));
    assert!(matches!(
        sample_run::<Architecture, B>(&run, 0, None, 7, &grid, &device),
        Err(TrainError::NoSamples)
    ));
}

#[test]
fn a_model_that_does_not_fit_the_data_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let mut wrong = config(1);
    wrong.model = Architecture::Mlp(MlpVaeConfig::new(784, vec![8], 2));
    let err = train_run::<Architecture, B>(
        &run,
        &wrong,
        &data,
        &Default::default(),
        RunOptions::new("cpu"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("784"), "{err}");
    assert!(!run.config_file().exists(), "nothing written");
}

/// A configuration of one family: a prior, a posterior and/or an alternative training objective.
fn family(
    prior: Option<PriorConfig>,
    posterior: Option<PosteriorConfig>,
    bound: Option<ImportanceBound>,
    tc: Option<BetaTcObjective>,
    epochs: usize,
) -> RunConfig<Architecture> {
    let mut config = config(epochs);
    config.model = Architecture::Mlp(
        MlpVaeConfig::new(16, vec![8], 2)
            .with_prior(prior)
            .with_posterior(posterior),
    );
    config.training.importance_bound = bound;
    config.training.total_correlation = tc;
    config
}

/// `evaluate_run` with 20 importance samples: log p(x) (log p(x|c) for a conditional model) is
/// finite and, being ≥ the ELBO in expectation, not below it by more than noise.
fn evaluates_log_px_above_the_elbo(run: &RunDir, data: &vae_data::DataSplits, what: &str) {
    let evaluated = evaluate_run::<Architecture, B>(
        run,
        data,
        &Default::default(),
        &EvalOptions {
            importance_samples: 20,
            limit: 0,
        },
    )
    .unwrap();
    let log_px = evaluated.is_log_px_nats.expect("log p(x)");
    assert!(
        log_px.is_finite() && log_px >= -evaluated.elbo.neg_elbo_nats - 0.5,
        "{what}: log p(x) {log_px}, ELBO {}",
        -evaluated.elbo.neg_elbo_nats
    );
}

#[test]
fn every_family_trains_resumes_evaluates_and_samples() {
    let iaf = Some(PosteriorConfig::Iaf {
        steps: 2,
        hidden: 4,
    });
    let families = [
        (None, iaf, None, None),
        (
            Some(PriorConfig::Vamp { pseudo_inputs: 3 }),
            None,
            Some(ImportanceBound::Iwae { samples: 3 }),
            None,
        ),
        (
            Some(PriorConfig::Vamp { pseudo_inputs: 2 }),
            iaf,
            Some(ImportanceBound::Iwae { samples: 2 }),
            None,
        ),
        (
            Some(PriorConfig::Mixture { components: 2 }),
            iaf,
            Some(ImportanceBound::Piwae { outer: 2, inner: 2 }),
            None,
        ),
        (
            None,
            None,
            Some(ImportanceBound::Ciwae {
                samples: 2,
                beta: 0.5,
            }),
            None,
        ),
        (None, None, None, Some(BetaTcObjective::new(6.0))),
    ];
    let device = Default::default();
    for (prior, posterior, bound, tc) in families {
        let what = format!("{prior:?} {posterior:?} {bound:?} {tc:?}");
        let dir = tempfile::tempdir().unwrap();
        let data = splits(dir.path());
        let run = RunDir::create(dir.path().join("run")).unwrap();
        let first = train_run::<Architecture, B>(
            &run,
            &family(prior, posterior, bound, tc, 1),
            &data,
            &device,
            RunOptions::new("cpu"),
        )
        .unwrap();
        assert!(first.finished(), "{what}");
        // The run records the family: what it reads back is what was asked for.
        let saved = run.read_config::<Architecture>().unwrap();
        assert_eq!(saved.training.importance_bound, bound, "{what}");
        assert_eq!(saved.training.total_correlation, tc, "{what}");
        let Architecture::Mlp(model) = &saved.model else {
            panic!("{what}: {:?}", saved.model)
        };
        assert_eq!(model.prior, prior, "{what}");
        assert_eq!(model.posterior, posterior, "{what}");

        // Changing the objective is not a resume; continuing it is.
        let changed = family(prior, None, None, None, 2);
        if bound.is_some() || tc.is_some() || posterior.is_some() {
            let refused = train_run::<Architecture, B>(
                &run,
                &changed,
                &data,
                &device,
                RunOptions::new("cpu").resumed(),
            );
            assert!(
                matches!(refused, Err(TrainError::ResumeChanges { .. })),
                "{what}: {refused:?}"
            );
        }
        let resumed = train_run::<Architecture, B>(
            &run,
            &family(prior, posterior, bound, tc, 2),
            &data,
            &device,
            RunOptions::new("cpu").resumed(),
        )
        .unwrap();
        assert_eq!(resumed.metrics.train.epoch, [1, 2], "{what}");
        let test = resumed.metrics.test.expect("test metrics");
        // Whatever was trained, the reported numbers are the true ELBO terms.
        assert!(test.elbo.kl_nats >= 0.0 || prior.is_some(), "{what}");
        assert_eq!(
            test.elbo.neg_elbo_nats,
            test.elbo.kl_nats - test.elbo.log_likelihood_nats
        );

        evaluates_log_px_above_the_elbo(&run, &data, &what);
        let grid = run.path().join("four.png");
        sample_run::<Architecture, B>(&run, 4, None, 7, &grid, &device).unwrap();
        assert!(grid.is_file(), "{what}");
    }
}

#[test]
fn total_correlation_with_a_learned_prior_or_a_flow_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let refusal = |config: RunConfig<Architecture>| {
        train_run::<Architecture, B>(
            &run,
            &config,
            &data,
            &Default::default(),
            RunOptions::new("cpu"),
        )
        .unwrap_err()
        .to_string()
    };
    let tc = Some(BetaTcObjective::new(6.0));
    let vamp = Some(PriorConfig::Vamp { pseudo_inputs: 2 });
    let iaf = Some(PosteriorConfig::Iaf {
        steps: 1,
        hidden: 4,
    });
    for (config, key) in [
        (family(vamp, None, None, tc, 1), "model.prior"),
        (family(None, iaf, None, tc, 1), "model.posterior"),
    ] {
        let message = refusal(config);
        assert!(
            message.contains("training.total_correlation") && message.contains(key),
            "{message}"
        );
    }
}

/// A class-conditional MLP on the 4×4 squares (`classes` classes, the place of the square).
fn conditional(classes: usize, epochs: usize) -> RunConfig<Architecture> {
    let mut config = config(epochs);
    config.model = Architecture::Mlp(
        MlpVaeConfig::new(16, vec![8], 2).with_condition(Some(ConditionConfig::Class { classes })),
    );
    config.training.learning_rate = 1e-2;
    config
}

/// An MLP on the 4×4 squares conditioned on the attributes `names` (of `Bottom`, `Right`).
fn by_attributes(names: &[&str], epochs: usize) -> RunConfig<Architecture> {
    let mut config = conditional(2, epochs);
    let names = names.iter().map(|n| n.to_string()).collect();
    config.model = Architecture::Mlp(
        MlpVaeConfig::new(16, vec![8], 2)
            .with_condition(Some(ConditionConfig::Attributes { names })),
    );
    config
}

/// The mean grey level of a sample grid's images (4×4 images drawn 64×64, 2-pixel gutters,
/// `cols` columns) inside and outside the 2×2 square of class `class`.
fn brightness_in_and_out(png: &std::path::Path, cols: usize, class: usize) -> (f64, f64) {
    let grid = image::open(png).unwrap().to_luma8();
    let (top, left) = ((class % 2) * 2, (class / 2 % 2) * 2);
    let (mut inside, mut outside) = ((0.0, 0usize), (0.0, 0usize));
    let images = ((grid.height() as usize - 2) / 66) * cols;
    for k in 0..images {
        let (ox, oy) = (2 + (k % cols) * 66, 2 + (k / cols) * 66);
        for y in 0..64 {
            for x in 0..64 {
                let value = grid.get_pixel((ox + x) as u32, (oy + y) as u32)[0] as f64;
                let (py, px) = (y / 16, x / 16);
                let slot = if (top..top + 2).contains(&py) && (left..left + 2).contains(&px) {
                    &mut inside
                } else {
                    &mut outside
                };
                slot.0 += value;
                slot.1 += 1;
            }
        }
    }
    (inside.0 / inside.1 as f64, outside.0 / outside.1 as f64)
}

#[test]
fn a_class_conditional_run_trains_resumes_evaluates_and_samples_each_class() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled_splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    let first = train_run::<Architecture, B>(
        &run,
        &conditional(4, 20),
        &data,
        &device,
        RunOptions::new("cpu"),
    )
    .unwrap();
    assert!(first.finished());
    for file in [
        "samples.png",
        "reconstructions.png",
        "interpolation.png",
        "traversal.png",
    ] {
        assert!(run.path().join(file).is_file(), "{file} missing");
    }
    let Architecture::Mlp(saved) = run.read_config::<Architecture>().unwrap().model else {
        panic!("mlp expected")
    };
    assert_eq!(saved.condition, Some(ConditionConfig::Class { classes: 4 }));
    // samples.png is class by sample: 4 rows (classes) of 8 columns (latents).
    assert_eq!(
        image::image_dimensions(run.path().join("samples.png")).unwrap(),
        (8 * 66 + 2, 4 * 66 + 2)
    );

    let resumed = train_run::<Architecture, B>(
        &run,
        &conditional(4, 21),
        &data,
        &device,
        RunOptions::new("cpu").resumed(),
    )
    .unwrap();
    assert_eq!(resumed.metrics.train.epoch.len(), 21);
    evaluates_log_px_above_the_elbo(&run, &data, "class-conditional");

    // `--class k` draws class k: the decoded square sits where class k puts it, whatever z.
    for class in 0..4 {
        let png = run.path().join(format!("class-{class}.png"));
        sample_run::<Architecture, B>(&run, 4, Some(Class(class)), 7, &png, &device).unwrap();
        let (inside, outside) = brightness_in_and_out(&png, 2, class);
        assert!(
            inside > outside + 60.0,
            "class {class}: grey level {inside:.0} inside its square, {outside:.0} outside"
        );
    }
    // Without --class: n of every class, one row per class.
    let all = run.path().join("all.png");
    sample_run::<Architecture, B>(&run, 3, None, 7, &all, &device).unwrap();
    assert_eq!(
        image::image_dimensions(&all).unwrap(),
        (3 * 66 + 2, 4 * 66 + 2)
    );

    let out_of_range = sample_run::<Architecture, B>(&run, 4, Some(Class(4)), 7, &all, &device)
        .unwrap_err()
        .to_string();
    assert!(
        out_of_range.contains("class 4") && out_of_range.contains("0 to 3"),
        "{out_of_range}"
    );
}

#[test]
fn a_condition_the_data_or_the_model_cannot_give_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let train = |config: &RunConfig<Architecture>, data: &vae_data::DataSplits, name: &str| {
        let run = RunDir::create(dir.path().join(name)).unwrap();
        train_run::<Architecture, B>(&run, config, data, &device, RunOptions::new("cpu"))
            .map(|_| run)
    };
    // Data without labels.
    let unlabelled = train(&conditional(4, 1), &splits(dir.path()), "unlabelled")
        .unwrap_err()
        .to_string();
    assert!(
        unlabelled.contains("model.condition") && unlabelled.contains("no class label"),
        "{unlabelled}"
    );
    // Labels 0..3 for a model of 3 classes.
    let too_few = train(&conditional(3, 1), &labelled_splits(dir.path()), "three")
        .unwrap_err()
        .to_string();
    assert!(
        too_few.contains("label 3") && too_few.contains("3 classes"),
        "{too_few}"
    );
    // Data without attributes, and attributes the data does not have.
    let no_attributes = train(&by_attributes(&["Right"], 1), &splits(dir.path()), "none")
        .unwrap_err()
        .to_string();
    assert!(
        no_attributes.contains("no attributes") && no_attributes.contains("list_attr_celeba.txt"),
        "{no_attributes}"
    );
    let unknown = train(
        &by_attributes(&["Right", "Smiling"], 1),
        &labelled_splits(dir.path()),
        "unknown",
    )
    .unwrap_err()
    .to_string();
    assert!(
        unknown.contains("'Smiling'") && unknown.contains("Bottom, Right"),
        "{unknown}"
    );
    // --class on an unconditional model.
    let plain = train(&config(1), &splits(dir.path()), "plain").unwrap();
    let refused = sample_run::<Architecture, B>(
        &plain,
        4,
        Some(Class(1)),
        7,
        &plain.path().join("x.png"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("class 1") && refused.contains("not conditional"),
        "{refused}"
    );
}

#[test]
fn an_attribute_conditional_run_draws_the_square_where_its_attributes_put_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled_splits(dir.path());
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    // The model's order (Right, Bottom) is not the data's (Bottom, Right): the batcher maps
    // names, not positions.
    let config = by_attributes(&["Right", "Bottom"], 60);
    let outcome =
        train_run::<Architecture, B>(&run, &config, &data, &device, RunOptions::new("cpu"))
            .unwrap();
    assert!(outcome.finished());
    let Architecture::Mlp(saved) = run.read_config::<Architecture>().unwrap().model else {
        panic!("mlp expected")
    };
    let names = vec!["Right".to_string(), "Bottom".to_string()];
    assert_eq!(saved.condition, Some(ConditionConfig::Attributes { names }));
    // samples.png is condition by sample: no attribute, Right alone, Bottom alone (3 rows).
    assert_eq!(
        image::image_dimensions(run.path().join("samples.png")).unwrap(),
        (8 * 66 + 2, 3 * 66 + 2)
    );
    evaluates_log_px_above_the_elbo(&run, &data, "attribute-conditional");

    // Each set of attributes draws the square where the data has it: class k of the squares
    // is Bottom = k mod 2, Right = ⌊k / 2⌋.
    for (on, class) in [
        (vec![], 0),
        (vec!["Bottom"], 1),
        (vec!["Right"], 2),
        (vec!["Bottom", "Right"], 3),
    ] {
        let png = run.path().join(format!("attributes-{class}.png"));
        let value = Attributes(on.iter().map(|a| a.to_string()).collect());
        sample_run::<Architecture, B>(&run, 4, Some(value), 7, &png, &device).unwrap();
        let (inside, outside) = brightness_in_and_out(&png, 2, class);
        assert!(
            inside > outside + 60.0,
            "attributes {on:?}: grey level {inside:.0} inside the square, {outside:.0} outside"
        );
    }
    let refused = |value| {
        sample_run::<Architecture, B>(&run, 4, Some(value), 7, &run.path().join("x.png"), &device)
            .unwrap_err()
            .to_string()
    };
    let unknown = refused(Attributes(vec!["Smiling".into()]));
    assert!(
        unknown.contains("'Smiling'") && unknown.contains("Right, Bottom"),
        "{unknown}"
    );
    let class = refused(Class(1));
    assert!(class.contains("not on a class"), "{class}");
}

#[test]
fn sample_draws_every_class_and_samples_png_the_first_sixteen() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path().join("run")).unwrap();
    let device = Default::default();
    // 20 classes (the squares use 4 of them): more rows than the run's picture shows.
    let outcome = train_run::<Architecture, B>(
        &run,
        &conditional(20, 1),
        &labelled_splits(dir.path()),
        &device,
        RunOptions::new("cpu"),
    )
    .unwrap();
    assert!(outcome.finished());
    assert_eq!(
        image::image_dimensions(run.path().join("samples.png")).unwrap(),
        (8 * 66 + 2, 16 * 66 + 2)
    );
    let all = run.path().join("all.png");
    sample_run::<Architecture, B>(&run, 2, None, 7, &all, &device).unwrap();
    assert_eq!(
        image::image_dimensions(&all).unwrap(),
        (2 * 66 + 2, 20 * 66 + 2)
    );
}
