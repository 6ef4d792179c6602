//! Retention: the cluster's purge of finished requests past their
//! retention, taken by one server at a time, and the blob sweep after it.

use std::sync::Arc;
use std::time::Duration;

use baton_core::store::{PurgeFilter, Purged, Store, StoreError};

use crate::config::ServerConfig;

/// How often a server asks for the cluster's purge turn; one server in the
/// cluster takes it in each such period.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Requests deleted per transaction.
pub const BATCH: i64 = 500;

/// A blob written (or written again) this recently is never swept: the row
/// that names it commits moments after the write.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// Batches per flow in one turn, so a turn ends well within its period
/// and a large backlog is worked off over several.
const BATCHES_PER_TURN: u32 = 100;

/// The filter an operator's purge asks for: an age (`7d`), a final status
/// and a flow, each as typed; the refusal says what to type.
pub fn filter(
    older_than: &str,
    status: Option<&str>,
    flow: Option<&str>,
) -> Result<PurgeFilter, String> {
    let age: crate::config::Age = older_than.parse()?;
    let status = match status.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            baton_core::RequestStatus::parse(s)
                .filter(|status| status.is_final())
                .ok_or_else(|| {
                    format!(
                        "a purge takes finished requests: status is succeeded, error or cancelled, not {s:?}"
                    )
                })?,
        ),
    };
    Ok(PurgeFilter {
        flow: flow.filter(|f| !f.is_empty()).map(str::to_owned),
        older_than_ms: i64::try_from(age.0.as_millis()).unwrap_or(i64::MAX),
        status,
    })
}

/// Purges what each filter selects, `BATCH` requests per transaction,
/// until nothing is left or `max_batches` per filter ran; then sweeps the
/// blobs no row names. Dry, it only counts.
pub async fn purge(
    store: &dyn Store,
    filters: &[PurgeFilter],
    dry: bool,
    max_batches: Option<u32>,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    for filter in filters {
        if dry {
            purged.requests += store.count_purgeable(filter).await?;
            continue;
        }
        let mut batches = 0;
        loop {
            let deleted = store.purge_requests(filter, BATCH).await?;
            purged.requests += deleted;
            batches += 1;
            if deleted < BATCH as u64 || max_batches.is_some_and(|max| batches >= max) {
                break;
            }
        }
    }
    purged.blobs = store
        .sweep_blobs(BLOB_GRACE.as_millis() as u64, dry)
        .await?;
    Ok(purged)
}

/// The filters a server's retention settings give, one per flow that has a
/// retention.
async fn due(store: &dyn Store, config: &ServerConfig) -> Result<Vec<PurgeFilter>, StoreError> {
    Ok(store
        .flows()
        .await?
        .into_iter()
        .filter_map(|flow| {
            let age = config.retention_of(&flow.name)?;
            Some(PurgeFilter {
                flow: Some(flow.name),
                older_than_ms: age.as_millis() as i64,
                status: None,
            })
        })
        .collect())
}

/// Every [`PURGE_EVERY`], when a retention is configured: takes the
/// cluster's purge turn if no other server has it, and purges.
pub async fn run(store: Arc<dyn Store>, config: Arc<ServerConfig>) {
    if config.retention.is_none() && config.flow_retention.is_empty() {
        return;
    }
    let mut interval = tokio::time::interval(PURGE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let turn = async {
            if !store
                .take_purge_turn(PURGE_EVERY.as_millis() as i64)
                .await?
            {
                return Ok(None);
            }
            let filters = due(&*store, &config).await?;
            purge(&*store, &filters, false, Some(BATCHES_PER_TURN))
                .await
                .map(Some)
        };
        match turn.await {
            Ok(Some(purged)) if purged != Purged::default() => tracing::info!(
                requests = purged.requests,
                blobs = purged.blobs,
                "purged finished requests past their retention"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the retention purge failed; the next turn goes on")
            }
        }
    }
}
