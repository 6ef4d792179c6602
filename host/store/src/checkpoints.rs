//! The journal: committed checkpoints per request and journal generation.

use sqlx::Row;
use sqlx::any::AnyRow;

use baton_core::store::async_trait;

use crate::{
    Backend, CheckpointRecord, CheckpointWrite, Db, Fence, JOURNAL_CAPACITY, JournalGeneration,
    JournalStore, SqlStore, StoreError, StoredPayload, database_error,
};

/// The fenced INSERT of `rows` checkpoints. One row, the common case,
/// takes its values as parameters; a group takes them as a `VALUES` table.
/// Either way each row's request is read by its number alone (a scalar
/// subquery), so no plan can reach it through another index.
pub(crate) fn commit_sql(backend: Backend, rows: usize) -> String {
    const COLUMNS: [&str; 10] = [
        "journal_key",
        "request_num",
        "generation",
        "seq",
        "name",
        "server_id",
        "epoch",
        "hash",
        "size",
        "inline",
    ];
    let column = |i: usize| {
        if rows == 1 {
            format!("${}", i + 1)
        } else {
            format!("v.{}", COLUMNS[i])
        }
    };
    let (with, from) = if rows == 1 {
        (String::new(), "")
    } else {
        let values = (0..rows)
            .map(|row| {
                let params = (1..=COLUMNS.len())
                    .map(|i| format!("${}", row * COLUMNS.len() + i))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({params})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        (
            format!("WITH v ({}) AS (VALUES {values})", COLUMNS.join(", ")),
            "FROM v",
        )
    };
    let [
        journal_key,
        number,
        generation,
        seq,
        name,
        owner,
        epoch,
        hash,
        size,
        inline,
    ] = std::array::from_fn(column);
    format!(
        "{with}
         INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
         SELECT {journal_key}, {generation}, {seq}, {name}, {owner}, {epoch}, {now}, {hash}, {size}, {inline} {from}
          WHERE (SELECT r.owner = {owner} AND r.epoch = {epoch} AND r.status = 'running'
                        AND r.generation = {generation}
                   FROM requests r WHERE r.num = {number} {lock})
            AND ({seq} = 0 OR EXISTS (SELECT 1 FROM checkpoints c WHERE c.journal_key = {journal_key} - 1))
         ON CONFLICT DO NOTHING",
        now = backend.now_ms(),
        lock = row_lock(backend),
    )
}

/// On PostgreSQL a commit locks the request rows it checks, so that a
/// takeover committing meanwhile is waited for and its epoch seen.
fn row_lock(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "FOR UPDATE",
    }
}

#[async_trait]
impl JournalStore for SqlStore {
    async fn set_status(&self, fence: &Fence, key: &str, value: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(&self.sql(
            "INSERT INTO request_status_values (request_id, key, value, updated_at)
             SELECT $1, $2, $3, NOW_MS
              WHERE EXISTS (SELECT 1 FROM requests
                             WHERE id = $1 AND owner = $4 AND epoch = $5 AND status = 'running')
             ON CONFLICT (request_id, key) DO UPDATE
                SET value = excluded.value, updated_at = excluded.updated_at",
        ))
        .bind(&fence.request)
        .bind(key)
        .bind(value)
        .bind(&fence.owner)
        .bind(fence.epoch)
        .execute(&mut *writer)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Err(fence.lost());
        }
        Ok(())
    }

    async fn inbox_event(
        &self,
        request: &str,
        name: &str,
        index: i64,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT payload FROM events_inbox WHERE request_id = $1 AND name = $2
              ORDER BY id LIMIT 1 OFFSET $3",
        )
        .bind(request)
        .bind(name)
        .bind(index)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(row.map(|(payload,)| payload))
    }

    async fn journal(
        &self,
        generation: &JournalGeneration,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints c
              WHERE c.journal_key >= $1 AND c.journal_key < $2 AND c.generation = $3
              ORDER BY c.journal_key"
        ))
        .bind(generation.request * JOURNAL_CAPACITY + generation.base)
        .bind((generation.request + 1) * JOURNAL_CAPACITY)
        .bind(generation.number)
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows.iter().map(checkpoint_record).collect())
    }

    async fn checkpoints(
        &self,
        request: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM requests r
               JOIN checkpoints c ON c.journal_key >= r.num * {JOURNAL_CAPACITY}
                                 AND c.journal_key < (r.num + 1) * {JOURNAL_CAPACITY}
              WHERE r.id = $1 AND c.journal_key > $2
              ORDER BY c.journal_key
              LIMIT $3"
        ))
        .bind(request)
        .bind(after.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows.iter().map(checkpoint_record).collect())
    }

    async fn commit_checkpoints(
        &self,
        writes: &[CheckpointWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(writes.len());
        // (index in `results`, key, write) of each write that fits.
        let mut keyed = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            match write.journal.journal_key(write.seq) {
                Some(key) => {
                    results.push(Ok(()));
                    keyed.push((index, key, write));
                }
                None => results.push(Err(StoreError::JournalFull {
                    request: write.fence.request.clone(),
                })),
            }
        }
        if keyed.is_empty() {
            return Ok(results);
        }
        let group;
        let sql = if keyed.len() == 1 {
            &*self.commit_one
        } else {
            group = commit_sql(self.backend, keyed.len());
            &group
        };
        let mut query = sqlx::query(sql);
        for (_, key, write) in &keyed {
            query = query
                .bind(*key)
                .bind(write.journal.request)
                .bind(write.journal.number)
                .bind(write.seq)
                .bind(&write.name)
                .bind(&write.fence.owner)
                .bind(write.fence.epoch)
                .bind(&write.payload.hash)
                .bind(write.payload.size)
                .bind(write.payload.inline.as_deref());
        }
        let mut writer = self.kept_writer().await?;
        // The statement answers a count alone: one message back from the
        // database rather than one per row, which a woken task pays for.
        let inserted = match query.execute(&mut *writer).await {
            Ok(done) => done.rows_affected(),
            Err(e) => {
                writer.discard();
                return Err(database_error(e));
            }
        };
        if inserted == keyed.len() as u64 {
            return Ok(results);
        }
        // Some writes were left out: the journal says which. A row at the
        // write's key under its owner and epoch is this attempt's own,
        // committed now or by an earlier try whose answer was lost.
        for (index, key, write) in keyed {
            let found = sqlx::query(
                "SELECT 1 FROM checkpoints WHERE journal_key = $1 AND server_id = $2 AND epoch = $3",
            )
            .bind(key)
            .bind(&write.fence.owner)
            .bind(write.fence.epoch)
            .fetch_optional(&mut *writer)
            .await.db()?;
            if found.is_none() {
                results[index] = Err(write.fence.lost());
            }
        }
        Ok(results)
    }
}

/// A record's columns, read from the journal as `c`.
const CHECKPOINT_COLUMNS: &str = "c.generation, c.seq, c.name, c.server_id, c.epoch, c.at, c.hash, c.size, c.inline, c.journal_key";

fn checkpoint_record(row: &AnyRow) -> CheckpointRecord {
    CheckpointRecord {
        generation: row.get(0),
        seq: row.get(1),
        name: row.get(2),
        server: row.get(3),
        epoch: row.get(4),
        at: row.get(5),
        payload: StoredPayload {
            hash: row.get(6),
            size: row.get(7),
            inline: row.get(8),
        },
        journal_key: row.get(9),
    }
}
