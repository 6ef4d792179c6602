//! The journal of one attempt: replay of committed checkpoints, live commits
//! through the group committer, and the journaled clock, randomness and sleep.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use baton_runtime::{CheckpointStart, HostAbort, Journal, LogLevel};
use baton_store::{CheckpointRecord, CheckpointWrite, Fence, JournalGeneration, Store, StoreError};
use tokio::sync::{oneshot, watch};

use crate::engine::cluster::Lease;
use crate::metrics::Metrics;

/// Why an attempt stopped before the flow returned. Recorded by the journal
/// so the executor knows whether (and what) to write afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// The request's epoch moved on (takeover, cancel, re-execute): write nothing.
    Lost,
    /// This server is stopping or was found dead: write nothing.
    Stopping,
    /// The flow asked for a checkpoint the journal does not have there.
    Nondeterminism(String),
    /// A recorded payload could not be read back, or a write can never be
    /// committed.
    Storage(String),
    /// The database or the storage folder is away: the attempt ends without
    /// counting as a failure and the request runs again a little later.
    Postponed(String),
    /// The flow sleeps until `wake_at_ms` (database clock), long enough to
    /// give its slot back: the request waits without an attempt and is
    /// resumed by replay when it is due.
    Sleeping {
        /// Wake-up time in milliseconds on the database clock.
        wake_at_ms: u64,
    },
}

/// A durable sleep longer than this ends the attempt and resumes the request
/// by replay when it is due, instead of holding an instance and a slot.
const SUSPEND_SLEEP_MS: u64 = 5_000;

/// Signals an attempt from outside: 0 = go on, else the [`Abort`] to take.
#[derive(Debug, Default)]
pub struct Interrupt(watch::Sender<u8>);

impl Interrupt {
    /// Asks the attempt to stop: a host call that waits (HTTP, pause,
    /// sleep) ends at once, any other at its start.
    pub fn raise(&self, abort: &Abort) {
        let code = match abort {
            Abort::Stopping => 2,
            _ => 1,
        };
        self.0.send_replace(code);
    }

    fn check(&self) -> Option<Abort> {
        match *self.0.borrow() {
            0 => None,
            2 => Some(Abort::Stopping),
            _ => Some(Abort::Lost),
        }
    }

    /// Resolves once the interrupt is raised.
    async fn raised(&self) {
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = self.0.subscribe().wait_for(|code| *code != 0).await;
    }
}

/// How a grouped commit failed for one write.
#[derive(Debug, Clone)]
enum CommitError {
    /// The fence no longer holds.
    Fenced,
    /// The write can never be committed (the journal is full, the database
    /// refuses its data).
    Refused(String),
    /// The database failed; the write may be retried.
    Unavailable(String),
}

impl CommitError {
    fn of(e: StoreError) -> Self {
        match e {
            StoreError::Fenced { .. } => Self::Fenced,
            outage if outage.is_outage() => Self::Unavailable(outage.to_string()),
            refused => Self::Refused(refused.to_string()),
        }
    }
}

/// Groups concurrent checkpoint commits into one database transaction.
///
/// The writer that finds no commit in flight leads: it commits, in its own
/// task, its write and whatever is queued by then. Writers arriving
/// meanwhile queue; when the leader is done it hands the lead to the oldest
/// of them, who commits the whole queue. So a request alone pays no hop to
/// another task, and under load many checkpoints share one durable commit.
#[derive(Clone)]
pub struct Committer(Arc<CommitterShared>);

struct CommitterShared {
    store: Store,
    metrics: Arc<Metrics>,
    state: std::sync::Mutex<CommitterState>,
}

#[derive(Default)]
struct CommitterState {
    /// A writer is committing; later writers queue.
    leading: bool,
    queue: VecDeque<Queued>,
}

struct Queued {
    write: CheckpointWrite,
    turn: oneshot::Sender<Turn>,
}

/// What a queued writer is told.
enum Turn {
    /// Its write was committed (or not) with a leader's group.
    Done(Result<(), CommitError>),
    /// It leads now, with its own write given back.
    Lead(CheckpointWrite),
}

/// Most checkpoints committed in one transaction.
const MAX_GROUP: usize = 256;

impl Committer {
    /// A committer over `store`.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(CommitterShared {
            store,
            metrics,
            state: std::sync::Mutex::default(),
        }))
    }

    async fn commit(&self, write: CheckpointWrite) -> Result<(), CommitError> {
        let (turn, waiting) = oneshot::channel();
        let leads = {
            let mut state = self.0.state.lock().expect("committer lock");
            if state.leading {
                state.queue.push_back(Queued {
                    write: write.clone(),
                    turn,
                });
                false
            } else {
                state.leading = true;
                true
            }
        };
        if leads {
            return self.lead(write).await;
        }
        let mut waiting = Waiting(&self.0, Some(waiting));
        let turn = waiting.1.as_mut().expect("still waiting").await;
        waiting.1 = None;
        match turn {
            Ok(Turn::Done(result)) => result,
            Ok(Turn::Lead(write)) => self.lead(write).await,
            Err(_) => Err(CommitError::Unavailable(
                "the commit group was abandoned".into(),
            )),
        }
    }

    /// Commits `own` with the queued writes, then hands the lead on (also
    /// when this future is dropped half-way: see [`Lead`]).
    async fn lead(&self, own: CheckpointWrite) -> Result<(), CommitError> {
        let _lead = Lead(&self.0);
        let (mut writes, mut turns) = (vec![own], Vec::new());
        {
            let mut state = self.0.state.lock().expect("committer lock");
            let take = state.queue.len().min(MAX_GROUP - 1);
            for queued in state.queue.drain(..take) {
                writes.push(queued.write);
                turns.push(queued.turn);
            }
        }
        let started = Instant::now();
        let results = self.0.store.commit_checkpoints(&writes).await;
        self.0
            .metrics
            .record_commit(writes.len(), started.elapsed());
        let mut results: Vec<Result<(), CommitError>> = match results {
            Ok(results) => results
                .into_iter()
                .map(|result| result.map_err(CommitError::of))
                .collect(),
            // The database refused the statement itself, not for an outage:
            // one write of the group may be at fault, and must not fail the
            // others. Each is committed alone, so only its own is refused.
            Err(e) if writes.len() > 1 && !e.is_outage() => {
                let mut alone = Vec::with_capacity(writes.len());
                for write in &writes {
                    alone.push(
                        match self
                            .0
                            .store
                            .commit_checkpoints(std::slice::from_ref(write))
                            .await
                        {
                            Ok(mut result) => result.remove(0).map_err(CommitError::of),
                            Err(e) => Err(CommitError::of(e)),
                        },
                    );
                }
                alone
            }
            Err(e) => vec![Err(CommitError::of(e)); writes.len()],
        };
        let own = results.remove(0);
        for (turn, result) in turns.into_iter().zip(results) {
            let _ = turn.send(Turn::Done(result));
        }
        own
    }
}

/// Passes the lead to the oldest queued writer still waiting, or lets it
/// lapse when none is.
fn pass_lead(shared: &CommitterShared) {
    let mut state = shared.state.lock().expect("committer lock");
    while let Some(next) = state.queue.pop_front() {
        if next.turn.send(Turn::Lead(next.write)).is_ok() {
            return;
        }
    }
    state.leading = false;
}

/// The lead, held while committing: passed on when the commit is done or
/// its future dropped half-way.
struct Lead<'a>(&'a CommitterShared);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        pass_lead(self.0);
    }
}

/// A queued writer's wait. Dropped before its turn was read, it closes the
/// channel, and a lead that reached it already is passed on, so the lead is
/// never lost with a writer that went away.
struct Waiting<'a>(&'a CommitterShared, Option<oneshot::Receiver<Turn>>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut turn) = self.1.take() {
            turn.close();
            if let Ok(Turn::Lead(_)) = turn.try_recv() {
                pass_lead(self.0);
            }
        }
    }
}

fn local_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Reserved checkpoint names for journaled values; flows cannot collide with
/// them because user checkpoint names never start with `baton:`.
const NOW: &str = "baton:now";
const RANDOM: &str = "baton:random";
const SLEEP: &str = "baton:sleep";

/// The [`Journal`] of one attempt.
pub struct AttemptJournal {
    store: Store,
    committer: Committer,
    metrics: Arc<Metrics>,
    fence: Fence,
    flow: String,
    generation: JournalGeneration,
    records: Vec<CheckpointRecord>,
    next: u32,
    live: Option<(u32, String)>,
    /// When this attempt's last checkpoint was answered.
    last_committed: Option<Instant>,
    lease: watch::Receiver<Lease>,
    incarnation: i64,
    interrupt: Arc<Interrupt>,
    /// Why the attempt was stopped by a host call, if it was.
    pub abort: Option<Abort>,
}

impl AttemptJournal {
    /// A journal that replays `records` and extends them under `fence`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        committer: Committer,
        metrics: Arc<Metrics>,
        fence: Fence,
        flow: String,
        generation: JournalGeneration,
        records: Vec<CheckpointRecord>,
        lease: watch::Receiver<Lease>,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        let incarnation = lease.borrow().incarnation;
        Self {
            store,
            committer,
            metrics,
            fence,
            flow,
            generation,
            records,
            next: 0,
            live: None,
            last_committed: None,
            lease,
            incarnation,
            interrupt,
            abort: None,
        }
    }

    fn stop(&mut self, abort: Abort) -> HostAbort {
        let message = match &abort {
            Abort::Lost => format!(
                "request {} is no longer owned by this server at epoch {}",
                self.fence.request, self.fence.epoch
            ),
            Abort::Stopping => "this server is stopping".to_owned(),
            Abort::Nondeterminism(message)
            | Abort::Storage(message)
            | Abort::Postponed(message) => message.clone(),
            Abort::Sleeping { wake_at_ms } => format!("sleeping until {wake_at_ms} ms"),
        };
        self.abort.get_or_insert(abort);
        HostAbort(message)
    }

    fn key(&self, position: u32) -> String {
        if self.generation.number == 0 {
            format!("{}-{position}", self.fence.request)
        } else {
            format!(
                "{}-{}.{position}",
                self.fence.request, self.generation.number
            )
        }
    }

    /// The lease says no other server can have taken this request over: the
    /// server's last heartbeat, in the incarnation this attempt started
    /// under, is recent enough. When it is not, wait for the
    /// next heartbeat's verdict instead of acting on a stale licence.
    async fn check(&mut self) -> Result<(), HostAbort> {
        loop {
            if let Some(abort) = self.interrupt.check() {
                return Err(self.stop(abort));
            }
            let lease = *self.lease.borrow_and_update();
            if lease.stopping || lease.incarnation != self.incarnation {
                return Err(self.stop(Abort::Stopping));
            }
            if Instant::now() < lease.valid_until {
                return Ok(());
            }
            if self.lease.changed().await.is_err() {
                return Err(self.stop(Abort::Stopping));
            }
        }
    }

    async fn commit(
        &mut self,
        position: u32,
        name: String,
        payload: Vec<u8>,
    ) -> Result<(), HostAbort> {
        let payload = match self.store.put_payload(payload) {
            Ok(payload) => payload,
            Err(e) => {
                let message = format!("writing checkpoint {name:?}: {e}");
                return Err(self.stop(if e.is_outage() {
                    Abort::Postponed(message)
                } else {
                    Abort::Storage(message)
                }));
            }
        };
        let write = CheckpointWrite {
            fence: self.fence.clone(),
            journal: self.generation,
            seq: i64::from(position),
            name,
            payload,
        };
        let started = Instant::now();
        // A database that is away for a while delays the commit; the attempt
        // gives up only when the lease says the request may have moved on.
        loop {
            match self.committer.commit(write.clone()).await {
                Ok(()) => break,
                Err(CommitError::Fenced) => return Err(self.stop(Abort::Lost)),
                Err(CommitError::Refused(why)) => return Err(self.stop(Abort::Storage(why))),
                Err(CommitError::Unavailable(e)) => {
                    tracing::warn!(request = %self.fence.request, error = %e, "checkpoint commit failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.check().await?;
                }
            }
        }
        let committed = Instant::now();
        self.metrics.record_checkpoint(
            committed - started,
            self.last_committed.map(|last| started - last),
        );
        self.last_committed = Some(committed);
        self.next = position + 1;
        self.live = None;
        Ok(())
    }

    /// Now on the database clock. While the database is away this waits for
    /// it (as a commit does) rather than stand in with this server's clock,
    /// which another server resuming the request would not share.
    async fn database_now(&mut self) -> Result<u64, HostAbort> {
        loop {
            match self.store.now_ms().await {
                Ok(now) => return Ok(now.max(0) as u64),
                Err(e) => {
                    tracing::warn!(request = %self.fence.request, error = %e, "reading the database clock failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.check().await?;
                }
            }
        }
    }

    /// A journaled 64-bit value: replayed when recorded, else produced by
    /// `live` and committed.
    async fn value(&mut self, name: &str, live: impl FnOnce() -> u64) -> Result<u64, HostAbort> {
        let start = self.begin_checkpoint(name.to_owned()).await?;
        if let Some(recorded) = start.recorded {
            return serde_json::from_slice(&recorded).map_err(|e| {
                self.stop(Abort::Storage(format!(
                    "journaled {name} at {}: {e}",
                    start.position
                )))
            });
        }
        let value = live();
        let payload = serde_json::to_vec(&value).expect("u64 serializes");
        self.commit(start.position, name.to_owned(), payload)
            .await?;
        Ok(value)
    }
}

impl Journal for AttemptJournal {
    async fn guard(&mut self) -> Result<(), HostAbort> {
        self.check().await
    }

    async fn interrupted(&mut self) -> HostAbort {
        // Only verdicts: a late heartbeat is no reason to drop a call, the
        // next host call waits for what the heartbeat finds.
        let incarnation = self.incarnation;
        let mut lease = self.lease.clone();
        let abort = tokio::select! {
            () = self.interrupt.raised() => self.interrupt.check().unwrap_or(Abort::Lost),
            _ = lease.wait_for(|lease| lease.stopping || lease.incarnation != incarnation) => Abort::Stopping,
        };
        self.stop(abort)
    }

    async fn begin_checkpoint(&mut self, name: String) -> Result<CheckpointStart, HostAbort> {
        self.check().await?;
        let position = self.next;
        let key = self.key(position);
        let Some(record) = self.records.get(position as usize) else {
            self.live = Some((position, name));
            return Ok(CheckpointStart {
                position,
                key,
                recorded: None,
            });
        };
        if record.name != name {
            let message = format!(
                "nondeterminism at checkpoint position {position}: the journal recorded {:?} but the flow now asks for {name:?}",
                record.name
            );
            return Err(self.stop(Abort::Nondeterminism(message)));
        }
        let payload = record.payload.clone();
        let recorded = match self.store.load_payload(&payload) {
            Ok(bytes) => bytes,
            Err(e) => {
                let message = format!("checkpoint {name:?} at position {position}: {e}");
                return Err(self.stop(if e.is_outage() {
                    Abort::Postponed(message)
                } else {
                    Abort::Storage(message)
                }));
            }
        };
        self.next += 1;
        Ok(CheckpointStart {
            position,
            key,
            recorded: Some(recorded),
        })
    }

    async fn commit_checkpoint(
        &mut self,
        position: u32,
        payload: Vec<u8>,
    ) -> Result<(), HostAbort> {
        self.check().await?;
        let name = match self.live.take() {
            Some((open, name)) if open == position => name,
            _ => {
                return Err(self.stop(Abort::Nondeterminism(format!(
                    "commit of checkpoint position {position}, which is not the open checkpoint"
                ))));
            }
        };
        self.commit(position, name, payload).await
    }

    async fn now_ms(&mut self) -> Result<u64, HostAbort> {
        self.value(NOW, local_now_ms).await
    }

    async fn random_u64(&mut self) -> Result<u64, HostAbort> {
        // From the OS generator: a flow may draw keys or nonces from it.
        self.value(RANDOM, || OsRng.next_u64()).await
    }

    async fn sleep_ms(&mut self, ms: u64) -> Result<(), HostAbort> {
        // The wake-up time is on the database clock, so a request resumed on
        // another server waits for what is left, not for the whole sleep.
        let start = self.begin_checkpoint(SLEEP.to_owned()).await?;
        let wake_at = match start.recorded {
            Some(recorded) => serde_json::from_slice(&recorded).map_err(|e| {
                self.stop(Abort::Storage(format!(
                    "journaled {SLEEP} at {}: {e}",
                    start.position
                )))
            })?,
            None => {
                let wake_at = self.database_now().await?.saturating_add(ms);
                let payload = serde_json::to_vec(&wake_at).expect("u64 serializes");
                self.commit(start.position, SLEEP.to_owned(), payload)
                    .await?;
                wake_at
            }
        };
        let now = self.database_now().await?;
        if wake_at > now + SUSPEND_SLEEP_MS {
            return Err(self.stop(Abort::Sleeping {
                wake_at_ms: wake_at,
            }));
        }
        if wake_at > now {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wake_at - now)) => {}
                abort = self.interrupted() => return Err(abort),
            }
        }
        self.check().await
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let (request, flow) = (&self.fence.request, &self.flow);
        match level {
            LogLevel::Debug => tracing::debug!(%request, %flow, "{message}"),
            LogLevel::Info => tracing::info!(%request, %flow, "{message}"),
            LogLevel::Warn => tracing::warn!(%request, %flow, "{message}"),
            LogLevel::Error => tracing::error!(%request, %flow, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;

    use baton_store::{NewRequest, VersionRow};

    use super::*;

    /// A store at `url` with the flow version `v1` deployed and the server
    /// `me` joined.
    async fn store_with_a_flow(url: &str, dir: &std::path::Path) -> Store {
        let store = Store::connect(url, &dir.join("store")).await.unwrap();
        store
            .deploy(&VersionRow {
                hash: "v1".into(),
                flow: "f".into(),
                size: 0,
                properties: Default::default(),
                deployed_at: 0,
            })
            .await
            .unwrap();
        store.join("me", None, "me:1").await.unwrap();
        store
    }

    /// A new request of `v1`, claimed by `me`, and the write of its first
    /// checkpoint, named `name`.
    async fn first_write(store: &Store, name: &str) -> CheckpointWrite {
        let incarnation = store.server("me").await.unwrap().unwrap().incarnation;
        let claim = store
            .create_request(
                &NewRequest {
                    id: baton_store::new_request_id(),
                    flow: "f".into(),
                    version: "v1".into(),
                    owner: "me".into(),
                    incarnation,
                    input: store.put_payload(b"{}".to_vec()).unwrap(),
                    other_server_retry: true,
                    resume: true,
                },
                true,
            )
            .await
            .unwrap()
            .unwrap();
        CheckpointWrite {
            fence: claim.fence,
            journal: claim.journal,
            seq: 0,
            name: name.into(),
            payload: store.put_payload(b"1".to_vec()).unwrap(),
        }
    }

    /// A writer that had the lead passed to it and went away before taking
    /// it up must not take the lead with it: the next writer commits.
    #[tokio::test]
    async fn a_writer_dropped_with_the_lead_passes_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("baton.db").display());
        let store = store_with_a_flow(&url, dir.path()).await;
        let write = first_write(&store, "step").await;
        let committer = Committer::new(store.clone(), Arc::new(Metrics::default()));

        // Another writer is committing, so this one queues.
        committer.0.state.lock().unwrap().leading = true;
        let mut queued = Box::pin(committer.commit(write.clone()));
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "a writer behind a leader waits");
        // The leader is done and passes the lead to it; it goes away unread.
        pass_lead(&committer.0);
        drop(queued);

        let next =
            tokio::time::timeout(Duration::from_secs(10), committer.commit(write.clone())).await;
        assert!(
            matches!(next, Ok(Ok(()))),
            "the next writer leads and commits"
        );
        assert_eq!(store.journal(&write.journal).await.unwrap().len(), 1);
    }

    /// When the database refuses a group's statement for one write's data
    /// (here a NUL byte PostgreSQL cannot store in text), the others of the
    /// group still commit; before, the whole group failed as "database
    /// away", and the poisoned attempt retried for ever with its neighbours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_the_database_refuses_fails_alone_in_its_group() {
        let base = std::env::var("BATON_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let url = format!(
            "{}/baton_unit_{:016x}",
            base.trim_end_matches('/'),
            fastrand::u64(..)
        );
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_a_flow(&url, dir.path()).await;
        let writes = [
            first_write(&store, "kept").await,
            first_write(&store, "bad\0name").await,
        ];
        let committer = Committer::new(store.clone(), Arc::new(Metrics::default()));

        // Both queue behind a leader, then the lead passes to the first,
        // which commits the two as one group.
        committer.0.state.lock().unwrap().leading = true;
        let mut kept = Box::pin(committer.commit(writes[0].clone()));
        let mut bad = Box::pin(committer.commit(writes[1].clone()));
        for queued in [&mut kept, &mut bad] {
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx).is_pending())).await;
            assert!(pending);
        }
        pass_lead(&committer.0);
        let (kept, bad) = tokio::join!(kept, bad);

        assert!(matches!(kept, Ok(())), "{kept:?}");
        assert!(matches!(bad, Err(CommitError::Refused(_))), "{bad:?}");
        assert_eq!(store.journal(&writes[0].journal).await.unwrap().len(), 1);
        assert!(store.journal(&writes[1].journal).await.unwrap().is_empty());
        store.close().await;
        use sqlx::migrate::MigrateDatabase;
        sqlx::Any::force_drop_database(&url).await.unwrap();
    }
}
