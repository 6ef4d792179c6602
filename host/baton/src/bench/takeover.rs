//! `baton bench takeover`: how long one takeover transaction takes when the
//! dead server owned many requests, against the lease it must fit in.

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_store::scratch::ScratchStore;
use baton_store::{NewRequest, PayloadStore, RequestStore, ServerStore};

use super::{bar, percentile, sorted};

/// Takeover benchmark options.
#[derive(Debug, clap::Args)]
pub struct TakeoverArgs {
    /// Requests the dead server owns, in flight (`running`).
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Takeovers to time (each on a fresh dead server with as many requests).
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// The cluster's lease the takeover must fit in, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub lease_ms: u64,
    /// Database: a fresh SQLite file by default; with `postgres://…` a fresh
    /// database on that server.
    #[arg(long)]
    pub database: Option<String>,
}

/// Each trial: a server joins and claims `requests` requests (half of them
/// movable), its heartbeat is aged past the lease, and another server's
/// `take_over` is timed: one transaction that marks it terminated, moves the
/// movable requests and shows the others as waiting for their server.
pub async fn run(args: TakeoverArgs) -> anyhow::Result<()> {
    let lease = Duration::from_millis(args.lease_ms);
    let scratch =
        ScratchStore::open_on(args.database.as_deref().unwrap_or("sqlite://"), lease).await?;
    let store = scratch.store.clone();
    let taker = store.join("taker", None, "taker").await?;
    let input = store.put_payload(b"{}".to_vec())?;
    let mut times = Vec::with_capacity(args.trials);
    for trial in 0..args.trials {
        let dead = format!("dead-{trial}");
        let incarnation = store.join(&dead, None, &dead).await?;
        let progress = bar(args.requests, &format!("trial {trial}: requests"));
        for i in 0..args.requests {
            store
                .create_request(
                    &NewRequest {
                        id: store.new_request_id(),
                        flow: "f".into(),
                        version: "v1".into(),
                        owner: dead.clone(),
                        incarnation,
                        input: input.clone(),
                        other_server_retry: i % 2 == 0,
                        resume: true,
                        idempotency_key: None,
                        parent: None,
                        while_active: false,
                    },
                    true,
                )
                .await?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        let stale = format!(
            "UPDATE servers SET heartbeat_at = heartbeat_at - {} WHERE id = $1",
            args.lease_ms * 2
        );
        sqlx::query(&stale)
            .bind(&dead)
            .execute(store.pool())
            .await?;
        let started = Instant::now();
        let takeover = store
            .take_over(&dead, "taker", taker, args.lease_ms as i64)
            .await?
            .context("the dead server is taken over")?;
        times.push(started.elapsed().as_micros() as u64);
        anyhow::ensure!(
            takeover.requests.len() + takeover.stranded.len() == args.requests,
            "the takeover saw {} + {} requests of {}",
            takeover.requests.len(),
            takeover.stranded.len(),
            args.requests
        );
    }
    let times = sorted(times);
    let p50 = percentile(&times, 0.5) as f64 / 1000.0;
    println!(
        "baton bench takeover: a dead server owning {} running requests (half movable), {} trials",
        args.requests, args.trials
    );
    println!(
        "take_over p50 {p50:>8.1} ms   max {:>8.1} ms   = {:.3} of the {} ms lease (target ≤ 1)",
        *times.last().unwrap_or(&0) as f64 / 1000.0,
        p50 / args.lease_ms as f64,
        args.lease_ms
    );
    store.close().await;
    Ok(())
}
