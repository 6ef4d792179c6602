//! `baton bench console`: server time of the Status List, the Server List
//! and the statistics with a million requests and a week of statistics in
//! the database.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use baton_core::store::Store;
use baton_store::{Backend, VersionRow};
use tower::ServiceExt;

use super::{percentile, sorted};
use crate::http::router;

/// Console benchmark options.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Requests to seed.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Database: a fresh SQLite file by default; with `postgres://…` a fresh
    /// database on that server.
    #[arg(long)]
    pub database: Option<String>,
}

/// Seeds the rows with one set-based INSERT, then times each page.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary folder")?;
    let database = baton_store::scratch::ScratchDatabase::new(
        args.database.as_deref().unwrap_or("sqlite://"),
        dir.path(),
        "baton_bench",
    );
    let (node, sql) = super::node(&database.url, dir.path(), 4, None).await?;
    let store = node.state.store.clone();
    store
        .deploy(&VersionRow {
            hash: "v1".into(),
            flow: "seeded".into(),
            size: 0,
            properties: Default::default(),
            deployed_at: 0,
        })
        .await?;
    for server in ["s1", "s2", "s3"] {
        store.join(server, None, "127.0.0.1:0").await?;
    }
    let started = Instant::now();
    // Five flows, three owners, all statuses, one row per millisecond.
    let rows = "SELECT 'r' || printf('%09d', i), 'flow-' || (i % 5), 'v1',
                  CASE i % 6 WHEN 0 THEN 'queued' WHEN 1 THEN 'running' WHEN 2 THEN 'waiting_retry'
                             WHEN 3 THEN 'succeeded' WHEN 4 THEN 'error' ELSE 'cancelled' END,
                  's' || (1 + i % 3), 1, 1, 0, 0, 1, 1, 0, 'h', 2, 1700000000000 + i, 1700000000000 + i";
    let seed = match sql.backend() {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {})
             INSERT INTO requests (id, flow, version, status, owner, epoch, attempts, failures, generation,
                 other_server_retry, resume, next_attempt_at, input_hash, input_size, created_at, updated_at)
             {rows} FROM n",
            args.rows
        ),
        Backend::Postgres => format!(
            "INSERT INTO requests (id, flow, version, status, owner, epoch, attempts, failures, generation,
                 other_server_retry, resume, next_attempt_at, input_hash, input_size, created_at, updated_at)
             {} FROM generate_series(0, {} - 1) AS g(i)",
            rows.replace("printf('%09d', i)", "lpad(i::text, 9, '0')"),
            args.rows
        ),
    };
    sqlx::query(&seed).execute(sql.pool()).await?;
    // A week of statistics: every minute, five flows on three servers.
    let now = store.now_ms().await? / 60_000 * 60_000;
    let minutes = format!(
        "SELECT {now} - (i / 15) * 60000, 'flow-' || (i % 5), 's' || (1 + i % 3), 0,
                20, 18, 1, 1, 2, 0, 200, 5, 10"
    );
    let week = 7 * 24 * 60 * 15;
    let seed_minutes = match sql.backend() {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {week})
             INSERT OR IGNORE INTO request_minutes (minute, flow, server_id, shard, started, succeeded,
                 failed, cancelled, retries, takeovers, checkpoints, d3, d5)
             {minutes} FROM n"
        ),
        Backend::Postgres => format!(
            "INSERT INTO request_minutes (minute, flow, server_id, shard, started, succeeded,
                 failed, cancelled, retries, takeovers, checkpoints, d3, d5)
             {minutes} FROM generate_series(0, {week} - 1) AS g(i) ON CONFLICT DO NOTHING"
        ),
    };
    sqlx::query(&seed_minutes).execute(sql.pool()).await?;
    println!(
        "baton bench console: seeded {} requests and a week of statistics in {:.1} s",
        args.rows,
        started.elapsed().as_secs_f64()
    );

    let cookie = signed_in(&*store, dir.path()).await?;
    let app = router(node.state.clone());
    let deep = format!("r{:09}", args.rows / 2);
    let pages = [
        ("Server List", "/status/servers".to_owned()),
        ("Status List, newest", "/status/requests".to_owned()),
        (
            "Status List, status=error",
            "/status/requests?status=error".to_owned(),
        ),
        (
            "Status List, flow=flow-3",
            "/status/requests?flow=flow-3".to_owned(),
        ),
        (
            "Status List, server=s2",
            "/status/requests?server=s2".to_owned(),
        ),
        (
            "Status List, id prefix",
            "/status/requests?id=r00012".to_owned(),
        ),
        (
            "Status List, page in the middle",
            format!("/status/requests?after={deep}"),
        ),
        (
            "Status List rows (live refresh)",
            "/status/requests/rows".to_owned(),
        ),
        ("Statistics, last hour", "/status/statistics".to_owned()),
        (
            "Statistics, last 7 days",
            "/status/statistics?window=7d".to_owned(),
        ),
        (
            "Statistics, 7 days, one flow",
            "/status/statistics?window=7d&flow=flow-3".to_owned(),
        ),
    ];
    for (label, path) in pages {
        let mut times = Vec::new();
        for _ in 0..21 {
            let began = Instant::now();
            page(&app, &path, &cookie).await?;
            times.push(began.elapsed().as_micros() as u64);
        }
        let times = sorted(times);
        println!(
            "{label:<34} p50 {:>7.2} ms   max {:>7.2} ms",
            percentile(&times, 0.5) as f64 / 1000.0,
            *times.last().unwrap_or(&0) as f64 / 1000.0
        );
    }
    node.stop(false).await
}

/// A session cookie of the bootstrap administrator on the store behind the
/// server in `dir`.
pub(super) async fn signed_in(store: &dyn Store, dir: &Path) -> anyhow::Result<String> {
    crate::http::credentials::bootstrap(store, dir).await?;
    let session = crate::http::credentials::secret();
    store
        .create_session(
            &crate::http::credentials::secret_hash(&session),
            "admin",
            3_600_000,
        )
        .await?;
    Ok(format!("{}={session}", crate::config::SESSION_COOKIE))
}

/// Serves `path` through the router, body and all, and fails unless 200.
pub(super) async fn page(app: &Router, path: &str, cookie: &str) -> anyhow::Result<()> {
    let request = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    axum::body::to_bytes(response.into_body(), 1 << 24).await?;
    anyhow::ensure!(status == StatusCode::OK, "{path} answered {status}");
    Ok(())
}
