//! Cron-style schedules shared by the cluster.

use sqlx::Connection;

use crate::{NewRequest, Store, StoreError};

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ScheduleRow {
    /// Unique name.
    pub name: String,
    /// Flow to start.
    pub flow: String,
    /// Cron expression (seconds minutes hours day-of-month month day-of-week).
    pub cron: String,
    /// Input JSON of every request it starts.
    pub input: String,
    /// The only server that fires it (a local schedule), or any server.
    pub server: Option<String>,
    /// The next tick, ms.
    pub next_fire_at: i64,
    /// The last tick fired, ms.
    pub last_fired_at: Option<i64>,
}

impl Store {
    /// Creates or replaces a schedule.
    pub async fn put_schedule(&self, schedule: &ScheduleRow) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(&self.sql(
            "INSERT INTO schedules (name, flow, cron, input, server, next_fire_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, NOW_MS)
             ON CONFLICT (name) DO UPDATE SET flow = $2, cron = $3, input = $4, server = $5, next_fire_at = $6",
        ))
        .bind(&schedule.name)
        .bind(&schedule.flow)
        .bind(&schedule.cron)
        .bind(&schedule.input)
        .bind(schedule.server.as_deref())
        .bind(schedule.next_fire_at)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// Removes a schedule.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&mut *writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule {name}")));
        }
        Ok(())
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT name, flow, cron, input, server, next_fire_at, last_fired_at FROM schedules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Schedules whose tick has come that `me` may fire.
    pub async fn due_schedules(&self, me: &str) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT name, flow, cron, input, server, next_fire_at, last_fired_at FROM schedules
              WHERE next_fire_at <= NOW_MS AND (server IS NULL OR server = $1)",
        ))
        .bind(me)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Moves a schedule past a tick that starts nothing (its flow is not
    /// deployed); `false` when another server moved it first.
    pub async fn fire_schedule_without_request(
        &self,
        name: &str,
        tick: i64,
        next: i64,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let claimed = sqlx::query(
            "UPDATE schedules SET next_fire_at = $3, last_fired_at = $2 WHERE name = $1 AND next_fire_at = $2",
        )
        .bind(name)
        .bind(tick)
        .bind(next)
        .execute(&mut *writer)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Fires the tick `tick` of a schedule: in one transaction, moves its
    /// next tick to `next` (only if the tick is still `tick`) and creates the
    /// tick's request. `false` when another server fired it first.
    pub async fn fire_schedule(
        &self,
        name: &str,
        tick: i64,
        next: i64,
        request: &NewRequest,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        let claimed = sqlx::query(
            "UPDATE schedules SET next_fire_at = $3, last_fired_at = $2 WHERE name = $1 AND next_fire_at = $2",
        )
        .bind(name)
        .bind(tick)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        self.insert_request(&mut tx, request, false).await?;
        tx.commit().await?;
        Ok(true)
    }
}
