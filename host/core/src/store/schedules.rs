//! Cron-style schedules shared by the cluster.

use async_trait::async_trait;

use super::{NewRequest, StoreError};

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleRow {
    /// Unique name.
    pub name: String,
    /// Flow to start.
    pub flow: String,
    /// Cron expression (seconds minutes hours day-of-month month day-of-week).
    pub cron: String,
    /// The IANA time zone the cron expression is read in.
    pub tz: String,
    /// Input JSON of every request it starts.
    pub input: String,
    /// The only server that fires it (a local schedule), or any server.
    pub server: Option<String>,
    /// The next tick, ms.
    pub next_fire_at: i64,
    /// The last tick fired, ms.
    pub last_fired_at: Option<i64>,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates or replaces a schedule.
    async fn put_schedule(&self, schedule: &ScheduleRow) -> Result<(), StoreError>;

    /// Removes a schedule.
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError>;

    /// Schedules whose tick has come that `me` may fire.
    async fn due_schedules(&self, me: &str) -> Result<Vec<ScheduleRow>, StoreError>;

    /// Moves a schedule past a tick that starts nothing (its flow is not
    /// deployed); `false` when another server moved it first.
    async fn fire_schedule_without_request(
        &self,
        name: &str,
        tick: i64,
        next: i64,
    ) -> Result<bool, StoreError>;

    /// Fires the tick `tick` of a schedule: in one transaction, moves its
    /// next tick to `next` (only if the tick is still `tick`) and creates the
    /// tick's request. `false` when another server fired it first.
    async fn fire_schedule(
        &self,
        name: &str,
        tick: i64,
        next: i64,
        request: &NewRequest,
    ) -> Result<bool, StoreError>;
}
