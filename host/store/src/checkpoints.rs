//! The journal: committed checkpoints per request and journal generation.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Backend, Fence, Store, StoreError, StoredPayload};

/// How many checkpoints one request's journal holds, over all generations.
///
/// The journal is keyed by one integer, its journal key: the request's
/// number times this plus the checkpoint's ordinal in the request (not the
/// flow's `position`, which is `seq`, the place in a generation). A request's
/// journal is one contiguous key range, and a commit appends to the key's
/// b-tree (see migration 0006).
pub const JOURNAL_CAPACITY: i64 = 1 << 24;

/// One generation of a request's journal: where its checkpoints are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalGeneration {
    /// The request's number, which keys its journal.
    pub request: i64,
    /// The generation (a new one starts when a `not use` flow retries).
    pub number: i64,
    /// Ordinal of the generation's first checkpoint among the request's.
    pub base: i64,
}

impl JournalGeneration {
    /// The key of the checkpoint at `seq` in this generation; `None` once
    /// the request's journal is full.
    pub fn journal_key(&self, seq: i64) -> Option<i64> {
        let ordinal = self.base.checked_add(seq)?;
        (0..JOURNAL_CAPACITY)
            .contains(&ordinal)
            .then(|| self.request * JOURNAL_CAPACITY + ordinal)
    }
}

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
    /// The journal's key for it; a page of checkpoints goes on after it.
    pub journal_key: i64,
}

/// A checkpoint to commit under an attempt's fence.
#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    /// The attempt's fence.
    pub fence: Fence,
    /// Journal generation of the attempt.
    pub journal: JournalGeneration,
    /// Position in the generation; must be exactly the number of checkpoints
    /// the generation holds already.
    pub seq: i64,
    /// Checkpoint name.
    pub name: String,
    /// The step's result.
    pub payload: StoredPayload,
}

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

impl Store {
    /// The journal of one generation, in order.
    pub async fn journal(
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
        .await?;
        Ok(rows.iter().map(checkpoint_record).collect())
    }

    /// A request's checkpoints, all generations, in order: at most `limit`
    /// of them, starting after the one keyed `after` (a page goes on
    /// from the last record's [`CheckpointRecord::journal_key`]).
    pub async fn checkpoints(
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
        .await?;
        Ok(rows.iter().map(checkpoint_record).collect())
    }

    /// Commits a group of checkpoints, possibly of many requests, in one
    /// statement and so one durable commit.
    ///
    /// The INSERT takes only the rows whose request still matches the
    /// write's owner, epoch, generation and status `running`, and whose `seq`
    /// comes right after a committed one (or is 0) and is not taken yet (the
    /// journal's key turns a second write of a key away). Nothing else
    /// is written: the journal is the request's progress. This is the
    /// invariant that fences a paused or partitioned server and keeps a
    /// sequence number from being committed twice. On PostgreSQL the request
    /// rows are locked (`FOR UPDATE`), so a takeover committing meanwhile is
    /// seen and wins. A write left out is answered [`StoreError::Fenced`],
    /// one past the journal's capacity [`StoreError::JournalFull`]; the
    /// outer error means the whole group failed.
    pub async fn commit_checkpoints(
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
                return Err(e.into());
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
            .await?;
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
