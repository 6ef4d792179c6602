//! Cron-style schedules shared by the cluster.

use sqlx::Connection;

use baton_core::store::async_trait;

use crate::{Db, NewRequest, ScheduleRow, ScheduleStore, SqlStore, StoreError};

/// The columns a schedule is read from, in `schedule_row`'s order.
type ScheduleColumns = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
);

fn schedule_row(
    (name, flow, cron, tz, input, server, next_fire_at, last_fired_at): ScheduleColumns,
) -> ScheduleRow {
    ScheduleRow {
        name,
        flow,
        cron,
        tz,
        input,
        server,
        next_fire_at,
        last_fired_at,
    }
}

#[async_trait]
impl ScheduleStore for SqlStore {
    async fn put_schedule(&self, schedule: &ScheduleRow) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(&self.sql(
            "INSERT INTO schedules (name, flow, cron, tz, input, server, next_fire_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NOW_MS)
             ON CONFLICT (name) DO UPDATE SET flow = $2, cron = $3, tz = $4, input = $5, server = $6, next_fire_at = $7",
        ))
        .bind(&schedule.name)
        .bind(&schedule.flow)
        .bind(&schedule.cron)
        .bind(&schedule.tz)
        .bind(&schedule.input)
        .bind(schedule.server.as_deref())
        .bind(schedule.next_fire_at)
        .execute(&mut *writer)
        .await.db()?;
        Ok(())
    }

    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&mut *writer)
            .await
            .db()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule {name}")));
        }
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(sqlx::query_as::<_, ScheduleColumns>(
            "SELECT name, flow, cron, tz, input, server, next_fire_at, last_fired_at FROM schedules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await.db()?
        .into_iter()
        .map(schedule_row)
        .collect())
    }

    async fn due_schedules(&self, me: &str) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(sqlx::query_as::<_, ScheduleColumns>(&self.sql(
            "SELECT name, flow, cron, tz, input, server, next_fire_at, last_fired_at FROM schedules
              WHERE next_fire_at <= NOW_MS AND (server IS NULL OR server = $1)",
        ))
        .bind(me)
        .fetch_all(&self.pool)
        .await
        .db()?
        .into_iter()
        .map(schedule_row)
        .collect())
    }

    async fn fire_schedule_without_request(
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
        .await.db()?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn fire_schedule(
        &self,
        name: &str,
        tick: i64,
        next: i64,
        request: &NewRequest,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let claimed = sqlx::query(
            "UPDATE schedules SET next_fire_at = $3, last_fired_at = $2 WHERE name = $1 AND next_fire_at = $2",
        )
        .bind(name)
        .bind(tick)
        .bind(next)
        .execute(&mut *tx)
        .await.db()?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        self.insert_request(&mut tx, request, false).await?;
        tx.commit().await.db()?;
        Ok(true)
    }
}
