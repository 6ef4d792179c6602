//! The journal: committed checkpoints per request and journal generation.

use sqlx::Row;

use crate::{Backend, Fence, Store, StoreError, StoredPayload};

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

/// The fenced INSERT of `rows` checkpoints. One row, the common case,
/// takes its values as parameters; a group takes them as a `VALUES` table.
/// Either way each row's request is read by its key alone (a scalar
/// subquery), so no plan can reach it through another index.
pub(crate) fn commit_sql(backend: Backend, rows: usize) -> String {
    const COLUMNS: [&str; 9] = [
        "request_id",
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
        request,
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
         INSERT INTO checkpoints (request_id, generation, seq, name, server_id, epoch, at, hash, size, inline)
         SELECT {request}, {generation}, {seq}, {name}, {owner}, {epoch}, {now}, {hash}, {size}, {inline} {from}
          WHERE (SELECT r.owner = {owner} AND r.epoch = {epoch} AND r.status = 'running'
                        AND r.generation = {generation}
                   FROM requests r WHERE r.id = {request} {lock})
            AND ({seq} = 0 OR EXISTS (SELECT 1 FROM checkpoints c
                                       WHERE c.request_id = {request} AND c.generation = {generation}
                                         AND c.seq = {seq} - 1))
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
            if generation.is_some() {
                "AND generation = $2"
            } else {
                ""
            }
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
    /// statement and so one durable commit.
    ///
    /// The INSERT takes only the rows whose request still matches the
    /// write's owner, epoch, generation and status `running`, and whose `seq`
    /// comes right after a committed one (or is 0) and is not taken yet (the
    /// journal's key turns a second write of a position away). Nothing else
    /// is written: the journal is the request's progress. This is the
    /// invariant that fences a paused or partitioned server and keeps a
    /// sequence number from being committed twice. On PostgreSQL the request
    /// rows are locked (`FOR UPDATE`), so a takeover committing meanwhile is
    /// seen and wins. A write left out is answered [`StoreError::Fenced`];
    /// the outer error means the whole group failed.
    pub async fn commit_checkpoints(
        &self,
        writes: &[CheckpointWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let group;
        let sql = if writes.len() == 1 {
            &*self.commit_one
        } else {
            group = commit_sql(self.backend, writes.len());
            &group
        };
        let mut query = sqlx::query(sql);
        for write in writes {
            query = query
                .bind(&write.fence.request)
                .bind(write.generation)
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
                return Err(e.into());
            }
        };
        if inserted == writes.len() as u64 {
            return Ok(writes.iter().map(|_| Ok(())).collect());
        }
        // Some writes were left out: the journal says which. A row at the
        // write's position under its owner and epoch is this attempt's own,
        // committed now or by an earlier try whose answer was lost.
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let found = sqlx::query(
                "SELECT 1 FROM checkpoints
                  WHERE request_id = $1 AND generation = $2 AND seq = $3
                    AND server_id = $4 AND epoch = $5",
            )
            .bind(&write.fence.request)
            .bind(write.generation)
            .bind(write.seq)
            .bind(&write.fence.owner)
            .bind(write.fence.epoch)
            .fetch_optional(&mut *writer)
            .await?;
            results.push(match found {
                Some(_) => Ok(()),
                None => Err(write.fence.lost()),
            });
        }
        Ok(results)
    }
}
