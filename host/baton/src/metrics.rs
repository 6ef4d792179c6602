//! What `/metrics` exposes (Prometheus text, through the `metrics` crate and
//! its Prometheus exporter) and the latency samples `baton bench` reads.
//!
//! Labels are bounded: a flow name (bounded by deploys), a status, a server
//! name (bounded by the cluster); never a request id. The recorder is this
//! server's own, not the process-global one, so two servers in one process
//! (the benchmarks) keep apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton_core::store::{Connections, Outcome};
use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Latency buckets, seconds: 100 µs to a minute.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// End-to-end buckets, seconds: a millisecond to a day (requests sleep).
const REQUEST_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0, 86_400.0,
];
/// Checkpoints per database commit.
const GROUP_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Every metric: name, help. The render describes them all, so even one
/// not yet recorded says what it is.
const DESCRIBED: &[(&str, &str)] = &[
    (
        "baton_build_info",
        "The build: Baton's version and wasmtime's (always 1).",
    ),
    ("baton_attempts_total", "Attempts started, by flow."),
    (
        "baton_requests_finished_total",
        "Requests this server ended, by flow and status (succeeded, failed).",
    ),
    (
        "baton_retries_total",
        "Attempts that failed and were scheduled to run again, by flow.",
    ),
    (
        "baton_postponements_total",
        "Attempts postponed because the database or the storage folder was away, by flow.",
    ),
    (
        "baton_nondeterminism_errors_total",
        "Attempts stopped because the flow asked for another checkpoint than its journal recorded, by flow.",
    ),
    ("baton_checkpoints_total", "Checkpoints committed, by flow."),
    (
        "baton_takeovers_total",
        "Dead servers taken over by this server.",
    ),
    (
        "baton_handovers_total",
        "Requests this server handed to the cluster when it stopped.",
    ),
    (
        "baton_checkpoint_commit_seconds",
        "From a flow's checkpoint call to its durable answer, by flow.",
    ),
    (
        "baton_commit_seconds",
        "One database transaction that commits a group of checkpoints.",
    ),
    (
        "baton_commit_group_size",
        "Checkpoints committed by one database transaction.",
    ),
    (
        "baton_attempt_duration_seconds",
        "One attempt, from claim to its end, by flow.",
    ),
    (
        "baton_request_duration_seconds",
        "A request from its creation to the end this server wrote, by flow and status.",
    ),
    (
        "baton_guest_http_duration_seconds",
        "A flow's HTTP call, from sending to the whole answer, by flow.",
    ),
    (
        "baton_takeover_duration_seconds",
        "Taking over one dead server's requests.",
    ),
    ("baton_executions", "Attempts executing now."),
    (
        "baton_server_heartbeat_age_seconds",
        "Time since each server's last heartbeat, on the database's clock, as this server sees it.",
    ),
    (
        "baton_database_connections",
        "The database pool's connections, by state (in_use, idle).",
    ),
];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// This server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    checkpoints: AtomicU64,
    samples: Mutex<Samples>,
    /// Checkpoints per flow since the statistics last took them.
    checkpoints_by_flow: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
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

/// What the render reads from outside the metrics at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Attempts executing now.
    pub running: usize,
    /// Each server's name and the age of its last heartbeat.
    pub heartbeats: Vec<(String, Duration)>,
    /// The database pool.
    pub connections: Option<Connections>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(label, value)| Label::new(*label, (*value).to_owned()))
            .collect::<Vec<_>>(),
    )
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("baton_request_duration_seconds".into()),
                    REQUEST_SECONDS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("baton_commit_group_size".into()),
                    GROUP_SIZES,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        for (name, help) in DESCRIBED {
            let name = metrics::KeyName::from_const_str(name);
            recorder.describe_counter(name, None, metrics::SharedString::const_str(help));
        }
        let metrics = Self {
            handle: recorder.handle(),
            recorder,
            checkpoints: AtomicU64::default(),
            samples: Mutex::default(),
            checkpoints_by_flow: Mutex::default(),
        };
        metrics
            .gauge(
                "baton_build_info",
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("wasmtime", baton_runtime::WASMTIME_VERSION),
                ],
            )
            .set(1.0);
        metrics
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// An attempt of `flow` ran: instantiating it took `instantiate`, all
    /// of it `duration`.
    pub(crate) fn record_attempt(&self, flow: &str, instantiate: Duration, duration: Duration) {
        self.counter("baton_attempts_total", &[("flow", flow)])
            .increment(1);
        self.histogram("baton_attempt_duration_seconds", &[("flow", flow)])
            .record(duration);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.instantiate_us.len() < MAX_SAMPLES {
            samples.instantiate_us.push(instantiate.as_micros() as u64);
        }
    }

    /// An attempt of `flow`, a request created at `created_at` (ms on the
    /// database's clock), ended with `outcome`.
    pub(crate) fn record_outcome(&self, flow: &str, outcome: &Outcome, created_at: i64) {
        let status = match outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Error { .. } => "failed",
            Outcome::Retry { .. } => {
                self.counter("baton_retries_total", &[("flow", flow)])
                    .increment(1);
                return;
            }
            Outcome::Postponed { .. } => {
                self.counter("baton_postponements_total", &[("flow", flow)])
                    .increment(1);
                return;
            }
            Outcome::Sleeping { .. } => return,
        };
        let labels = [("flow", flow), ("status", status)];
        self.counter("baton_requests_finished_total", &labels)
            .increment(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        self.histogram("baton_request_duration_seconds", &labels)
            .record((now - created_at).max(0) as f64 / 1000.0);
    }

    pub(crate) fn record_nondeterminism(&self, flow: &str) {
        self.counter("baton_nondeterminism_errors_total", &[("flow", flow)])
            .increment(1);
    }

    pub(crate) fn record_checkpoint(&self, flow: &str, latency: Duration, gap: Option<Duration>) {
        self.count_checkpoint(flow);
        self.histogram("baton_checkpoint_commit_seconds", &[("flow", flow)])
            .record(latency);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.checkpoint_us.len() < MAX_SAMPLES {
            samples.checkpoint_us.push(latency.as_micros() as u64);
            samples
                .checkpoint_gap_us
                .extend(gap.map(|gap| gap.as_micros() as u64));
        }
    }

    /// A flow's last checkpoint was committed with its outcome: counted,
    /// with no commit of its own to time.
    pub(crate) fn record_checkpoint_with_outcome(&self, flow: &str) {
        self.count_checkpoint(flow);
    }

    fn count_checkpoint(&self, flow: &str) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counter("baton_checkpoints_total", &[("flow", flow)])
            .increment(1);
        let mut by_flow = self.checkpoints_by_flow.lock().expect("metrics lock");
        match by_flow.get_mut(flow) {
            Some(count) => *count += 1,
            None => {
                by_flow.insert(flow.to_owned(), 1);
            }
        }
    }

    /// A flow's HTTP call took `duration`.
    pub(crate) fn record_http(&self, flow: &str, duration: Duration) {
        self.histogram("baton_guest_http_duration_seconds", &[("flow", flow)])
            .record(duration);
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
        self.histogram("baton_commit_group_size", &[])
            .record(group as f64);
        self.histogram("baton_commit_seconds", &[]).record(latency);
        let mut samples = self.samples.lock().expect("metrics lock");
        if samples.group_sizes.len() < MAX_SAMPLES {
            samples.group_sizes.push(group as u64);
            samples.commit_us.push(latency.as_micros() as u64);
        }
    }

    pub(crate) fn record_takeover(&self, duration: Duration) {
        self.counter("baton_takeovers_total", &[]).increment(1);
        self.histogram("baton_takeover_duration_seconds", &[])
            .record(duration);
    }

    pub(crate) fn record_handovers(&self, requests: usize) {
        self.counter("baton_handovers_total", &[])
            .increment(requests as u64);
    }

    /// Takes the latency samples collected so far.
    pub fn take_samples(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().expect("metrics lock"))
    }

    /// Prometheus text exposition, with the gauges read at scrape time.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.gauge("baton_executions", &[])
            .set(snapshot.running as f64);
        for (server, age) in &snapshot.heartbeats {
            self.gauge("baton_server_heartbeat_age_seconds", &[("server", server)])
                .set(age.as_secs_f64());
        }
        if let Some(connections) = snapshot.connections {
            let idle = f64::from(connections.idle);
            let in_use = f64::from(connections.open.saturating_sub(connections.idle));
            self.gauge("baton_database_connections", &[("state", "idle")])
                .set(idle);
            self.gauge("baton_database_connections", &[("state", "in_use")])
                .set(in_use);
        }
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_metric_is_described_and_labelled_by_flow() {
        let metrics = Metrics::new();
        metrics.record_attempt(
            "orders",
            Duration::from_micros(30),
            Duration::from_millis(4),
        );
        metrics.record_checkpoint("orders", Duration::from_micros(300), None);
        metrics.record_commit(3, Duration::from_micros(250));
        metrics.record_http("orders", Duration::from_millis(12));
        metrics.record_nondeterminism("orders");
        metrics.record_takeover(Duration::from_millis(20));
        metrics.record_handovers(2);
        let text = metrics.render(&Snapshot {
            running: 1,
            heartbeats: vec![("s1".into(), Duration::from_millis(1500))],
            connections: Some(Connections { open: 5, idle: 3 }),
        });
        for line in [
            "baton_attempts_total{flow=\"orders\"} 1",
            "baton_checkpoints_total{flow=\"orders\"} 1",
            "baton_nondeterminism_errors_total{flow=\"orders\"} 1",
            "baton_commit_group_size_bucket{le=\"4\"} 1",
            "baton_guest_http_duration_seconds_count{flow=\"orders\"} 1",
            "baton_takeovers_total 1",
            "baton_handovers_total 2",
            "baton_executions 1",
            "baton_server_heartbeat_age_seconds{server=\"s1\"} 1.5",
            "baton_database_connections{state=\"in_use\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        for (name, _) in DESCRIBED {
            if text.contains(&format!("\n{name}")) || text.starts_with(name) {
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "{name} has no help"
                );
            }
        }
    }
}
