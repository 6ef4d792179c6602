//! `baton bench store`: the store's checkpoint commit beside raw commits,
//! without a server around it, so what the server adds can be told apart.

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_store::scratch::ScratchStore;
use baton_store::{
    CheckpointWrite, JournalStore, NewRequest, Outcome, PayloadStore, RequestStore, ServerStore,
    SqlStore,
};

use super::{RawCommits, bar, percentile, sorted};

/// Store benchmark options.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Requests of 10 checkpoints each.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Database: a fresh SQLite file by default; with `postgres://…` a fresh
    /// database on that server.
    #[arg(long)]
    pub database: Option<String>,
}

/// Each request: created (claimed), 10 checkpoint commits, finished; then 10
/// raw commits. All in one task on a runtime worker, as in a server.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let scratch = ScratchStore::open_on(
        args.database.as_deref().unwrap_or("sqlite://"),
        baton_store::DEFAULT_LEASE,
    )
    .await?;
    let store = scratch.store.clone();
    let incarnation = store.join("bench", None, "bench").await?;
    let raw = RawCommits::new(&store, "bench_raw").await?;
    let (checkpoints, raw) =
        tokio::spawn(commits(store.clone(), incarnation, raw, args.requests)).await??;
    let raw = raw.finish();
    let (checkpoint_p50, raw_p50) = (
        percentile(&checkpoints, 0.5),
        percentile(&raw.latencies, 0.5),
    );
    println!(
        "baton bench store: {} requests × 10 checkpoints",
        args.requests
    );
    println!(
        "SqlStore::commit_checkpoints, one write  p50 {:>8.2} ms",
        checkpoint_p50 as f64 / 1000.0
    );
    println!(
        "raw single-row INSERT commit          p50 {:>8.2} ms",
        raw_p50 as f64 / 1000.0
    );
    println!(
        "  ratio checkpoint / raw commit       {:>8.2}×",
        checkpoint_p50 as f64 / raw_p50.max(1) as f64
    );
    store.close().await;
    Ok(())
}

async fn commits(
    store: SqlStore,
    incarnation: i64,
    mut raw: RawCommits,
    requests: usize,
) -> anyhow::Result<(Vec<u64>, RawCommits)> {
    let progress = bar(requests, "store commits + raw");
    let mut latencies = Vec::with_capacity(requests * 10);
    for _ in 0..requests {
        let claim = store
            .create_request(
                &NewRequest {
                    id: store.new_request_id(),
                    flow: "f".into(),
                    version: "v1".into(),
                    owner: "bench".into(),
                    incarnation,
                    input: store.put_payload(b"{}".to_vec())?,
                    other_server_retry: true,
                    resume: true,
                    idempotency_key: None,
                    parent: None,
                    while_active: false,
                },
                true,
            )
            .await?
            .context("a new request is claimed")?;
        for seq in 0..10 {
            let write = CheckpointWrite {
                fence: claim.fence.clone(),
                journal: claim.journal,
                ordinal: claim.appends_at + seq,
                seq,
                name: format!("batch-{seq}"),
                payload: store.put_payload(vec![0x5a; 24])?,
            };
            let began = Instant::now();
            store.commit_checkpoints(&[write]).await?.remove(0)?;
            latencies.push(began.elapsed().as_micros() as u64);
        }
        store
            .finish(
                &claim.fence,
                &Outcome::Succeeded(store.put_payload(b"{}".to_vec())?),
            )
            .await?;
        raw = raw.run(10, Duration::ZERO).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok((sorted(latencies), raw))
}
