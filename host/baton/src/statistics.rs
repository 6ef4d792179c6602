//! Statistics: the report over a window that the API and the console show,
//! and the loop that writes this server's checkpoint counts.

use std::sync::Arc;
use std::time::Duration;

use baton_core::statistics::Report;
use baton_core::store::{Store, StoreError};

use crate::metrics::Metrics;

/// How often a server adds its checkpoints per flow to the current minute.
const CHECKPOINTS_EVERY: Duration = Duration::from_secs(10);

/// The longest window a report covers.
pub const MAX_WINDOW_MS: i64 = 31 * 86_400_000;

/// The default window: the last hour.
pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;

/// A report's window, `[from, to)` in ms, `from` a minute's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub from: i64,
    /// End (exclusive).
    pub to: i64,
}

impl Window {
    /// The window `from`..`to` asks for, ending now (`now`) and an hour
    /// long where they are missing; refused when empty or longer than
    /// [`MAX_WINDOW_MS`].
    pub fn new(from: Option<i64>, to: Option<i64>, now: i64) -> Result<Self, String> {
        let to = to.unwrap_or(now + 1);
        let from = from.unwrap_or(to - DEFAULT_WINDOW_MS);
        if to <= from {
            return Err("the window is empty: from must be before to".into());
        }
        if to - from > MAX_WINDOW_MS {
            return Err(format!(
                "the window is longer than {} days: choose a shorter one",
                MAX_WINDOW_MS / 86_400_000
            ));
        }
        Ok(Self {
            from: from.div_euclid(60_000) * 60_000,
            to,
        })
    }
}

/// The statistics of `window`, of one flow or of all.
pub async fn report(
    store: &dyn Store,
    window: Window,
    flow: Option<&str>,
) -> Result<Report, StoreError> {
    let step = Report::step_ms(window.from, window.to);
    let rows = store.minutes(window.from, window.to, step, flow).await?;
    Ok(Report::of(&rows, window.from, window.to))
}

/// Every [`CHECKPOINTS_EVERY`]: adds the checkpoints this server committed
/// since, per flow, to the current minute (kept for the next turn when the
/// database is away).
pub async fn write_checkpoints(store: Arc<dyn Store>, metrics: Arc<Metrics>, server: String) {
    let mut interval = tokio::time::interval(CHECKPOINTS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let counts = metrics.take_checkpoints_by_flow();
        if counts.is_empty() {
            continue;
        }
        if let Err(e) = store.add_checkpoints(&server, &counts).await {
            tracing::warn!(error = %e, "writing the checkpoint statistics failed; they go with the next");
            metrics.restore_checkpoints_by_flow(counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_defaults_to_the_last_hour_and_is_bounded() {
        let now = 10 * 3_600_000 + 30_123;
        assert_eq!(
            Window::new(None, None, now),
            Ok(Window {
                from: 9 * 3_600_000,
                to: now + 1
            })
        );
        assert!(Window::new(Some(5), Some(5), now).is_err());
        assert!(Window::new(Some(10), Some(5), now).is_err());
        assert!(Window::new(Some(0), Some(MAX_WINDOW_MS + 60_000), now).is_err());
    }
}
