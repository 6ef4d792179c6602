//! The operator's transitions on a request: hold, resume, cancel and
//! re-execute, and why one was refused, in the state machine's words; and
//! events sent to a request's inbox.

use baton_core::store::async_trait;
use baton_core::{EventKind, RequestStatus, Transition};
use sqlx::{Any, Connection, Transaction};

use crate::{
    Backend, Db, JOURNAL_CAPACITY, JournalGeneration, ListingStore, MinuteCounts, NewRequest,
    OperatorStore, SqlStore, StoreError,
};

impl SqlStore {
    /// Explains why an operator's transition did not apply, in the state
    /// machine's words.
    async fn refusal(&self, id: &str, transition: Transition) -> StoreError {
        match self.request(id).await {
            Ok(None) => StoreError::NotFound(format!("request {id}")),
            Ok(Some(request)) => StoreError::Refused(format!(
                "request {id} {}",
                transition.refusal(request.status)
            )),
            Err(e) => e,
        }
    }
}

/// A send repeated with `key`: nothing new when it says what the first
/// said, refused when it says something else.
fn same_event(
    id: &str,
    key: &str,
    (first_name, first_payload): &(String, String),
    name: &str,
    payload: &str,
) -> Result<bool, StoreError> {
    if (first_name.as_str(), first_payload.as_str()) == (name, payload) {
        Ok(false)
    } else {
        Err(StoreError::Refused(format!(
            "the idempotency key {key:?} was used for another event to request {id}"
        )))
    }
}

/// Where a request's journal stands, for a copy of its first checkpoints.
struct JournalState {
    /// The request's number: its journal's keys start at this times
    /// [`JOURNAL_CAPACITY`].
    number: i64,
    /// The current generation.
    generation: i64,
    /// The current generation's first ordinal.
    base: i64,
    /// How many checkpoints the current generation holds.
    committed: i64,
    /// The ordinal after the journal's last checkpoint.
    end: i64,
}

impl JournalState {
    /// Refuses a copy of the first `from` checkpoints into a journal whose
    /// next generation would start at `end`, when there are not that many.
    fn check_prefix(&self, id: &str, from: i64) -> Result<(), StoreError> {
        if !(0..=self.committed).contains(&from) {
            return Err(StoreError::Refused(format!(
                "request {id} has {} checkpoints in its current journal generation: \
                 choose a checkpoint from 0 to {}",
                self.committed, self.committed
            )));
        }
        Ok(())
    }
}

impl SqlStore {
    async fn journal_state(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
    ) -> Result<Option<JournalState>, StoreError> {
        let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(&self.sql(
            "SELECT r.num, r.generation, r.journal_base,
                    (SELECT COUNT(*) FROM checkpoints c
                      WHERE c.journal_key >= r.num * JOURNAL_CAPACITY + r.journal_base
                        AND c.journal_key < (r.num + 1) * JOURNAL_CAPACITY AND c.seq >= 0),
                    COALESCE((SELECT MAX(c.journal_key) + 1 - r.num * JOURNAL_CAPACITY
                                FROM checkpoints c
                               WHERE c.journal_key >= r.num * JOURNAL_CAPACITY
                                 AND c.journal_key < (r.num + 1) * JOURNAL_CAPACITY), 0)
               FROM requests r WHERE r.id = $1",
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db()?;
        Ok(
            row.map(|(number, generation, base, committed, end)| JournalState {
                number,
                generation,
                base,
                committed,
                end,
            }),
        )
    }

    /// Copies the first `from` checkpoints of `source`'s current generation
    /// to the start of the generation `target` keys (their values, names,
    /// servers and times as they were: the blobs are shared by hash).
    async fn copy_prefix(
        &self,
        tx: &mut Transaction<'_, Any>,
        source: &JournalState,
        from: i64,
        target: &JournalGeneration,
    ) -> Result<(), StoreError> {
        let Some(first) = target
            .key(target.base)
            .filter(|_| target.key(target.base + from).is_some())
        else {
            return Err(StoreError::Refused(format!(
                "the journal of request number {} is full",
                target.request
            )));
        };
        sqlx::query(
            "INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
             SELECT $1 + c.seq, $2, c.seq, c.name, c.server_id, c.epoch, c.at, c.hash, c.size, c.inline
               FROM checkpoints c
              WHERE c.journal_key >= $3 AND c.journal_key < $4 AND c.generation = $5
                AND c.seq >= 0 AND c.seq < $6",
        )
        .bind(first)
        .bind(target.number)
        .bind(source.number * JOURNAL_CAPACITY + source.base)
        .bind((source.number + 1) * JOURNAL_CAPACITY)
        .bind(source.generation)
        .bind(from)
        .execute(&mut **tx)
        .await
        .db()?;
        Ok(())
    }

    /// Holds (`held`) or resumes `id` with its history entry: whether this
    /// changed it. Only a request that has not finished can be held; one
    /// that is so already is left as it is.
    async fn set_held(
        &self,
        id: &str,
        held: bool,
        by: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let sql = if held {
            "UPDATE requests SET held = 1, updated_at = NOW_MS
              WHERE id = $1 AND held = 0 AND status IN ('queued', 'running', 'waiting_retry')
              RETURNING epoch"
        } else {
            "UPDATE requests SET held = 0, updated_at = NOW_MS
              WHERE id = $1 AND held = 1
              RETURNING epoch"
        };
        let row: Option<(i64,)> = sqlx::query_as(&self.sql(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some((epoch,)) = row else {
            drop(tx);
            return match self.request(id).await? {
                None => Err(StoreError::NotFound(format!("request {id}"))),
                Some(request) if held && request.status.is_final() => {
                    Err(StoreError::Refused(format!(
                        "request {id} cannot be held: it has finished ({})",
                        request.status
                    )))
                }
                Some(_) => Ok(false),
            };
        };
        let kind = if held {
            EventKind::Held
        } else {
            EventKind::Resumed
        };
        let detail = format!("by {actor}");
        self.event(&mut tx, id, kind, Some(by), Some(epoch), Some(&detail))
            .await?;
        if !held {
            self.wake_owner(&mut tx, "r.id = $1", id).await?;
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    /// Cancels `id` from server `by` if its status allows: its new epoch.
    async fn cancel_one(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
        by: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as(&self.transition_sql(
            Transition::Cancel,
            "UPDATE requests SET status = RULE_TO, epoch = epoch + 1, next_attempt_at = NULL,
                    held = 0, updated_at = NOW_MS
              WHERE id = $1 AND status IN (RULE_FROM)
              RETURNING epoch, flow",
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db()?;
        let Some((epoch, flow)) = row else {
            return Ok(None);
        };
        self.append_fence(tx, id).await?;
        let cancelled = MinuteCounts {
            cancelled: 1,
            ..Default::default()
        };
        self.add_minute(tx, &flow, by, &cancelled).await?;
        Ok(Some(epoch))
    }
}

#[async_trait]
impl OperatorStore for SqlStore {
    async fn send_event(
        &self,
        id: &str,
        name: &str,
        payload: &str,
        key: Option<&str>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        // The row first, locked on PostgreSQL: a finish of a waiting attempt
        // then runs after this send and sees `wake_pending`.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let status: Option<(String,)> =
            sqlx::query_as(&format!("SELECT status FROM requests WHERE id = $1{lock}"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let Some((status,)) = status else {
            return Err(StoreError::NotFound(format!("request {id}")));
        };
        // A send its key kept before is answered as that one was, even once
        // the request has finished: it is a retry, not a new event.
        if let Some(key) = key {
            let kept: Option<(String, String)> = sqlx::query_as(
                "SELECT name, payload FROM events_inbox WHERE request_id = $1 AND idempotency_key = $2",
            )
            .bind(id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
            if let Some(first) = kept {
                return same_event(id, key, &first, name, payload);
            }
        }
        if RequestStatus::parse(&status).is_none_or(RequestStatus::is_final) {
            return Err(StoreError::Refused(format!(
                "request {id} has finished ({status}): it waits for no event"
            )));
        }
        let kept = sqlx::query(&self.sql(
            "INSERT INTO events_inbox (request_id, name, payload, sent_at, sent_by, idempotency_key)
             VALUES ($1, $2, $3, NOW_MS, $4, $5)
             ON CONFLICT (request_id, idempotency_key) WHERE idempotency_key IS NOT NULL
             DO NOTHING",
        ))
        .bind(id)
        .bind(name)
        .bind(payload)
        .bind(actor)
        .bind(key)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected()
            == 1;
        if !kept {
            // Another send with this key committed meanwhile.
            let first: (String, String) = sqlx::query_as(
                "SELECT name, payload FROM events_inbox WHERE request_id = $1 AND idempotency_key = $2",
            )
            .bind(id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .db()?;
            return same_event(id, key.unwrap_or_default(), &first, name, payload);
        }
        sqlx::query(&self.sql(
            "UPDATE requests SET wake_pending = 1,
                    next_attempt_at = CASE WHEN waiting_for = $2 AND next_attempt_at > NOW_MS
                                           THEN NOW_MS ELSE next_attempt_at END
              WHERE id = $1",
        ))
        .bind(id)
        .bind(name)
        .execute(&mut *tx)
        .await
        .db()?;
        self.wake_owner(&mut tx, "r.id = $1", id).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn hold(&self, id: &str, by: &str, actor: &str) -> Result<bool, StoreError> {
        self.set_held(id, true, by, actor).await
    }

    async fn resume(&self, id: &str, by: &str, actor: &str) -> Result<bool, StoreError> {
        self.set_held(id, false, by, actor).await
    }

    async fn fork(
        &self,
        new: &NewRequest,
        source: &str,
        from: i64,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let journal = self
            .journal_state(&mut tx, source)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("request {source}")))?;
        journal.check_prefix(source, from)?;
        self.insert_request(&mut tx, new, false).await?;
        let (number,): (i64,) = sqlx::query_as("SELECT num FROM requests WHERE id = $1")
            .bind(&new.id)
            .fetch_one(&mut *tx)
            .await
            .db()?;
        let target = JournalGeneration {
            request: number,
            number: 0,
            base: 0,
        };
        self.copy_prefix(&mut tx, &journal, from, &target).await?;
        // It replays what was copied, even for a flow that does not resume.
        sqlx::query("UPDATE requests SET suspended = 1 WHERE id = $1")
            .bind(&new.id)
            .execute(&mut *tx)
            .await
            .db()?;
        let (into, of) = (
            format!("into {} from checkpoint {from} by {actor}", new.id),
            format!("from {source} at checkpoint {from} by {actor}"),
        );
        self.event(
            &mut tx,
            source,
            EventKind::Forked,
            Some(&new.owner),
            None,
            Some(&into),
        )
        .await?;
        self.event(
            &mut tx,
            &new.id,
            EventKind::Forked,
            Some(&new.owner),
            Some(0),
            Some(&of),
        )
        .await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn cancel(&self, id: &str, by: &str, actor: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let Some(epoch) = self.cancel_one(&mut tx, id, by).await? else {
            drop(tx);
            return Err(self.refusal(id, Transition::Cancel).await);
        };
        let detail = format!("by {actor}");
        self.transition_event(&mut tx, Transition::Cancel, id, by, epoch, Some(&detail))
            .await?;
        // Its unfinished descendants go with it, in the same commit.
        let mut parents = vec![id.to_owned()];
        while let Some(parent) = parents.pop() {
            let children: Vec<(String,)> = sqlx::query_as(&self.transition_sql(
                Transition::Cancel,
                "SELECT id FROM requests WHERE parent = $1 AND status IN (RULE_FROM)",
            ))
            .bind(&parent)
            .fetch_all(&mut *tx)
            .await
            .db()?;
            for (child,) in children {
                if let Some(epoch) = self.cancel_one(&mut tx, &child, by).await? {
                    let detail = format!("by {actor}, with its parent {parent}");
                    self.transition_event(
                        &mut tx,
                        Transition::Cancel,
                        &child,
                        by,
                        epoch,
                        Some(&detail),
                    )
                    .await?;
                    parents.push(child);
                }
            }
        }
        self.wake_parent(&mut tx, id).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn reexecute(
        &self,
        id: &str,
        me: &str,
        lease_ms: i64,
        from: Option<i64>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let row: Option<(i64,)> = sqlx::query_as(&self.transition_sql(
            Transition::Reexecute,
            "UPDATE requests SET owner = $2, status = RULE_TO, epoch = epoch + 1,
                    failures = 0, postponements = 0, error = NULL, next_attempt_at = NOW_MS,
                    held = 0, updated_at = NOW_MS
              WHERE id = $1 AND status IN (RULE_FROM)
                AND (status = 'error' OR owner IS NULL
                     OR owner IN (SELECT s.id FROM servers s
                                   WHERE s.status <> 'running' OR s.heartbeat_at < NOW_MS - $3))
              RETURNING epoch",
        ))
        .bind(id)
        .bind(me)
        .bind(lease_ms)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some((epoch,)) = row else {
            drop(tx);
            return Err(self.refusal(id, Transition::Reexecute).await);
        };
        self.append_fence(&mut tx, id).await?;
        let mut detail = format!("by {actor}");
        if let Some(from) = from {
            // A new generation that starts with the first `from` checkpoints
            // of the current one; `suspended` keeps the claim from starting
            // yet another (as for a flow that does not resume).
            let journal = self
                .journal_state(&mut tx, id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
            journal.check_prefix(id, from)?;
            let target = JournalGeneration {
                request: journal.number,
                number: journal.generation + 1,
                base: journal.end,
            };
            self.copy_prefix(&mut tx, &journal, from, &target).await?;
            sqlx::query(
                "UPDATE requests SET generation = $2, journal_base = $3, suspended = 1 WHERE id = $1",
            )
            .bind(id)
            .bind(target.number)
            .bind(target.base)
            .execute(&mut *tx)
            .await
            .db()?;
            detail.push_str(&format!(", from checkpoint {from}"));
        }
        self.transition_event(&mut tx, Transition::Reexecute, id, me, epoch, Some(&detail))
            .await?;
        tx.commit().await.db()?;
        Ok(())
    }
}
