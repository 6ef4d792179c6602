//! The retry process: claims due requests and runs their attempts.
//!
//! Scheduling: a request is due when it is `queued` or `waiting_retry` with
//! `next_attempt_at` passed, and owned by this server or handed over to the
//! cluster (no owner). The scheduler claims the oldest-due first, as long as
//! an execution slot is free, so new requests, retries after a flow error and
//! requests adopted from a dead server share one queue ordered by due time.
//! Claiming bumps the request's epoch, which fences any earlier attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::FlowProperties;
use baton_core::store::{
    CheckpointWrite, Claim, DueRequest, Fence, Outcome, RunningAttempt, Store, StoreError,
};
use baton_runtime::{AttemptError, FlowFailure, Runtime};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast};

use crate::engine::checkpoint::{Abort, AttemptJournal, Interrupt};
use crate::engine::cluster::Cluster;
use crate::engine::committer::Committer;
use crate::metrics::Metrics;
use crate::trace::{OpenSpan, SpanContext, Tracer};

/// The last step's result of a flow that returned, which its outcome
/// commits with it, and the step's span.
type LastStep = (CheckpointWrite, OpenSpan);

/// Runs this server's attempts.
pub struct Executor {
    store: Arc<dyn Store>,
    runtime: Runtime<AttemptJournal>,
    committer: Committer,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    tracer: Tracer,
    slots: Arc<Semaphore>,
    capacity: usize,
    active: Mutex<HashMap<String, (i64, Arc<Interrupt>)>>,
    wake: Notify,
    finished: broadcast::Sender<String>,
    connections: std::collections::BTreeMap<String, String>,
    max_postponements: u32,
}

/// How often the scheduler looks for due requests when other servers'
/// writes wake it (PostgreSQL): the look only catches what a wake missed.
pub const POLL_WOKEN: Duration = Duration::from_secs(1);
/// How often it looks when only this server's own writes wake it (SQLite).
pub const POLL: Duration = Duration::from_millis(100);

/// How long an attempt that could not start (or store its output) for a
/// reason outside the flow waits before it is tried again.
const POSTPONE_MS: i64 = 1000;

impl Executor {
    /// An executor with at most `capacity` attempts at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Runtime<AttemptJournal>,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        tracer: Tracer,
        capacity: usize,
        connections: std::collections::BTreeMap<String, String>,
        max_postponements: u32,
    ) -> Arc<Self> {
        Arc::new(Self {
            committer: Committer::new(store.clone(), metrics.clone()),
            store,
            runtime,
            cluster,
            metrics,
            tracer,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            finished: broadcast::channel(1024).0,
            connections,
            max_postponements,
        })
    }

    /// The runtime, for deploys.
    pub fn runtime(&self) -> &Runtime<AttemptJournal> {
        &self.runtime
    }

    /// Attempts executing now.
    pub fn running(&self) -> usize {
        self.active.lock().expect("active lock").len()
    }

    /// Asks the scheduler to look for due requests now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Request ids whose attempt on this server just ended.
    pub fn finished(&self) -> broadcast::Receiver<String> {
        self.finished.subscribe()
    }

    /// Stops every attempt at its next host call; they write nothing more.
    pub fn interrupt_all(&self, abort: &Abort) {
        for (_, interrupt) in self.active.lock().expect("active lock").values() {
            interrupt.raise(abort);
        }
    }

    /// Stops the attempt of request `id` executing here, if one is, at its
    /// next host call (or at once, from a wait); it writes nothing more.
    pub fn interrupt(&self, id: &str, abort: &Abort) {
        if let Some((_, interrupt)) = self.active.lock().expect("active lock").get(id) {
            interrupt.raise(abort);
        }
    }

    /// Lets the attempt of request `id` executing here, if one is, go on
    /// past its next step: its hold was resumed before it got there.
    pub fn lift_hold(&self, id: &str) {
        if let Some((_, interrupt)) = self.active.lock().expect("active lock").get(id) {
            interrupt.lift_hold();
        }
    }

    /// The `(request, epoch)` of every attempt executing here.
    pub fn active(&self) -> Vec<(String, i64)> {
        let active = self.active.lock().expect("active lock");
        active
            .iter()
            .map(|(id, (epoch, _))| (id.clone(), *epoch))
            .collect()
    }

    /// Stops the attempts of `checked` (taken from [`Executor::active`]
    /// before the database was asked) that the database no longer records as
    /// running here at their epoch: cancelled, or moved elsewhere. Tells
    /// those it records as held to stop at their next step, and those no
    /// longer held (resumed meanwhile) to go on.
    pub fn fence_lost(&self, checked: &[(String, i64)], running_here: &[RunningAttempt]) {
        let active = self.active.lock().expect("active lock");
        for (request, epoch) in checked {
            if !running_here
                .iter()
                .any(|running| running.request == *request && running.epoch == *epoch)
                && let Some((active_epoch, interrupt)) = active.get(request)
                && active_epoch == epoch
            {
                interrupt.raise(&Abort::Lost);
            }
        }
        for running in running_here {
            if let Some((epoch, interrupt)) = active.get(&running.request)
                && *epoch == running.epoch
            {
                if running.held {
                    interrupt.raise(&Abort::Held);
                } else {
                    interrupt.lift_hold();
                }
            }
        }
    }

    /// Of `running_here` (what the database records as running here),
    /// those with no attempt executing here at that epoch.
    pub fn without_attempt(&self, running_here: &[RunningAttempt]) -> Vec<(String, i64)> {
        let active = self.active.lock().expect("active lock");
        running_here
            .iter()
            .filter(|running| {
                active
                    .get(&running.request)
                    .is_none_or(|(active, _)| *active != running.epoch)
            })
            .map(|running| (running.request.clone(), running.epoch))
            .collect()
    }

    /// Waits until no attempt runs, or `limit` passes.
    pub async fn drain(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            let _all = self.slots.acquire_many(self.capacity as u32).await;
        })
        .await;
    }

    /// The scheduler loop, looking every `poll` at the latest and at once
    /// when woken; between looks it sleeps until the next request it saw
    /// coming is due. Returns when `stop` is notified.
    pub async fn schedule(self: Arc<Self>, stop: Arc<Notify>, poll: Duration) {
        let mut next = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stop.notified() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
            next = match self.claim_due(poll).await {
                // A millisecond more: the database's clock must have passed
                // the due time when the claim reads it.
                Ok(Some(due_in)) => poll.min(due_in + Duration::from_millis(1)),
                Ok(None) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for due requests failed");
                    poll
                }
            };
        }
    }

    /// Claims what is due now; how long until the next request seen
    /// within `ahead` is due.
    async fn claim_due(self: &Arc<Self>, ahead: Duration) -> Result<Option<Duration>, StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(None);
        }
        let due = self
            .store
            .due_requests(
                &self.cluster.id,
                (free * 2) as i64,
                ahead.as_millis() as i64,
            )
            .await?;
        let next = due
            .iter()
            .filter(|request| !request.is_due())
            .map(|request| Duration::from_millis(request.in_ms as u64))
            .min();
        for DueRequest { id, .. } in due.into_iter().filter(DueRequest::is_due) {
            if self.active.lock().expect("active lock").contains_key(&id) {
                continue;
            }
            let Some(slot) = self.try_slot() else {
                break;
            };
            let mut span = self.tracer.start("claim", SpanContext::of_request(&id));
            span.set("baton.request.id", id.as_str());
            span.set("baton.server", self.cluster.id.as_str());
            let claim = self
                .store
                .claim(&id, &self.cluster.id, self.cluster.incarnation())
                .await;
            match &claim {
                Ok(Some(claim)) => span.set("baton.epoch", claim.fence.epoch),
                Ok(None) => span.set("baton.claimed", false),
                Err(e) => span.fail(e.to_string()),
            }
            span.end();
            if let Some(claim) = claim? {
                self.start(claim, slot);
            }
        }
        Ok(next)
    }

    /// An execution slot, if one is free now.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// This server's tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// Runs the attempt a claim licensed, in the slot reserved for it.
    pub fn start(self: &Arc<Self>, claim: Claim, slot: OwnedSemaphorePermit) {
        let interrupt = Arc::new(Interrupt::default());
        self.active.lock().expect("active lock").insert(
            claim.fence.request.clone(),
            (claim.fence.epoch, interrupt.clone()),
        );
        tokio::spawn(self.clone().attempt(claim, interrupt, slot));
    }

    async fn attempt(
        self: Arc<Self>,
        claim: Claim,
        interrupt: Arc<Interrupt>,
        _slot: OwnedSemaphorePermit,
    ) {
        let fence = claim.fence.clone();
        let (flow, created_at) = (claim.flow.clone(), claim.created_at);
        let postponements = claim.postponements;
        let mut span = self
            .tracer
            .start("attempt", SpanContext::of_request(&fence.request));
        span.set("baton.request.id", fence.request.as_str());
        span.set("baton.flow", flow.as_str());
        span.set("baton.server", fence.owner.as_str());
        span.set("baton.epoch", fence.epoch);
        span.set("baton.attempt", claim.attempts);
        let mut last = None;
        match self
            .execute(claim, interrupt.clone(), span.context(), &mut last)
            .await
        {
            Some(outcome) => {
                let outcome = match outcome {
                    Outcome::Postponed { reason, .. }
                        if postponements >= i64::from(self.max_postponements) =>
                    {
                        Outcome::error(format!(
                            "{reason}; the attempt was postponed {} times in a row for this, \
                             the server's bound (max_postponements): re-execute the request \
                             once the cause is fixed",
                            postponements + 1
                        ))
                    }
                    outcome => outcome,
                };
                let (kind, error) = match &outcome {
                    Outcome::Succeeded(_) => ("succeeded", None),
                    Outcome::Error { error, .. } => ("error", Some(error.clone())),
                    Outcome::Retry { error, .. } => ("retry", Some(error.clone())),
                    Outcome::Postponed { reason, .. } => ("postponed", Some(reason.clone())),
                    Outcome::Sleeping { .. } => ("sleeping", None),
                };
                span.set("baton.outcome", kind);
                if let Some(error) = &error {
                    span.fail(error.clone());
                }
                let mut writing = self.tracer.start("outcome", span.context());
                writing.set("baton.outcome", kind);
                let carried = last.as_ref().map(|(write, _)| write);
                let written = self.write_outcome(&fence, &outcome, carried).await;
                // Counted only when written: an outcome fenced off (the
                // request moved on) did not happen.
                if written {
                    self.metrics.record_outcome(&flow, &outcome, created_at);
                    if last.is_some() {
                        self.metrics.record_checkpoint_with_outcome(&flow);
                    }
                } else {
                    writing.fail("not written: the request moved on");
                    if let Some((_, step)) = &mut last {
                        step.fail("fenced: the request moved on");
                    }
                }
                writing.end();
                if written && matches!(kind, "succeeded" | "error") {
                    self.tracer
                        .request_ended(&fence.request, &flow, created_at, error);
                }
            }
            // Stopped without an outcome: if the request is still ours at this
            // epoch (not moved by a takeover or handover), make it due again
            // rather than leave it `running` with no attempt behind it.
            None => match self
                .store
                .release(
                    &fence,
                    if interrupt.held() {
                        "held: its attempt stopped before its next step"
                    } else {
                        "its attempt stopped without an outcome"
                    },
                )
                .await
            {
                Ok(()) | Err(StoreError::Fenced { .. }) => {}
                Err(e) => {
                    tracing::warn!(request = %fence.request, error = %e, "releasing a stopped attempt failed")
                }
            },
        }
        self.active
            .lock()
            .expect("active lock")
            .remove(&fence.request);
        let _ = self.finished.send(fence.request.clone());
        // A retry may be due soon, and a slot is free again.
        self.wake();
    }

    /// Runs one attempt; `None` when it must write nothing (it lost the
    /// request). A flow that returned leaves its last step's result, if
    /// not committed yet, in `last` for its outcome to commit.
    async fn execute(
        &self,
        claim: Claim,
        interrupt: Arc<Interrupt>,
        span: SpanContext,
        last: &mut Option<LastStep>,
    ) -> Option<Outcome> {
        let request = claim.fence.request.clone();
        let prepared = self.prepare(&claim).await;
        let (properties, component, input, records) = match prepared {
            Ok(prepared) => prepared,
            Err(Prepare::Fatal(message)) => {
                tracing::error!(%request, "{message}");
                return Some(Outcome::error(message));
            }
            Err(Prepare::Postpone(reason)) => {
                tracing::warn!(%request, "{reason}; the attempt is postponed");
                return Some(Outcome::Postponed {
                    reason,
                    delay_ms: POSTPONE_MS,
                });
            }
        };
        let journal = AttemptJournal::new(
            self.store.clone(),
            self.committer.clone(),
            self.metrics.clone(),
            claim.fence.clone(),
            claim.flow.clone(),
            properties
                .resources
                .iter()
                .filter_map(|r| r.strip_prefix("flow:"))
                .map(str::to_owned)
                .collect(),
            claim.journal,
            records,
            claim.appends_at,
            self.cluster.lease(),
            interrupt,
            (self.tracer.clone(), span),
        );
        tracing::debug!(%request, attempt = claim.attempts, epoch = claim.fence.epoch, "attempt starts");
        let egress = baton_runtime::Egress::new(&properties.name, &properties.resources);
        let started = std::time::Instant::now();
        let mut attempt = self.runtime.run(&component, journal, &input, egress).await;
        self.metrics
            .record_attempt(&claim.flow, attempt.instantiate, started.elapsed());
        let journal = &mut attempt.journal;
        if attempt.result.is_ok() && journal.abort.is_none() {
            *last = journal.take_last().await;
        }
        // Whatever else ended the attempt, its last step's result is
        // committed before that end is written (a request moved on has
        // nothing left to commit: its fence is gone).
        if journal.abort != Some(Abort::Lost) {
            // A failure says itself in the journal's abort.
            let _ = journal.settle().await;
        }
        match attempt.journal.abort.take() {
            Some(Abort::Lost) | Some(Abort::Stopping) => {
                tracing::info!(%request, epoch = claim.fence.epoch, "attempt stopped: the request is no longer this server's to run");
                return None;
            }
            Some(Abort::Held) => {
                tracing::info!(%request, epoch = claim.fence.epoch, "attempt stopped: the request is held");
                return None;
            }
            Some(Abort::Nondeterminism(message)) => {
                self.metrics.record_nondeterminism(&claim.flow);
                tracing::error!(%request, "{message}");
                return Some(Outcome::error(message));
            }
            Some(Abort::Storage(message)) => {
                tracing::error!(%request, "{message}");
                return Some(Outcome::error(message));
            }
            Some(Abort::Postponed(reason)) => {
                tracing::warn!(%request, "{reason}; the attempt is postponed");
                return Some(Outcome::Postponed {
                    reason,
                    delay_ms: POSTPONE_MS,
                });
            }
            Some(Abort::Sleeping { wake_at_ms, event }) => {
                tracing::debug!(%request, wake_at_ms, ?event, "the flow sleeps or waits; its slot is free until then");
                return Some(Outcome::Sleeping {
                    wake_at_ms: wake_at_ms as i64,
                    event,
                });
            }
            None => {}
        }
        let failure = match attempt.result {
            Ok(output) => {
                return match self.store.put_payload(output) {
                    Ok(output) => Some(Outcome::Succeeded(output)),
                    Err(e) => Some(Outcome::Postponed {
                        reason: format!("storing the output: {e}"),
                        delay_ms: POSTPONE_MS,
                    }),
                };
            }
            Err(AttemptError::Flow(failure)) => failure,
            Err(AttemptError::Trap(trap) | AttemptError::Invalid(trap)) => FlowFailure {
                message: trap,
                fatal: false,
                details: None,
            },
        };
        // Every viewer reads a request's error: no credentials in it.
        let error = baton_runtime::redact_text(&failure.message);
        let details = failure
            .details
            .as_deref()
            .map(|details| baton_runtime::redact_text(&String::from_utf8_lossy(details)));
        let failures = claim.failures as u32 + 1;
        if failure.fatal {
            tracing::warn!(%request, "{error} (fatal: not retried)");
            Some(Outcome::Error { error, details })
        } else if failures > properties.max_retries {
            let error = if properties.max_retries == 0 {
                error
            } else {
                format!("{error} (after {} retries)", properties.max_retries)
            };
            tracing::warn!(%request, "{error}");
            Some(Outcome::Error { error, details })
        } else {
            tracing::info!(%request, failures, "{error}; will retry");
            Some(Outcome::Retry {
                error,
                details,
                delay_ms: properties.retry_delay_ms(failures),
            })
        }
    }

    /// Everything an attempt needs, each failure said in a sentence.
    async fn prepare(
        &self,
        claim: &Claim,
    ) -> Result<
        (
            FlowProperties,
            Arc<baton_runtime::FlowComponent<AttemptJournal>>,
            Vec<u8>,
            Vec<baton_core::store::CheckpointRecord>,
        ),
        Prepare,
    > {
        let hash = &claim.version;
        let version = self
            .store
            .version(hash)
            .await
            .map_err(|e| Prepare::Postpone(format!("reading flow version {hash}: {e}")))?
            .ok_or_else(|| {
                Prepare::Fatal(format!(
                    "flow version {hash} of {} is not deployed in this cluster",
                    claim.flow
                ))
            })?;
        let properties = version.properties;
        if let Some(missing) =
            crate::resources::missing(&properties, &self.connections, &self.cluster.id)
        {
            return Err(Prepare::Fatal(missing));
        }
        let store = self.store.clone();
        let size = version.size as u64;
        let mut outage = false;
        let component = self
            .runtime
            .load(hash, || {
                store.blob(hash, size).map_err(|e| {
                    outage = e.is_outage();
                    e.to_string()
                })
            })
            .await
            .map_err(|e| {
                let message = format!("flow version {hash} cannot be loaded: {e}");
                if outage {
                    Prepare::Postpone(message)
                } else {
                    Prepare::Fatal(message)
                }
            })?;
        let input = self
            .store
            .read_payload(claim.input.clone())
            .await
            .map_err(|e| {
                let message = format!("the request's input cannot be read: {e}");
                if e.is_outage() {
                    Prepare::Postpone(message)
                } else {
                    Prepare::Fatal(message)
                }
            })?;
        let records = if claim.created {
            Vec::new()
        } else {
            self.store
                .journal(&claim.journal)
                .await
                .map_err(|e| Prepare::Postpone(format!("reading the journal: {e}")))?
        };
        Ok((properties, component, input, records))
    }

    /// Writes the outcome under the attempt's fence, with `last`, the last
    /// step's result, in the same commit. A database that is away delays
    /// the write; a lost fence means another attempt owns the request.
    /// Whether it was written.
    async fn write_outcome(
        &self,
        fence: &Fence,
        outcome: &Outcome,
        last: Option<&CheckpointWrite>,
    ) -> bool {
        let mut lease = self.cluster.lease();
        loop {
            let finished = match last {
                Some(last) => self.store.finish_with_checkpoint(last, outcome).await,
                None => self.store.finish(fence, outcome).await,
            };
            match finished {
                Ok(()) => return true,
                Err(StoreError::Fenced { .. }) => {
                    tracing::info!(request = %fence.request, epoch = fence.epoch, "outcome not written: the request moved on");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(request = %fence.request, error = %e, "writing the outcome failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if lease.borrow_and_update().stopping {
                        return false;
                    }
                }
            }
        }
    }
}

enum Prepare {
    /// The request cannot run: `error`.
    Fatal(String),
    /// Something passing outside the flow failed: try again later, without
    /// counting it against the flow's retries.
    Postpone(String),
}
