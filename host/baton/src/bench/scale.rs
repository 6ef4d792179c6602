//! `baton bench scale`: what each operation costs on a small store and on a
//! large one, measured in the same run, and their ratio. The work a store
//! holds (finished requests, sleeping ones) should not make polling,
//! heartbeats, pages, new requests or takeovers dearer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use baton_store::scratch::ScratchDatabase;
use baton_store::{Backend, SqlStore};

use indicatif::ProgressBar;

use super::{RawCommits, bar, percentile, sorted, submit};
use crate::server::Node;
use crate::vcs::deploy;

/// Scale benchmark options.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Finished requests in the small store.
    #[arg(long, default_value_t = 10_000)]
    pub small_finished: u64,
    /// Sleeping requests (owned by the server, due in a year) in the small store.
    #[arg(long, default_value_t = 1_000)]
    pub small_sleepers: u64,
    /// Finished requests in the large store.
    #[arg(long, default_value_t = 1_000_000)]
    pub large_finished: u64,
    /// Sleeping requests in the large store.
    #[arg(long, default_value_t = 100_000)]
    pub large_sleepers: u64,
    /// Samples of each single operation (poll, heartbeat, page…).
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Requests run one at a time for the end-to-end figure.
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// Requests in each throughput run (16 and 64 in flight).
    #[arg(long, default_value_t = 640)]
    pub throughput_requests: usize,
    /// Checkpoints in each finished request's journal (each also gets
    /// three history entries).
    #[arg(long, default_value_t = 5)]
    pub journal: u64,
    /// Requests owned by the server that dies in the takeover figure.
    #[arg(long, default_value_t = 10_000)]
    pub takeover: u64,
    /// Seconds the server sits idle for the idle-CPU figure.
    #[arg(long, default_value_t = 5)]
    pub idle_secs: u64,
    /// Database: a fresh SQLite file by default; with `postgres://…` a fresh
    /// database on that server.
    #[arg(long)]
    pub database: Option<String>,
    /// The flow crate to run (10 checkpoints per request).
    #[arg(long, default_value = "flows/batch-import")]
    pub flow: PathBuf,
}

/// The lease of the benchmark's cluster.
const LEASE_MS: i64 = 5_000;

/// One store size's figures.
#[derive(Default)]
struct Figures {
    /// µs, sorted.
    poll: Vec<u64>,
    heartbeat: Vec<u64>,
    running_on: Vec<u64>,
    membership: Vec<u64>,
    server_list: Vec<u64>,
    status_list: Vec<u64>,
    scrape: Vec<u64>,
    request: Vec<u64>,
    raw_commit: Vec<u64>,
    /// Checkpoints per second at 16 and at 64 in flight.
    throughput_16: f64,
    throughput_64: f64,
    /// The server process's CPU (user + system) per checkpoint at 16 in
    /// flight, and the database's on PostgreSQL, µs.
    cpu_per_checkpoint: f64,
    database_cpu_per_checkpoint: Option<f64>,
    /// Share of a core while idle: the server process, the database.
    idle_cpu: f64,
    idle_database_cpu: Option<f64>,
    rss_mib: f64,
    takeover_ms: f64,
}

/// Starts a server on a small store and one on a large store, and measures
/// both in the same minutes, alternately operation by operation, so that
/// the machine's swings fall on both alike.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.large_finished >= args.small_finished && args.large_sleepers >= args.small_sleepers,
        "the large store must hold at least what the small one does"
    );
    let (_, component) = deploy::component_bytes(&args.flow, &deploy::Builder::Admin)
        .await?
        .into_iter()
        .next()
        .context("the bench flow built nothing")?;
    let baseline_rss = rss_kib();
    let small = Bench::start(&args, "small", &component).await?;
    small.seed(args.small_finished, args.small_sleepers).await?;
    println!(
        "baton bench scale on {}: a server on {} finished + {} sleeping requests beside one on {} + {}",
        match small.sql.backend() {
            Backend::Sqlite => "SQLite (WAL, synchronous=FULL)",
            Backend::Postgres => "PostgreSQL",
        },
        args.small_finished,
        args.small_sleepers,
        args.large_finished,
        args.large_sleepers
    );
    let mut figures = [Figures::default(), Figures::default()];

    // Alone in the process: the small server's idle CPU and memory.
    small.warm_up().await?;
    figures[0].rss_mib = (rss_kib() - baseline_rss) as f64 / 1024.0;
    (figures[0].idle_cpu, figures[0].idle_database_cpu) = small.idle_cpu().await;
    let large = Bench::start(&args, "large", &component).await?;
    large.seed(args.large_finished, args.large_sleepers).await?;
    large.warm_up().await?;
    figures[1].rss_mib = (rss_kib() - baseline_rss) as f64 / 1024.0 - figures[0].rss_mib;
    // Both idle: the large server's share is what the small one's alone
    // did not use.
    let (both, both_database) = large.idle_cpu().await;
    figures[1].idle_cpu = both - figures[0].idle_cpu;
    figures[1].idle_database_cpu = both_database
        .zip(figures[0].idle_database_cpu)
        .map(|(both, small)| both - small);

    let benches = [&small, &large];
    let progress = bar(args.samples * 2, "operations");
    for _ in 0..args.samples {
        for (bench, figures) in benches.iter().zip(figures.iter_mut()) {
            bench.operations(figures).await?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    // One request at a time, each followed by as many raw commits as it
    // had checkpoints, spaced by the flow's work between them.
    let mut raw = [
        Some(RawCommits::new(&small.sql, "bench_raw").await?),
        Some(RawCommits::new(&large.sql, "bench_raw").await?),
    ];
    let progress = bar(args.requests * 2, "one at a time");
    for _ in 0..args.requests {
        for ((bench, figures), raw) in benches.iter().zip(figures.iter_mut()).zip(raw.iter_mut()) {
            bench.one_request(figures, raw).await?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    for (figures, raw) in figures
        .iter_mut()
        .zip(raw)
        .filter_map(|(f, r)| Some((f, r?)))
    {
        figures.raw_commit = raw.finish().latencies;
    }

    for concurrency in [16, 64] {
        for (bench, figures) in benches.iter().zip(figures.iter_mut()) {
            bench.throughput(figures, concurrency).await?;
        }
    }
    for (bench, figures) in benches.iter().zip(figures.iter_mut()) {
        figures.takeover_ms = bench.takeover().await?;
        figures.sort();
    }
    report(&args, &figures[0], &figures[1]);
    small.node.stop(false).await?;
    large.node.stop(false).await
}

/// One server on its own fresh store.
struct Bench<'a> {
    args: &'a ScaleArgs,
    size: &'static str,
    node: Node,
    sql: SqlStore,
    flow: String,
    version: String,
    cookie: String,
    app: axum::Router,
    // Kept until the end: the store's folder and scratch database.
    _database: ScratchDatabase,
    _dir: tempfile::TempDir,
}

impl<'a> Bench<'a> {
    async fn start(
        args: &'a ScaleArgs,
        size: &'static str,
        component: &[u8],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temporary folder")?;
        let database = ScratchDatabase::new(
            args.database.as_deref().unwrap_or("sqlite://"),
            dir.path(),
            &format!("baton_bench_{size}"),
        );
        let (node, sql) = super::node(&database.url, dir.path(), 64, None).await?;
        let deployed = deploy::deploy(
            &*node.state.store,
            node.state.executor.runtime(),
            component.to_vec(),
            &Default::default(),
            None,
        )
        .await?;
        let cookie = super::console::signed_in(&*node.state.store, dir.path()).await?;
        let app = crate::http::router(node.state.clone());
        Ok(Self {
            args,
            size,
            node,
            sql,
            flow: deployed.name,
            version: deployed.version,
            cookie,
            app,
            _database: database,
            _dir: dir,
        })
    }

    /// Adds `finished` finished requests and `sleepers` requests of this
    /// server asleep for a year, with set-based INSERTs.
    async fn seed(&self, finished: u64, sleepers: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let me = &self.node.state.cluster.id;
        let now = self.node.state.store.now_ms().await?;
        let year = 365 * 24 * 3_600_000_i64;
        // Finished ones over the last week, in three statuses.
        let finished_rows = format!(
            "'finished-' || {{id}}, '{flow}', '{version}',
             CASE i % 3 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'error' ELSE 'cancelled' END,
             'gone', 1, 1, 0, 0, 1, 1, NULL, 'h', 2, {{old}} + i, {{old}} + i, 0",
            flow = self.flow,
            version = self.version,
        );
        let sleeping = format!(
            "'sleeping-' || {{id}}, '{flow}', '{version}', 'running', '{me}', 1, 1, 0, 0, 1, 1,
             {due}, 'h', 2, {{old}} + i, {{old}} + i, 0",
            flow = self.flow,
            version = self.version,
            due = now + year,
        );
        self.insert(&finished_rows, finished, now - 7 * 24 * 3_600_000)
            .await?;
        self.history(finished).await?;
        self.insert(&sleeping, sleepers, now - 3_600_000).await?;
        sqlx::query("ANALYZE").execute(self.sql.pool()).await?;
        println!(
            "{}: seeded {finished} finished and {sleepers} sleeping requests in {:.1} s",
            self.size,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// INSERT … SELECT of `columns` for `i` in `0..count`, in statements
    /// of at most 100,000 rows; `{id}` and `{old}` in `columns` become the
    /// padded number and `old`.
    async fn insert(&self, columns: &str, count: u64, old: i64) -> anyhow::Result<()> {
        const CHUNK: u64 = 100_000;
        let target = "INSERT INTO requests (id, flow, version, status, owner, epoch, attempts,
                          failures, generation, other_server_retry, resume, next_attempt_at,
                          input_hash, input_size, created_at, updated_at, held)";
        for from in (0..count).step_by(CHUNK as usize) {
            let to = (from + CHUNK).min(count);
            let sql = match self.sql.backend() {
                Backend::Sqlite => format!(
                    "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {to})
                     {target} SELECT {} FROM n",
                    columns
                        .replace("{id}", "printf('%09d', i)")
                        .replace("{old}", &old.to_string())
                ),
                Backend::Postgres => format!(
                    "{target} SELECT {} FROM generate_series({from}, {to} - 1) AS g(i)",
                    columns
                        .replace("{id}", "lpad(i::text, 9, '0')")
                        .replace("{old}", &old.to_string())
                ),
            };
            sqlx::query(&sql).execute(self.sql.pool()).await?;
        }
        Ok(())
    }

    /// The journal (`args.journal` checkpoints, inline) and three history
    /// entries of each of the `count` finished requests, in statements of
    /// at most 100,000 requests.
    async fn history(&self, count: u64) -> anyhow::Result<()> {
        const CHUNK: u64 = 100_000;
        let (series, value) = match self.sql.backend() {
            Backend::Sqlite => (
                format!(
                    "WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j + 1 < {})",
                    self.args.journal
                ),
                "x'7b7d'",
            ),
            Backend::Postgres => (
                format!(
                    "WITH k(j) AS (SELECT generate_series(0, {} - 1))",
                    self.args.journal
                ),
                "'\\x7b7d'::bytea",
            ),
        };
        for from in (0..count).step_by(CHUNK as usize) {
            let to = (from + CHUNK).min(count);
            let range = format!("r.id >= 'finished-{from:09}' AND r.id < 'finished-{to:09}'");
            let journal = format!(
                "{series}
                 INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at,
                                          hash, size, inline)
                 SELECT r.num * {capacity} + k.j, 0, k.j, 'step-' || k.j, 'gone', 1,
                        r.created_at, 'h', 2, {value}
                   FROM requests r, k WHERE {range}",
                capacity = baton_core::store::JOURNAL_CAPACITY,
            );
            let events = format!(
                "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail)
                 SELECT r.id, r.created_at, e.kind, 'gone', 1, NULL
                   FROM requests r,
                        (SELECT 'created' AS kind UNION ALL SELECT 'attempt'
                         UNION ALL SELECT 'succeeded') AS e
                  WHERE {range}"
            );
            for statement in [journal, events] {
                sqlx::query(&statement).execute(self.sql.pool()).await?;
            }
        }
        Ok(())
    }

    /// A few requests, so that what a server keeps once it has run
    /// something (instances, caches) is in its memory figure.
    async fn warm_up(&self) -> anyhow::Result<()> {
        let progress = bar(64, &format!("{}: warm-up", self.size));
        submit(&self.node.state, &self.flow, INPUT, 64, 16, &progress).await?;
        progress.finish_and_clear();
        Ok(())
    }

    /// The process's and the database's share of a core over the idle
    /// seconds.
    async fn idle_cpu(&self) -> (f64, Option<f64>) {
        let (cpu, database_cpu, began) = (process_cpu_us(), self.database_cpu_us(), Instant::now());
        tokio::time::sleep(Duration::from_secs(self.args.idle_secs)).await;
        let idle = began.elapsed().as_micros() as f64;
        (
            (process_cpu_us() - cpu) as f64 / idle,
            database_cpu
                .zip(self.database_cpu_us())
                .map(|(before, after)| (after - before) as f64 / idle),
        )
    }

    /// The database's CPU time so far, µs, when it is a process of its
    /// own (PostgreSQL; SQLite's is this process's).
    fn database_cpu_us(&self) -> Option<i64> {
        match self.sql.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => postgres_cpu_us(),
        }
    }

    /// One sample of each single operation.
    async fn operations(&self, figures: &mut Figures) -> anyhow::Result<()> {
        let state = &self.node.state;
        let (store, me) = (&state.store, state.cluster.id.as_str());
        let incarnation = state.cluster.incarnation();
        figures
            .poll
            .push(time(store.due_requests(me, 128, 0)).await?);
        figures
            .heartbeat
            .push(time(store.heartbeat(me, incarnation)).await?);
        figures.running_on.push(time(store.running_on(me)).await?);
        figures.membership.push(time(store.servers()).await?);
        for (path, into) in [
            ("/status/servers", &mut figures.server_list),
            ("/status/requests", &mut figures.status_list),
            ("/metrics", &mut figures.scrape),
        ] {
            let began = Instant::now();
            super::console::page(&self.app, path, &self.cookie).await?;
            into.push(began.elapsed().as_micros() as u64);
        }
        Ok(())
    }

    /// One request alone, end to end, then as many raw commits as it had
    /// checkpoints.
    async fn one_request(
        &self,
        figures: &mut Figures,
        raw: &mut Option<RawCommits>,
    ) -> anyhow::Result<()> {
        let state = &self.node.state;
        state.metrics.take_samples();
        let progress = ProgressBar::hidden();
        let (_, latency) = submit(state, &self.flow, INPUT, 1, 1, &progress).await?;
        figures.request.extend(latency);
        let samples = state.metrics.take_samples();
        let gaps = sorted(samples.checkpoint_gap_us);
        let work = Duration::from_micros(percentile(&gaps, 0.5));
        let commits = raw.take().context("the raw commits ran before")?;
        *raw = Some(commits.run(samples.checkpoint_us.len(), work).await?);
        Ok(())
    }

    /// Checkpoints per second with `concurrency` requests in flight, and
    /// (at 16) the CPU each cost.
    async fn throughput(&self, figures: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
        let requests = self.args.throughput_requests;
        let progress = bar(requests, &format!("{}: {concurrency} in flight", self.size));
        let (cpu, database_cpu) = (process_cpu_us(), self.database_cpu_us());
        let (elapsed, _) = submit(
            &self.node.state,
            &self.flow,
            INPUT,
            requests,
            concurrency,
            &progress,
        )
        .await?;
        progress.finish_and_clear();
        let checkpoints = (requests * 10) as f64;
        let per_s = checkpoints / elapsed.as_secs_f64();
        if concurrency == 16 {
            figures.throughput_16 = per_s;
            figures.cpu_per_checkpoint = (process_cpu_us() - cpu) as f64 / checkpoints;
            figures.database_cpu_per_checkpoint = database_cpu
                .zip(self.database_cpu_us())
                .map(|(before, after)| (after - before) as f64 / checkpoints);
        } else {
            figures.throughput_64 = per_s;
        }
        Ok(())
    }

    /// Times this server's takeover of a dead one that owned
    /// `args.takeover` running requests (half of them may move), then
    /// removes those requests again. They are held, so that this server
    /// does not run them in the moment before they go.
    async fn takeover(&self) -> anyhow::Result<f64> {
        let state = &self.node.state;
        let (store, me) = (&state.store, state.cluster.id.as_str());
        // This server's own loop may find the dead one first; then again.
        for trial in 0..3 {
            let dead = format!("dead-{trial}");
            store.join(&dead, None, &dead).await?;
            let rows = format!(
                "'{dead}-' || {{id}}, '{flow}', '{version}', 'running', '{dead}', 1, 1, 0, 0,
                 i % 2, 1, NULL, 'h', 2, {{old}} + i, {{old}} + i, 1",
                flow = self.flow,
                version = self.version,
            );
            let now = store.now_ms().await?;
            self.insert(&rows, self.args.takeover, now).await?;
            sqlx::query(&format!(
                "UPDATE servers SET heartbeat_at = heartbeat_at - {} WHERE id = $1",
                2 * LEASE_MS
            ))
            .bind(&dead)
            .execute(self.sql.pool())
            .await?;
            let began = Instant::now();
            let takeover = store
                .take_over(&dead, me, state.cluster.incarnation(), LEASE_MS)
                .await?;
            let took = began.elapsed().as_secs_f64() * 1000.0;
            for cleanup in [
                "DELETE FROM request_events WHERE request_id LIKE 'dead-%'",
                "DELETE FROM requests WHERE id LIKE 'dead-%'",
            ] {
                sqlx::query(cleanup).execute(self.sql.pool()).await?;
            }
            if let Some(takeover) = takeover {
                anyhow::ensure!(
                    (takeover.requests.len() + takeover.stranded.len()) as u64
                        == self.args.takeover,
                    "the takeover saw {} + {} requests of {}",
                    takeover.requests.len(),
                    takeover.stranded.len(),
                    self.args.takeover
                );
                return Ok(took);
            }
        }
        anyhow::bail!("this server's own loop took every dead server over first")
    }
}

/// The bench flow's input: 10 checkpoints, no delay.
const INPUT: &[u8] = br#"{"records": 10, "batch": 1, "delay_ms": 0}"#;

impl Figures {
    fn sort(&mut self) {
        for samples in [
            &mut self.poll,
            &mut self.heartbeat,
            &mut self.running_on,
            &mut self.membership,
            &mut self.server_list,
            &mut self.status_list,
            &mut self.scrape,
            &mut self.request,
        ] {
            samples.sort_unstable();
        }
    }
}

async fn time<T, E: Into<anyhow::Error>>(
    operation: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<u64> {
    let began = Instant::now();
    operation.await.map_err(Into::into)?;
    Ok(began.elapsed().as_micros() as u64)
}

fn report(args: &ScaleArgs, small: &Figures, large: &Figures) {
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "figure",
        format!("{}+{}", args.small_finished, args.small_sleepers),
        format!("{}+{}", args.large_finished, args.large_sleepers),
        "ratio"
    );
    let row = |label: &str, small: f64, large: f64, unit: &str| {
        println!(
            "{label:<44} {:>9.2} {unit:<2} {:>9.2} {unit:<2} {:>7.2}×",
            small,
            large,
            large / small.max(f64::MIN_POSITIVE)
        );
    };
    let ms = |samples: &[u64], p: f64| percentile(samples, p) as f64 / 1000.0;
    for (label, small, large) in [
        ("scheduler poll (due query)", &small.poll, &large.poll),
        ("heartbeat", &small.heartbeat, &large.heartbeat),
        (
            "running attempts read (fencing watch)",
            &small.running_on,
            &large.running_on,
        ),
        (
            "server listing (live watch, scrape)",
            &small.membership,
            &large.membership,
        ),
        ("Server List page", &small.server_list, &large.server_list),
        ("Status List page", &small.status_list, &large.status_list),
        ("/metrics scrape", &small.scrape, &large.scrape),
    ] {
        row(
            &format!("{label} p50"),
            ms(small, 0.5),
            ms(large, 0.5),
            "ms",
        );
        row(
            &format!("{label} p99"),
            ms(small, 0.99),
            ms(large, 0.99),
            "ms",
        );
    }
    row(
        "one request end to end, alone p50",
        ms(&small.request, 0.5),
        ms(&large.request, 0.5),
        "ms",
    );
    let overhead = |figures: &Figures| {
        ms(&figures.request, 0.5) / (12.0 * ms(&figures.raw_commit, 0.5).max(f64::MIN_POSITIVE))
    };
    row(
        "  against (10 + 2) raw commits",
        overhead(small),
        overhead(large),
        "×",
    );
    row(
        "checkpoints/s, 16 in flight",
        small.throughput_16,
        large.throughput_16,
        "/s",
    );
    row(
        "checkpoints/s, 64 in flight",
        small.throughput_64,
        large.throughput_64,
        "/s",
    );
    row(
        "server CPU per checkpoint (user+sys)",
        small.cpu_per_checkpoint,
        large.cpu_per_checkpoint,
        "µs",
    );
    if let (Some(s), Some(l)) = (
        small.database_cpu_per_checkpoint,
        large.database_cpu_per_checkpoint,
    ) {
        row("PostgreSQL CPU per checkpoint", s, l, "µs");
    }
    row(
        "server CPU while idle (% of a core)",
        small.idle_cpu * 100.0,
        large.idle_cpu * 100.0,
        "%",
    );
    if let (Some(s), Some(l)) = (small.idle_database_cpu, large.idle_database_cpu) {
        row(
            "PostgreSQL CPU while idle (% of a core)",
            s * 100.0,
            l * 100.0,
            "%",
        );
    }
    row(
        "server's memory (RSS it added)",
        small.rss_mib,
        large.rss_mib,
        "MB",
    );
    row(
        &format!("takeover of {} requests", args.takeover),
        small.takeover_ms,
        large.takeover_ms,
        "ms",
    );
    println!(
        "(goal: ≤ 1.3× from the small store to the large one per operation; \
         takeover ≤ half the {LEASE_MS} ms lease)"
    );
}

/// This process's CPU time so far (user + system), µs.
#[allow(unsafe_code)]
fn process_cpu_us() -> i64 {
    // SAFETY: getrusage writes only the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// The CPU time so far of every PostgreSQL process on this machine, µs.
#[allow(unsafe_code)]
fn postgres_cpu_us() -> Option<i64> {
    // SAFETY: sysconf reads a constant.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid … utime stime: fields 14 and 15.
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        if name != "postgres" {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: i64 = fields
            .get(11..13)
            .into_iter()
            .flatten()
            .filter_map(|f| f.parse::<i64>().ok())
            .sum();
        *total.get_or_insert(0) += ticks * 1_000_000 / ticks_per_s;
    }
    total
}

/// This process's resident set, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
