//! `baton up`: one server process, from data folder to HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_core::store::{Fence, Store, StoreError};
use baton_runtime::{Runtime, RuntimeConfig};
use baton_store::SqlStore;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::engine::checkpoint::Abort;
use crate::engine::cluster::{Cluster, DataFolder, Timing};
use crate::engine::executor::{self, Executor};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::trace::Tracer;
use crate::vcs::deploy;

/// What `baton up` prints on stdout, before its address, once it listens:
/// tests, benches and scripts read it to find a server started on port 0.
pub const LISTENING: &str = "baton: listening on ";

/// The address a `baton up`'s stdout says it listens at, once it says so.
pub fn listening_address(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(LISTENING))
        .map(str::trim)
}

/// A server's working parts without its HTTP listener: membership, the
/// executor and the background loops. `baton up` serves it; benchmarks run
/// it in-process.
pub struct Node {
    /// What the routes reach.
    pub state: AppState,
    stop: Arc<Notify>,
    scheduler: JoinHandle<()>,
    /// The membership loop, kept until the handover committed, so a
    /// stopping server is never found dead instead of handing over.
    heartbeat: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Node {
    /// Joins the cluster as `id` at `address`, recovers this server's
    /// interrupted requests and starts the retry process, the heartbeat and
    /// the schedules.
    /// `exited` is an incarnation of `id` known to have exited
    /// ([`DataFolder::exited_incarnation`]), which the join need not watch.
    pub async fn start(
        store: Arc<dyn Store>,
        config: ServerConfig,
        id: String,
        exited: Option<i64>,
        address: String,
    ) -> anyhow::Result<Node> {
        let metrics = Arc::new(Metrics::default());
        let tracer = match &config.otlp_endpoint {
            Some(endpoint) => {
                let name = config.name.as_deref().unwrap_or(&id);
                tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
                Tracer::exporting(endpoint, &id, name)
            }
            None => Tracer::default(),
        };
        let timing = Timing {
            heartbeat: config.heartbeat,
            lease: config.lease,
        };
        let cluster = Arc::new(
            Cluster::join(
                store.clone(),
                id,
                config.name.clone(),
                address,
                timing,
                metrics.clone(),
                tracer.clone(),
                &config.data,
                exited,
            )
            .await?,
        );
        let recovered = store.recover_own(&cluster.id).await?;
        if !recovered.is_empty() {
            tracing::info!(
                count = recovered.len(),
                "recovering this server's interrupted requests"
            );
        }
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: config.data.join("compiled"),
            memory_limit: config.memory_limit,
            time_limit: config.time_limit,
            wall_limit: config.wall_limit,
            max_instances: (config.capacity + 8) as u32,
            http_body_limit: config.http_body_limit,
        })?;
        let executor = Executor::new(
            store.clone(),
            runtime,
            cluster.clone(),
            metrics.clone(),
            tracer,
            config.capacity,
            config.connections.clone(),
            config.max_postponements,
        );
        let stop = Arc::new(Notify::new());
        // Another server's write that makes a request here due wakes the
        // scheduler at once; without it the poll finds it.
        let woken = Arc::downgrade(&executor);
        let wake = Box::new(move || {
            if let Some(executor) = woken.upgrade() {
                executor.wake();
            }
        });
        let poll = match store.listen_for_wakes(&cluster.id, wake).await {
            Ok(true) => executor::POLL_WOKEN,
            Ok(false) => executor::POLL,
            Err(e) => {
                tracing::warn!(error = %e, "listening for other servers' wakes failed; the poll alone finds due requests");
                executor::POLL
            }
        };
        let scheduler = tokio::spawn(executor.clone().schedule(stop.clone(), poll));
        let heartbeat = tokio::spawn(heartbeat(cluster.clone(), executor.clone()));
        let mut background = vec![
            tokio::spawn(report(
                store.clone(),
                executor.clone(),
                cluster.clone(),
                config.flows_repo.clone(),
            )),
            tokio::spawn(crate::engine::schedule::run(
                store.clone(),
                cluster.clone(),
                executor.clone(),
            )),
            tokio::spawn(purge_credentials(store.clone(), config.heartbeat)),
            tokio::spawn(watch_running(
                cluster.clone(),
                executor.clone(),
                store.clone(),
            )),
        ];
        let config = Arc::new(config);
        background.push(tokio::spawn(crate::statistics::write_checkpoints(
            store.clone(),
            metrics.clone(),
            cluster.id.clone(),
        )));
        background.push(tokio::spawn(crate::engine::retention::run(
            store.clone(),
            config.clone(),
        )));
        let (live, watcher) = crate::http::live::LiveFeed::start(store.clone(), metrics.clone());
        background.push(watcher);
        let state = AppState {
            live,
            requests: crate::requests::Requests::new(
                store.clone(),
                executor.clone(),
                cluster.clone(),
            ),
            versions: crate::vcs::versions::Versions::new(
                store.clone(),
                executor.clone(),
                config.clone(),
            ),
            store,
            executor,
            cluster,
            metrics,
            config,
            login: Arc::default(),
        };
        Ok(Node {
            state,
            stop,
            scheduler,
            heartbeat,
            background,
        })
    }

    /// Stops taking work; with `hand_over`, interrupts the attempts, marks
    /// the server `stopped` and hands its requests to the cluster.
    pub async fn stop(self, hand_over: bool) -> anyhow::Result<()> {
        self.stop.notify_one();
        for task in &self.background {
            task.abort();
        }
        let _ = self.scheduler.await;
        let state = self.state;
        if hand_over {
            state.executor.interrupt_all(&Abort::Stopping);
            state.executor.drain(Duration::from_secs(5)).await;
            let handed = state.cluster.stop().await?;
            state.metrics.record_handovers(handed.len());
            self.heartbeat.abort();
            tracing::info!(handed_over = handed.len(), "stopped");
        } else {
            self.heartbeat.abort();
        }
        state.cluster.tracer.flush().await;
        state.store.close().await;
        Ok(())
    }
}

/// Creates `dir` and makes it the user's alone (0700): the data and storage
/// folders hold password hashes, tokens and every payload, also when they
/// existed before with wider modes.
fn private_folder(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Runs a server until SIGTERM or Ctrl-C, then stops it cleanly.
pub async fn up(config: ServerConfig, deploy_paths: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for dir in [&config.data, &config.storage] {
        private_folder(dir).with_context(|| format!("preparing the folder {}", dir.display()))?;
    }
    let folder = DataFolder::open(&config.data)?;
    let store = SqlStore::open(&config.database, &config.storage, config.lease)
        .await
        .with_context(|| {
            format!(
                "opening the checkpoint store {}",
                config.database_redacted()
            )
        })?;
    crate::http::credentials::bootstrap(&store, &config.data).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?.to_string();
    let exited = folder.exited_incarnation(&config.data);
    let node = Node::start(
        Arc::new(store),
        config,
        folder.server_id.clone(),
        exited,
        address.clone(),
    )
    .await?;
    let state = &node.state;
    for path in deploy_paths {
        for (file, bytes) in deploy::component_bytes(&path, &deploy::Builder::Admin).await? {
            let deployed = state
                .versions
                .deploy(bytes, None)
                .await
                .with_context(|| format!("deploying {}", file.display()))?;
            println!("{} {}", deployed.name, deployed.version);
        }
    }
    let app = http::router(state.clone());
    println!("{LISTENING}http://{address}");
    tracing::info!(server = %state.cluster.id, %address, "serving the console and API");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        // Open live pages would hold the graceful shutdown for ever.
        let live = state.live.clone();
        async move {
            shutdown_signal().await;
            live.close();
        }
    })
    .await?;
    tracing::info!("stopping: no new work, handing requests over");
    node.stop(true).await
}

/// Deletes expired sessions and API tokens (they already answer nothing)
/// every few heartbeats, so they do not pile up.
async fn purge_credentials(store: Arc<dyn Store>, heartbeat: std::time::Duration) {
    let mut interval = tokio::time::interval(heartbeat * 5);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match store.purge_expired_credentials().await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired sessions and tokens purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired sessions and tokens failed"),
        }
    }
}

/// The membership loop: heartbeat and takeover, nothing else, so no other
/// database call can hold a heartbeat back (a read started during an
/// outage waits out the pool's connect backoff, seconds after the database
/// is back, and a server whose heartbeat waited behind it was found dead).
async fn heartbeat(cluster: Arc<Cluster>, executor: Arc<Executor>) {
    let mut interval = tokio::time::interval(cluster.timing().heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match cluster.tick().await {
            Ok(report) => {
                if !report.adopted.is_empty() || report.rejoined {
                    executor.wake();
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Every heartbeat interval, the local fencing: attempts whose request
/// moved on are stopped, a hold reaches its attempt, and a request left
/// running here with no attempt is made due again.
async fn watch_running(cluster: Arc<Cluster>, executor: Arc<Executor>, store: Arc<dyn Store>) {
    let mut interval = tokio::time::interval(cluster.timing().heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects: Vec<(String, i64)> = Vec::new();
    loop {
        interval.tick().await;
        // Cancels and re-executes from other servers move epochs on; stop
        // the local attempts they fenced without waiting for their next commit.
        let checked = executor.active();
        let Ok(running) = store.running_on(&cluster.id).await else {
            continue;
        };
        executor.fence_lost(&checked, &running);
        // A request recorded as running here with no attempt behind it (a
        // claim whose answer was lost, a release that failed) would wait for
        // ever: seen so in two ticks in a row at the same epoch, it is made
        // due again, fenced by that epoch. Two ticks, because a claim that
        // just committed has its attempt registered a moment later.
        let orphans = executor.without_attempt(&running);
        for orphan in orphans.iter().filter(|orphan| suspects.contains(orphan)) {
            let fence = Fence {
                request: orphan.0.clone(),
                owner: cluster.id.clone(),
                epoch: orphan.1,
            };
            match store
                .release(&fence, "recorded as running here with no attempt behind it")
                .await
            {
                Ok(()) => {
                    tracing::warn!(request = %fence.request, epoch = fence.epoch, "a request was running here with no attempt; it is due again");
                    executor.wake();
                }
                Err(StoreError::Fenced { .. }) => {}
                Err(e) => {
                    tracing::warn!(request = %fence.request, error = %e, "releasing a request without an attempt failed")
                }
            }
        }
        suspects = orphans;
    }
}

/// Every heartbeat interval: loads the active version of every flow (so a
/// version that cannot be loaded here shows as drift, not as a failed
/// request later) and reports the flow-set and the flows repository's HEAD.
async fn report(
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    cluster: Arc<Cluster>,
    flows_repo: Option<std::path::PathBuf>,
) {
    let mut interval = tokio::time::interval(cluster.timing().heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Ok(flows) = store.flows().await else {
            continue;
        };
        let mut loaded = Vec::new();
        for flow in flows {
            let (store, hash, size) = (
                store.clone(),
                flow.active.hash.clone(),
                flow.active.size as u64,
            );
            let load = executor
                .runtime()
                .load(&hash, || store.blob(&hash, size).map_err(|e| e.to_string()));
            match load.await {
                Ok(_) => loaded.push(format!("{}={}", flow.name, flow.active.hash)),
                Err(e) => {
                    tracing::warn!(flow = %flow.name, version = %flow.active.hash, error = %e, "cannot load the active version")
                }
            }
        }
        loaded.sort();
        let flow_set = blake3::hash(loaded.join("\n").as_bytes()).to_hex()[..16].to_owned();
        let repo = flows_repo.clone();
        let head = match repo {
            Some(path) => {
                tokio::task::spawn_blocking(move || crate::vcs::repository::state(Some(&path)))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|state| state.head)
                    .map(|head| head.id)
            }
            None => None,
        };
        if let Err(e) = store
            .report_server(&cluster.id, &flow_set, head.as_deref())
            .await
        {
            tracing::warn!(error = %e, "reporting the flow-set failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
