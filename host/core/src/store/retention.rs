//! Retention: finished requests deleted with everything that names them,
//! and blobs no row names any more.

use async_trait::async_trait;

use super::StoreError;
use crate::RequestStatus;

/// Which finished requests a purge deletes.
#[derive(Debug, Clone, Default)]
pub struct PurgeFilter {
    /// Only this flow's.
    pub flow: Option<String>,
    /// Only those that finished (last changed) at least this long ago, ms.
    pub older_than_ms: i64,
    /// Only this final status.
    pub status: Option<RequestStatus>,
}

/// What a purge deleted (or, dry, would delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purged {
    /// Requests, with their journal, history, inbox and status values.
    pub requests: u64,
    /// Blobs no row named any more.
    pub blobs: u64,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `limit` finished requests that `filter` selects, oldest
    /// first, each with its journal rows, history, inbox and status values,
    /// in one transaction. A request whose parent has not finished is kept
    /// (the parent still reads its outcome). Returns how many it deleted.
    async fn purge_requests(&self, filter: &PurgeFilter, limit: i64) -> Result<u64, StoreError>;

    /// How many requests [`RetentionStore::purge_requests`] would delete,
    /// without a limit.
    async fn count_purgeable(&self, filter: &PurgeFilter) -> Result<u64, StoreError>;

    /// Deletes the blobs of the storage folder that no row names and that
    /// were neither written nor written again for `grace_ms` (a blob is
    /// written just before the row that names it commits, and writing one
    /// that is there renews its time). `dry` only counts them.
    async fn sweep_blobs(&self, grace_ms: u64, dry: bool) -> Result<u64, StoreError>;

    /// Whether this server takes the cluster's purge turn now: at most one
    /// server does in every `every_ms`.
    async fn take_purge_turn(&self, every_ms: i64) -> Result<bool, StoreError>;
}
