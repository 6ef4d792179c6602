//! Statistics per minute, flow and server: added to inside the
//! transactions that change requests, read by window.

use baton_core::store::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Connection, Row, Transaction};

use crate::{
    Backend, DURATION_BUCKETS, Db, MinuteCounts, MinuteRow, SqlStore, StatisticsStore, StoreError,
};

/// The shard of a minute's row a write adds to on PostgreSQL: rows one
/// minute of one flow on one server is spread over, where concurrent
/// finishes would otherwise queue on one row lock until each commits
/// (SQLite has one writer anyway). The connection's, as concurrent
/// transactions run on different connections; an expression rather than a
/// value, so the statements that add to a minute have one text: each text
/// is prepared, and planned afresh for its first executions, per
/// connection.
const POSTGRES_SHARD: &str = "(pg_backend_pid() % 4)";

const COUNTERS: [&str; 7] = [
    "started",
    "succeeded",
    "failed",
    "cancelled",
    "retries",
    "takeovers",
    "checkpoints",
];

/// The values of [`COUNTERS`] in `counts`, in that order.
pub(crate) fn counter_values(counts: &MinuteCounts) -> [i64; COUNTERS.len()] {
    [
        counts.started,
        counts.succeeded,
        counts.failed,
        counts.cancelled,
        counts.retries,
        counts.takeovers,
        counts.checkpoints,
    ]
}

fn duration_columns() -> impl Iterator<Item = String> {
    (0..DURATION_BUCKETS).map(|i| format!("d{i}"))
}

/// The counter and duration-bucket columns of `request_minutes`.
fn minute_columns() -> Vec<String> {
    COUNTERS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(duration_columns())
        .collect()
}

impl SqlStore {
    /// The UPSERT that adds `rows` (a `VALUES` or `SELECT` clause giving
    /// minute, flow, server, shard and every [`minute_columns`] value) to
    /// `request_minutes`.
    pub(crate) fn minute_upsert_sql(&self, rows: &str) -> String {
        let columns = minute_columns();
        let sums: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = request_minutes.{c} + excluded.{c}"))
            .collect();
        self.sql(&format!(
            "INSERT INTO request_minutes (minute, flow, server_id, shard, {})
             {rows}
             ON CONFLICT (minute, flow, server_id, shard) DO UPDATE SET {}",
            columns.join(", "),
            sums.join(", ")
        ))
    }

    /// The shard of a minute's row a write adds to, as SQL.
    pub(crate) fn minute_shard(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "0",
            Backend::Postgres => POSTGRES_SHARD,
        }
    }

    /// Adds `counts` to the current minute (database clock) of `flow` on
    /// `server`, inside the transaction that made them happen.
    pub(crate) async fn add_minute(
        &self,
        tx: &mut Transaction<'_, Any>,
        flow: &str,
        server: &str,
        counts: &MinuteCounts,
    ) -> Result<(), StoreError> {
        let values: Vec<String> = (0..minute_columns().len())
            .map(|i| format!("${}", i + 3))
            .collect();
        let sql = self.minute_upsert_sql(&format!(
            "VALUES ((NOW_MS / 60000) * 60000, $1, $2, {}, {})",
            self.minute_shard(),
            values.join(", ")
        ));
        let mut query = sqlx::query(&sql).bind(flow).bind(server);
        for counter in counter_values(counts) {
            query = query.bind(counter);
        }
        for bucket in 0..DURATION_BUCKETS {
            query = query.bind(counts.durations.get(bucket).copied().unwrap_or(0));
        }
        query.execute(&mut **tx).await.db()?;
        Ok(())
    }
}

fn minute_row(row: &AnyRow) -> MinuteRow {
    let counter = |name: &str| row.get::<i64, _>(name);
    MinuteRow {
        minute: row.get("minute"),
        flow: row.get("flow"),
        server: row.get("server_id"),
        counts: MinuteCounts {
            started: counter("started"),
            succeeded: counter("succeeded"),
            failed: counter("failed"),
            cancelled: counter("cancelled"),
            retries: counter("retries"),
            takeovers: counter("takeovers"),
            checkpoints: counter("checkpoints"),
            durations: duration_columns().map(|c| counter(&c)).collect(),
        },
    }
}

#[async_trait]
impl StatisticsStore for SqlStore {
    async fn minutes(
        &self,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        flow: Option<&str>,
    ) -> Result<Vec<MinuteRow>, StoreError> {
        let sums: Vec<String> = COUNTERS
            .iter()
            .map(|c| (*c).to_owned())
            .chain(duration_columns())
            .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
            .collect();
        // Summed per step here: a week is 120 steps, not 10,080 minutes.
        let sql = format!(
            "SELECT $1 + ((minute - $1) / $3) * $3 AS minute, flow, server_id, {}
               FROM request_minutes
              WHERE minute >= $1 AND minute < $2 {}
              GROUP BY ((minute - $1) / $3), flow, server_id
              ORDER BY 1, flow, server_id",
            sums.join(", "),
            if flow.is_some() { "AND flow = $4" } else { "" }
        );
        let mut query = sqlx::query(&sql)
            .bind(from_ms)
            .bind(to_ms)
            .bind(step_ms.max(60_000));
        if let Some(flow) = flow {
            query = query.bind(flow);
        }
        let rows = query.fetch_all(&self.pool).await.db()?;
        Ok(rows.iter().map(minute_row).collect())
    }

    async fn add_checkpoints(
        &self,
        server: &str,
        per_flow: &[(String, i64)],
    ) -> Result<(), StoreError> {
        if per_flow.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        for (flow, checkpoints) in per_flow {
            let counts = MinuteCounts {
                checkpoints: *checkpoints,
                ..Default::default()
            };
            self.add_minute(&mut tx, flow, server, &counts).await?;
        }
        tx.commit().await.db()?;
        Ok(())
    }
}
