//! Counters for `/metrics` (Prometheus text) and for `baton bench`.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Process-wide counters. Latency samples are kept (bounded) for benchmarks.
#[derive(Debug, Default)]
pub struct Metrics {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    checkpoints: AtomicU64,
    commit_groups: AtomicU64,
    takeovers: AtomicU64,
    postponements: AtomicU64,
    samples: Mutex<Samples>,
    /// Checkpoints per flow since the statistics last took them.
    checkpoints_by_flow: Mutex<std::collections::HashMap<String, i64>>,
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// One per checkpoint: from the flow's commit call to its durable answer.
    pub checkpoint_us: Vec<u64>,
    /// One per checkpoint after an attempt's first: the time from the last
    /// durable answer to this commit call (the flow's and host's own work).
    pub checkpoint_gap_us: Vec<u64>,
    /// One per attempt: instantiating the component.
    pub instantiate_us: Vec<u64>,
    /// Sizes of commit groups.
    pub group_sizes: Vec<u64>,
    /// One per commit group: the database statement alone.
    pub commit_us: Vec<u64>,
}

const MAX_SAMPLES: usize = 1_000_000;

impl Metrics {
    pub(crate) fn record_attempt(&self, instantiate: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.instantiate_us.len() < MAX_SAMPLES {
            samples.instantiate_us.push(instantiate.as_micros() as u64);
        }
    }

    pub(crate) fn record_outcome(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.succeeded
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_checkpoint(&self, flow: &str, latency: Duration, gap: Option<Duration>) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        let mut by_flow = self.checkpoints_by_flow.lock().expect("metrics lock");
        match by_flow.get_mut(flow) {
            Some(count) => *count += 1,
            None => {
                by_flow.insert(flow.to_owned(), 1);
            }
        }
        drop(by_flow);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.checkpoint_us.len() < MAX_SAMPLES {
            samples.checkpoint_us.push(latency.as_micros() as u64);
            samples
                .checkpoint_gap_us
                .extend(gap.map(|gap| gap.as_micros() as u64));
        }
    }

    /// The checkpoints per flow since the last call, for the statistics.
    pub(crate) fn take_checkpoints_by_flow(&self) -> Vec<(String, i64)> {
        self.checkpoints_by_flow
            .lock()
            .expect("metrics lock")
            .drain()
            .collect()
    }

    /// Gives back checkpoints [`Metrics::take_checkpoints_by_flow`] took
    /// that could not be written.
    pub(crate) fn restore_checkpoints_by_flow(&self, counts: Vec<(String, i64)>) {
        let mut by_flow = self.checkpoints_by_flow.lock().expect("metrics lock");
        for (flow, count) in counts {
            *by_flow.entry(flow).or_default() += count;
        }
    }

    /// Checkpoints committed by this process so far.
    pub(crate) fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    pub(crate) fn record_commit(&self, group: usize, latency: Duration) {
        self.commit_groups.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.group_sizes.len() < MAX_SAMPLES {
            samples.group_sizes.push(group as u64);
            samples.commit_us.push(latency.as_micros() as u64);
        }
    }

    pub(crate) fn record_takeover(&self) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_postponement(&self) {
        self.postponements.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the latency samples collected so far.
    pub fn take_samples(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().expect("metrics lock"))
    }

    /// Prometheus text exposition.
    pub fn render(&self, running: usize) -> String {
        let mut out = String::new();
        let counters = [
            ("baton_attempts_total", "Attempts started.", &self.attempts),
            (
                "baton_requests_succeeded_total",
                "Attempts that ended in success.",
                &self.succeeded,
            ),
            (
                "baton_attempts_failed_total",
                "Attempts that ended in a flow error or trap.",
                &self.failed,
            ),
            (
                "baton_checkpoints_total",
                "Checkpoints committed.",
                &self.checkpoints,
            ),
            (
                "baton_commit_groups_total",
                "Database transactions that committed checkpoints.",
                &self.commit_groups,
            ),
            (
                "baton_takeovers_total",
                "Dead servers taken over by this server.",
                &self.takeovers,
            ),
            (
                "baton_postponements_total",
                "Attempts postponed because the database or the storage folder was away.",
                &self.postponements,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP baton_executions Attempts executing now.\n# TYPE baton_executions gauge\nbaton_executions {running}"
        );
        out
    }
}
