//! Work-around for burn-train 0.21's metric log after a resume.

use std::collections::HashMap;

use burn::train::logger::{FileMetricLogger, MetricLogger};
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, NumericEntry};

/// burn-train 0.21's `LogEventStore` restarts its epoch counter at 1 after `.checkpoint(k)`, so
/// the first resumed epoch would be logged into `epoch-1/` (overwriting it) and early stopping
/// could not find epoch k+1. This logger writes under the real epoch number.
pub struct ResumeAwareLogger {
    inner: FileMetricLogger,
    first_epoch: usize,
    next: HashMap<Split, usize>,
}

impl ResumeAwareLogger {
    /// Logs into `directory`, starting at `first_epoch`.
    pub fn new(directory: &std::path::Path, first_epoch: usize) -> Self {
        Self {
            inner: FileMetricLogger::new(directory),
            first_epoch,
            next: HashMap::new(),
        }
    }
}

impl MetricLogger for ResumeAwareLogger {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        let epoch = self.next.get(split).copied().unwrap_or(self.first_epoch);
        self.inner.log(update, epoch, split)
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        self.inner.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.inner.log_metric_definition(definition)
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        self.next
            .insert(summary.split.clone(), summary.epoch_number + 1);
        self.inner.log_epoch_summary(summary)
    }
}
