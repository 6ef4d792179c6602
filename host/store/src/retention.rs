//! Retention: finished requests purged in batches with every row that
//! names them, and the blob sweep.

use std::time::Duration;

use baton_core::store::async_trait;
use sqlx::{Any, Connection, Transaction};

use crate::{Backend, Db, PurgeFilter, RetentionStore, SqlStore, StoreError};

/// The requests a purge may take: finished, old enough, and not a child
/// whose parent still runs (it reads the child's outcome). `$1` is the age
/// in ms; the filter's flow and status follow as `$2`, `$3`.
fn purgeable(filter: &PurgeFilter) -> String {
    let mut sql = String::from(
        "status IN ('succeeded', 'error', 'cancelled') AND updated_at < NOW_BOUND - $1
         AND (parent IS NULL OR NOT EXISTS (
              SELECT 1 FROM requests p WHERE p.id = requests.parent
                 AND p.status IN ('queued', 'running', 'waiting_retry')))",
    );
    let mut next = 2;
    if filter.flow.is_some() {
        sql.push_str(&format!(" AND flow = ${next}"));
        next += 1;
    }
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = ${next}"));
    }
    sql
}

impl SqlStore {
    /// Deletes request `id` (number `num`) and every row that names it.
    async fn delete_request(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
        num: i64,
    ) -> Result<(), StoreError> {
        // The journal first: SQLite may give a later request this number
        // again, and it must find no checkpoint of this one there.
        sqlx::query(&self.sql(
            "DELETE FROM checkpoints
              WHERE journal_key >= $1 * JOURNAL_CAPACITY AND journal_key < ($1 + 1) * JOURNAL_CAPACITY",
        ))
        .bind(num)
        .execute(&mut **tx)
        .await
        .db()?;
        for table in ["request_events", "events_inbox", "request_status_values"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE request_id = $1"))
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        sqlx::query("DELETE FROM requests WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }

    /// Whether any row names blob `hash`.
    async fn blob_named(&self, hash: &str) -> Result<bool, StoreError> {
        let (named,): (i64,) = sqlx::query_as(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM checkpoints WHERE hash = $1 AND inline IS NULL)
                          OR EXISTS (SELECT 1 FROM requests WHERE input_hash = $1 AND input_inline IS NULL)
                          OR EXISTS (SELECT 1 FROM requests
                                      WHERE output_hash = $1 AND output_hash IS NOT NULL
                                        AND output_inline IS NULL)
                          OR EXISTS (SELECT 1 FROM flow_versions WHERE hash = $1)
                     THEN 1 ELSE 0 END",
        )
        .bind(hash)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(named != 0)
    }
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn purge_requests(&self, filter: &PurgeFilter, limit: i64) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        // Locked on PostgreSQL, skipping rows another purge holds: a
        // re-execute or a send waits for this commit and then finds nothing.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = self.sql(&format!(
            "SELECT id, num FROM requests WHERE {} ORDER BY updated_at LIMIT {limit}{lock}",
            purgeable(filter)
        ));
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(filter.older_than_ms);
        if let Some(flow) = &filter.flow {
            query = query.bind(flow);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        let doomed = query.fetch_all(&mut *tx).await.db()?;
        for (id, num) in &doomed {
            self.delete_request(&mut tx, id, *num).await?;
        }
        tx.commit().await.db()?;
        Ok(doomed.len() as u64)
    }

    async fn count_purgeable(&self, filter: &PurgeFilter) -> Result<u64, StoreError> {
        let sql = self.sql(&format!(
            "SELECT COUNT(*) FROM requests WHERE {}",
            purgeable(filter)
        ));
        let mut query = sqlx::query_as::<_, (i64,)>(&sql).bind(filter.older_than_ms);
        if let Some(flow) = &filter.flow {
            query = query.bind(flow);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        let (count,) = query.fetch_one(&self.pool).await.db()?;
        Ok(count as u64)
    }

    async fn sweep_blobs(&self, grace_ms: u64, dry: bool) -> Result<u64, StoreError> {
        let grace = Duration::from_millis(grace_ms);
        let blobs = self.blobs.clone();
        let old = tokio::task::spawn_blocking(move || blobs.older_than(grace))
            .await
            .map_err(|e| StoreError::Io {
                path: "the blob folder".into(),
                source: std::io::Error::other(e),
            })??;
        let mut swept = 0;
        for hash in old {
            if self.blob_named(&hash).await? {
                continue;
            }
            if dry || self.blobs.remove_unless_renewed(&hash, grace)? {
                swept += 1;
            }
        }
        Ok(swept)
    }

    async fn take_purge_turn(&self, every_ms: i64) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let taken = sqlx::query(&self.sql(
            "UPDATE cluster_settings SET value = NOW_MS + $1
              WHERE name = 'purge_due_at' AND value <= NOW_MS",
        ))
        .bind(every_ms)
        .execute(&mut *writer)
        .await
        .db()?
        .rows_affected();
        Ok(taken == 1)
    }
}
