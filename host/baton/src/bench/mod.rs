//! `baton bench`: checkpointed requests against raw single-row commits on
//! the same database, in the same run; `baton bench failover`: takeover time;
//! `baton bench scale`: per-operation costs as the store grows.
//!
//! Timings on a shared machine swing; the figures that mean something are
//! the ratios against the raw baseline measured in the same process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use baton_store::scratch::ScratchDatabase;
use baton_store::{Backend, SqlStore};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{FileConfig, ServerConfig};
use crate::server::Node;
use crate::vcs::deploy;

mod console;
mod failover;
mod scale;
mod store;
mod takeover;

/// Benchmark options.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Another benchmark instead of the throughput one.
    #[command(subcommand)]
    pub kind: Option<BenchKind>,
    /// Requests in the throughput run.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Requests in flight at once in the throughput run.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Database: a fresh SQLite file by default; with `postgres://…` a fresh
    /// database on that server.
    #[arg(long)]
    pub database: Option<String>,
    /// The flow crate to run (10 checkpoints per request).
    #[arg(long, default_value = "flows/batch-import")]
    pub flow: PathBuf,
    /// Export the server's traces over OTLP/HTTP to this collector: each
    /// request's spans (submit, attempt, checkpoints, outcome) show where
    /// its time goes.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// The other benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchKind {
    /// Time from kill -9 of a request's owner to the new owner's first checkpoint.
    Failover(failover::FailoverArgs),
    /// Server time of the console's lists with a million requests.
    Console(console::ConsoleArgs),
    /// The store's checkpoint commit beside raw commits, without a server.
    Store(store::StoreArgs),
    /// One takeover of a dead server that owned many requests.
    Takeover(takeover::TakeoverArgs),
    /// Per-operation costs on a small store and on a large one.
    Scale(scale::ScaleArgs),
}

/// An in-process server without HTTP on a fresh store in `dir`, with the
/// store's SQL adapter, whose pool the raw baselines use.
async fn node(
    database: &str,
    dir: &std::path::Path,
    capacity: usize,
    otlp_endpoint: Option<String>,
) -> anyhow::Result<(Node, SqlStore)> {
    let sql = SqlStore::connect(database, &dir.join("store")).await?;
    let flags = FileConfig {
        data: Some(dir.to_owned()),
        database: Some(database.to_owned()),
        capacity: Some(capacity),
        otlp_endpoint,
        ..FileConfig::default()
    };
    let node = Node::start(
        std::sync::Arc::new(sql.clone()),
        ServerConfig::resolve(FileConfig::default(), flags),
        "bench".into(),
        None,
        "bench".into(),
    )
    .await?;
    Ok((node, sql))
}

/// Submits `total` requests of `flow` through the API's path, `concurrency`
/// at a time, each waited for to its outcome: the run's time and each
/// request's latency (submit to outcome, µs, sorted).
async fn submit(
    state: &crate::http::AppState,
    flow: &str,
    input: &[u8],
    total: usize,
    concurrency: usize,
    progress: &ProgressBar,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (store, requests, next, progress) = (
            state.store.clone(),
            state.requests.clone(),
            next.clone(),
            progress.clone(),
        );
        let (flow, input) = (flow.to_owned(), input.to_vec());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                let mut finished = requests.finished();
                let began = Instant::now();
                let id = requests.submit(&flow, &input, None).await?.id;
                loop {
                    match finished.recv().await {
                        Ok(done) if done == id => break,
                        Ok(_) => continue,
                        Err(_) => {
                            let request = store.request(&id).await?.context("bench request")?;
                            if request.status.is_final() {
                                break;
                            }
                            finished = requests.finished();
                        }
                    }
                }
                latencies.push(began.elapsed().as_micros() as u64);
                progress.inc(1);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await??);
    }
    Ok((started.elapsed(), sorted(latencies)))
}

/// Percentile of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sorted(mut samples: Vec<u64>) -> Vec<u64> {
    samples.sort_unstable();
    samples
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        Some(BenchKind::Failover(failover)) => return failover::run(failover).await,
        Some(BenchKind::Console(console)) => return console::run(console).await,
        Some(BenchKind::Store(store)) => return store::run(store).await,
        Some(BenchKind::Takeover(takeover)) => return takeover::run(takeover).await,
        Some(BenchKind::Scale(scale)) => return scale::run(scale).await,
        None => {}
    }
    let dir = tempfile::tempdir().context("temporary folder")?;
    let database = ScratchDatabase::new(
        args.database.as_deref().unwrap_or("sqlite://"),
        dir.path(),
        "baton_bench",
    );
    let (node, sql) = node(
        &database.url,
        dir.path(),
        args.concurrency.max(1),
        args.otlp_endpoint,
    )
    .await?;
    let (store, executor, metrics) = (
        node.state.store.clone(),
        node.state.executor.clone(),
        node.state.metrics.clone(),
    );

    let (_, bytes) = deploy::component_bytes(&args.flow, &deploy::Builder::Admin)
        .await?
        .into_iter()
        .next()
        .context("the bench flow built nothing")?;
    let deployed = deploy::deploy(
        &*store,
        executor.runtime(),
        bytes,
        &Default::default(),
        None,
    )
    .await?;
    let input = br#"{"records": 10, "batch": 1, "delay_ms": 0}"#.to_vec();
    println!(
        "baton bench: {} on {} ({} requests, concurrency {}, 10 checkpoints each)",
        deployed.name,
        match sql.backend() {
            Backend::Sqlite => "SQLite (WAL, synchronous=FULL)",
            Backend::Postgres => "PostgreSQL",
        },
        args.requests,
        args.concurrency
    );

    // Wasm overhead: a fresh instance and one export call, no host calls.
    let component = executor
        .runtime()
        .load(&deployed.version, || Err("loaded at deploy".into()))
        .await?;
    let overhead_runs = 2000;
    let progress = bar(overhead_runs, "instantiate+call");
    let mut overhead = Vec::with_capacity(overhead_runs);
    for _ in 0..overhead_runs {
        let started = Instant::now();
        executor.runtime().properties(&component).await?;
        overhead.push(started.elapsed().as_nanos() as u64);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let overhead = sorted(overhead);

    // One request at a time (what one checkpoint commit costs) beside the raw
    // baseline: single-row durable INSERT commits of the same payload size,
    // as many as the request had checkpoints, right after it, on one kept
    // connection as checkpoint commits keep one. Both come in runs of the same
    // length between the same other work. Within a run the raw commits are
    // spaced by the work the flow did between its commits (the median gap of
    // the request just run, spent busy): here a commit that follows other
    // work, even a few microseconds of it, costs about a tenth more than one
    // that follows another commit at once, whatever the statement. The
    // back-to-back figure is kept beside it.
    let mut raw = RawCommits::new(&sql, "bench_raw").await?;
    let mut back_to_back = RawCommits::new(&sql, "bench_raw_back_to_back").await?;
    // And the checkpoint's own row, unfenced: what is left between a
    // checkpoint commit and it is what the fence costs.
    let mut same_row = RawCommits::checkpoint_rows(&sql, "bench_same_row").await?;
    let (mut alone, mut alone_statement, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    let mut single = Vec::new();
    let progress = bar(args.requests, "one at a time + raw");
    metrics.take_samples();
    for _ in 0..args.requests {
        let (_, latency) = submit(&node.state, &deployed.name, &input, 1, 1, &progress).await?;
        single.extend(latency);
        let samples = metrics.take_samples();
        let request_gaps = sorted(samples.checkpoint_gap_us);
        let work = Duration::from_micros(percentile(&request_gaps, 0.5));
        raw = raw.run(samples.checkpoint_us.len(), work).await?;
        same_row = same_row.run(samples.checkpoint_us.len(), work).await?;
        back_to_back = back_to_back
            .run(samples.checkpoint_us.len(), Duration::ZERO)
            .await?;
        alone.extend(samples.checkpoint_us);
        alone_statement.extend(samples.commit_us);
        gaps.extend(request_gaps);
    }
    progress.finish_and_clear();
    let (alone, alone_statement, gaps) = (sorted(alone), sorted(alone_statement), sorted(gaps));
    let single = sorted(single);
    let (raw, back_to_back, same_row) = (raw.finish(), back_to_back.finish(), same_row.finish());
    // The raw commit rate: as many commits again, in one unbroken run.
    let sequential = RawCommits::new(&sql, "bench_raw_sequential")
        .await?
        .run(args.requests * 10, Duration::ZERO)
        .await?
        .finish();

    // Throughput with concurrent requests; commits are grouped.
    metrics.take_samples();
    let progress = bar(args.requests, "concurrent");
    let (elapsed, latencies) = submit(
        &node.state,
        &deployed.name,
        &input,
        args.requests,
        args.concurrency,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let samples = metrics.take_samples();
    let groups = samples.group_sizes;
    let mean_group = groups.iter().sum::<u64>() as f64 / groups.len().max(1) as f64;

    let failed = store
        .list_requests(&baton_store::RequestFilter {
            status: Some(baton_core::RequestStatus::Error),
            limit: 1,
            ..Default::default()
        })
        .await?;
    anyhow::ensure!(
        failed.is_empty(),
        "a bench request failed: {:?}",
        failed[0].error
    );

    let secs = elapsed.as_secs_f64();
    let raw_rate = sequential.latencies.len() as f64 / sequential.total.as_secs_f64();
    let checkpoints_per_s = (args.requests * 10) as f64 / secs;
    let raw_p50 = percentile(&raw.latencies, 0.5);
    let alone_p50 = percentile(&alone, 0.5);
    println!();
    println!(
        "Wasm instantiate+call per attempt     p50 {:>8.1} µs   p99 {:>8.1} µs",
        percentile(&overhead, 0.5) as f64 / 1000.0,
        percentile(&overhead, 0.99) as f64 / 1000.0
    );
    println!(
        "checkpoint commit, one request        p50 {:>8.2} ms   ({} checkpoints with a commit of their own; a request's last goes with its outcome)",
        alone_p50 as f64 / 1000.0,
        alone.len()
    );
    println!(
        "  of which the database statement     p50 {:>8.2} ms",
        percentile(&alone_statement, 0.5) as f64 / 1000.0
    );
    println!(
        "  flow's work between two commits     p50 {:>8.1} µs",
        percentile(&gaps, 0.5) as f64
    );
    println!(
        "raw single-row INSERT commit          p50 {:>8.2} ms   ({} rows, as many after each request as its checkpoint commits, spaced by that work)",
        raw_p50 as f64 / 1000.0,
        raw.latencies.len(),
    );
    println!(
        "  ratio checkpoint / raw commit       {:>8.2}×",
        alone_p50 as f64 / raw_p50.max(1) as f64
    );
    let same_row_p50 = percentile(&same_row.latencies, 0.5);
    println!(
        "the checkpoint's row, unfenced        p50 {:>8.2} ms   (a plain INSERT of the same columns and values, spaced alike)",
        same_row_p50 as f64 / 1000.0,
    );
    println!(
        "  ratio checkpoint / unfenced row     {:>8.2}×   (what the fence costs)",
        alone_p50 as f64 / same_row_p50.max(1) as f64
    );
    // A request of n checkpoints should cost about its n commits plus
    // one for create+claim and one for the outcome.
    let single_p50 = percentile(&single, 0.5);
    println!(
        "one request end to end, alone         p50 {:>8.2} ms   (submit to outcome, 10 checkpoints)",
        single_p50 as f64 / 1000.0,
    );
    println!(
        "  ratio request / (10 + 2) raw commits {:>7.2}×",
        single_p50 as f64 / (12 * raw_p50.max(1)) as f64
    );
    let back_to_back_p50 = percentile(&back_to_back.latencies, 0.5);
    println!(
        "raw commits back to back              p50 {:>8.2} ms   (as many, interleaved with the above)",
        back_to_back_p50 as f64 / 1000.0,
    );
    println!(
        "  ratio checkpoint / back-to-back raw {:>8.2}×",
        alone_p50 as f64 / back_to_back_p50.max(1) as f64
    );
    println!(
        "raw commits in one unbroken run       {:>8.0} commits/s   ({} rows, p50 {:.2} ms)",
        raw_rate,
        sequential.latencies.len(),
        percentile(&sequential.latencies, 0.5) as f64 / 1000.0
    );
    println!(
        "concurrent run                        {:>8.1} requests/s   {:.0} checkpoints/s",
        args.requests as f64 / secs,
        checkpoints_per_s
    );
    println!(
        "  request latency                     p50 {:>8.2} ms   p99 {:>8.2} ms",
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0
    );
    println!("  checkpoints per commit (mean)       {:>8.1}", mean_group);
    println!(
        "  ratio checkpoints/s / raw commits/s {:>8.2}×",
        checkpoints_per_s / raw_rate
    );

    node.stop(false).await
}

/// Single-row INSERTs, each its own durable commit, one after another on one
/// kept connection: the fastest plain commit this database does here.
struct RawCommits {
    connection: sqlx::pool::PoolConnection<sqlx::Any>,
    insert: String,
    /// Whether the rows are shaped as the journal's (checkpoint columns).
    checkpoint_rows: bool,
    next_id: i64,
    payload: Vec<u8>,
    total: Duration,
    latencies: Vec<u64>,
}

/// What the raw commits measured.
struct Raw {
    total: Duration,
    latencies: Vec<u64>,
}

impl RawCommits {
    async fn new(store: &SqlStore, table: &str) -> anyhow::Result<Self> {
        // On SQLite only `INTEGER PRIMARY KEY` names the table's own b-tree;
        // any other key type would add an index, and a page, to each commit.
        let (key, bytes) = Self::types(store);
        Self::open(
            store,
            &format!("CREATE TABLE {table} (id {key}, payload {bytes} NOT NULL)"),
            format!("INSERT INTO {table} (id, payload) VALUES ($1, $2)"),
            false,
        )
        .await
    }

    /// Commits of rows shaped as a checkpoint's (the journal's columns, a
    /// hash, a name and a server, the clock read by the database, the
    /// payload inline), plain INSERTs with no fence.
    async fn checkpoint_rows(store: &SqlStore, table: &str) -> anyhow::Result<Self> {
        let (key, bytes) = Self::types(store);
        Self::open(
            store,
            &format!(
                "CREATE TABLE {table} (journal_key {key}, generation BIGINT NOT NULL,
                   seq BIGINT NOT NULL, name TEXT NOT NULL, server_id TEXT NOT NULL,
                   epoch BIGINT NOT NULL, at BIGINT NOT NULL, hash TEXT NOT NULL,
                   size BIGINT NOT NULL, inline {bytes})"
            ),
            format!(
                "INSERT INTO {table} (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
                 VALUES ($1, $2, $3, $4, $5, $6, {}, $7, $8, $9)",
                store.backend().now_ms()
            ),
            true,
        )
        .await
    }

    /// The key's and the payload's column types.
    fn types(store: &SqlStore) -> (&'static str, &'static str) {
        match store.backend() {
            Backend::Sqlite => ("INTEGER PRIMARY KEY", "BLOB"),
            Backend::Postgres => ("BIGINT PRIMARY KEY", "BYTEA"),
        }
    }

    async fn open(
        store: &SqlStore,
        create: &str,
        insert: String,
        checkpoint_rows: bool,
    ) -> anyhow::Result<Self> {
        sqlx::query(create).execute(store.pool()).await?;
        Ok(Self {
            connection: store.pool().acquire().await?,
            insert,
            checkpoint_rows,
            next_id: 0,
            payload: vec![0x5a; 24],
            total: Duration::ZERO,
            latencies: Vec::new(),
        })
    }

    /// Runs on a runtime worker, where checkpoint commits run too: a
    /// task woken there by the database's thread answers later than the
    /// thread that blocks on the runtime.
    ///
    /// Before each commit it spends `work` busy, as a flow computes
    /// between its checkpoints.
    async fn run(self, rows: usize, work: Duration) -> anyhow::Result<Self> {
        tokio::spawn(self.commits(rows, work)).await?
    }

    async fn commits(mut self, rows: usize, work: Duration) -> anyhow::Result<Self> {
        let mut spent = Duration::ZERO;
        let hash = blake3::hash(&self.payload).to_hex().to_string();
        for _ in 0..rows {
            let busy_until = Instant::now() + work;
            while Instant::now() < busy_until {
                std::hint::spin_loop();
            }
            let began = Instant::now();
            let insert = sqlx::query(&self.insert).bind(self.next_id);
            let insert = if self.checkpoint_rows {
                insert
                    .bind(0_i64)
                    .bind(self.next_id % 10)
                    .bind("batch")
                    .bind("bench-server")
                    .bind(1_i64)
                    .bind(&hash)
                    .bind(self.payload.len() as i64)
                    .bind(&self.payload[..])
            } else {
                insert.bind(&self.payload[..])
            };
            insert.execute(&mut *self.connection).await?;
            let took = began.elapsed();
            spent += took;
            self.latencies.push(took.as_micros() as u64);
            self.next_id += 1;
        }
        self.total += spent;
        Ok(self)
    }

    fn finish(self) -> Raw {
        Raw {
            total: self.total,
            latencies: sorted(self.latencies),
        }
    }
}
