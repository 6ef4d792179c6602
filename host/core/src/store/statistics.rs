//! Statistics: counts per minute, flow and server, kept by the same
//! transactions that change a request, so reading a window costs what the
//! window holds, not what the database holds.

use async_trait::async_trait;

use super::StoreError;

/// Upper bounds (ms) of the end-to-end duration buckets; a last bucket
/// takes what is longer.
pub const DURATION_BOUNDS_MS: [i64; 15] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000,
    3_600_000, 21_600_000,
];

/// How many duration buckets a minute has.
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS_MS.len() + 1;

/// The bucket of a request that took `ms` from creation to its end.
pub fn duration_bucket(ms: i64) -> usize {
    DURATION_BOUNDS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(DURATION_BOUNDS_MS.len())
}

/// What happened in one minute, for one flow on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MinuteCounts {
    /// Requests created.
    pub started: i64,
    /// Requests that succeeded.
    pub succeeded: i64,
    /// Requests that ended in error.
    pub failed: i64,
    /// Requests cancelled.
    pub cancelled: i64,
    /// Attempts that failed with retries left.
    pub retries: i64,
    /// Requests taken over from a dead server (counted for the taker).
    pub takeovers: i64,
    /// Checkpoints committed.
    pub checkpoints: i64,
    /// Requests that succeeded or failed, by end-to-end duration bucket
    /// ([`DURATION_BOUNDS_MS`]).
    pub durations: Vec<i64>,
}

impl MinuteCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &MinuteCounts) {
        self.started += other.started;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.retries += other.retries;
        self.takeovers += other.takeovers;
        self.checkpoints += other.checkpoints;
        if self.durations.len() < other.durations.len() {
            self.durations.resize(other.durations.len(), 0);
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            *mine += theirs;
        }
    }

    /// The end-to-end duration under which `quantile` (0..1) of the ended
    /// requests fell, as the upper bound of its bucket (`None` when none
    /// ended, `i64::MAX` for the last bucket).
    pub fn duration_quantile(&self, quantile: f64) -> Option<i64> {
        let total: i64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (quantile * total as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        for (bucket, count) in self.durations.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(DURATION_BOUNDS_MS.get(bucket).copied().unwrap_or(i64::MAX));
            }
        }
        Some(i64::MAX)
    }
}

/// One minute of one flow on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRow {
    /// The minute's start, ms on the database clock.
    pub minute: i64,
    /// Flow name.
    pub flow: String,
    /// The server that did it.
    pub server: String,
    /// What happened.
    pub counts: MinuteCounts,
}

#[async_trait]
pub trait StatisticsStore: Send + Sync {
    /// The minutes in `[from_ms, to_ms)` of `flow` or of all, summed per
    /// step of `step_ms` (whole minutes) from `from_ms`: each row's
    /// `minute` is its step's start. Oldest first.
    async fn minutes(
        &self,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        flow: Option<&str>,
    ) -> Result<Vec<MinuteRow>, StoreError>;

    /// Adds `server`'s checkpoints per flow to the current minute (they are
    /// counted in memory and written once a minute, not in every commit).
    async fn add_checkpoints(
        &self,
        server: &str,
        per_flow: &[(String, i64)],
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut counts = MinuteCounts {
            durations: vec![0; DURATION_BUCKETS],
            ..Default::default()
        };
        assert_eq!(counts.duration_quantile(0.5), None);
        counts.durations[duration_bucket(7)] += 90;
        counts.durations[duration_bucket(400)] += 9;
        counts.durations[duration_bucket(1 << 40)] += 1;
        assert_eq!(counts.duration_quantile(0.5), Some(10));
        assert_eq!(counts.duration_quantile(0.95), Some(500));
        assert_eq!(counts.duration_quantile(0.99), Some(500));
        assert_eq!(counts.duration_quantile(1.0), Some(i64::MAX));
        assert_eq!(duration_bucket(10), 0);
        assert_eq!(duration_bucket(11), 1);
    }
}
