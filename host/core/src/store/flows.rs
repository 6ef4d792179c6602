//! Flow versions (content-hashed components) and each flow's active version.

use async_trait::async_trait;

use super::StoreError;
use crate::FlowProperties;

/// One deployed version of a flow.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// blake3 of the component bytes; the component is the blob of that hash.
    pub hash: String,
    /// Flow name.
    pub flow: String,
    /// Component size in bytes.
    pub size: i64,
    /// The flow's declared properties, read once here.
    pub properties: FlowProperties,
    /// When it was first deployed.
    pub deployed_at: i64,
}

/// A flow with its active version.
#[derive(Debug, Clone)]
pub struct FlowRow {
    /// Flow name.
    pub name: String,
    /// The active version.
    pub active: VersionRow,
    /// When the active version was switched.
    pub updated_at: i64,
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Records a version (if new) and makes it the flow's active version, in
    /// one transaction. Returns the previously active version.
    async fn deploy(&self, version: &VersionRow) -> Result<Option<String>, StoreError>;

    /// Every flow with its active version, by name.
    async fn flows(&self) -> Result<Vec<FlowRow>, StoreError>;

    /// The active version of a flow.
    async fn active_version(&self, flow: &str) -> Result<Option<VersionRow>, StoreError>;

    /// One version by hash.
    async fn version(&self, hash: &str) -> Result<Option<VersionRow>, StoreError>;

    /// Every version of a flow, newest first.
    async fn versions(&self, flow: &str) -> Result<Vec<VersionRow>, StoreError>;
}
