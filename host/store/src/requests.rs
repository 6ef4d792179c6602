//! The request lifecycle: creation, claims and fenced outcomes; the
//! operator's transitions are in `operator`, reads for people in `listing`.

use baton_core::store::DURATION_BOUNDS_MS;
use baton_core::{EventKind, RequestStatus, Transition};
use sqlx::any::AnyArguments;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Connection, Row, Transaction};

use baton_core::store::async_trait;

use crate::{
    Backend, CHILD_WAIT_PREFIX, CheckpointWrite, Claim, DURATION_BUCKETS, Db, DueRequest, Fence,
    JOURNAL_CAPACITY, JournalGeneration, MinuteCounts, NewRequest, Outcome, RequestRow,
    RequestStore, RunningAttempt, ServerStore, SqlStore, SqliteScript, StoreError, StoredPayload,
    WriteConnection,
    checkpoints::{TakenKey, bind_checkpoint, commit_sql, own_entry},
    database_error, duration_bucket, sqlite_script,
};

/// The last checkpoint's name is read from the journal, not kept on the row:
/// a checkpoint commit writes the journal alone.
pub(crate) const REQUEST_COLUMNS: &str = "id, flow, version, status, owner, epoch, attempts, failures, generation,
    (SELECT c.name FROM checkpoints c
      WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY
        AND c.seq >= 0
      ORDER BY c.journal_key DESC LIMIT 1) AS last_checkpoint,
    next_attempt_at, input_hash, input_size, input_inline,
    output_hash, output_size, output_inline, error, error_details, waiting_for, parent, held, created_at, updated_at";

pub(crate) fn request_row(row: &AnyRow) -> RequestRow {
    let output_hash: Option<String> = row.get("output_hash");
    RequestRow {
        id: row.get("id"),
        flow: row.get("flow"),
        version: row.get("version"),
        status: RequestStatus::parse(row.get::<String, _>("status").as_str())
            .unwrap_or(RequestStatus::Error),
        owner: row.get("owner"),
        epoch: row.get("epoch"),
        attempts: row.get("attempts"),
        failures: row.get("failures"),
        generation: row.get("generation"),
        last_checkpoint: row.get("last_checkpoint"),
        next_attempt_at: row.get("next_attempt_at"),
        input: StoredPayload {
            hash: row.get("input_hash"),
            size: row.get("input_size"),
            inline: row.get("input_inline"),
        },
        output: output_hash.map(|hash| StoredPayload {
            hash,
            size: row.get::<Option<i64>, _>("output_size").unwrap_or_default(),
            inline: row.get("output_inline"),
        }),
        error: row.get("error"),
        error_details: row.get("error_details"),
        waiting_for: row.get("waiting_for"),
        parent: row.get("parent"),
        held: row.get::<i64, _>("held") != 0,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// The transition a create makes, and the epoch it leaves.
fn creation(claim: bool) -> (Transition, i64) {
    let transition = if claim {
        Transition::SubmitAndClaim
    } else {
        Transition::Submit
    };
    (transition, i64::from(transition.rule().bumps_epoch))
}

/// Binds `$1`–`$14` of [`SqlStore::insert_request_sql`] for `new`.
fn bind_new<'q, O>(
    query: sqlx::query::QueryAs<'q, Any, O, AnyArguments<'q>>,
    new: &'q NewRequest,
    transition: Transition,
) -> sqlx::query::QueryAs<'q, Any, O, AnyArguments<'q>> {
    query
        .bind(&new.id)
        .bind(&new.flow)
        .bind(&new.version)
        .bind(&new.owner)
        .bind(i64::from(new.other_server_retry))
        .bind(i64::from(new.resume))
        .bind(&new.input.hash)
        .bind(new.input.size)
        .bind(new.input.inline.as_deref())
        .bind(transition.rule().to.as_str())
        .bind(i64::from(transition.rule().bumps_epoch))
        .bind(new.incarnation)
        .bind(new.idempotency_key.as_deref())
        .bind(new.parent.as_deref())
        .bind(i64::from(new.while_active))
}

/// The claim of request `id` by `me` from the row its UPDATE returned, its
/// first new checkpoint at `appends_at`.
fn claim_of(row: &AnyRow, id: &str, me: &str, appends_at: i64) -> Claim {
    Claim {
        fence: Fence {
            request: id.to_owned(),
            owner: me.to_owned(),
            epoch: row.get(2),
        },
        flow: row.get(0),
        version: row.get(1),
        attempts: row.get(3),
        failures: row.get(4),
        postponements: row.get(11),
        created_at: row.get(12),
        journal: JournalGeneration {
            request: row.get(9),
            number: row.get(5),
            base: row.get(10),
        },
        input: StoredPayload {
            hash: row.get(6),
            size: row.get(7),
            inline: row.get(8),
        },
        created: false,
        appends_at,
    }
}

/// The claim of a request claimed as it was created.
fn created_claim(new: &NewRequest, epoch: i64, number: i64, created_at: i64) -> Claim {
    Claim {
        fence: Fence {
            request: new.id.clone(),
            owner: new.owner.clone(),
            epoch,
        },
        flow: new.flow.clone(),
        version: new.version.clone(),
        attempts: 1,
        failures: 0,
        postponements: 0,
        created_at,
        journal: JournalGeneration {
            request: number,
            number: 0,
            base: 0,
        },
        input: new.input.clone(),
        created: true,
        appends_at: 1,
    }
}

impl SqlStore {
    /// The INSERT of a new request, owned by a server only while it runs
    /// at its incarnation, an idempotency key taking one request; returns
    /// `num, created_at`. Parameters: [`bind_new`].
    fn insert_request_sql(&self) -> String {
        self.sql(
            "INSERT INTO requests (id, flow, version, status, owner, epoch, attempts, failures,
                generation, other_server_retry, resume, next_attempt_at,
                input_hash, input_size, input_inline, created_at, updated_at, idempotency_key,
                parent)
             SELECT $1, $2, $3, $10, $4, $11, $11, 0, 0, $5, $6,
                     CASE WHEN $11 = 0 THEN NOW_MS END, $7, $8, $9, NOW_MS, NOW_MS, $13, $14
              WHERE EXISTS (SELECT 1 FROM servers s
                             WHERE s.id = $4 AND s.incarnation = $12 AND s.status = 'running')
                AND ($15 = 0 OR EXISTS (SELECT 1 FROM flows f
                                         WHERE f.name = $2 AND f.active_version = $3))
             ON CONFLICT (flow, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING num, created_at",
        )
    }

    /// The INSERT of a new request's history: created and, when `claim`ed,
    /// its first attempt; `params` name the request, its owner and the
    /// claim's epoch, `from` is the rows' source (none: one row each).
    fn created_history_sql(&self, claim: bool, params: [&str; 3], from: &str) -> String {
        let [request, owner, epoch] = params;
        let mut rows = vec![format!(
            "SELECT {request}, NOW_MS, '{}', {owner}, 0, NULL {from}",
            EventKind::Created.as_str()
        )];
        if let Some(kind) = Transition::SubmitAndClaim.rule().event.filter(|_| claim) {
            rows.push(format!(
                "SELECT {request}, NOW_MS, '{}', {owner}, {epoch}, 'attempt 1' {from}",
                kind.as_str()
            ));
        }
        self.sql(&format!(
            "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail) {}",
            rows.join(" UNION ALL ")
        ))
    }

    /// The create in one round trip: the request, its history, its first
    /// fence entry when claimed and its minute's count. On PostgreSQL it is
    /// one statement (data-modifying CTEs), which commits by itself; on
    /// SQLite one script ([`sqlite_script`]), whose later statements read
    /// the new row back. A key already taken or an owner no longer running
    /// inserts nothing, and nothing else either.
    async fn create_in_one_call(
        &self,
        mut writer: WriteConnection,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let (transition, epoch) = creation(claim);
        let started = MinuteCounts {
            started: 1,
            ..Default::default()
        };
        let started: Vec<String> = crate::statistics::counter_values(&started)
            .iter()
            .map(i64::to_string)
            .chain((0..DURATION_BUCKETS).map(|_| "0".to_owned()))
            .collect();
        // The new row: the INSERT's own on PostgreSQL, read back on SQLite
        // (its id is new, so it is there only if this INSERT put it there).
        let from = match self.backend {
            Backend::Postgres => "FROM r WHERE true",
            Backend::Sqlite => "FROM requests r WHERE r.id = $1",
        };
        let history = self.created_history_sql(claim, ["$1", "$4", "$11"], from);
        let fence = claim.then(|| self.created_fence_sql(["r.num", "$4", "$11"], from));
        let minute = self.minute_upsert_sql(&format!(
            "SELECT ({now} / 60000) * 60000, $2, $4, {shard}, {} {from}",
            started.join(", "),
            now = self.backend.now_ms(),
            shard = self.minute_shard(),
        ));
        let (row, mut writer) = match self.backend {
            Backend::Postgres => {
                let fence = fence.map(|f| format!(", f AS ({f})")).unwrap_or_default();
                let sql = format!(
                    "WITH r AS ({insert}), e AS ({history}), m AS ({minute}){fence}
                     SELECT num, created_at FROM r",
                    insert = self.insert_request_sql(),
                );
                let row: Option<(i64, i64)> = bind_new(sqlx::query_as(&sql), new, transition)
                    .fetch_optional(&mut *writer)
                    .await
                    .db()?;
                (row, writer)
            }
            Backend::Sqlite => {
                let mut statements = vec![self.insert_request_sql(), history, minute];
                statements.extend(fence);
                let sql = sqlite_script(&statements);
                let mut script = SqliteScript::on(writer);
                let rows = script
                    .run(bind_new(sqlx::query_as(&sql), new, transition))
                    .await?;
                (rows.into_iter().next(), script.ended())
            }
        };
        match row {
            Some((number, created_at)) => {
                Ok(claim.then(|| created_claim(new, epoch, number, created_at)))
            }
            None => Err(self.not_created(&mut writer, new).await),
        }
    }

    /// The due query: `$1` the server, `$2` the limit, `$3` how far ahead
    /// (ms). Its time bound is one an index scan can use, so requests due
    /// later (sleepers, waiters) cost a poll nothing.
    pub(crate) fn due_sql(&self) -> String {
        self.sql(
            "SELECT id, next_attempt_at - NOW_MS FROM requests
              WHERE ((owner = $1 AND status IN ('queued', 'waiting_retry', 'running'))
                     OR (owner IS NULL AND status = 'waiting_retry'))
                AND next_attempt_at <= NOW_BOUND + $3 AND held = 0
              ORDER BY next_attempt_at LIMIT $2",
        )
    }

    /// The INSERT of a history entry: the request, its kind, server, epoch
    /// and detail.
    fn event_sql(&self) -> String {
        self.sql(
            "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail)
             VALUES ($1, NOW_MS, $2, $3, $4, $5)",
        )
    }

    /// Appends to a request's history inside a transaction.
    pub(crate) async fn event(
        &self,
        tx: &mut Transaction<'_, Any>,
        request: &str,
        kind: EventKind,
        server: Option<&str>,
        epoch: Option<i64>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.event_sql())
            .bind(request)
            .bind(kind.as_str())
            .bind(server)
            .bind(epoch)
            .bind(detail)
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }

    /// Inserts a request and its first events inside a transaction.
    pub(crate) async fn insert_request(
        &self,
        tx: &mut Transaction<'_, Any>,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let (transition, epoch) = creation(claim);
        let number: Option<(i64, i64)> =
            bind_new(sqlx::query_as(&self.insert_request_sql()), new, transition)
                .fetch_optional(&mut **tx)
                .await
                .db()?;
        let Some((number, created_at)) = number else {
            return Err(self.not_created(tx, new).await);
        };
        let history = self.created_history_sql(claim, ["$1", "$2", "$3"], "");
        let mut query = sqlx::query(&history).bind(&new.id).bind(&new.owner);
        if claim {
            query = query.bind(epoch);
        }
        query.execute(&mut **tx).await.db()?;
        if claim {
            sqlx::query(&self.created_fence_sql(["$1", "$2", "$3"], ""))
                .bind(number)
                .bind(&new.owner)
                .bind(epoch)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        let started = MinuteCounts {
            started: 1,
            ..Default::default()
        };
        self.add_minute(tx, &new.flow, &new.owner, &started).await?;
        Ok(claim.then(|| created_claim(new, epoch, number, created_at)))
    }

    /// The history event `transition`'s rule writes, if any.
    /// Wakes the parent of `child`, which has just ended, as an event
    /// wakes a request: due at once if it waits for this child, and
    /// `wake_pending` for an attempt that may have looked before the end
    /// (on PostgreSQL the child's row is locked first, then the parent's).
    pub(crate) async fn wake_parent(
        &self,
        tx: &mut Transaction<'_, Any>,
        child: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "UPDATE requests SET wake_pending = 1,
                    next_attempt_at = CASE WHEN waiting_for = $2 AND next_attempt_at > NOW_MS
                                           THEN NOW_MS ELSE next_attempt_at END
              WHERE id = (SELECT parent FROM requests WHERE id = $1)",
        ))
        .bind(child)
        .bind(format!("{CHILD_WAIT_PREFIX}{child}"))
        .execute(&mut **tx)
        .await
        .db()?;
        self.wake_owner(
            tx,
            "r.id = (SELECT parent FROM requests WHERE id = $1)",
            child,
        )
        .await
    }

    pub(crate) async fn transition_event(
        &self,
        tx: &mut Transaction<'_, Any>,
        transition: Transition,
        request: &str,
        server: &str,
        epoch: i64,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        match transition.rule().event {
            Some(kind) => {
                self.event(tx, request, kind, Some(server), Some(epoch), detail)
                    .await
            }
            None => Ok(()),
        }
    }

    /// A claim that updated nothing: not due or not claimable (`None`), or
    /// `me` no longer running at `incarnation`.
    async fn nothing_claimed(
        &self,
        me: &str,
        incarnation: i64,
    ) -> Result<Option<Claim>, StoreError> {
        match self.server(me).await? {
            Some(server)
                if server.incarnation == incarnation
                    && server.status == crate::ServerStatus::Running =>
            {
                Ok(None)
            }
            _ => Err(not_running(me, incarnation)),
        }
    }

    /// SQLite's claim in two calls to the connection's thread where its
    /// transaction took five: the first begins it, runs the claim's
    /// `update` and appends the fence entry if the UPDATE claimed the
    /// request (`changes()`); the second writes the history entry and
    /// commits, or rolls back a claim whose fence entry found no room.
    async fn claim_in_two_calls(
        &self,
        id: &str,
        me: &str,
        incarnation: i64,
        update: &str,
    ) -> Result<Option<Claim>, StoreError> {
        let mut script = SqliteScript::on(self.writer().await?);
        let begin = format!(
            "BEGIN IMMEDIATE; {update}; {}",
            self.fence_sql("r.id = $1 AND changes() = 1")
        );
        let rows = script
            .run_rows(sqlx::query(&begin).bind(id).bind(me).bind(incarnation))
            .await?;
        crate::fault::point(crate::fault::PAUSE_IN_CLAIM);
        // The UPDATE's row (if it claimed), then the fence entry's key.
        let (row, fence) = match rows.as_slice() {
            [] => {
                script.run_rows(sqlx::query("COMMIT")).await?;
                script.ended();
                return self.nothing_claimed(me, incarnation).await;
            }
            [row, fence] => (row, fence.get::<i64, _>(0)),
            _ => {
                script.run_rows(sqlx::query("ROLLBACK")).await?;
                script.ended();
                return Err(crate::checkpoints::fence_not_appended(id));
            }
        };
        let claim = claim_of(row, id, me, fence.rem_euclid(JOURNAL_CAPACITY) + 1);
        let end = format!("{}; COMMIT", self.event_sql());
        script
            .run_rows(
                sqlx::query(&end)
                    .bind(id)
                    .bind(EventKind::Attempt.as_str())
                    .bind(me)
                    .bind(claim.fence.epoch)
                    .bind(format!("attempt {}", claim.attempts)),
            )
            .await?;
        script.ended();
        Ok(Some(claim))
    }

    /// Why `new` was not inserted: its key names a request already there
    /// (committed, since the insert waited for any other writer of the key),
    /// or its owner is not running at its incarnation.
    async fn not_created(&self, connection: &mut AnyConnection, new: &NewRequest) -> StoreError {
        let Some(key) = &new.idempotency_key else {
            return self.version_replaced_or_not_running(connection, new).await;
        };
        let first: Result<Option<(String, String)>, sqlx::Error> = sqlx::query_as(
            "SELECT id, input_hash FROM requests WHERE flow = $1 AND idempotency_key = $2",
        )
        .bind(&new.flow)
        .bind(key)
        .fetch_optional(&mut *connection)
        .await;
        match first {
            Ok(Some((request, input_hash))) => StoreError::KeyTaken {
                key: key.clone(),
                request,
                same_input: input_hash == new.input.hash,
            },
            Ok(None) => self.version_replaced_or_not_running(connection, new).await,
            Err(e) => database_error(e),
        }
    }

    /// Why a request with no key taken was not created: its version is no
    /// longer active (when it had to be), or else its owner is no longer
    /// running.
    async fn version_replaced_or_not_running(
        &self,
        connection: &mut AnyConnection,
        new: &NewRequest,
    ) -> StoreError {
        if new.while_active {
            let active: Result<Option<(String,)>, sqlx::Error> =
                sqlx::query_as("SELECT name FROM flows WHERE name = $1 AND active_version = $2")
                    .bind(&new.flow)
                    .bind(&new.version)
                    .fetch_optional(&mut *connection)
                    .await;
            match active {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return StoreError::VersionReplaced {
                        flow: new.flow.clone(),
                        version: new.version.clone(),
                    };
                }
                Err(e) => return database_error(e),
            }
        }
        not_running(&new.owner, new.incarnation)
    }
}

#[async_trait]
impl RequestStore for SqlStore {
    fn new_request_id(&self) -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    async fn create_request(
        &self,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let writer = self.writer().await?;
        self.create_in_one_call(writer, new, claim).await
    }

    async fn due_requests(
        &self,
        me: &str,
        limit: i64,
        within_ms: i64,
    ) -> Result<Vec<DueRequest>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.due_sql())
            .bind(me)
            .bind(limit)
            .bind(within_ms)
            .fetch_all(&self.pool)
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(|(id, in_ms)| DueRequest { id, in_ms })
            .collect())
    }

    async fn claim(
        &self,
        id: &str,
        me: &str,
        incarnation: i64,
    ) -> Result<Option<Claim>, StoreError> {
        // A flow that does not resume starts a new generation after an
        // attempt that left checkpoints (fence entries are none).
        let new_generation = "resume = 0 AND suspended = 0 AND EXISTS (
                        SELECT 1 FROM checkpoints c
                         WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY + requests.journal_base
                           AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY AND c.seq >= 0)";
        let update = self.transition_sql(
            Transition::Claim,
            &format!(
                "UPDATE requests SET status = RULE_TO, owner = $2, epoch = epoch + 1,
                    attempts = attempts + 1,
                    generation = generation + CASE WHEN {new_generation} THEN 1 ELSE 0 END,
                    journal_base = CASE WHEN {new_generation} THEN (
                        SELECT MAX(c.journal_key) + 1 - requests.num * JOURNAL_CAPACITY FROM checkpoints c
                         WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY + requests.journal_base
                           AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY)
                        ELSE journal_base END,
                    suspended = 0, wake_pending = 0, waiting_for = NULL, next_attempt_at = NULL,
                    updated_at = NOW_MS
              WHERE id = $1 AND status IN (RULE_FROM) AND (owner = $2 OR owner IS NULL)
                AND (status <> 'running' OR owner = $2)
                AND next_attempt_at <= NOW_MS AND held = 0
                AND EXISTS (SELECT 1 FROM servers s
                             WHERE s.id = $2 AND s.incarnation = $3 AND s.status = 'running')
              RETURNING flow, version, epoch, attempts, failures, generation,
                        input_hash, input_size, input_inline, num, journal_base, postponements,
                        created_at"
            ),
        );
        if self.backend == Backend::Sqlite {
            return self.claim_in_two_calls(id, me, incarnation, &update).await;
        }
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let row = sqlx::query(&update)
            .bind(id)
            .bind(me)
            .bind(incarnation)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        crate::fault::point(crate::fault::PAUSE_IN_CLAIM);
        let Some(row) = row else {
            drop(tx);
            return self.nothing_claimed(me, incarnation).await;
        };
        let appends_at = self.append_fence(&mut tx, id).await? + 1;
        let claim = claim_of(&row, id, me, appends_at);
        self.event(
            &mut tx,
            id,
            EventKind::Attempt,
            Some(me),
            Some(claim.fence.epoch),
            Some(&format!("attempt {}", claim.attempts)),
        )
        .await?;
        tx.commit().await.db()?;
        Ok(Some(claim))
    }

    async fn finish(&self, fence: &Fence, outcome: &Outcome) -> Result<(), StoreError> {
        self.finish_after(fence, None, outcome).await
    }

    async fn finish_with_checkpoint(
        &self,
        last: &CheckpointWrite,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let Some(key) = last.journal.key(last.ordinal) else {
            return Err(StoreError::JournalFull {
                request: last.fence.request.clone(),
            });
        };
        self.finish_after(&last.fence, Some((key, last)), outcome)
            .await
    }

    async fn release(&self, fence: &Fence, why: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let done = sqlx::query(&self.transition_sql(
            Transition::Release,
            "UPDATE requests SET status = RULE_TO, next_attempt_at = NOW_MS, updated_at = NOW_MS
              WHERE id = $1 AND owner = $2 AND epoch = $3 AND status IN (RULE_FROM)
                AND next_attempt_at IS NULL",
        ))
        .bind(&fence.request)
        .bind(&fence.owner)
        .bind(fence.epoch)
        .execute(&mut *tx)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Err(fence.lost());
        }
        self.transition_event(
            &mut tx,
            Transition::Release,
            &fence.request,
            &fence.owner,
            fence.epoch,
            Some(why),
        )
        .await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn running_on(&self, me: &str) -> Result<Vec<RunningAttempt>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT id, epoch, held FROM requests
              WHERE owner = $1 AND status = 'running' AND next_attempt_at IS NULL",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(request, epoch, held)| RunningAttempt {
                request,
                epoch,
                held: held != 0,
            })
            .collect())
    }
}

/// The refusal for a server that is no longer running at `incarnation`.
fn not_running(server: &str, incarnation: i64) -> StoreError {
    StoreError::Refused(format!(
        "server {server} is no longer running as incarnation {incarnation}: it may not take work"
    ))
}

impl SqlStore {
    /// [`RequestStore::finish`] with `last`, a checkpoint and its journal
    /// key, committed first in the same transaction.
    async fn finish_after(
        &self,
        fence: &Fence,
        last: Option<(i64, &CheckpointWrite)>,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let transition = outcome.transition();
        let writer = self.writer().await?;
        // A child (its parent to wake) or a lost fence falls through to
        // the transaction, which tells them apart.
        let (written, mut writer) = self
            .finish_in_one_call(writer, fence, last, outcome)
            .await?;
        if written {
            return Ok(());
        }
        let mut tx = writer.begin().await.db()?;
        if let Some((key, last)) = last {
            let skipping = commit_sql(self.backend, 1, 1, TakenKey::Skip);
            let query = bind_checkpoint!(sqlx::query(&skipping), key, last);
            let inserted = query.execute(&mut *tx).await.db()?.rows_affected();
            if inserted == 0 && !own_entry(&mut tx, key, last).await? {
                return Err(fence.lost());
            }
        }
        let sql = self.outcome_update_sql(outcome, "");
        let query = bind_outcome(
            sqlx::query_as::<_, OutcomeWritten>(&sql)
                .bind(&fence.request)
                .bind(&fence.owner)
                .bind(fence.epoch),
            outcome,
        );
        let Some((flow, took, parent)) = query.fetch_optional(&mut *tx).await.db()? else {
            return Err(fence.lost());
        };
        let mut counts = outcome_counts(outcome);
        if counts.succeeded + counts.failed > 0 {
            counts.durations = vec![0; DURATION_BUCKETS];
            counts.durations[duration_bucket(took)] = 1;
        }
        if counts != MinuteCounts::default() {
            self.add_minute(&mut tx, &flow, &fence.owner, &counts)
                .await?;
        }
        self.transition_event(
            &mut tx,
            transition,
            &fence.request,
            &fence.owner,
            fence.epoch,
            outcome_detail(outcome).as_deref(),
        )
        .await?;
        // Only a child has a parent to wake: a statement fewer for the rest.
        if parent.is_some() && matches!(outcome, Outcome::Succeeded(_) | Outcome::Error { .. }) {
            self.wake_parent(&mut tx, &fence.request).await?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    /// The UPDATE that writes `outcome` under its fence (`$1`–`$3`, the
    /// outcome's own from `$4`: [`bind_outcome`]), with `also` added to
    /// its conditions; returns `flow`, `took` (ms since creation) and
    /// `parent`.
    fn outcome_update_sql(&self, outcome: &Outcome, also: &str) -> String {
        // A request that ends is no longer held: a hold keeps only what may
        // still run from running.
        let set = match outcome {
            Outcome::Succeeded(_) => {
                "output_hash = $4, output_size = $5, output_inline = $6, error = NULL,
                 error_details = NULL, next_attempt_at = NULL, postponements = 0, held = 0"
            }
            Outcome::Retry { .. } => {
                "failures = failures + 1, error = $4, next_attempt_at = NOW_MS + $5,
                 error_details = $6, postponements = 0"
            }
            Outcome::Error { .. } => {
                "failures = failures + 1, error = $4, error_details = $5, next_attempt_at = NULL,
                 postponements = 0, held = 0"
            }
            Outcome::Postponed { .. } => {
                "error = $4, error_details = NULL, suspended = 1,
                 postponements = postponements + 1, next_attempt_at = NOW_MS + $5"
            }
            // An event sent while the attempt ran wakes it at once (the row's
            // own column: PostgreSQL re-reads it after waiting for a send).
            Outcome::Sleeping { .. } => {
                "next_attempt_at = CASE WHEN wake_pending = 1 THEN NOW_MS ELSE $4 END,
                 waiting_for = $5, wake_pending = 0, suspended = 1, postponements = 0"
            }
        };
        self.transition_sql(
            outcome.transition(),
            &format!(
                "UPDATE requests SET status = RULE_TO, {set}, updated_at = NOW_MS
                  WHERE id = $1 AND owner = $2 AND epoch = $3 AND status IN (RULE_FROM)
                    AND next_attempt_at IS NULL {also}
                  RETURNING flow, NOW_MS - created_at AS took, parent"
            ),
        )
    }

    /// The outcome of a request with no parent in one round trip: the
    /// UPDATE, its history entry and its minute's counts (the duration's
    /// bucket computed in SQL). On PostgreSQL it is one statement, which
    /// commits by itself; on SQLite one script ([`sqlite_script`]), in
    /// which each statement after the UPDATE runs only if the one before it
    /// wrote its one row (`changes()`), so none runs after an UPDATE that
    /// found nothing. Whether it was written, with the connection back: not
    /// for a child, nor under a lost fence.
    async fn finish_in_one_call(
        &self,
        mut writer: WriteConnection,
        fence: &Fence,
        last: Option<(i64, &CheckpointWrite)>,
        outcome: &Outcome,
    ) -> Result<(bool, WriteConnection), StoreError> {
        let event = outcome.transition().rule().event;
        let detail = 4 + outcome_parameters(outcome);
        // The checkpoint goes first; the UPDATE runs only if it went in.
        let checkpoint = last.map(|_| {
            // A key taken (a retry whose answer was lost) must not fail the
            // statement: the transaction below tells it apart.
            let first = detail + usize::from(event.is_some());
            let insert = commit_sql(self.backend, 1, first, TakenKey::Skip);
            match self.backend {
                Backend::Postgres => (
                    format!("{insert} RETURNING 1"),
                    "AND EXISTS (SELECT 1 FROM c)",
                ),
                Backend::Sqlite => (insert, "AND changes() = 1"),
            }
        });
        let update = self.outcome_update_sql(
            outcome,
            &format!(
                "AND parent IS NULL {}",
                checkpoint.as_ref().map_or("", |(_, went_in)| *went_in)
            ),
        );
        let detail = format!("${detail}");
        let now = self.backend.now_ms();
        // The updated row: the UPDATE's own on PostgreSQL, read back on
        // SQLite (where `updated_at` is the UPDATE's clock).
        let (from, took) = match self.backend {
            Backend::Postgres => ("FROM u WHERE true", "u.took"),
            Backend::Sqlite => (
                "FROM requests u WHERE u.id = $1 AND changes() = 1",
                "(u.updated_at - u.created_at)",
            ),
        };
        let mut after = Vec::new();
        if let Some(kind) = event {
            after.push(format!(
                "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail)
                 SELECT $1, {now}, '{}', $2, $3, {detail} {from}",
                kind.as_str()
            ));
        }
        let counts = outcome_counts(outcome);
        if counts != MinuteCounts::default() {
            let ends = counts.succeeded + counts.failed > 0;
            let values: Vec<String> = crate::statistics::counter_values(&counts)
                .iter()
                .map(i64::to_string)
                .chain((0..DURATION_BUCKETS).map(|bucket| {
                    if ends {
                        format!(
                            "CASE WHEN {} THEN 1 ELSE 0 END",
                            duration_bucket_sql(took, bucket)
                        )
                    } else {
                        "0".to_owned()
                    }
                }))
                .collect();
            after.push(self.minute_upsert_sql(&format!(
                "SELECT ({now} / 60000) * 60000, u.flow, $2, {}, {} {from}",
                self.minute_shard(),
                values.join(", ")
            )));
        }
        let sql = match self.backend {
            Backend::Postgres => {
                let parts: Vec<String> = checkpoint
                    .map(|(insert, _)| format!("c AS ({insert})"))
                    .into_iter()
                    .chain(std::iter::once(format!("u AS ({update})")))
                    .chain(
                        after
                            .iter()
                            .enumerate()
                            .map(|(i, s)| format!("w{i} AS ({s})")),
                    )
                    .collect();
                format!("WITH {} SELECT flow, took, parent FROM u", parts.join(", "))
            }
            Backend::Sqlite => sqlite_script(
                &checkpoint
                    .map(|(insert, _)| insert)
                    .into_iter()
                    .chain(std::iter::once(update))
                    .chain(after)
                    .collect::<Vec<_>>(),
            ),
        };
        let mut query = bind_outcome(
            sqlx::query_as::<_, OutcomeWritten>(&sql)
                .bind(&fence.request)
                .bind(&fence.owner)
                .bind(fence.epoch),
            outcome,
        );
        if event.is_some() {
            query = query.bind(outcome_detail(outcome));
        }
        if let Some((key, last)) = last {
            query = bind_checkpoint!(query, key, last);
        }
        match self.backend {
            Backend::Postgres => {
                let written = query.fetch_optional(&mut *writer).await.db()?.is_some();
                Ok((written, writer))
            }
            Backend::Sqlite => {
                let mut script = SqliteScript::on(writer);
                let rows = script.run(query).await?;
                Ok((!rows.is_empty(), script.ended()))
            }
        }
    }
}

/// What the outcome's UPDATE returns: the request's flow, how long it took
/// (ms since creation) and its parent.
type OutcomeWritten = (String, i64, Option<String>);

/// How many parameters [`bind_outcome`] binds for `outcome`.
fn outcome_parameters(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Succeeded(_) | Outcome::Retry { .. } => 3,
        Outcome::Postponed { .. } | Outcome::Sleeping { .. } | Outcome::Error { .. } => 2,
    }
}

/// Binds the outcome's own parameters of [`SqlStore::outcome_update_sql`].
fn bind_outcome<'q, O>(
    query: sqlx::query::QueryAs<'q, Any, O, AnyArguments<'q>>,
    outcome: &'q Outcome,
) -> sqlx::query::QueryAs<'q, Any, O, AnyArguments<'q>> {
    match outcome {
        Outcome::Succeeded(output) => query
            .bind(&output.hash)
            .bind(output.size)
            .bind(output.inline.as_deref()),
        Outcome::Retry {
            error,
            details,
            delay_ms,
        } => query.bind(error).bind(*delay_ms).bind(details),
        Outcome::Postponed { reason, delay_ms } => query.bind(reason).bind(*delay_ms),
        Outcome::Sleeping { wake_at_ms, event } => query.bind(*wake_at_ms).bind(event),
        Outcome::Error { error, details } => query.bind(error).bind(details),
    }
}

/// The minute's counts an outcome adds (its duration bucket aside).
fn outcome_counts(outcome: &Outcome) -> MinuteCounts {
    let mut counts = MinuteCounts::default();
    match outcome {
        Outcome::Succeeded(_) => counts.succeeded = 1,
        Outcome::Error { .. } => counts.failed = 1,
        Outcome::Retry { .. } => counts.retries = 1,
        Outcome::Postponed { .. } | Outcome::Sleeping { .. } => {}
    }
    counts
}

/// The condition that `took` (ms, an SQL expression) falls in duration
/// bucket `bucket`, as [`duration_bucket`] places it.
pub(crate) fn duration_bucket_sql(took: &str, bucket: usize) -> String {
    let above = bucket
        .checked_sub(1)
        .map(|below| format!("{took} > {}", DURATION_BOUNDS_MS[below]));
    let within = DURATION_BOUNDS_MS
        .get(bucket)
        .map(|bound| format!("{took} <= {bound}"));
    match (above, within) {
        (Some(above), Some(within)) => format!("{above} AND {within}"),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => "TRUE".to_owned(),
    }
}

/// The history entry's detail of `outcome`.
fn outcome_detail(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Succeeded(_) => None,
        Outcome::Retry {
            error, delay_ms, ..
        } => Some(format!("{error}; retry in {delay_ms} ms")),
        Outcome::Error { error, .. } => Some(error.clone()),
        Outcome::Postponed { reason, delay_ms } => {
            Some(format!("{reason}; next attempt in {delay_ms} ms"))
        }
        Outcome::Sleeping {
            wake_at_ms,
            event: None,
        } => Some(format!("until {wake_at_ms} ms; the slot is free meanwhile")),
        Outcome::Sleeping {
            wake_at_ms,
            event: Some(event),
        } if event.starts_with(CHILD_WAIT_PREFIX) => Some(format!(
            "waits for its child request {}; the slot is free meanwhile",
            &event[CHILD_WAIT_PREFIX.len()..]
        )),
        Outcome::Sleeping {
            wake_at_ms,
            event: Some(event),
        } => Some(format!(
            "waits for the event {event:?} until {wake_at_ms} ms; the slot is free meanwhile"
        )),
    }
}
