//! Requests: creation, claims, fenced outcomes, the operator's transitions
//! and the reads for people.

use async_trait::async_trait;

use super::{CheckpointWrite, Fence, JournalGeneration, StoreError, StoredPayload, VersionRow};
use crate::{EventKind, RequestStatus, Transition};

/// What `waiting_for` holds while a parent waits for its child `ID`:
/// `baton:child:ID`, which is also the name of the journal record of the
/// child's outcome.
pub const CHILD_WAIT_PREFIX: &str = "baton:child:";

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
    /// The request whose flow started this one, for a child flow.
    pub parent: Option<String>,
    /// Created only while `version` is the flow's active version, else
    /// [`StoreError::VersionReplaced`]: a start that read the active
    /// version earlier (a cached read) and that a deploy may have
    /// overtaken since.
    pub while_active: bool,
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
            parent: None,
            while_active: false,
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
    /// When the request was created, ms (its end-to-end time starts here).
    pub created_at: i64,
    /// Journal generation this attempt replays and extends.
    pub journal: JournalGeneration,
    /// The input.
    pub input: StoredPayload,
    /// Claimed in the transaction that created the request: its journal
    /// is empty, and the attempt need not read it.
    pub created: bool,
    /// The ordinal of this attempt's first new checkpoint: right after the
    /// fence entry the claim appended to the request's journal.
    pub appends_at: i64,
}

/// A request a server may claim, from [`RequestStore::due_requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRequest {
    /// The request.
    pub id: String,
    /// Milliseconds until it is due on the database's clock; ≤ 0 when due.
    pub in_ms: i64,
}

impl DueRequest {
    /// Whether it is due now.
    pub fn is_due(&self) -> bool {
        self.in_ms <= 0
    }
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
        /// The flow's JSON details of it.
        details: Option<String>,
        /// Delay before the retry.
        delay_ms: i64,
    },
    /// The request failed for good.
    Error {
        /// What failed.
        error: String,
        /// The flow's JSON details of it.
        details: Option<String>,
    },
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
    /// owned here, without an attempt, and is due again at that time, or
    /// as soon as the event it waits for is sent.
    Sleeping {
        /// Wake-up time in milliseconds on the database clock.
        wake_at_ms: i64,
        /// The event the flow waits for.
        event: Option<String>,
    },
}

impl Outcome {
    /// The request failed for good, for `error`, with no details.
    pub fn error(error: impl Into<String>) -> Self {
        Self::Error {
            error: error.into(),
            details: None,
        }
    }

    /// The transition this outcome makes.
    pub fn transition(&self) -> Transition {
        match self {
            Self::Succeeded(_) => Transition::Succeed,
            Self::Retry { .. } => Transition::Retry,
            Self::Error { .. } => Transition::Fail,
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
    /// The flow's JSON details of the last error.
    pub error_details: Option<String>,
    /// The event the flow waits for, while it waits.
    pub waiting_for: Option<String>,
    /// The request whose flow started this one, for a child flow.
    pub parent: Option<String>,
    /// Held by an operator: it does not run until resumed.
    pub held: bool,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// One entry of a request's history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// A request a server is recorded as running an attempt of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAttempt {
    /// The request.
    pub request: String,
    /// Its epoch: the attempt's licence.
    pub epoch: i64,
    /// Held by an operator: the attempt stops at its next step.
    pub held: bool,
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
    /// Only children of this request.
    pub parent: Option<String>,
    /// Only held requests (`Some(true)`) or only those not held.
    pub held: Option<bool>,
    /// Only created at or after this time (ms).
    pub created_from: Option<i64>,
    /// Only created before this time (ms).
    pub created_before: Option<i64>,
    /// Page size.
    pub limit: i64,
}

#[async_trait]
pub trait RequestStore: Send + Sync {
    /// A new request ID, unique across servers, in the form that suits the
    /// store: the SQL store's are UUIDv7, whose leading timestamp keeps the
    /// requests' and the journal's b-trees growing at their right edge, so
    /// a checkpoint commit writes one leaf page rather than splitting one
    /// at a random place.
    fn new_request_id(&self) -> String;

    /// Records a new request owned by the server that received it: `queued`,
    /// or, with `claim`, already `running` as its first attempt (one commit
    /// instead of two when the server has a free slot).
    async fn create_request(
        &self,
        new: &NewRequest,
        claim: bool,
    ) -> Result<Option<Claim>, StoreError>;

    /// Requests due for an attempt that `me` may claim within `within_ms`
    /// from now: its own queued or waiting ones, its sleeping ones whose
    /// wake-up time comes (a `running` request has a due time only while
    /// no attempt runs it), and ones handed over to the cluster. Soonest
    /// due first, each with how long until it is due (≤ 0: due now), so a
    /// scheduler can sleep until the next one rather than poll for it.
    async fn due_requests(
        &self,
        me: &str,
        limit: i64,
        within_ms: i64,
    ) -> Result<Vec<DueRequest>, StoreError>;

    /// Starts an attempt: moves a due request to `running` owned by `me` at
    /// a new epoch, which fences every earlier attempt anywhere. A request
    /// with `begin_checkpoint = not use` whose last attempt did not merely
    /// suspend (a long sleep, a postponement) and that has checkpoints starts
    /// a new journal generation. `None` when someone else claimed it first;
    /// [`StoreError::Refused`] when `me` is not running at `incarnation`
    /// (found dead, or stopped), which may claim nothing.
    async fn claim(
        &self,
        id: &str,
        me: &str,
        incarnation: i64,
    ) -> Result<Option<Claim>, StoreError>;

    /// Writes how an attempt ended, only while its fence holds.
    async fn finish(&self, fence: &Fence, outcome: &Outcome) -> Result<(), StoreError>;

    /// Commits `last`, the last checkpoint of an attempt, and how that
    /// attempt ended in one commit, under the write's fence: both or
    /// neither. A checkpoint already committed under the same fence (an
    /// earlier try whose answer was lost) counts as committed. The journal
    /// must have room at the write's ordinal.
    async fn finish_with_checkpoint(
        &self,
        last: &CheckpointWrite,
        outcome: &Outcome,
    ) -> Result<(), StoreError>;

    /// Makes a request whose attempt stopped without an outcome (its server
    /// stopping, or rejoining after being found dead), or that was left
    /// `running` with no attempt behind it, due again, if the fence still
    /// holds; `why` goes into its history. Not a failure: the retry budget
    /// is untouched.
    async fn release(&self, fence: &Fence, why: &str) -> Result<(), StoreError>;

    /// The requests `me` is recorded as running an attempt of: `running`,
    /// owned by `me`, with no due time (a sleeping request has one, and no
    /// attempt).
    async fn running_on(&self, me: &str) -> Result<Vec<RunningAttempt>, StoreError>;
}

#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Puts the event `name` with its JSON `payload` in the inbox of a
    /// request that has not finished, sent by `actor`, and wakes the request
    /// if it waits (it is due at once; an attempt running now is due again
    /// as soon as it leaves). [`StoreError::NotFound`] for no such request,
    /// [`StoreError::Refused`] for a finished one.
    ///
    /// With a `key`, at most one event is kept per request and key: a send
    /// again with the same key, name and payload keeps nothing new and
    /// returns `false`; with another name or payload it is
    /// [`StoreError::Refused`].
    async fn send_event(
        &self,
        id: &str,
        name: &str,
        payload: &str,
        key: Option<&str>,
        actor: &str,
    ) -> Result<bool, StoreError>;

    /// Holds a request that has not finished, from server `by` on behalf of
    /// `actor` (recorded): no server claims it until it is resumed, and an
    /// attempt running now stops at its next step (the heartbeat of its
    /// server tells it). `false` when it was held already.
    async fn hold(&self, id: &str, by: &str, actor: &str) -> Result<bool, StoreError>;

    /// Resumes a held request: it runs again when it is due (at once when
    /// it was due while held). `false` when it was not held.
    async fn resume(&self, id: &str, by: &str, actor: &str) -> Result<bool, StoreError>;

    /// Creates `new` as a fork of request `source`: its journal starts with
    /// copies of `source`'s current generation's checkpoints `0..from`, so
    /// it replays them and runs on from `from`; `source` is left as it was.
    /// Both histories record it, with `actor`. Refused when `source` has
    /// fewer than `from` checkpoints there.
    async fn fork(
        &self,
        new: &NewRequest,
        source: &str,
        from: i64,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Cancels a request that has not finished, from server `by` on behalf of
    /// `actor` (recorded); its epoch moves on, so an attempt still running
    /// anywhere is fenced.
    async fn cancel(&self, id: &str, by: &str, actor: &str) -> Result<(), StoreError>;

    /// Re-executes a request from server `me` on behalf of `actor`
    /// (recorded): allowed for `error`, and for
    /// `waiting_retry` whose owner is down (not running, or its heartbeat is
    /// older than the lease). `me` becomes the owner, the retry budget starts
    /// over and the attempt is due now.
    ///
    /// With `from = Some(k)` the request runs in a new journal generation
    /// that starts with copies of the current generation's checkpoints
    /// `0..k` and runs from `k` live (a reset); refused when the current
    /// generation has fewer than `k`.
    async fn reexecute(
        &self,
        id: &str,
        me: &str,
        lease_ms: i64,
        from: Option<i64>,
        actor: &str,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait ListingStore: Send + Sync {
    /// One request.
    async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError>;

    /// Requests newest first, filtered, one keyset page at a time.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError>;

    /// The values the request's flow published, by key.
    async fn status_values(&self, id: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// A request's history, oldest first: at most `limit` events after
    /// the one numbered `after`.
    async fn events(
        &self,
        id: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError>;

    /// The number of the newest history entry of any request (0: none):
    /// it moves on with every change of any request's status.
    async fn last_event(&self) -> Result<i64, StoreError>;
}
