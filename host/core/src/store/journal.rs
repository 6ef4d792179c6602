//! The journal (committed checkpoints per request and generation) and the
//! payloads it and the requests name.

use async_trait::async_trait;

use super::{Fence, StoreError};

/// How many checkpoints one request's journal holds, over all generations.
///
/// The journal is keyed by one integer, its journal key: the request's
/// number times this plus the entry's ordinal in the request (not the
/// flow's `position`, which is `seq`, the place in a generation). A request's
/// journal is one contiguous key range, and a commit appends to the key's
/// b-tree (see migration 0006). Its entries are checkpoints and the fence
/// entries each epoch bump appends (which no reader returns).
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
    /// The journal key of the entry at `ordinal` among the request's;
    /// `None` once the request's journal is full.
    pub fn key(&self, ordinal: i64) -> Option<i64> {
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
    /// Where it goes among the request's journal entries: right after the
    /// attempt's fence entry or its own previous checkpoint, which the
    /// commit checks (see [`JournalStore::commit_checkpoints`]).
    pub ordinal: i64,
    /// Position in the generation; must be exactly the number of checkpoints
    /// the generation holds already.
    pub seq: i64,
    /// Checkpoint name.
    pub name: String,
    /// The step's result.
    pub payload: StoredPayload,
}

/// Bytes of a payload with their identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// blake3 of the bytes.
    pub hash: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A payload as the database records it: hash and size always, the bytes
/// themselves only when small enough to keep inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayload {
    /// blake3 of the bytes.
    pub hash: String,
    /// Length in bytes.
    pub size: i64,
    /// The bytes, when kept in the row instead of the blob folder.
    pub inline: Option<Vec<u8>>,
}

#[async_trait]
pub trait JournalStore: Send + Sync {
    /// The journal of one generation, in order.
    async fn journal(
        &self,
        generation: &JournalGeneration,
    ) -> Result<Vec<CheckpointRecord>, StoreError>;

    /// A request's checkpoints, all generations, in order: at most `limit`
    /// of them, starting after the one keyed `after` (a page goes on
    /// from the last record's [`CheckpointRecord::journal_key`]).
    async fn checkpoints(
        &self,
        request: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError>;

    /// Commits a group of checkpoints, possibly of many requests, in one
    /// statement and so one durable commit.
    ///
    /// The INSERT takes only the rows whose previous journal entry (at
    /// `ordinal - 1`) is the write's attempt's own: its fence entry or a
    /// checkpoint under the same owner and epoch; and whose key is not
    /// taken yet. It reads no request row. Every epoch bump (a claim, a
    /// takeover, a handover, a cancel, a re-execute) appends a fence entry
    /// for the new epoch at the end of the request's journal, so an older
    /// attempt finds its next key taken or its chain broken: this is the
    /// invariant that fences a paused or partitioned server and keeps a
    /// position from being committed twice. A write left out is answered
    /// [`StoreError::Fenced`], one past the journal's capacity
    /// [`StoreError::JournalFull`]; the outer error means the whole group
    /// failed.
    async fn commit_checkpoints(
        &self,
        writes: &[CheckpointWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// Publishes the JSON `value` under `key` for the request, only while
    /// `fence` holds ([`StoreError::Fenced`] otherwise).
    async fn set_status(&self, fence: &Fence, key: &str, value: &str) -> Result<(), StoreError>;

    /// The JSON of the event `name` numbered `index` (from 0, in the order
    /// sent) in the inbox of `request`, if it has come.
    async fn inbox_event(
        &self,
        request: &str,
        name: &str,
        index: i64,
    ) -> Result<Option<String>, StoreError>;
}

#[async_trait]
pub trait PayloadStore: Send + Sync {
    /// Makes a payload durable where it belongs: inline when small, else as a
    /// blob written before the row that names it, so a committed row never
    /// points at a blob that is not there.
    fn put_payload(&self, bytes: Vec<u8>) -> Result<StoredPayload, StoreError>;

    /// Reads a payload back and verifies it against its hash.
    fn load_payload(&self, stored: &StoredPayload) -> Result<Vec<u8>, StoreError>;

    /// [`PayloadStore::load_payload`] for async callers: an inline payload (at most
    /// 16 KiB) is checked where it is, a blob on a blocking thread, since it
    /// can be 64 MiB, too much to read and hash on the async threads.
    async fn read_payload(&self, stored: StoredPayload) -> Result<Vec<u8>, StoreError>;

    /// Keeps `bytes` (a flow's component) under their hash, which it
    /// returns; bytes already kept are not written again.
    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;

    /// The bytes kept under `hash`, verified against it and their `size`.
    fn blob(&self, hash: &str, size: u64) -> Result<Vec<u8>, StoreError>;
}
