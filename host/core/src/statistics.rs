//! The statistics report: a window of per-minute counts folded into a time
//! series and totals per flow and per server.

use std::collections::BTreeMap;

use crate::store::{MinuteCounts, MinuteRow};

/// At most this many points in a report's series: longer windows fold
/// several minutes into one point.
pub const MAX_POINTS: i64 = 120;

/// A window's statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Window start, ms (a minute's start).
    pub from: i64,
    /// Window end, ms (exclusive).
    pub to: i64,
    /// The time one point of the series covers, ms (whole minutes).
    pub step_ms: i64,
    /// The series, one point per step, empty steps included.
    pub points: Vec<Point>,
    /// Totals per flow, by name.
    pub flows: Vec<Summary>,
    /// Totals per server, by server ID.
    pub servers: Vec<Summary>,
}

/// One step of the series.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// The step's start, ms.
    pub at: i64,
    /// Requests created, per minute.
    pub started_per_min: f64,
    /// Requests that ended (succeeded, error, cancelled), per minute.
    pub finished_per_min: f64,
    /// Checkpoints committed, per second.
    pub checkpoints_per_s: f64,
}

/// Totals over the window for one flow or one server.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Flow name or server ID.
    pub name: String,
    /// Requests created.
    pub started: i64,
    /// Requests that succeeded.
    pub succeeded: i64,
    /// Requests that ended in error.
    pub failed: i64,
    /// Requests cancelled.
    pub cancelled: i64,
    /// Failed attempts retried.
    pub retries: i64,
    /// Requests taken over from a dead server.
    pub takeovers: i64,
    /// Checkpoints committed.
    pub checkpoints: i64,
    /// End-to-end duration percentiles of the requests that ended, ms, as
    /// their bucket's upper bound (`None`: none ended; the last bucket is
    /// `i64::MAX`).
    pub p50_ms: Option<i64>,
    /// 95th percentile.
    pub p95_ms: Option<i64>,
    /// 99th percentile.
    pub p99_ms: Option<i64>,
}

impl Summary {
    fn of(name: String, counts: &MinuteCounts) -> Self {
        Self {
            name,
            started: counts.started,
            succeeded: counts.succeeded,
            failed: counts.failed,
            cancelled: counts.cancelled,
            retries: counts.retries,
            takeovers: counts.takeovers,
            checkpoints: counts.checkpoints,
            p50_ms: counts.duration_quantile(0.50),
            p95_ms: counts.duration_quantile(0.95),
            p99_ms: counts.duration_quantile(0.99),
        }
    }
}

impl Report {
    /// The step a window `[from, to)` is shown in: whole minutes, at most
    /// [`MAX_POINTS`] of them.
    pub fn step_ms(from: i64, to: i64) -> i64 {
        let minutes = ((to - from).max(1) + 59_999) / 60_000;
        ((minutes + MAX_POINTS - 1) / MAX_POINTS).max(1) * 60_000
    }

    /// Folds the rows of `[from, to)` (`from` a minute's start), each a
    /// minute or a step's sum starting at its `minute`.
    pub fn of(rows: &[MinuteRow], from: i64, to: i64) -> Self {
        let step_ms = Self::step_ms(from, to);
        let steps = ((to - from).max(0) + step_ms - 1) / step_ms;
        let mut series = vec![MinuteCounts::default(); steps as usize];
        let mut flows: BTreeMap<&str, MinuteCounts> = BTreeMap::new();
        let mut servers: BTreeMap<&str, MinuteCounts> = BTreeMap::new();
        for row in rows {
            if let Some(step) = series.get_mut(((row.minute - from) / step_ms) as usize) {
                step.add(&row.counts);
            }
            flows.entry(&row.flow).or_default().add(&row.counts);
            servers.entry(&row.server).or_default().add(&row.counts);
        }
        let minutes = step_ms as f64 / 60_000.0;
        Self {
            from,
            to,
            step_ms,
            points: series
                .iter()
                .enumerate()
                .map(|(i, counts)| Point {
                    at: from + i as i64 * step_ms,
                    started_per_min: counts.started as f64 / minutes,
                    finished_per_min: (counts.succeeded + counts.failed + counts.cancelled) as f64
                        / minutes,
                    checkpoints_per_s: counts.checkpoints as f64 / (step_ms as f64 / 1000.0),
                })
                .collect(),
            flows: flows
                .iter()
                .map(|(name, counts)| Summary::of((*name).to_owned(), counts))
                .collect(),
            servers: servers
                .iter()
                .map(|(name, counts)| Summary::of((*name).to_owned(), counts))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DURATION_BUCKETS;

    fn minute(minute: i64, flow: &str, server: &str, started: i64, took_ms: i64) -> MinuteRow {
        let mut durations = vec![0; DURATION_BUCKETS];
        durations[crate::store::duration_bucket(took_ms)] = started;
        MinuteRow {
            minute,
            flow: flow.into(),
            server: server.into(),
            counts: MinuteCounts {
                started,
                succeeded: started,
                checkpoints: 60 * started,
                durations,
                ..Default::default()
            },
        }
    }

    #[test]
    fn minutes_fold_into_steps_and_totals() {
        let rows = [
            minute(0, "a", "s1", 2, 40),
            minute(60_000, "b", "s2", 4, 3_000),
            minute(180_000, "a", "s2", 6, 40),
        ];
        let report = Report::of(&rows, 0, 240_000);
        assert_eq!(report.step_ms, 60_000);
        let started: Vec<f64> = report.points.iter().map(|p| p.started_per_min).collect();
        assert_eq!(started, [2.0, 4.0, 0.0, 6.0]);
        assert_eq!(report.points[3].checkpoints_per_s, 6.0);
        let a = &report.flows[0];
        assert_eq!((a.name.as_str(), a.started, a.p99_ms), ("a", 8, Some(50)));
        let s2 = &report.servers[1];
        assert_eq!(
            (s2.name.as_str(), s2.started, s2.p50_ms),
            ("s2", 10, Some(50))
        );
        assert_eq!(s2.p99_ms, Some(5_000));

        // A week folds into at most MAX_POINTS steps of whole minutes.
        assert_eq!(Report::step_ms(0, 7 * 86_400_000), 84 * 60_000);
    }
}
