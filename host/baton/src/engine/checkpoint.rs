//! The journal of one attempt: replay of committed checkpoints, live commits
//! through the group committer, and the journaled clock, randomness and sleep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use baton_core::RequestStatus;
use baton_core::store::{
    CHILD_WAIT_PREFIX, CheckpointRecord, CheckpointWrite, Fence, JournalGeneration, NewRequest,
    Store, StoreError,
};
use baton_runtime::{CheckpointStart, HostAbort, Journal, LogLevel};
use tokio::sync::watch;

use crate::engine::cluster::Lease;
use crate::engine::committer::{CommitError, Committer};
use crate::metrics::Metrics;
use crate::trace::{Kind, OpenSpan, SpanContext, Tracer};

/// Why an attempt stopped before the flow returned. Recorded by the journal
/// so the executor knows whether (and what) to write afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// The request's epoch moved on (takeover, cancel, re-execute): write nothing.
    Lost,
    /// An operator held the request: the attempt stops before its next
    /// step, having committed the last one, and the request waits for a
    /// resume.
    Held,
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
        /// The event the flow waits for, which wakes it sooner when sent.
        event: Option<String>,
    },
}

/// A durable sleep longer than this ends the attempt and resumes the request
/// by replay when it is due, instead of holding an instance and a slot.
const SUSPEND_SLEEP_MS: u64 = 5_000;

/// Signals an attempt from outside: 0 = go on, else the [`Abort`] to take.
///
/// A hold is softer than the others: the step under way finishes (its HTTP
/// calls and its commit go on) and the attempt stops at the next step's
/// start; a loss or a stop overrides it, and it never overrides them.
#[derive(Debug, Default)]
pub struct Interrupt(watch::Sender<u8>);

const GO_ON: u8 = 0;
const LOST: u8 = 1;
const STOPPING: u8 = 2;
const HELD: u8 = 3;

impl Interrupt {
    /// Asks the attempt to stop: a host call that waits (HTTP, pause,
    /// sleep) ends at once, any other at its start; a hold, at the next
    /// step's start.
    pub fn raise(&self, abort: &Abort) {
        let code = match abort {
            Abort::Stopping => STOPPING,
            Abort::Held => HELD,
            _ => LOST,
        };
        self.0.send_if_modified(|current| {
            let raise = *current == GO_ON || (*current == HELD && code != HELD);
            if raise {
                *current = code;
            }
            raise
        });
    }

    /// Takes back a hold that was resumed before the attempt reached its
    /// next step.
    pub fn lift_hold(&self) {
        self.0.send_if_modified(|current| {
            let held = *current == HELD;
            if held {
                *current = GO_ON;
            }
            held
        });
    }

    /// Whether the attempt must stop now (a hold aside).
    fn check(&self) -> Option<Abort> {
        match *self.0.borrow() {
            GO_ON | HELD => None,
            STOPPING => Some(Abort::Stopping),
            _ => Some(Abort::Lost),
        }
    }

    /// Whether the request is held.
    pub fn held(&self) -> bool {
        *self.0.borrow() == HELD
    }

    /// Resolves once the attempt must stop now (a hold does not count).
    async fn raised(&self) {
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = self
            .0
            .subscribe()
            .wait_for(|code| !matches!(*code, GO_ON | HELD))
            .await;
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
pub(crate) const NOW: &str = "baton:now";
pub(crate) const RANDOM: &str = "baton:random";
pub(crate) const SLEEP: &str = "baton:sleep";
/// A wait for an event: `baton:wait:NAME` journals its deadline, then
/// `baton:event:NAME` the event it took or `baton:timeout:NAME` none.
pub(crate) const WAIT: &str = "baton:wait:";
pub(crate) const EVENT: &str = "baton:event:";
pub(crate) const TIMEOUT: &str = "baton:timeout:";
/// A child flow started: `baton:start:FLOW` journals the child's id; its
/// outcome is journaled as `baton:child:ID` ([`CHILD_WAIT_PREFIX`]).
pub(crate) const START: &str = "baton:start:";
/// A parent waiting for a child looks again this often even without the
/// child's wake (which a child's end gives in the same commit).
const CHILD_RECHECK_MS: u64 = 3_600_000;

/// How a child request ended, as its parent's journal records it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChildOutcome {
    Output(serde_json::Value),
    Error(String),
}

/// A step's idempotency key: the request, the generation when it is not
/// the first, and the position.
pub(crate) fn step_key(request: &str, generation: i64, position: u32) -> String {
    if generation == 0 {
        format!("{request}-{position}")
    } else {
        format!("{request}-{generation}.{position}")
    }
}

/// How long a flow may compute on after a step, without calling the host
/// or returning, before the step's put-off commit is made anyway: long
/// enough for a flow that returns right after its last step to carry it
/// in its outcome's commit, short beside any work worth a step.
const PUT_OFF_GRACE: Duration = Duration::from_millis(1);

/// A step's result whose commit is put off (see [`AttemptJournal::settle`]).
#[derive(Default)]
enum PutOff {
    #[default]
    Nothing,
    /// Still to commit.
    Waiting(CheckpointWrite, OpenSpan),
    /// Tried by the grace's timer, which started at `started`.
    Tried {
        write: CheckpointWrite,
        span: OpenSpan,
        started: Instant,
        result: Result<(), CommitError>,
    },
}

/// The [`Journal`] of one attempt.
pub struct AttemptJournal {
    store: Arc<dyn Store>,
    committer: Committer,
    metrics: Arc<Metrics>,
    fence: Fence,
    flow: String,
    /// The flows this one declared it starts (`flow:NAME` resources).
    children: Vec<String>,
    generation: JournalGeneration,
    records: Vec<CheckpointRecord>,
    next: u32,
    /// The ordinal the next new checkpoint is keyed at: right after the
    /// claim's fence entry, then after this attempt's last commit.
    next_ordinal: i64,
    live: Option<(u32, String)>,
    /// The step result the flow returned last, when its commit is put off
    /// (see [`Self::settle`]).
    put_off: Arc<tokio::sync::Mutex<PutOff>>,
    /// The timer that commits what is put off once the grace is over.
    grace: Option<tokio::task::JoinHandle<()>>,
    /// When this attempt's last checkpoint was answered.
    last_committed: Option<Instant>,
    /// Events taken so far in this generation, by name: the next wait for
    /// a name takes the event of the name with this index.
    events_taken: HashMap<String, i64>,
    lease: watch::Receiver<Lease>,
    incarnation: i64,
    interrupt: Arc<Interrupt>,
    /// Why the attempt was stopped by a host call, if it was.
    pub abort: Option<Abort>,
    /// The tracer, and the attempt's span that this journal's spans are
    /// children of.
    trace: (Tracer, SpanContext),
    /// The span of the live checkpoint, from its begin to its commit.
    step: Option<OpenSpan>,
    /// The span of the flow's HTTP call in flight.
    http: Option<OpenSpan>,
}

impl AttemptJournal {
    /// A journal that replays `records` and extends them under `fence`,
    /// its first new checkpoint at ordinal `appends_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        committer: Committer,
        metrics: Arc<Metrics>,
        fence: Fence,
        flow: String,
        children: Vec<String>,
        generation: JournalGeneration,
        records: Vec<CheckpointRecord>,
        appends_at: i64,
        lease: watch::Receiver<Lease>,
        interrupt: Arc<Interrupt>,
        trace: (Tracer, SpanContext),
    ) -> Self {
        let incarnation = lease.borrow().incarnation;
        Self {
            store,
            committer,
            metrics,
            fence,
            flow,
            children,
            generation,
            records,
            next: 0,
            next_ordinal: appends_at,
            live: None,
            put_off: Arc::default(),
            grace: None,
            last_committed: None,
            events_taken: HashMap::new(),
            lease,
            incarnation,
            interrupt,
            abort: None,
            trace,
            step: None,
            http: None,
        }
    }

    /// Opens the span of checkpoint `name` at `position`.
    fn step_span(&self, position: u32, name: &str) -> OpenSpan {
        let (tracer, attempt) = &self.trace;
        let mut span = tracer.start("checkpoint", *attempt);
        span.set("baton.checkpoint.name", name);
        span.set("baton.checkpoint.position", i64::from(position));
        span
    }

    fn stop(&mut self, abort: Abort) -> HostAbort {
        let message = match &abort {
            Abort::Lost => format!(
                "request {} is no longer owned by this server at epoch {}",
                self.fence.request, self.fence.epoch
            ),
            Abort::Stopping => "this server is stopping".to_owned(),
            Abort::Held => format!("request {} is held", self.fence.request),
            Abort::Nondeterminism(message)
            | Abort::Storage(message)
            | Abort::Postponed(message) => message.clone(),
            Abort::Sleeping { wake_at_ms, .. } => format!("sleeping until {wake_at_ms} ms"),
        };
        self.abort.get_or_insert(abort);
        HostAbort(message)
    }

    fn key(&self, position: u32) -> String {
        step_key(&self.fence.request, self.generation.number, position)
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

    /// The write of checkpoint `name` at `position`, its payload stored
    /// (a large one as a blob), with the step's span.
    fn checkpoint_write(
        &mut self,
        position: u32,
        name: String,
        payload: Vec<u8>,
    ) -> Result<(CheckpointWrite, OpenSpan), HostAbort> {
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
        let span = self
            .step
            .take()
            .unwrap_or_else(|| self.step_span(position, &name));
        let write = CheckpointWrite {
            fence: self.fence.clone(),
            journal: self.generation,
            ordinal: self.next_ordinal,
            seq: i64::from(position),
            name,
            payload,
        };
        self.next = position + 1;
        self.next_ordinal += 1;
        self.live = None;
        Ok((write, span))
    }

    /// Commits checkpoint `name` at `position` before the flow goes on.
    async fn commit(
        &mut self,
        position: u32,
        name: String,
        payload: Vec<u8>,
    ) -> Result<(), HostAbort> {
        let (write, span) = self.checkpoint_write(position, name, payload)?;
        self.commit_write(write, span, None).await
    }

    /// Puts off the commit of a step's result until the flow's next host
    /// call or its outcome, whichever comes first, or until the flow has
    /// computed on for [`PUT_OFF_GRACE`] without either: then it is
    /// committed while the flow computes.
    async fn put_off(&mut self, write: CheckpointWrite, span: OpenSpan) {
        *self.put_off.lock().await = PutOff::Waiting(write, span);
        let (put_off, committer) = (self.put_off.clone(), self.committer.clone());
        self.grace = Some(tokio::spawn(async move {
            tokio::time::sleep(PUT_OFF_GRACE).await;
            let mut put_off = put_off.lock().await;
            if let PutOff::Waiting(write, span) = std::mem::take(&mut *put_off) {
                let started = Instant::now();
                let result = committer.commit(write.clone()).await;
                *put_off = PutOff::Tried {
                    write,
                    span,
                    started,
                    result,
                };
            }
        }));
    }

    /// What is put off, taken; the grace's timer, if it has not committed
    /// it, will not.
    async fn take_put_off(&mut self) -> PutOff {
        let put_off = std::mem::take(&mut *self.put_off.lock().await);
        if let Some(grace) = self.grace.take() {
            grace.abort();
        }
        put_off
    }

    /// Commits the step result the flow returned last, if it is not
    /// committed yet: before the flow's next host call, so nothing the
    /// flow does after a step reaches the world before the step is
    /// durable, and before the attempt's end is written.
    pub async fn settle(&mut self) -> Result<(), HostAbort> {
        match self.take_put_off().await {
            PutOff::Nothing => Ok(()),
            PutOff::Waiting(write, span) => self.commit_write(write, span, None).await,
            PutOff::Tried {
                write,
                span,
                started,
                result,
            } => {
                self.commit_write(write, span, Some((started, result)))
                    .await
            }
        }
    }

    /// The last step's result, still to commit, for the outcome of a flow
    /// that returned to carry in its own commit; `None` when there is
    /// none, when the grace's timer took it, or when the journal has no
    /// room left for it (then [`Self::settle`] says so).
    pub async fn take_last(&mut self) -> Option<(CheckpointWrite, OpenSpan)> {
        match self.take_put_off().await {
            PutOff::Waiting(write, span) if write.journal.key(write.ordinal).is_some() => {
                Some((write, span))
            }
            other => {
                *self.put_off.lock().await = other;
                None
            }
        }
    }

    /// Commits `write`, whose first try, if made already, answered `tried`.
    async fn commit_write(
        &mut self,
        write: CheckpointWrite,
        mut span: OpenSpan,
        mut tried: Option<(Instant, Result<(), CommitError>)>,
    ) -> Result<(), HostAbort> {
        let started = tried.as_ref().map_or_else(Instant::now, |(at, _)| *at);
        // A database that is away for a while delays the commit; the attempt
        // gives up only when the lease says the request may have moved on.
        loop {
            let result = match tried.take() {
                Some((_, result)) => result,
                None => self.committer.commit(write.clone()).await,
            };
            match result {
                Ok(()) => break,
                Err(CommitError::Fenced) => {
                    span.fail("fenced: the request moved on");
                    return Err(self.stop(Abort::Lost));
                }
                Err(CommitError::Refused(why)) => {
                    span.fail(why.clone());
                    return Err(self.stop(Abort::Storage(why)));
                }
                Err(CommitError::Unavailable(e)) => {
                    tracing::warn!(request = %self.fence.request, error = %e, "checkpoint commit failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.check().await?;
                }
            }
        }
        let committed = Instant::now();
        self.metrics.record_checkpoint(
            &self.flow,
            committed - started,
            self.last_committed.map(|last| started - last),
        );
        self.last_committed = Some(committed);
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

    /// Stops the attempt over a store error: postponed when the store is
    /// away, a storage error otherwise.
    fn store_failed(&mut self, what: String, e: StoreError) -> HostAbort {
        let message = format!("{what}: {e}");
        self.stop(if e.is_outage() {
            Abort::Postponed(message)
        } else {
            Abort::Storage(message)
        })
    }

    /// Creates the child request of `flow` started at `position`, or finds
    /// the one an earlier attempt created there before its record was
    /// committed (the key is this position's, in this generation).
    async fn create_child(
        &mut self,
        position: u32,
        flow: &str,
        input: Vec<u8>,
    ) -> Result<Result<String, String>, HostAbort> {
        // A flow reaches only what it declared, other flows included.
        if !self.children.iter().any(|declared| declared == flow) {
            return Ok(Err(format!(
                "flow {} may not start the flow {flow:?}: declare it, \
                 #[flow(resources = [\"flow:{flow}\"])]",
                self.flow
            )));
        }
        let version = match self.store.active_version(flow).await {
            Ok(Some(version)) => version,
            Ok(None) => return Ok(Err(format!("there is no flow named {flow:?}"))),
            Err(e) => return Err(self.store_failed(format!("starting the flow {flow:?}"), e)),
        };
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&input) {
            return Ok(Err(format!(
                "the input of the flow {flow:?} is not JSON: {e}"
            )));
        }
        let input = match self.store.put_payload(input) {
            Ok(input) => input,
            Err(e) => return Err(self.store_failed(format!("starting the flow {flow:?}"), e)),
        };
        let mut child = NewRequest::of_version(
            &version,
            self.store.new_request_id(),
            (&self.fence.owner, self.incarnation),
            input,
        );
        child.idempotency_key = Some(format!("{CHILD_WAIT_PREFIX}{}", self.key(position)));
        child.parent = Some(self.fence.request.clone());
        match self.store.create_request(&child, false).await {
            Ok(_) => Ok(Ok(child.id)),
            Err(StoreError::KeyTaken {
                request,
                same_input: true,
                ..
            }) => Ok(Ok(request)),
            Err(StoreError::KeyTaken { request, .. }) => {
                Err(self.stop(Abort::Nondeterminism(format!(
                    "the child flow {flow:?} started at checkpoint position {position} was \
                     started before (request {request}) with another input"
                ))))
            }
            Err(e) => Err(self.store_failed(format!("starting the flow {flow:?}"), e)),
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

impl Drop for AttemptJournal {
    fn drop(&mut self) {
        // An attempt ended without settling (its request moved on): what
        // it put off is not committed after it.
        if let Some(grace) = self.grace.take() {
            grace.abort();
        }
    }
}

impl Journal for AttemptJournal {
    async fn guard(&mut self) -> Result<(), HostAbort> {
        self.settle().await?;
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
        self.settle().await?;
        self.check().await?;
        // Every step and every journaled wait begins here: where a hold
        // stops the attempt, with nothing of a step half done.
        if self.interrupt.held() {
            return Err(self.stop(Abort::Held));
        }
        let position = self.next;
        let key = self.key(position);
        let Some(record) = self.records.get(position as usize) else {
            self.step = Some(self.step_span(position, &name));
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
        let recorded = match self.store.read_payload(payload).await {
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
        // Committed at the flow's next host call, with the outcome when the
        // flow returns next, or by the grace's timer: no later step, HTTP
        // call, status value or child start happens before it is durable.
        let (write, span) = self.checkpoint_write(position, name, payload)?;
        self.put_off(write, span).await;
        Ok(())
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
                event: None,
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

    async fn wait_event(
        &mut self,
        name: String,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, HostAbort> {
        // The deadline, on the database clock, journaled as a sleep's is.
        let wait = format!("{WAIT}{name}");
        let start = self.begin_checkpoint(wait.clone()).await?;
        let deadline: u64 = match start.recorded {
            Some(recorded) => serde_json::from_slice(&recorded).map_err(|e| {
                self.stop(Abort::Storage(format!(
                    "journaled {wait} at {}: {e}",
                    start.position
                )))
            })?,
            None => {
                let deadline = self.database_now().await?.saturating_add(timeout_ms);
                let payload = serde_json::to_vec(&deadline).expect("u64 serializes");
                self.commit(start.position, wait, payload).await?;
                deadline
            }
        };
        let (took, timed_out) = (format!("{EVENT}{name}"), format!("{TIMEOUT}{name}"));
        // What the wait got, when a journal records it: replayed as it was.
        let position = self.next;
        if let Some(recorded) = self.records.get(position as usize) {
            // A recorded name that is neither is a nondeterminism error,
            // which `begin_checkpoint` raises.
            let got_event = recorded.name != timed_out;
            let start = self
                .begin_checkpoint(if got_event { took } else { timed_out })
                .await?;
            if !got_event {
                return Ok(None);
            }
            *self.events_taken.entry(name).or_default() += 1;
            return Ok(start.recorded);
        }
        self.check().await?;
        let index = self.events_taken.get(&name).copied().unwrap_or(0);
        let event = match self
            .store
            .inbox_event(&self.fence.request, &name, index)
            .await
        {
            Ok(event) => event,
            Err(e) => {
                let message = format!("reading the inbox for {name:?}: {e}");
                return Err(self.stop(if e.is_outage() {
                    Abort::Postponed(message)
                } else {
                    Abort::Storage(message)
                }));
            }
        };
        if let Some(event) = event {
            let payload = event.into_bytes();
            self.commit(position, took, payload.clone()).await?;
            *self.events_taken.entry(name).or_default() += 1;
            return Ok(Some(payload));
        }
        if self.database_now().await? >= deadline {
            self.commit(position, timed_out, b"null".to_vec()).await?;
            return Ok(None);
        }
        // Nothing yet: the slot is free until the deadline, and an event
        // sent meanwhile makes the request due at once.
        Err(self.stop(Abort::Sleeping {
            wake_at_ms: deadline,
            event: Some(name),
        }))
    }

    async fn set_status(&mut self, key: String, value: Vec<u8>) -> Result<(), HostAbort> {
        self.settle().await?;
        // Replayed code published this before, and later code may have
        // published another value since: only live code writes.
        if (self.next as usize) < self.records.len() {
            return Ok(());
        }
        self.check().await?;
        let value = String::from_utf8_lossy(&value).into_owned();
        loop {
            match self.store.set_status(&self.fence, &key, &value).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Fenced { .. }) => return Err(self.stop(Abort::Lost)),
                Err(e) if e.is_outage() => {
                    tracing::warn!(request = %self.fence.request, error = %e, "publishing a status value failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.check().await?;
                }
                Err(e) => {
                    return Err(self.stop(Abort::Storage(format!(
                        "publishing the status value {key:?}: {e}"
                    ))));
                }
            }
        }
    }

    async fn start_flow(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> Result<Result<String, String>, HostAbort> {
        let name = format!("{START}{flow}");
        let start = self.begin_checkpoint(name.clone()).await?;
        if let Some(recorded) = start.recorded {
            return serde_json::from_slice(&recorded).map(Ok).map_err(|e| {
                self.stop(Abort::Storage(format!(
                    "journaled {name} at {}: {e}",
                    start.position
                )))
            });
        }
        let child = match self.create_child(start.position, &flow, input).await? {
            Ok(child) => child,
            Err(why) => return Ok(Err(why)),
        };
        let payload = serde_json::to_vec(&child).expect("a string serializes");
        self.commit(start.position, name, payload).await?;
        tracing::info!(request = %self.fence.request, %child, %flow, "started a child flow");
        Ok(Ok(child))
    }

    async fn wait_child(&mut self, id: String) -> Result<Result<Vec<u8>, String>, HostAbort> {
        let name = format!("{CHILD_WAIT_PREFIX}{id}");
        let start = self.begin_checkpoint(name.clone()).await?;
        let outcome = match start.recorded {
            Some(recorded) => serde_json::from_slice(&recorded).map_err(|e| {
                self.stop(Abort::Storage(format!(
                    "journaled {name} at {}: {e}",
                    start.position
                )))
            })?,
            None => {
                let child = match self.store.request(&id).await {
                    Ok(child) => child,
                    Err(e) => return Err(self.store_failed(format!("reading the child {id}"), e)),
                };
                // A flow reads only its own children's outcomes.
                let Some(child) =
                    child.filter(|c| c.parent.as_deref() == Some(&*self.fence.request))
                else {
                    return Ok(Err(format!("request {id} is not a child of this request")));
                };
                let outcome = match child.status {
                    RequestStatus::Succeeded => {
                        let stored = child.output.expect("a succeeded request has an output");
                        let output = match self.store.read_payload(stored).await {
                            Ok(output) => output,
                            Err(e) => {
                                return Err(
                                    self.store_failed(format!("reading the output of {id}"), e)
                                );
                            }
                        };
                        let output = serde_json::from_slice(&output).map_err(|e| {
                            self.stop(Abort::Storage(format!("the output of {id}: {e}")))
                        })?;
                        ChildOutcome::Output(output)
                    }
                    RequestStatus::Error => ChildOutcome::Error(format!(
                        "the child request {id} ({}) ended in error: {}",
                        child.flow,
                        child.error.unwrap_or_default()
                    )),
                    RequestStatus::Cancelled => ChildOutcome::Error(format!(
                        "the child request {id} ({}) was cancelled",
                        child.flow
                    )),
                    _ => {
                        self.check().await?;
                        let recheck = self.database_now().await?.saturating_add(CHILD_RECHECK_MS);
                        return Err(self.stop(Abort::Sleeping {
                            wake_at_ms: recheck,
                            event: Some(name),
                        }));
                    }
                };
                let payload = serde_json::to_vec(&outcome).expect("an outcome serializes");
                self.commit(start.position, name, payload).await?;
                outcome
            }
        };
        Ok(match outcome {
            ChildOutcome::Output(output) => {
                Ok(serde_json::to_vec(&output).expect("JSON serializes"))
            }
            ChildOutcome::Error(why) => Err(why),
        })
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        // While recorded checkpoints lie ahead, the flow is replaying code
        // that ran, and logged, before: its lines were written then.
        if (self.next as usize) < self.records.len() {
            return;
        }
        let (request, flow) = (&self.fence.request, &self.flow);
        match level {
            LogLevel::Debug => tracing::debug!(%request, %flow, "{message}"),
            LogLevel::Info => tracing::info!(%request, %flow, "{message}"),
            LogLevel::Warn => tracing::warn!(%request, %flow, "{message}"),
            LogLevel::Error => tracing::error!(%request, %flow, "{message}"),
        }
    }

    fn traceparent(&mut self) -> Option<String> {
        let (tracer, attempt) = &self.trace;
        let parent = self.step.as_ref().map_or(*attempt, OpenSpan::context);
        let mut span = tracer.start("http", parent);
        span.kind(Kind::Client);
        let header = span.traceparent();
        self.http = Some(span);
        header
    }

    fn http_done(&mut self, elapsed: std::time::Duration) {
        self.metrics.record_http(&self.flow, elapsed);
        if let Some(span) = self.http.take() {
            span.end();
        }
    }
}
