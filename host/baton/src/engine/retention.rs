//! Retention: the cluster's purge of finished requests past their
//! retention, taken by one server at a time, and the blob sweep after it.

use std::sync::Arc;
use std::time::Duration;

use baton_core::store::{FlowRow, PurgeFilter, Purged, Store, StoreError};

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

/// The filters the retention settings and the flows' own (their active
/// version's) give, one per flow that has a retention.
fn due(flows: Vec<FlowRow>, config: &ServerConfig) -> Vec<PurgeFilter> {
    flows
        .into_iter()
        .filter_map(|flow| {
            let declared = flow
                .active
                .properties
                .retention_ms
                .map(Duration::from_millis);
            let age = config.retention_of(&flow.name, declared)?;
            Some(PurgeFilter {
                flow: Some(flow.name),
                older_than_ms: i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
                status: None,
            })
        })
        .collect()
}

/// Every [`PURGE_EVERY`]: takes the cluster's purge turn if no other
/// server has it, and purges what a retention (the server's or a flow's)
/// lets go.
pub async fn run(store: Arc<dyn Store>, config: Arc<ServerConfig>) {
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
            let filters = due(store.flows().await?, &config);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;
    use baton_core::store::VersionRow;

    fn flow(name: &str, retention_ms: Option<u64>) -> FlowRow {
        let properties = baton_core::FlowProperties {
            retention_ms,
            ..Default::default()
        };
        FlowRow {
            name: name.into(),
            active: VersionRow {
                hash: "v".into(),
                flow: name.into(),
                size: 1,
                properties,
                deployed_at: 0,
            },
            updated_at: 0,
        }
    }

    /// A flow's own retention is purged by even with no server retention;
    /// a flow with neither is kept.
    #[test]
    fn a_flow_declares_its_retention() {
        let config = ServerConfig::resolve(FileConfig::default(), FileConfig::default());
        let filters = due(
            vec![flow("kept", None), flow("brief", Some(60_000))],
            &config,
        );
        let filters: Vec<(Option<&str>, i64)> = filters
            .iter()
            .map(|f| (f.flow.as_deref(), f.older_than_ms))
            .collect();
        assert_eq!(filters, [(Some("brief"), 60_000)]);
    }
}
