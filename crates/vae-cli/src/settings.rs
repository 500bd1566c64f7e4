//! The configuration of a run, layered with the `config` crate:
//! built-in defaults ← `datasets/<name>.toml` ← `--config FILE` ← `VAE_*` environment variables
//! ← `--set key=value` ← explicit flags; the model's defaults come from the model
//! specification's preset for the dataset ([`ModelSpec::preset`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vae_core::ImageShape;
use vae_data::DataOptions;
use vae_train::{ModelSpec, RunConfig, TrainingConfig};

use crate::error::CliError;

/// The per-dataset defaults shipped in `datasets/` (data and training settings).
pub fn dataset_file(name: &str) -> Option<&'static str> {
    vae_data::dataset_defaults(name)
}

/// Higher layers of the configuration, in increasing precedence.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `VAE_*` environment variables (already read).
    pub env: BTreeMap<String, String>,
    /// `--set key=value`.
    pub set: Vec<String>,
    /// Explicit flags as (key, TOML value).
    pub flags: Vec<(String, String)>,
}

/// The `VAE_<SECTION>__<KEY>` variables of the environment. `VAE_DATA_DIR` (a location, not a
/// setting) and other variables without `__` are not configuration.
pub fn config_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("VAE_") && k.contains("__"))
        .collect()
}

fn to_json(
    source: impl config::Source + Send + Sync + 'static,
    what: &str,
) -> Result<Value, CliError> {
    config::Config::builder()
        .add_source(source)
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
        .map_err(|e| CliError::config(what, e))
}

fn toml_layer(text: &str, what: &str) -> Result<Value, CliError> {
    to_json(config::File::from_str(text, config::FileFormat::Toml), what)
}

/// `key=value` pairs as a TOML document; values that are not TOML are taken as strings.
fn assignments(pairs: &[(String, String)], what: &str) -> Result<Value, CliError> {
    let mut doc = String::new();
    for (key, value) in pairs {
        if key.is_empty()
            || !key.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        {
            return Err(CliError::config(
                what,
                format!("'{key}' is not a key (use section.key=value)"),
            ));
        }
        let is_toml = toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok();
        let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
        if !is_toml && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            // An integer TOML cannot hold: say so, rather than "expected an integer, found a
            // string".
            return Err(CliError::config(
                format!("configuration key `{key}`"),
                format!("{value} is too large (at most {})", i64::MAX),
            ));
        }
        let value = if is_toml {
            value.clone()
        } else {
            toml::Value::String(value.clone()).to_string()
        };
        doc.push_str(&format!("{key} = {value}\n"));
    }
    toml_layer(&doc, what)
}

/// Deep merge; a table whose `kind` differs from the one below replaces it whole (switching
/// `model.kind` from mlp to conv drops the MLP's keys instead of mixing them).
fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            let switches = matches!((b.get("kind"), t.get("kind")), (Some(x), Some(y)) if x != y);
            if switches {
                *b = t;
                return;
            }
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, top) => *slot = top,
    }
}

/// Key paths present in `given` but not in `known`.
fn unknown_keys(given: &Value, known: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(g) = given {
        for (k, v) in g {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match known.get(k) {
                None => out.push(path),
                Some(inner) => unknown_keys(v, inner, &path, out),
            }
        }
    }
}

fn check_known(given: &Value, known: &Value, prefix: &str) -> Result<(), CliError> {
    let mut unknown = Vec::new();
    unknown_keys(given, known, prefix, &mut unknown);
    match unknown.split_first() {
        None => Ok(()),
        Some((first, rest)) => Err(CliError::UnknownKey {
            key: first.clone(),
            others: rest.to_vec(),
        }),
    }
}

/// The first key path whose value in `given` has another JSON type than in `reference`.
fn type_mismatch(given: &Value, reference: &Value, prefix: &str) -> Option<String> {
    match (given, reference) {
        (Value::Object(g), Value::Object(r)) => g.iter().find_map(|(k, v)| {
            r.get(k)
                .and_then(|rv| type_mismatch(v, rv, &format!("{prefix}.{k}")))
        }),
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Array(_), Value::Array(_))
        | (Value::Null, Value::Null) => None,
        _ => Some(prefix.to_string()),
    }
}

/// Deserialises `value`, naming the key (`prefix.path`) of a value that does not fit.
fn deserialize<T: serde::de::DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, CliError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix.is_empty(), path.as_str()) {
            (true, _) => path.clone(),
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{path}"),
        };
        // Settings arrive here as JSON, where NaN and ±∞ become null.
        let message = match value_at(value, e.path()) {
            Some(Value::Null) => {
                "must be a finite number (NaN and infinity are not allowed)".to_string()
            }
            _ => e.into_inner().to_string(),
        };
        CliError::config(format!("configuration key `{key}`"), message)
    })
}

/// The value at a deserialisation error's path.
fn value_at<'a>(value: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(value, |v, segment| match segment {
        Segment::Map { key } => v.get(key),
        Segment::Seq { index } => v.get(*index),
        _ => None,
    })
}

/// The settings of a run other than its model, with the model layers still to apply.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Dataset name.
    pub dataset: String,
    /// Data options.
    pub data: DataOptions,
    /// Training settings.
    pub training: TrainingConfig,
    /// The model table as layered so far (`None`: nothing configured; the preset applies).
    model: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    dataset: String,
    data: DataOptions,
    training: TrainingConfig,
}

impl Settings {
    /// Resolves the layers on top of `base` (the built-in defaults and dataset file, or a run's
    /// saved `config.toml` when resuming).
    fn resolve(base: Value, overrides: &Overrides) -> Result<Self, CliError> {
        let mut merged = base;
        if let Some(path) = &overrides.file {
            let what = format!("--config {}", path.display());
            if !path.is_file() {
                return Err(CliError::config(what, "no such file"));
            }
            let layer = to_json(
                config::File::from(path.as_path()).format(config::FileFormat::Toml),
                &what,
            )?;
            merge(&mut merged, layer);
        }
        if !overrides.env.is_empty() {
            let env = config::Environment::with_prefix("VAE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides.env.clone().into_iter().collect()));
            merge(&mut merged, to_json(env, "VAE_* environment variables")?);
        }
        let set = overrides
            .set
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| CliError::config(format!("--set {kv}"), "expected key=value"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !set.is_empty() {
            merge(&mut merged, assignments(&set, "--set")?);
        }
        if !overrides.flags.is_empty() {
            merge(&mut merged, assignments(&overrides.flags, "flags")?);
        }

        let model = match &mut merged {
            Value::Object(map) => map.remove("model"),
            _ => None,
        };
        let plain: Plain = deserialize(&merged, "")?;
        check_known(
            &merged,
            &serde_json::to_value(&plain).expect("settings serialise"),
            "",
        )?;
        plain.training.validate()?;
        plain.data.validate()?;
        Ok(Self {
            dataset: plain.dataset,
            data: plain.data,
            training: plain.training,
            model,
        })
    }

    /// Built-in defaults ← `datasets/<name>.toml` ← overrides.
    pub fn for_dataset(dataset: &str, overrides: &Overrides) -> Result<Self, CliError> {
        let file = dataset_file(dataset).ok_or_else(|| vae_data::DataError::UnknownDataset {
            name: dataset.to_string(),
            known: vae_data::dataset_names(),
        })?;
        let mut base = serde_json::to_value(Plain {
            dataset: dataset.to_string(),
            data: DataOptions::default(),
            training: TrainingConfig::default(),
        })
        .expect("settings serialise");
        merge(
            &mut base,
            toml_layer(file, &format!("datasets/{dataset}.toml"))?,
        );
        Self::resolve(base, overrides)
    }

    /// A run's saved `config.toml` ← overrides (for resuming).
    pub fn for_run(run: &Path, overrides: &Overrides) -> Result<Self, CliError> {
        let path = run.join("config.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| CliError::File {
            path: path.clone(),
            message: format!("cannot read the run's configuration: {e}"),
        })?;
        Self::resolve(toml_layer(&text, &path.display().to_string())?, overrides)
    }

    /// The complete configuration for data of `shape`: the layered model table over the
    /// model specification's preset for the dataset.
    pub fn with_model<S: ModelSpec>(self, shape: ImageShape) -> Result<RunConfig<S>, CliError> {
        let preset = S::preset(&self.dataset, shape)
            .map(|p| serde_json::to_value(p).expect("model specifications serialise"));
        let preset_json = preset.clone();
        let table = match (preset, self.model) {
            (Some(mut base), Some(layer)) => {
                merge(&mut base, layer);
                base
            }
            (Some(base), None) => base,
            (None, Some(layer)) => layer,
            (None, None) => {
                return Err(CliError::NoModel {
                    dataset: self.dataset,
                    spec: std::any::type_name::<S>(),
                });
            }
        };
        let model: S = deserialize(&table, "model").map_err(|e| {
            // Inside an internally tagged enum serde reports no path; a value whose JSON type
            // differs from the preset's at the same key is then the likely culprit.
            match (
                &e,
                preset_json
                    .as_ref()
                    .and_then(|p| type_mismatch(&table, p, "model")),
            ) {
                (
                    CliError::Config {
                        source_name,
                        message,
                    },
                    Some(key),
                ) if source_name == "configuration key `model`" => {
                    CliError::config(format!("configuration key `{key}`"), message)
                }
                _ => e,
            }
        })?;
        check_known(
            &table,
            &serde_json::to_value(&model).expect("model specifications serialise"),
            "model",
        )?;
        model.validate(shape).map_err(vae_train::TrainError::from)?;
        Ok(RunConfig {
            dataset: self.dataset,
            data: self.data,
            model,
            training: self.training,
        })
    }
}

#[cfg(test)]
mod tests {
    use vae_models::Architecture;

    use super::*;

    fn overrides(set: &[&str]) -> Overrides {
        Overrides {
            set: set.iter().map(|s| s.to_string()).collect(),
            ..Overrides::default()
        }
    }

    const GREY_28: ImageShape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };

    #[test]
    fn dataset_defaults_match_pytorch_examples() {
        let c = Settings::for_dataset("fashion-mnist", &Overrides::default())
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap();
        let Architecture::Mlp(mlp) = &c.model else {
            panic!("mlp expected")
        };
        assert_eq!(
            (mlp.input_dim, mlp.hidden.clone(), mlp.latent_dim),
            (784, vec![400], 20)
        );
        assert_eq!(
            (
                c.training.batch_size,
                c.training.learning_rate,
                c.training.epochs
            ),
            (128, 1e-3, 10)
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let mut o = overrides(&[
            "training.epochs=7",
            "model.latent_dim=2",
            "training.objective.beta=0.5",
        ]);
        o.env.insert("VAE_TRAINING__EPOCHS".into(), "5".into());
        o.env.insert("VAE_TRAINING__SEED".into(), "9".into());
        o.flags.push(("training.epochs".into(), "3".into()));
        let c = Settings::for_dataset("mnist", &o)
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap();
        assert_eq!(c.training.epochs, 3, "flags beat --set beat env");
        assert_eq!(c.training.seed, 9, "env beats the dataset file");
        assert_eq!(c.model.latent_dim(), 2);
        assert_eq!(c.training.objective.beta, 0.5);
    }

    #[test]
    fn switching_model_kind_replaces_the_model_table() {
        let o = overrides(&[
            "model.kind=conv",
            "model.image={ channels = 1, height = 32, width = 32 }",
            "model.channels=[8, 16]",
            "model.latent_dim=4",
            "model.likelihood={ kind = \"bernoulli\" }",
        ]);
        let c = Settings::for_dataset("mnist", &o)
            .unwrap()
            .with_model::<Architecture>(ImageShape::new(1, 32, 32))
            .unwrap();
        assert!(matches!(c.model, Architecture::Conv(_)));
    }

    #[test]
    fn the_training_objective_is_chosen_with_set() {
        let o = overrides(&[
            "training.importance_bound.kind=miwae",
            "training.importance_bound.outer=2",
            "training.importance_bound.inner=4",
        ]);
        let c = Settings::for_dataset("fashion-mnist", &o).unwrap();
        assert_eq!(
            c.training.importance_bound,
            Some(vae_core::ImportanceBound::Miwae { outer: 2, inner: 4 })
        );
        let o = overrides(&["training.total_correlation.beta=6"]);
        let c = Settings::for_dataset("fashion-mnist", &o).unwrap();
        assert_eq!(
            c.training.total_correlation,
            Some(vae_core::BetaTcObjective::new(6.0))
        );
        // Both at once is refused, naming the key.
        let o = overrides(&[
            "training.total_correlation.beta=6",
            "training.importance_bound.kind=iwae",
            "training.importance_bound.samples=5",
        ]);
        let err = Settings::for_dataset("fashion-mnist", &o)
            .unwrap_err()
            .to_string();
        assert!(err.contains("training.total_correlation"), "{err}");
    }

    #[test]
    fn the_prior_is_chosen_with_set() {
        let o = overrides(&["model.prior.kind=vamp", "model.prior.pseudo_inputs=50"]);
        let c = Settings::for_dataset("fashion-mnist", &o)
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap();
        let Architecture::Mlp(mlp) = &c.model else {
            panic!("mlp expected")
        };
        assert_eq!(
            mlp.prior,
            Some(vae_models::PriorConfig::Vamp { pseudo_inputs: 50 })
        );
        let o = overrides(&["model.prior.kind=mixture"]);
        let err = Settings::for_dataset("fashion-mnist", &o)
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.prior") && err.contains("components"),
            "{err}"
        );
        let o = overrides(&["model.prior.kind=mixture", "model.prior.components=0"]);
        let err = Settings::for_dataset("fashion-mnist", &o)
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.prior.components"), "{err}");
    }

    #[test]
    fn the_posterior_is_chosen_with_set() {
        let with = |settings: &[&str]| {
            Settings::for_dataset("fashion-mnist", &overrides(settings))
                .unwrap()
                .with_model::<Architecture>(GREY_28)
        };
        let c = with(&[
            "model.posterior.kind=iaf",
            "model.posterior.steps=2",
            "model.posterior.hidden=320",
        ])
        .unwrap();
        let Architecture::Mlp(mlp) = &c.model else {
            panic!("mlp expected")
        };
        assert_eq!(
            mlp.posterior,
            Some(vae_models::PosteriorConfig::Iaf {
                steps: 2,
                hidden: 320
            })
        );
        let err = with(&["model.posterior.kind=iaf"]).unwrap_err().to_string();
        assert!(
            err.contains("model.posterior") && err.contains("steps"),
            "{err}"
        );
        let err = with(&[
            "model.posterior.kind=iaf",
            "model.posterior.steps=0",
            "model.posterior.hidden=8",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.posterior.steps"), "{err}");
    }

    #[test]
    fn the_condition_is_chosen_with_set() {
        let with = |settings: &[&str]| {
            Settings::for_dataset("fashion-mnist", &overrides(settings))
                .unwrap()
                .with_model::<Architecture>(GREY_28)
        };
        let c = with(&["model.condition.kind=class", "model.condition.classes=10"]).unwrap();
        let Architecture::Mlp(mlp) = &c.model else {
            panic!("mlp expected")
        };
        assert_eq!(
            mlp.condition,
            Some(vae_models::ConditionConfig::Class { classes: 10 })
        );
        let err = with(&["model.condition.kind=class", "model.condition.classes=1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.condition.classes"), "{err}");
        let err = with(&["model.condition.kind=class"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.condition") && err.contains("classes"),
            "{err}"
        );
        let c = with(&[
            "model.condition.kind=attributes",
            "model.condition.names=[\"Smiling\", \"Male\"]",
        ])
        .unwrap();
        let Architecture::Mlp(mlp) = &c.model else {
            panic!("mlp expected")
        };
        assert_eq!(
            mlp.condition,
            Some(vae_models::ConditionConfig::Attributes {
                names: vec!["Smiling".into(), "Male".into()]
            })
        );
        let err = with(&[
            "model.condition.kind=attributes",
            "model.condition.names=[]",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.condition.names"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::for_dataset("mnist", &overrides(&["training.epohcs=3"])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("training.epohcs") && msg.contains("unknown"),
            "{msg}"
        );
        // Keys inside burn-derived configs are caught by the key comparison instead.
        let err = Settings::for_dataset("mnist", &overrides(&["training.objective.betta=2"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown configuration key `training.objective.betta`"),
            "{msg}"
        );
        let err = Settings::for_dataset("mnist", &overrides(&["model.latnet_dim=2"]))
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap_err();
        assert!(err.to_string().contains("`model.latnet_dim`"), "{err}");
        let err = Settings::for_dataset("mnist", &overrides(&["model.latent_dim=two"]))
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap_err();
        assert!(err.to_string().contains("model.latent_dim"), "{err}");
        let err =
            Settings::for_dataset("mnist", &overrides(&["training.batch_size=big"])).unwrap_err();
        assert!(err.to_string().contains("training.batch_size"), "{err}");
        let err =
            Settings::for_dataset("mnist", &overrides(&["training.learning_rate=-1"])).unwrap_err();
        assert!(err.to_string().contains("training.learning_rate"), "{err}");
        let err = Settings::for_dataset("mnist", &overrides(&["nonsense"])).unwrap_err();
        assert!(err.to_string().contains("expected key=value"), "{err}");
        let err = Settings::for_dataset("cifar", &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown dataset 'cifar'"), "{err}");
    }

    #[test]
    fn a_model_that_does_not_fit_the_data_is_refused_by_key() {
        let err = Settings::for_dataset("mnist", &overrides(&["model.input_dim=100"]))
            .unwrap()
            .with_model::<Architecture>(GREY_28)
            .unwrap_err();
        assert!(err.to_string().contains("784"), "{err}");
    }

    #[test]
    fn the_written_config_reads_back_identically() {
        let c = Settings::for_dataset("celeba", &overrides(&["training.seed=4"]))
            .unwrap()
            .with_model::<Architecture>(ImageShape::new(3, 64, 64))
            .unwrap();
        let text = c.to_toml().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), &text).unwrap();
        let back = Settings::for_run(dir.path(), &Overrides::default())
            .unwrap()
            .with_model::<Architecture>(ImageShape::new(3, 64, 64))
            .unwrap();
        assert_eq!(back.to_toml().unwrap(), text);
    }
}
