//! Test-set evaluation: the ELBO terms, bits per dimension, and importance-sampled log p(x).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use vae_core::{ElboSummary, ImportanceSampling, bits_per_dim, bits_per_dim_8bit};
use vae_data::{DataError, ImageBatch, ImageBatcher, ImageItem, PixelMode};
use vae_models::{Conditioned, Decoder, Encoder, Likelihood, Vae};

use crate::condition::{check_splits, condition_source};
use crate::error::TrainError;

/// How bits per dimension are computed from nats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BitsPerDim {
    /// nats / (D ln 2): for a discrete likelihood of discrete data (Bernoulli on binarised
    /// pixels).
    Discrete,
    /// nats / (D ln 2) + 8: for a density of 8-bit pixels scaled to [0, 1] *and dequantised*
    /// (uniform noise added); runs of older versions also used it without dequantisation.
    Density8Bit,
}

impl BitsPerDim {
    /// The convention under which −ELBO in bits per dimension is a code length of the test
    /// data, or why there is none. Only a Bernoulli likelihood on binarised pixels qualifies
    /// here: on continuous pixels a Bernoulli "likelihood" is not a probability of the data,
    /// and a density of pixels that were not dequantised is not one either (it can grow
    /// without bound at the 256 pixel values).
    pub fn for_data(likelihood: Likelihood, eval_pixels: &PixelMode) -> Result<Self, String> {
        match (likelihood, eval_pixels) {
            (Likelihood::Bernoulli, PixelMode::Continuous) => Err(
                "not reported: a Bernoulli likelihood of continuous pixels is not a probability of the data; binarise the test pixels (data.eval_pixels) for bits per dimension".into(),
            ),
            (Likelihood::Bernoulli, _) => Ok(Self::Discrete),
            (other, _) => Err(format!(
                "not reported: the {other:?} likelihood is a density of pixels that are not dequantised, so its bits per dimension are not a code length"
            )),
        }
    }

    /// Converts nats per example over `dims` dimensions.
    pub fn convert(self, nats: f64, dims: usize) -> f64 {
        match self {
            Self::Discrete => bits_per_dim(nats, dims),
            Self::Density8Bit => bits_per_dim_8bit(nats, dims),
        }
    }
}

/// Test-set means, nats per example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    /// The test-set means of −ELBO, E_q[log p(x|z)] and KL(q ‖ p), nats per example.
    #[serde(flatten)]
    pub elbo: ElboSummary,
    /// −ELBO in bits per dimension (see `bits_per_dim_convention`); absent when the model's
    /// likelihood is not one whose convention is known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bits_per_dim: Option<f64>,
    /// How `bits_per_dim` was computed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bits_per_dim_convention: Option<BitsPerDim>,
    /// Why `bits_per_dim` is absent, when it is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bits_per_dim_note: Option<String>,
    /// The epoch of the weights evaluated (absent in runs of older versions).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epoch: Option<usize>,
    /// Examples evaluated.
    pub examples: usize,
    /// Importance-sampled log p(x), nats per example (from `eval`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_log_px_nats: Option<f64>,
    /// K, the importance samples per example behind `is_log_px_nats`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub importance_samples: Option<usize>,
    /// Test examples behind `is_log_px_nats` (the first ones, when `eval --limit` was used).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_examples: Option<usize>,
}

/// The batcher for `vae` on `data` (the `split`): for a conditional model, one that makes each
/// example's condition ([`condition_source`]), after checking every example has what it needs.
pub fn batcher_for<B: Backend, E: Encoder<B>, D: Decoder<B>>(
    vae: &Vae<B, E, D>,
    data: &dyn Dataset<ImageItem>,
    split: &'static str,
) -> Result<ImageBatcher, TrainError> {
    match vae.condition() {
        None => Ok(ImageBatcher::new()),
        Some(condition) => {
            let source = condition_source(condition);
            check_splits(&source, &[(split, data)])?;
            Ok(ImageBatcher::conditioned(source))
        }
    }
}

/// Batches of a dataset, in order, on `device`, stacked by `batcher`.
pub fn batches<'a, B: Backend>(
    data: &'a dyn Dataset<ImageItem>,
    batcher: ImageBatcher,
    batch_size: usize,
    device: &'a B::Device,
) -> impl Iterator<Item = Result<ImageBatch<B>, TrainError>> + 'a {
    (0..data.len())
        .step_by(batch_size.max(1))
        .map(move |start| {
            let end = (start + batch_size).min(data.len());
            let items = (start..end)
                .map(|i| {
                    data.get(i)
                        .ok_or(TrainError::Data(DataError::Unreadable { index: i }))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Batcher::<B, ImageItem, ImageBatch<B>>::batch(
                &batcher, items, device,
            ))
        })
}

/// The ELBO terms over a whole dataset (single latent sample per example, analytic KL), with
/// bits per dimension by `bits` when given.
pub fn evaluate<B: Backend, E: Encoder<B>, D: Decoder<B>>(
    vae: &Vae<B, E, D>,
    data: &dyn Dataset<ImageItem>,
    batch_size: usize,
    bits: Option<BitsPerDim>,
    device: &B::Device,
) -> Result<TestMetrics, TrainError> {
    let mut parts = Vec::new();
    let batcher = batcher_for(vae, data, "test")?;
    for batch in batches::<B>(data, batcher, batch_size, device) {
        let batch = batch?;
        let n = batch.images.dims()[0];
        let x = Conditioned::new(batch.images, batch.conditions);
        parts.push((vae.elbo(x).summary(), n));
    }
    let summary =
        ElboSummary::weighted_mean(&parts).ok_or(TrainError::EmptySplit { split: "test" })?;
    Ok(TestMetrics {
        elbo: summary,
        bits_per_dim: bits.map(|b| b.convert(summary.neg_elbo_nats, vae.data_dim())),
        bits_per_dim_convention: bits,
        bits_per_dim_note: None,
        epoch: None,
        examples: parts.iter().map(|(_, n)| n).sum(),
        is_log_px_nats: None,
        importance_samples: None,
        is_examples: None,
    })
}

/// Mean importance-sampled log p(x) over a dataset, nats per example.
pub fn importance_sampled_log_px<B: Backend, E: Encoder<B>, D: Decoder<B>>(
    vae: &Vae<B, E, D>,
    data: &dyn Dataset<ImageItem>,
    batch_size: usize,
    sampling: &ImportanceSampling,
    device: &B::Device,
) -> Result<f64, TrainError> {
    let (mut total, mut count) = (0.0, 0usize);
    let batcher = batcher_for(vae, data, "test")?;
    for batch in batches::<B>(data, batcher, batch_size, device) {
        let batch = batch?;
        let n = batch.images.dims()[0];
        let values = vae
            .log_px(Conditioned::new(batch.images, batch.conditions), sampling)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("f64 after convert");
        total += values.iter().sum::<f64>();
        count += n;
    }
    Ok(total / count.max(1) as f64)
}

/// The first `len` examples of a dataset (quick evaluations).
pub struct Prefix {
    inner: std::sync::Arc<dyn Dataset<ImageItem>>,
    len: usize,
}

impl Prefix {
    /// The first `len` examples of `inner` (all of them if it is shorter).
    pub fn new(inner: std::sync::Arc<dyn Dataset<ImageItem>>, len: usize) -> Self {
        let len = len.min(inner.len());
        Self { inner, len }
    }
}

impl Dataset<ImageItem> for Prefix {
    fn get(&self, index: usize) -> Option<ImageItem> {
        (index < self.len).then(|| self.inner.get(index)).flatten()
    }

    fn len(&self) -> usize {
        self.len
    }
}
