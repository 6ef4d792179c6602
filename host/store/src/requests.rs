//! The request lifecycle: creation, claims and fenced outcomes; the
//! operator's transitions are in `operator`, reads for people in `listing`.

use baton_core::{EventKind, RequestStatus, Transition};
use sqlx::any::AnyRow;
use sqlx::{Any, Connection, Row, Transaction};

use crate::{Fence, JournalGeneration, Store, StoreError, StoredPayload, VersionRow};

/// A new request ID: a UUIDv7 in simple form. Its leading timestamp keeps
/// the requests' and the journal's b-trees growing at their right edge, so
/// a checkpoint commit writes one leaf page rather than splitting one at
/// a random place; the random tail keeps it unique across servers.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A request to create.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Pinned flow version (component hash).
    pub version: String,
    /// The server that received it and will run it.
    pub owner: String,
    /// The owner's incarnation: a server found dead creates nothing.
    pub incarnation: i64,
    /// The input JSON.
    pub input: StoredPayload,
    /// Copied from the version's properties: may another server resume it?
    pub other_server_retry: bool,
    /// Copied from the version's properties: `begin_checkpoint = use`.
    pub resume: bool,
    /// The caller's key: a second request of the same flow with the same
    /// key is not created ([`StoreError::KeyTaken`] names the first).
    pub idempotency_key: Option<String>,
}

impl NewRequest {
    /// A request that runs `version` on `input`, owned by the server and
    /// incarnation `owner` names, with what the version declares copied
    /// onto it. Every way of starting a request builds it here.
    pub fn of_version(
        version: &VersionRow,
        id: String,
        (owner, incarnation): (&str, i64),
        input: StoredPayload,
    ) -> Self {
        Self {
            id,
            flow: version.flow.clone(),
            version: version.hash.clone(),
            owner: owner.to_owned(),
            incarnation,
            input,
            other_server_retry: version.properties.other_server_retry,
            resume: version.properties.begin_checkpoint,
            idempotency_key: None,
        }
    }
}

/// An attempt's licence to run: what the claim returned.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Owner and epoch every write of this attempt is fenced on.
    pub fence: Fence,
    /// Flow name.
    pub flow: String,
    /// Pinned version.
    pub version: String,
    /// Attempts started so far, this one included.
    pub attempts: i64,
    /// Flow errors counted so far against `max_retries`.
    pub failures: i64,
    /// Postponements in a row before this attempt.
    pub postponements: i64,
    /// Journal generation this attempt replays and extends.
    pub journal: JournalGeneration,
    /// The input.
    pub input: StoredPayload,
}

/// How an attempt ended, as written back under its fence.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The flow returned an output.
    Succeeded(StoredPayload),
    /// The flow failed; it will be retried here after `delay_ms`.
    Retry {
        /// What failed.
        error: String,
        /// Delay before the retry.
        delay_ms: i64,
    },
    /// The flow failed for good.
    Error(String),
    /// The attempt could not start or end for a passing reason outside the
    /// flow (the database or storage away): it runs again after `delay_ms`
    /// without counting against the flow's retries.
    Postponed {
        /// What was in the way.
        reason: String,
        /// Delay before the next attempt.
        delay_ms: i64,
    },
    /// The flow sleeps until `wake_at_ms`: the request stays `running`,
    /// owned here, without an attempt, and is due again at that time.
    Sleeping {
        /// Wake-up time in milliseconds on the database clock.
        wake_at_ms: i64,
    },
}

impl Outcome {
    /// The transition this outcome makes.
    pub fn transition(&self) -> Transition {
        match self {
            Self::Succeeded(_) => Transition::Succeed,
            Self::Retry { .. } => Transition::Retry,
            Self::Error(_) => Transition::Fail,
            Self::Postponed { .. } => Transition::Postpone,
            Self::Sleeping { .. } => Transition::Sleep,
        }
    }
}

/// One request as listed or shown.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Pinned version.
    pub version: String,
    /// Status.
    pub status: RequestStatus,
    /// Owning server, if any.
    pub owner: Option<String>,
    /// Fencing epoch.
    pub epoch: i64,
    /// Attempts started.
    pub attempts: i64,
    /// Flow errors counted against `max_retries`.
    pub failures: i64,
    /// Journal generation.
    pub generation: i64,
    /// Name of the last committed checkpoint.
    pub last_checkpoint: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<i64>,
    /// The input.
    pub input: StoredPayload,
    /// The output, once succeeded.
    pub output: Option<StoredPayload>,
    /// The last error.
    pub error: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// One entry of a request's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    /// Its number; a page of events goes on after it.
    pub id: i64,
    /// When.
    pub at: i64,
    /// What happened.
    pub kind: EventKind,
    /// The server that did it.
    pub server: Option<String>,
    /// The epoch it happened at.
    pub epoch: Option<i64>,
    /// Details in a sentence.
    pub detail: Option<String>,
}

/// Filters for listing requests, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this flow.
    pub flow: Option<String>,
    /// Only owned by this server.
    pub server: Option<String>,
    /// Only requests listed after this one (keyset paging).
    pub after: Option<String>,
    /// Only IDs starting with this.
    pub id_prefix: Option<String>,
    /// Only created at or after this time (ms).
    pub created_from: Option<i64>,
    /// Only created before this time (ms).
    pub created_before: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// The last checkpoint's name is read from the journal, not kept on the row:
/// a checkpoint commit writes the journal alone.
pub(crate) const REQUEST_COLUMNS: &str = "id, flow, version, status, owner, epoch, attempts, failures, generation,
    (SELECT c.name FROM checkpoints c
      WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY
      ORDER BY c.journal_key DESC LIMIT 1) AS last_checkpoint,
    next_attempt_at, input_hash, input_size, input_inline,
    output_hash, output_size, output_inline, error, created_at, updated_at";

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
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

impl Store {
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
        sqlx::query(&self.sql(
            "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail)
             VALUES ($1, NOW_MS, $2, $3, $4, $5)",
        ))
        .bind(request)
        .bind(kind.as_str())
        .bind(server)
        .bind(epoch)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records a new request owned by the server that received it: `queued`,
    /// or, with `claim`, already `running` as its first attempt (one commit
    /// instead of two when the server has a free slot).
    pub async fn create_request(
        &self,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        let claimed = self.insert_request(&mut tx, new, claim).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Inserts a request and its first events inside a transaction.
    pub(crate) async fn insert_request(
        &self,
        tx: &mut Transaction<'_, Any>,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let transition = if claim {
            Transition::SubmitAndClaim
        } else {
            Transition::Submit
        };
        let status = transition.rule().to.as_str();
        let epoch = i64::from(transition.rule().bumps_epoch);
        let number: Option<(i64,)> = sqlx::query_as(&self.sql(
            "INSERT INTO requests (id, flow, version, status, owner, epoch, attempts, failures,
                generation, other_server_retry, resume, next_attempt_at,
                input_hash, input_size, input_inline, created_at, updated_at, idempotency_key)
             SELECT $1, $2, $3, $10, $4, $11, $11, 0, 0, $5, $6,
                     CASE WHEN $11 = 0 THEN NOW_MS END, $7, $8, $9, NOW_MS, NOW_MS, $13
              WHERE EXISTS (SELECT 1 FROM servers s
                             WHERE s.id = $4 AND s.incarnation = $12 AND s.status = 'running')
             ON CONFLICT (flow, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING num",
        ))
        .bind(&new.id)
        .bind(&new.flow)
        .bind(&new.version)
        .bind(&new.owner)
        .bind(i64::from(new.other_server_retry))
        .bind(i64::from(new.resume))
        .bind(&new.input.hash)
        .bind(new.input.size)
        .bind(new.input.inline.as_deref())
        .bind(status)
        .bind(epoch)
        .bind(new.incarnation)
        .bind(new.idempotency_key.as_deref())
        .fetch_optional(&mut **tx)
        .await?;
        let Some((number,)) = number else {
            return Err(self.not_created(tx, new).await);
        };
        self.event(
            tx,
            &new.id,
            EventKind::Created,
            Some(&new.owner),
            Some(0),
            None,
        )
        .await?;
        if let Some(kind) = Transition::SubmitAndClaim.rule().event.filter(|_| claim) {
            self.event(
                tx,
                &new.id,
                kind,
                Some(&new.owner),
                Some(epoch),
                Some("attempt 1"),
            )
            .await?;
        }
        Ok(claim.then(|| Claim {
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
            journal: JournalGeneration {
                request: number,
                number: 0,
                base: 0,
            },
            input: new.input.clone(),
        }))
    }

    /// Requests due for an attempt that `me` may claim: its own queued or
    /// waiting ones, its sleeping ones whose wake-up time has come (a
    /// `running` request has a due time only while no attempt runs it), and
    /// ones handed over to the cluster. Oldest due first.
    pub async fn due_requests(&self, me: &str, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(&self.sql(
            "SELECT id FROM requests
              WHERE ((owner = $1 AND status IN ('queued', 'waiting_retry', 'running'))
                     OR (owner IS NULL AND status = 'waiting_retry'))
                AND next_attempt_at <= NOW_MS
              ORDER BY next_attempt_at LIMIT $2",
        ))
        .bind(me)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Starts an attempt: moves a due request to `running` owned by `me` at
    /// a new epoch, which fences every earlier attempt anywhere. A request
    /// with `begin_checkpoint = not use` whose last attempt did not merely
    /// suspend (a long sleep, a postponement) and that has checkpoints starts
    /// a new journal generation. `None` when someone else claimed it first;
    /// [`StoreError::Refused`] when `me` is not running at `incarnation`
    /// (found dead, or stopped), which may claim nothing.
    pub async fn claim(
        &self,
        id: &str,
        me: &str,
        incarnation: i64,
    ) -> Result<Option<Claim>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        let row = sqlx::query(&self.transition_sql(
            Transition::Claim,
            "UPDATE requests SET status = RULE_TO, owner = $2, epoch = epoch + 1,
                    attempts = attempts + 1,
                    generation = generation + CASE WHEN resume = 0 AND suspended = 0 AND EXISTS (
                        SELECT 1 FROM checkpoints c
                         WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY + requests.journal_base
                           AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY)
                        THEN 1 ELSE 0 END,
                    journal_base = CASE WHEN resume = 0 AND suspended = 0 THEN COALESCE((
                        SELECT MAX(c.journal_key) + 1 - requests.num * JOURNAL_CAPACITY FROM checkpoints c
                         WHERE c.journal_key >= requests.num * JOURNAL_CAPACITY + requests.journal_base
                           AND c.journal_key < (requests.num + 1) * JOURNAL_CAPACITY), journal_base)
                        ELSE journal_base END,
                    suspended = 0, next_attempt_at = NULL, updated_at = NOW_MS
              WHERE id = $1 AND status IN (RULE_FROM) AND (owner = $2 OR owner IS NULL)
                AND (status <> 'running' OR owner = $2)
                AND next_attempt_at <= NOW_MS
                AND EXISTS (SELECT 1 FROM servers s
                             WHERE s.id = $2 AND s.incarnation = $3 AND s.status = 'running')
              RETURNING flow, version, epoch, attempts, failures, generation,
                        input_hash, input_size, input_inline, num, journal_base, postponements",
        ))
        .bind(id)
        .bind(me)
        .bind(incarnation)
        .fetch_optional(&mut *tx)
        .await?;
        crate::fault::point(crate::fault::PAUSE_IN_CLAIM);
        let Some(row) = row else {
            drop(tx);
            return match self.server(me).await? {
                Some(server)
                    if server.incarnation == incarnation
                        && server.status == crate::ServerStatus::Running =>
                {
                    Ok(None)
                }
                _ => Err(not_running(me, incarnation)),
            };
        };
        let claim = Claim {
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
        };
        let detail = format!("attempt {}", claim.attempts);
        self.event(
            &mut tx,
            id,
            EventKind::Attempt,
            Some(me),
            Some(claim.fence.epoch),
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(claim))
    }

    /// Writes how an attempt ended, only while its fence holds.
    pub async fn finish(&self, fence: &Fence, outcome: &Outcome) -> Result<(), StoreError> {
        let transition = outcome.transition();
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        let set = match outcome {
            Outcome::Succeeded(_) => {
                "output_hash = $4, output_size = $5, output_inline = $6, error = NULL,
                 next_attempt_at = NULL, postponements = 0"
            }
            Outcome::Retry { .. } => {
                "failures = failures + 1, error = $4, next_attempt_at = NOW_MS + $5, postponements = 0"
            }
            Outcome::Error(_) => {
                "failures = failures + 1, error = $4, next_attempt_at = NULL, postponements = 0"
            }
            Outcome::Postponed { .. } => {
                "error = $4, suspended = 1, postponements = postponements + 1,
                 next_attempt_at = NOW_MS + $5"
            }
            Outcome::Sleeping { .. } => "next_attempt_at = $4, suspended = 1, postponements = 0",
        };
        let sql = self.transition_sql(
            transition,
            &format!(
                "UPDATE requests SET status = RULE_TO, {set}, updated_at = NOW_MS
                  WHERE id = $1 AND owner = $2 AND epoch = $3 AND status IN (RULE_FROM)
                    AND next_attempt_at IS NULL"
            ),
        );
        let query = sqlx::query(&sql)
            .bind(&fence.request)
            .bind(&fence.owner)
            .bind(fence.epoch);
        let query = match outcome {
            Outcome::Succeeded(output) => query
                .bind(&output.hash)
                .bind(output.size)
                .bind(output.inline.as_deref()),
            Outcome::Retry { error, delay_ms } => query.bind(error).bind(*delay_ms),
            Outcome::Postponed { reason, delay_ms } => query.bind(reason).bind(*delay_ms),
            Outcome::Sleeping { wake_at_ms } => query.bind(*wake_at_ms),
            Outcome::Error(error) => query.bind(error),
        };
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(fence.lost());
        }
        let detail = match outcome {
            Outcome::Succeeded(_) => None,
            Outcome::Retry { error, delay_ms } => Some(format!("{error}; retry in {delay_ms} ms")),
            Outcome::Error(error) => Some(error.clone()),
            Outcome::Postponed { reason, delay_ms } => {
                Some(format!("{reason}; next attempt in {delay_ms} ms"))
            }
            Outcome::Sleeping { wake_at_ms } => {
                Some(format!("until {wake_at_ms} ms; the slot is free meanwhile"))
            }
        };
        self.transition_event(
            &mut tx,
            transition,
            &fence.request,
            &fence.owner,
            fence.epoch,
            detail.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes a request whose attempt stopped without an outcome (its server
    /// stopping, or rejoining after being found dead), or that was left
    /// `running` with no attempt behind it, due again, if the fence still
    /// holds; `why` goes into its history. Not a failure: the retry budget
    /// is untouched.
    pub async fn release(&self, fence: &Fence, why: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
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
        .await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// The history event `transition`'s rule writes, if any.
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

    /// Why `new` was not inserted: its key names a request already there
    /// (committed, since the insert waited for any other writer of the key),
    /// or its owner is not running at its incarnation.
    async fn not_created(&self, tx: &mut Transaction<'_, Any>, new: &NewRequest) -> StoreError {
        let Some(key) = &new.idempotency_key else {
            return not_running(&new.owner, new.incarnation);
        };
        let first: Result<Option<(String, String)>, sqlx::Error> = sqlx::query_as(
            "SELECT id, input_hash FROM requests WHERE flow = $1 AND idempotency_key = $2",
        )
        .bind(&new.flow)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await;
        match first {
            Ok(Some((request, input_hash))) => StoreError::KeyTaken {
                key: key.clone(),
                request,
                same_input: input_hash == new.input.hash,
            },
            Ok(None) => not_running(&new.owner, new.incarnation),
            Err(e) => e.into(),
        }
    }

    /// The `(request, epoch)` pairs `me` is recorded as running an attempt
    /// of: `running`, owned by `me`, with no due time (a sleeping request
    /// has one, and no attempt).
    pub async fn running_on(&self, me: &str) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, epoch FROM requests
              WHERE owner = $1 AND status = 'running' AND next_attempt_at IS NULL",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The refusal for a server that is no longer running at `incarnation`.
fn not_running(server: &str, incarnation: i64) -> StoreError {
    StoreError::Refused(format!(
        "server {server} is no longer running as incarnation {incarnation}: it may not take work"
    ))
}
