//! The store port: what Baton keeps in its shared database and storage
//! folder, as traits by aggregate, with the rows they take and return.
//!
//! Callers hold an `Arc<dyn Store>` (or one aggregate's trait) and never
//! name an adapter. `baton-store` implements every trait for SQLite and
//! PostgreSQL; a test adapter may implement one aggregate and wrap the rest
//! (the committer takes a [`JournalStore`] alone).
//!
//! Every write that changes a request carries a [`Fence`] (owner + epoch)
//! and only succeeds while the store still agrees with it; that is what
//! stops a paused or partitioned server from writing for a request it has
//! lost. Times are milliseconds on the store's clock.
//!
//! # Layout
//!
//! - `requests`: [`RequestStore`] (creation, claims, fenced outcomes),
//!   [`OperatorStore`] (cancel, re-execute) and [`ListingStore`] (reads for
//!   people).
//! - `journal`: [`JournalStore`] (checkpoints, grouped fenced commits) and
//!   [`PayloadStore`] (where a payload's bytes live).
//! - `servers`: [`ServerStore`], membership, heartbeats, takeover.
//! - `flows`: [`FlowStore`], versions and each flow's active version.
//! - `accounts`: [`AccountStore`], accounts, sessions, tokens.
//! - `schedules`: [`ScheduleStore`], schedules fired once per tick.
//! - `retention`: [`RetentionStore`], purging finished requests and
//!   sweeping blobs no row names.
//! - `statistics`: [`StatisticsStore`], counts per minute, flow and server.

mod accounts;
mod flows;
mod journal;
mod requests;
mod retention;
mod schedules;
mod servers;
mod statistics;

use std::time::Duration;

pub use async_trait::async_trait;

pub use accounts::{AccountRow, AccountStore, AccountSummary};
pub use flows::{FlowRow, FlowStore, VersionRow};
pub use journal::{
    CheckpointRecord, CheckpointWrite, JOURNAL_CAPACITY, JournalGeneration, JournalStore, Payload,
    PayloadStore, StoredPayload,
};
pub use requests::{
    CHILD_WAIT_PREFIX, Claim, DueRequest, EventRow, ListingStore, NewRequest, OperatorStore,
    Outcome, RequestFilter, RequestRow, RequestStore, RunningAttempt,
};
pub use retention::{PurgeFilter, Purged, RetentionStore};
pub use schedules::{ScheduleRow, ScheduleStore};
pub use servers::{
    Connections, OWNED_COUNTED_UP_TO, ServerRow, ServerStatus, ServerStore, Takeover,
};
pub use statistics::{
    DURATION_BOUNDS_MS, DURATION_BUCKETS, MinuteCounts, MinuteRow, StatisticsStore, duration_bucket,
};

/// The whole store: every aggregate's trait. Implemented for every type
/// that implements them all.
pub trait Store:
    RequestStore
    + OperatorStore
    + ListingStore
    + JournalStore
    + PayloadStore
    + FlowStore
    + ServerStore
    + AccountStore
    + ScheduleStore
    + RetentionStore
    + StatisticsStore
    + 'static
{
}

impl<T> Store for T where
    T: RequestStore
        + OperatorStore
        + ListingStore
        + JournalStore
        + PayloadStore
        + FlowStore
        + ServerStore
        + AccountStore
        + ScheduleStore
        + RetentionStore
        + StatisticsStore
        + 'static
{
}

/// Owner and epoch a write is conditional on.
///
/// An attempt receives its fence when it claims a request; every write it
/// makes afterwards repeats it, and the store rejects the write once
/// another claim (takeover, re-execute, cancel) has moved the epoch on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The request.
    pub request: String,
    /// The server that claimed it.
    pub owner: String,
    /// The epoch of the claim.
    pub epoch: i64,
}

impl Fence {
    /// The error of a write this fence no longer allows.
    pub fn lost(&self) -> StoreError {
        StoreError::Fenced {
            request: self.request.clone(),
            epoch: self.epoch,
        }
    }
}

/// A failure of the database itself, as its adapter classified it.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct DatabaseError {
    /// What the database (or its driver) said.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// The database refused the statement for its data (bad data, a
    /// violated constraint, bad SQL): that does not pass with time.
    pub refused: bool,
}

/// What went wrong in the store, cut by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This server no longer owns the request at this epoch: stop executing it.
    #[error("request {request} is no longer owned by this server at epoch {epoch}")]
    Fenced {
        /// The request.
        request: String,
        /// The epoch the write was fenced on.
        epoch: i64,
    },
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An idempotency key already names a request of the flow.
    #[error("the idempotency key {key:?} already started request {request}{}", if *same_input { "" } else { " with a different input" })]
    KeyTaken {
        /// The key.
        key: String,
        /// The request it started.
        request: String,
        /// Whether that request's input is the same as this one's.
        same_input: bool,
    },
    /// A start asked for a version of the flow that is no longer its
    /// active one (a deploy came in between); nothing was created.
    #[error("version {version} is no longer the active version of flow {flow}")]
    VersionReplaced {
        /// The flow.
        flow: String,
        /// The version asked for.
        version: String,
    },
    /// The operation is not allowed in the current state; the text says why.
    #[error("{0}")]
    Refused(String),
    /// A blob's bytes do not match their recorded hash: storage corruption.
    #[error("blob {hash} is corrupted: {reason}")]
    Corrupt {
        /// The recorded hash.
        hash: String,
        /// What does not match.
        reason: String,
    },
    /// A row holds something this server cannot read back.
    #[error("{what} is unreadable: {reason}")]
    Unreadable {
        /// The row.
        what: String,
        /// What could not be read.
        reason: String,
    },
    /// A blob the database names is not in the storage path.
    #[error("blob {hash} is missing from the storage path")]
    MissingBlob {
        /// The recorded hash.
        hash: String,
    },
    /// The storage folder failed.
    #[error("storage I/O on {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database failed, refused a statement or is unreachable.
    #[error("database: {0}")]
    Database(#[from] DatabaseError),
    /// The database did not answer in time; retrying later may succeed.
    #[error("the database did not answer within {0:?}")]
    Unanswered(Duration),
    /// The request's journal holds [`JOURNAL_CAPACITY`] checkpoints already.
    #[error(
        "the journal of request {request} is full: a request holds at most {JOURNAL_CAPACITY} checkpoints"
    )]
    JournalFull {
        /// The request.
        request: String,
    },
}

impl StoreError {
    /// Whether the error says the database or the storage folder is away
    /// for now (retrying later may succeed), rather than something about the
    /// request or its data that waiting will not change.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Database(e) => !e.refused,
            Self::Unanswered(_) | Self::Io { .. } => true,
            _ => false,
        }
    }

    /// The error of an I/O failure on `path` in the storage folder.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
