//! Progress display and per-epoch history: a live line in a terminal, one line per epoch and
//! split otherwise (CI logs), and the epoch means that `metrics.json` and `curves.png` use.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{Interrupter, LearnerSummary};
use serde::{Deserialize, Serialize};
use vae_core::ElboSummary;

use crate::strategy::NonFinite;

/// Epoch means of the ELBO terms for one split, nats per example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number (from 1).
    pub epoch: usize,
    /// The epoch means of −ELBO, E_q[log p(x|z)] and KL(q ‖ p), nats per example.
    #[serde(flatten)]
    pub elbo: ElboSummary,
    /// Examples seen.
    pub examples: usize,
    /// Wall time of the split's pass, seconds.
    pub seconds: f64,
    /// The pass was interrupted (a stop or a NaN) before the end of the split: the means
    /// are over the `examples` it reached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Train and validation epoch metrics of a run, in epoch order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Training epochs.
    pub train: Vec<EpochMetrics>,
    /// Validation epochs.
    pub valid: Vec<EpochMetrics>,
}

/// Shared between the training loop, the renderer and a Ctrl-C handler: why a run stops.
pub struct RunControl {
    interrupter: Interrupter,
    non_finite: Mutex<Option<NonFinite>>,
    user_stop: AtomicBool,
}

impl RunControl {
    /// A control that stops training through `interrupter`.
    pub fn new(interrupter: Interrupter) -> Arc<Self> {
        Arc::new(Self {
            interrupter,
            non_finite: Mutex::new(None),
            user_stop: AtomicBool::new(false),
        })
    }

    /// Asks the run to stop after the current step and save a checkpoint (Ctrl-C).
    pub fn request_stop(&self) {
        self.user_stop.store(true, Ordering::SeqCst);
        self.interrupter.stop(Some("stop requested (Ctrl-C)"));
    }

    /// Whether a user stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.user_stop.load(Ordering::SeqCst)
    }

    /// Records a NaN / ∞ and stops the run (the first report is kept).
    pub fn report_non_finite(&self, report: NonFinite) {
        if let Ok(mut slot) = self.non_finite.lock()
            && slot.is_none()
        {
            *slot = Some(report);
            self.interrupter.stop(Some("non-finite loss"));
        }
    }

    /// The NaN / ∞ report, if any.
    pub fn non_finite(&self) -> Option<NonFinite> {
        self.non_finite.lock().ok().and_then(|s| s.clone())
    }

    /// The interrupter.
    pub fn interrupter(&self) -> &Interrupter {
        &self.interrupter
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Split {
    Train,
    Valid,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Valid => "valid",
        }
    }
}

/// The renderer given to burn-train.
pub struct EpochRenderer {
    names: HashMap<MetricId, String>,
    split: Option<Split>,
    sums: BTreeMap<String, (f64, usize)>,
    epoch: Progress,
    progress: Option<Progress>,
    started: Instant,
    last_draw: Instant,
    live: bool,
    history: Arc<Mutex<History>>,
    persist: Option<std::path::PathBuf>,
    control: Arc<RunControl>,
    /// A non-finite metric value seen in `record`, reported once the item's epoch and
    /// progress are known (burn-train sends an item's metrics before its progress).
    pending_non_finite: Option<(String, f64)>,
    /// The last item's metric values, added to `sums` once its progress shows its epoch
    /// (without a validation split, consecutive training epochs are told apart only so).
    staged: Vec<(String, f64, usize)>,
}

impl EpochRenderer {
    /// A renderer recording into `history` (and, with `persist`, rewriting that JSON file after
    /// every epoch so a crash keeps the curves); live progress when stderr is a terminal.
    pub fn new(
        history: Arc<Mutex<History>>,
        persist: Option<std::path::PathBuf>,
        control: Arc<RunControl>,
    ) -> Self {
        Self {
            names: HashMap::new(),
            split: None,
            sums: BTreeMap::new(),
            epoch: Progress {
                items_processed: 0,
                items_total: 0,
            },
            progress: None,
            started: Instant::now(),
            last_draw: Instant::now(),
            live: std::io::stderr().is_terminal(),
            history,
            persist,
            control,
            pending_non_finite: None,
            staged: Vec::new(),
        }
    }

    fn commit(&mut self) {
        for (name, v, n) in self.staged.drain(..) {
            let slot = self.sums.entry(name).or_insert((0.0, 0));
            slot.0 += v * n as f64;
            slot.1 += n;
        }
    }

    fn enter(&mut self, split: Split) {
        if self.split != Some(split) {
            self.flush();
            self.split = Some(split);
            self.started = Instant::now();
        }
    }

    fn record(&mut self, state: MetricState) {
        let MetricState::Numeric(entry, value) = state else {
            return;
        };
        let (v, n) = match value {
            NumericEntry::Value(v) => (v, 1),
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => (aggregated_value, count),
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        if !v.is_finite() && self.pending_non_finite.is_none() {
            self.pending_non_finite = Some((name.clone(), v));
        }
        self.staged.push((name, v, n));
    }

    fn mean(&self, name: &str) -> (f64, usize) {
        self.sums
            .get(name)
            .map_or((f64::NAN, 0), |(s, n)| (s / (*n).max(1) as f64, *n))
    }

    fn flush(&mut self) {
        self.report_non_finite();
        let Some(split) = self.split.take() else {
            return;
        };
        if self.sums.is_empty() {
            return;
        }
        let (neg_elbo_nats, examples) = self.mean("neg_elbo_nats");
        let metrics = EpochMetrics {
            epoch: self.epoch.items_processed,
            elbo: ElboSummary {
                neg_elbo_nats,
                log_likelihood_nats: self.mean("log_likelihood_nats").0,
                kl_nats: self.mean("kl_nats").0,
            },
            examples,
            seconds: self.started.elapsed().as_secs_f64(),
            partial: self
                .progress
                .as_ref()
                .is_some_and(|p| p.items_processed < p.items_total),
        };
        let rate = examples as f64 / metrics.seconds.max(1e-9);
        if self.live {
            eprint!("\r\x1b[2K");
        }
        println!(
            "epoch {}/{} {:<5} neg_elbo_nats={:.3} log_likelihood_nats={:.3} kl_nats={:.3} ({} examples, {:.0}/s)",
            metrics.epoch,
            self.epoch.items_total,
            split.name(),
            metrics.elbo.neg_elbo_nats,
            metrics.elbo.log_likelihood_nats,
            metrics.elbo.kl_nats,
            examples,
            rate
        );
        if let Ok(mut history) = self.history.lock() {
            match split {
                Split::Train => history.train.push(metrics),
                Split::Valid => history.valid.push(metrics),
            }
            if let Some(path) = &self.persist {
                let json = serde_json::to_vec_pretty(&*history).expect("history serialises");
                if let Err(e) = crate::checkpoint::write_atomically(path, &json) {
                    eprintln!("warning: {e}");
                }
            }
        }
        self.sums.clear();
    }

    /// Reports a pending NaN / ∞ with the epoch and progress known so far.
    fn report_non_finite(&mut self) {
        if let Some((metric, value)) = self.pending_non_finite.take() {
            self.control.report_non_finite(NonFinite {
                metric,
                value,
                split: self.split.map_or("train", Split::name),
                epoch: self.epoch.items_processed.max(1),
                examples: self.progress.as_ref().map_or(0, |p| p.items_processed),
            });
        }
    }

    fn draw(&mut self, item: TrainingProgress) {
        if item.global_progress.items_processed != self.epoch.items_processed
            && !self.sums.is_empty()
        {
            // A new epoch of the same split: the previous one is complete.
            let (split, pending) = (self.split, self.pending_non_finite.take());
            self.flush();
            (self.split, self.pending_non_finite) = (split, pending);
            self.started = Instant::now();
        }
        self.commit();
        self.epoch = item.global_progress;
        self.progress = item.progress;
        self.report_non_finite();
        if !self.live || self.last_draw.elapsed().as_millis() < 100 {
            return;
        }
        self.last_draw = Instant::now();
        let (done, total) = self
            .progress
            .as_ref()
            .map_or((0, 0), |p| (p.items_processed, p.items_total));
        let width = 24;
        let filled = (done * width).checked_div(total).unwrap_or(0).min(width);
        let (neg_elbo, _) = self.mean("neg_elbo_nats");
        eprint!(
            "\r\x1b[2Kepoch {}/{} {:<5} [{}{}] {done}/{total} neg_elbo_nats={neg_elbo:.3}",
            self.epoch.items_processed,
            self.epoch.items_total,
            self.split.map_or("", Split::name),
            "#".repeat(filled),
            ".".repeat(width - filled),
        );
        let _ = std::io::stderr().flush();
    }
}

impl MetricsRendererTraining for EpochRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.enter(Split::Train);
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.enter(Split::Valid);
        self.record(state);
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.draw(item);
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.draw(item);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.commit();
        self.flush();
        Ok(())
    }
}

impl MetricsRendererEvaluation for EpochRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn render_test(&mut self, _item: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for EpochRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
