//! burn-train metrics for the ELBO terms, named with their units and signs.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::Tensor;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use crate::step::ElboTerms;

/// Which term a [`TermMetric`] reports.
pub trait Term: Clone + Send + Sync + 'static {
    /// Metric name (also the key in `metrics.json`).
    const NAME: &'static str;
    /// Whether larger is better.
    const HIGHER_IS_BETTER: bool;
    /// The per-example values, `[N]`, from the batch terms.
    fn values(terms: &ElboTerms<Flex>) -> Tensor<Flex, 1>;
}

/// −ELBO = KL − log-likelihood, nats per example: the loss, an upper bound on −log p(x).
#[derive(Debug, Clone, Copy)]
pub struct NegElbo;
/// E_q[log p(x|z)], nats per example: the reconstruction log-likelihood.
#[derive(Debug, Clone, Copy)]
pub struct LogLikelihood;
/// KL(q(z|x) ‖ p(z)), nats per example.
#[derive(Debug, Clone, Copy)]
pub struct Kl;

impl Term for NegElbo {
    const NAME: &'static str = "neg_elbo_nats";
    const HIGHER_IS_BETTER: bool = false;
    fn values(terms: &ElboTerms<Flex>) -> Tensor<Flex, 1> {
        terms.kl.clone() - terms.log_likelihood.clone()
    }
}

impl Term for LogLikelihood {
    const NAME: &'static str = "log_likelihood_nats";
    const HIGHER_IS_BETTER: bool = true;
    fn values(terms: &ElboTerms<Flex>) -> Tensor<Flex, 1> {
        terms.log_likelihood.clone()
    }
}

impl Term for Kl {
    const NAME: &'static str = "kl_nats";
    const HIGHER_IS_BETTER: bool = false;
    fn values(terms: &ElboTerms<Flex>) -> Tensor<Flex, 1> {
        terms.kl.clone()
    }
}

/// The input of a [`TermMetric`]: the batch terms, tagged so each metric has its own type.
pub struct TermInput<T> {
    terms: ElboTerms<Flex>,
    _term: PhantomData<T>,
}

impl<T: Term> Adaptor<TermInput<T>> for ElboTerms<Flex> {
    fn adapt(&self) -> TermInput<T> {
        TermInput {
            terms: self.clone(),
            _term: PhantomData,
        }
    }
}

/// Batch-size-weighted mean of one ELBO term.
#[derive(Clone)]
pub struct TermMetric<T: Term> {
    name: MetricName,
    state: NumericMetricState,
    _term: PhantomData<T>,
}

impl<T: Term> Default for TermMetric<T> {
    fn default() -> Self {
        Self {
            name: Arc::new(T::NAME.to_string()),
            state: NumericMetricState::default(),
            _term: PhantomData,
        }
    }
}

impl<T: Term> Metric for TermMetric<T> {
    type Input = TermInput<T>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("nats".into()),
            higher_is_better: T::HIGHER_IS_BETTER,
        }
        .into()
    }

    fn update(&mut self, item: &TermInput<T>, _metadata: &MetricMetadata) -> SerializedEntry {
        let values = T::values(&item.terms);
        let [batch] = values.dims();
        let mean = values.mean().into_scalar();
        self.state.update(
            mean as f64,
            batch,
            FormatOptions::new(self.name()).precision(3),
        )
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl<T: Term> Numeric for TermMetric<T> {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}
