//! The journal: committed checkpoints per request and journal generation.

use sqlx::Row;

use crate::{Fence, Store, StoreError, StoredPayload};

/// A committed checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    /// Journal generation (a new one starts when a `not use` flow retries).
    pub generation: i64,
    /// Position in the generation, from 0.
    pub seq: i64,
    /// Checkpoint name as the flow gave it.
    pub name: String,
    /// Server that committed it.
    pub server: String,
    /// Epoch it was committed at.
    pub epoch: i64,
    /// Commit time.
    pub at: i64,
    /// The recorded value.
    pub payload: StoredPayload,
}

/// A checkpoint to commit under an attempt's fence.
#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    /// The attempt's fence.
    pub fence: Fence,
    /// Journal generation of the attempt.
    pub generation: i64,
    /// Position; must be exactly the number of checkpoints already committed.
    pub seq: i64,
    /// Checkpoint name.
    pub name: String,
    /// The step's result.
    pub payload: StoredPayload,
}

impl Store {
    /// The journal of one generation, in order.
    pub async fn journal(
        &self,
        request: &str,
        generation: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.checkpoints_where(request, Some(generation)).await
    }

    /// Every checkpoint of a request, all generations, in order.
    pub async fn checkpoints(&self, request: &str) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.checkpoints_where(request, None).await
    }

    async fn checkpoints_where(
        &self,
        request: &str,
        generation: Option<i64>,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let sql = format!(
            "SELECT generation, seq, name, server_id, epoch, at, hash, size, inline
               FROM checkpoints WHERE request_id = $1 {} ORDER BY generation, seq",
            if generation.is_some() { "AND generation = $2" } else { "" }
        );
        let mut query = sqlx::query(&sql).bind(request);
        if let Some(generation) = generation {
            query = query.bind(generation);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| CheckpointRecord {
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
            })
            .collect())
    }

    /// Commits a group of checkpoints, possibly of many requests, in one
    /// database transaction (one durable commit for all of them).
    ///
    /// Each write first advances its request's progress, conditional on owner,
    /// epoch, status `running`, generation and `checkpoints = seq`; only then
    /// is the checkpoint row inserted. A write whose condition fails is
    /// answered [`StoreError::Fenced`] and inserts nothing, while the rest of
    /// the group still commits. This is the invariant that fences a paused or
    /// partitioned server and keeps a sequence number from being committed
    /// twice. The outer error means the whole group failed.
    pub async fn commit_checkpoints(
        &self,
        writes: &[CheckpointWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let advance = self.sql(
            "UPDATE requests SET checkpoints = $6 + 1, last_checkpoint = $5, updated_at = NOW_MS
              WHERE id = $1 AND owner = $2 AND epoch = $3 AND status = 'running'
                AND generation = $4 AND checkpoints = $6",
        );
        let insert = self.sql(
            "INSERT INTO checkpoints (request_id, generation, seq, name, server_id, epoch, at, hash, size, inline)
             VALUES ($1, $2, $3, $4, $5, $6, NOW_MS, $7, $8, $9)",
        );
        let mut tx = self.pool.begin().await?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let fence = &write.fence;
            let advanced = sqlx::query(&advance)
                .bind(&fence.request)
                .bind(&fence.owner)
                .bind(fence.epoch)
                .bind(write.generation)
                .bind(&write.name)
                .bind(write.seq)
                .execute(&mut *tx)
                .await?;
            if advanced.rows_affected() == 0 {
                results.push(Err(fence.lost()));
                continue;
            }
            sqlx::query(&insert)
                .bind(&fence.request)
                .bind(write.generation)
                .bind(write.seq)
                .bind(&write.name)
                .bind(&fence.owner)
                .bind(fence.epoch)
                .bind(&write.payload.hash)
                .bind(write.payload.size)
                .bind(write.payload.inline.as_deref())
                .execute(&mut *tx)
                .await?;
            results.push(Ok(()));
        }
        tx.commit().await?;
        Ok(results)
    }
}
