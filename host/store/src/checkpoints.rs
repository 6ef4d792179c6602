//! The journal: committed checkpoints per request and journal generation.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use baton_core::store::async_trait;

use crate::{
    Backend, CheckpointRecord, CheckpointWrite, Db, Fence, JOURNAL_CAPACITY, JournalGeneration,
    JournalStore, SqlStore, StoreError, StoredPayload, database_error,
};

/// A fence entry's `seq`: it is no checkpoint, so it has no position, and
/// every reader of checkpoints leaves it out (`seq >= 0`). It keeps the
/// blob index out of it with an empty `inline`.
pub(crate) const FENCE_SEQ: i64 = -1;

/// How many times an append of fence entries goes on after a concurrent
/// commit took the key it chose (PostgreSQL only: on SQLite the append
/// holds the database's write lock from its read to its write).
const FENCE_TRIES: usize = 100;

/// What the journal's INSERT does with a row whose key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakenKey {
    /// Leaves the row out (`ON CONFLICT DO NOTHING`); the others go in.
    Skip,
    /// Fails the statement with a unique violation: the common case, no
    /// key taken, is then a plain insert, where PostgreSQL inserts a row
    /// that may conflict speculatively (a pre-check, a token and a
    /// confirming WAL record).
    Fail,
}

/// The fenced INSERT of `rows` checkpoints. One row, the common case,
/// takes its values as parameters from `$first` on (in
/// [`bind_checkpoint!`]'s order); a group takes them as a `VALUES` table
/// from `$1`.
///
/// The fence is the journal itself: a row goes in only right after its
/// attempt's own entry (the fence entry its claim appended, or its own
/// previous checkpoint), one primary-key read, and no request row is read
/// or locked. An epoch bump appends the new epoch's fence entry, so a
/// commit of an older attempt meets a taken key (the journal's unique key
/// orders the two writes) or a previous entry that is not its own.
pub(crate) fn commit_sql(backend: Backend, rows: usize, first: usize, taken: TakenKey) -> String {
    const COLUMNS: [&str; 9] = [
        "journal_key",
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
            format!("${}", first + i)
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
          WHERE EXISTS (SELECT 1 FROM checkpoints p
                         WHERE p.journal_key = {journal_key} - 1
                           AND p.server_id = {owner} AND p.epoch = {epoch})
         {on_conflict}",
        now = backend.now_ms(),
        on_conflict = match taken {
            TakenKey::Skip => "ON CONFLICT DO NOTHING",
            TakenKey::Fail => "",
        },
    )
}

/// Binds the values of checkpoint `write` at journal key `key` in the
/// order of [`commit_sql`]'s parameters.
macro_rules! bind_checkpoint {
    ($query:expr, $key:expr, $write:expr) => {{
        let write: &$crate::CheckpointWrite = $write;
        $query
            .bind($key)
            .bind(write.journal.number)
            .bind(write.seq)
            .bind(&write.name)
            .bind(&write.fence.owner)
            .bind(write.fence.epoch)
            .bind(&write.payload.hash)
            .bind(write.payload.size)
            .bind(write.payload.inline.as_deref())
    }};
}
pub(crate) use bind_checkpoint;

impl SqlStore {
    /// The INSERT of a fence entry at the end of the journal of each
    /// request `r` that `which` selects, for its owner and epoch now; a
    /// request whose journal ends with that epoch's fence already is left
    /// out, so a repeat appends only what a taken key turned away.
    pub(crate) fn fence_sql(&self, which: &str) -> String {
        let last = "SELECT MAX(c.journal_key) FROM checkpoints c
                     WHERE c.journal_key >= r.num * JOURNAL_CAPACITY
                       AND c.journal_key < (r.num + 1) * JOURNAL_CAPACITY";
        self.sql(&format!(
            "INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
             SELECT k.journal_key, k.generation, {FENCE_SEQ}, '', k.owner, k.epoch, NOW_MS, '', 0, {empty}
               FROM (SELECT COALESCE(({last}) + 1, r.num * JOURNAL_CAPACITY + r.journal_base) AS journal_key,
                            r.num, r.generation, COALESCE(r.owner, '') AS owner, r.epoch
                       FROM requests r
                      WHERE {which}
                        AND NOT EXISTS (SELECT 1 FROM checkpoints f
                                         WHERE f.journal_key = ({last})
                                           AND f.seq = {FENCE_SEQ} AND f.epoch = r.epoch)) k
              WHERE k.journal_key < (k.num + 1) * JOURNAL_CAPACITY
             ON CONFLICT DO NOTHING
             RETURNING journal_key",
            empty = self.backend.empty_bytes(),
        ))
    }

    /// The INSERT of the first fence entry of a request claimed as it is
    /// created, at ordinal 0 of its empty journal; `params` name its
    /// number, owner and epoch, `from` is the row's source.
    pub(crate) fn created_fence_sql(&self, params: [&str; 3], from: &str) -> String {
        let [number, owner, epoch] = params;
        self.sql(&format!(
            "INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
             SELECT {number} * JOURNAL_CAPACITY, 0, {FENCE_SEQ}, '', {owner}, {epoch}, NOW_MS, '', 0, {empty} {from}",
            empty = self.backend.empty_bytes(),
        ))
    }

    /// Appends the fence entry of request `id`'s epoch now (see
    /// [`Self::append_fences`]): its ordinal.
    pub(crate) async fn append_fence(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
    ) -> Result<i64, StoreError> {
        let sql = self.fence_sql("r.id = $1");
        for _ in 0..FENCE_TRIES {
            let key: Option<(i64,)> = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .db()?;
            if let Some((key,)) = key {
                return Ok(key.rem_euclid(JOURNAL_CAPACITY));
            }
        }
        Err(fence_not_appended(id))
    }

    /// Appends to the journal of each of `ids` a fence entry for its owner
    /// and epoch now, which the transaction has just bumped. On PostgreSQL
    /// a commit of the old epoch may take the chosen key first (the
    /// journal's unique key makes this append wait for it); the append then
    /// goes on after it, so the old attempt's last checkpoint stays in the
    /// journal, and anything after the fence entry is refused.
    pub(crate) async fn append_fences(
        &self,
        tx: &mut Transaction<'_, Any>,
        ids: &[String],
    ) -> Result<(), StoreError> {
        const BATCH: usize = 500;
        for batch in ids.chunks(BATCH) {
            let params: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = self.fence_sql(&format!("r.id IN ({})", params.join(", ")));
            let mut left = batch.len() as u64;
            for _ in 0..FENCE_TRIES {
                let mut query = sqlx::query(&sql);
                for id in batch {
                    query = query.bind(id);
                }
                left = left.saturating_sub(query.execute(&mut **tx).await.db()?.rows_affected());
                if left == 0 {
                    break;
                }
            }
            if left > 0 {
                return Err(fence_not_appended(&batch.join(", ")));
            }
        }
        Ok(())
    }
}

/// A fence entry that could not be appended: the journal is full, or a
/// commit of the old epoch kept taking the key.
pub(crate) fn fence_not_appended(requests: &str) -> StoreError {
    StoreError::Refused(format!(
        "no fence entry could be appended to the journal of {requests}: \
         it is full, or an older attempt kept committing"
    ))
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
                AND c.seq >= 0
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
              WHERE r.id = $1 AND c.journal_key > $2 AND c.seq >= 0
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
            match write.journal.key(write.ordinal) {
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
            group = commit_sql(self.backend, keyed.len(), 1, TakenKey::Fail);
            &group
        };
        let mut writer = self.kept_writer().await?;
        // The statement answers a count alone: one message back from the
        // database rather than one per row, which a woken task pays for.
        let mut done = bind_group(sql, &keyed).execute(&mut *writer).await;
        if matches!(&done, Err(sqlx::Error::Database(e)) if e.is_unique_violation()) {
            // A key was taken (a fence, or a retry's own row): again,
            // leaving out what is taken, which the journal then tells apart.
            let skipping = commit_sql(self.backend, keyed.len(), 1, TakenKey::Skip);
            done = bind_group(&skipping, &keyed).execute(&mut *writer).await;
        }
        let inserted = match done {
            Ok(done) => done.rows_affected(),
            Err(e) => {
                writer.discard();
                return Err(database_error(e));
            }
        };
        if inserted == keyed.len() as u64 {
            return Ok(results);
        }
        // Some writes were left out: the journal says which.
        for (index, key, write) in keyed {
            if !own_entry(&mut writer, key, write).await? {
                results[index] = Err(write.fence.lost());
            }
        }
        Ok(results)
    }
}

/// [`commit_sql`]'s statement `sql` with the values of `keyed`'s writes.
fn bind_group<'q>(
    sql: &'q str,
    keyed: &'q [(usize, i64, &'q CheckpointWrite)],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    for (_, key, write) in keyed {
        query = bind_checkpoint!(query, *key, *write);
    }
    query
}

/// Whether the journal holds `write` at `key`: a row there under its owner
/// and epoch is its attempt's own, committed now or by an earlier try
/// whose answer was lost.
pub(crate) async fn own_entry(
    connection: &mut sqlx::AnyConnection,
    key: i64,
    write: &CheckpointWrite,
) -> Result<bool, StoreError> {
    let found = sqlx::query(
        "SELECT 1 FROM checkpoints WHERE journal_key = $1 AND server_id = $2 AND epoch = $3",
    )
    .bind(key)
    .bind(&write.fence.owner)
    .bind(write.fence.epoch)
    .fetch_optional(connection)
    .await
    .db()?;
    Ok(found.is_some())
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
