//! burn-train metrics for the ELBO terms, named with their units and signs.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use crate::step::ElboSums;

/// Which term a [`TermMetric`] reports.
pub trait Term: Clone + Send + Sync + 'static {
    /// Metric name (also the key in `metrics.json`).
    const NAME: &'static str;
    /// Whether larger is better.
    const HIGHER_IS_BETTER: bool;
    /// The sum of the term over the examples of `sums`, nats.
    fn sum(sums: &ElboSums) -> f64;
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
    fn sum(sums: &ElboSums) -> f64 {
        sums.kl_sum - sums.log_likelihood_sum
    }
}

impl Term for LogLikelihood {
    const NAME: &'static str = "log_likelihood_nats";
    const HIGHER_IS_BETTER: bool = true;
    fn sum(sums: &ElboSums) -> f64 {
        sums.log_likelihood_sum
    }
}

impl Term for Kl {
    const NAME: &'static str = "kl_nats";
    const HIGHER_IS_BETTER: bool = false;
    fn sum(sums: &ElboSums) -> f64 {
        sums.kl_sum
    }
}

/// The input of a [`TermMetric`]: the sums read back, tagged so each metric has its own type.
pub struct TermInput<T> {
    sums: ElboSums,
    _term: PhantomData<T>,
}

impl<T: Term> Adaptor<TermInput<T>> for ElboSums {
    fn adapt(&self) -> TermInput<T> {
        TermInput {
            sums: *self,
            _term: PhantomData,
        }
    }
}

/// Example-weighted mean of one ELBO term (each update carries the sums of a window of steps).
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
        let examples = item.sums.examples.max(1);
        let mean = T::sum(&item.sums) / examples as f64;
        self.state
            .update(mean, examples, FormatOptions::new(self.name()).precision(3))
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
