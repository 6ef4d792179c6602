//! Membership of this server in the cluster: identity, heartbeats, finding
//! dead servers and taking their requests over, clean stop.
//!
//! The cluster has no membership configuration: it is every server that
//! writes into the same database. A server is dead when its heartbeat, on the
//! database's clock, is older than the lease. The work of one tick is a plain
//! async function ([`Cluster::tick`]) that tests can call directly.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use baton_core::store::{ServerStatus, Store, StoreError};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::trace::{SpanContext, Tracer};

/// What this server may assume about its own liveness.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// Until then no other server can have found this one dead: the last
    /// heartbeat was sent less than one lease ago.
    pub valid_until: Instant,
    /// The incarnation the lease belongs to. An attempt started under an
    /// earlier incarnation (one found dead while alive) must stop.
    pub incarnation: i64,
    /// The server is stopping: attempts must stop and write nothing more.
    pub stopping: bool,
}

/// Why this server cannot join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Another process holds the data folder.
    #[error("the data folder {0} is in use by another baton process")]
    DataFolderInUse(String),
    /// Another live process heartbeats under this server ID.
    #[error(
        "server ID {0} is already heartbeating from another live process (a copied data folder?); \
         remove {1} to give this server a new ID"
    )]
    IdInUse(String, String),
    /// The data folder could not be used.
    #[error("data folder {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The cluster judges liveness by another lease than this server's.
    #[error(
        "the cluster's lease is {cluster_ms} ms (stored in the database by its first server) \
         but this server was started with {configured_ms} ms: start it with --lease-ms {cluster_ms}, \
         so that every server judges the others by the same lease"
    )]
    LeaseMismatch {
        /// The lease stored in the database.
        cluster_ms: i64,
        /// This server's configured lease.
        configured_ms: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The data folder, locked for this process, and the server ID kept in it.
pub struct DataFolder {
    /// Server ID (created at first start).
    pub server_id: String,
    _lock: File,
}

impl DataFolder {
    /// Locks `dir` for this process and reads (or creates) the server ID.
    pub fn open(dir: &Path) -> Result<Self, JoinError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| JoinError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(JoinError::DataFolderInUse(dir.display().to_string()));
        }
        let id_path = dir.join("server-id");
        let server_id = match std::fs::read_to_string(&id_path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                let mut file = File::create(&id_path).map_err(io(&id_path))?;
                file.write_all(id.as_bytes()).map_err(io(&id_path))?;
                file.sync_all().map_err(io(&id_path))?;
                id
            }
        };
        Ok(Self {
            server_id,
            _lock: lock,
        })
    }

    /// The incarnation that last joined from this folder, if it did so
    /// during this boot of this machine and from this very path: as this
    /// process holds the folder's lock, which that one held while it lived,
    /// that process has exited, and a restart need not watch its heartbeat.
    /// A copy of the folder on another machine or at another path reads
    /// `None` and is watched as before.
    pub fn exited_incarnation(&self, dir: &Path) -> Option<i64> {
        let recorded = std::fs::read_to_string(dir.join(LAST_JOIN_FILE)).ok()?;
        let (incarnation, place) = recorded.trim().split_once(' ')?;
        (place == joined_from(dir)?).then(|| incarnation.parse().ok())?
    }
}

/// The file in the data folder that names the last incarnation that joined
/// from it and where: `<incarnation> <boot id> <folder>`.
const LAST_JOIN_FILE: &str = "last-join";

/// This boot of this machine and this folder's real path, as written in
/// [`LAST_JOIN_FILE`].
fn joined_from(dir: &Path) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let folder = dir.canonicalize().ok()?;
    Some(format!("{} {}", boot.trim(), folder.display()))
}

/// Records that `incarnation` joined from `dir` (best effort: without the
/// record the next restart watches the heartbeat, as a stranger would).
fn record_join(dir: &Path, incarnation: i64) {
    let Some(place) = joined_from(dir) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        let path = dir.join(LAST_JOIN_FILE);
        let mut file = File::create(&path)?;
        file.write_all(format!("{incarnation} {place}\n").as_bytes())?;
        file.sync_all()
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "recording this incarnation in the data folder failed");
    }
}

/// Heartbeat and takeover timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often to heartbeat and look for dead servers.
    pub heartbeat: Duration,
    /// Heartbeat age after which a server is dead.
    pub lease: Duration,
}

/// This server's membership.
pub struct Cluster {
    store: Arc<dyn Store>,
    /// Server ID.
    pub id: String,
    incarnation: AtomicI64,
    name: Option<String>,
    address: String,
    timing: Timing,
    lease: watch::Sender<Lease>,
    healthy_since: std::sync::Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
    /// The data folder, where each join is recorded.
    data_dir: std::path::PathBuf,
    /// Records a takeover in each adopted request's trace.
    pub tracer: Tracer,
}

/// What a tick saw, for the executor.
#[derive(Debug, Default)]
pub struct TickReport {
    /// This incarnation was found terminated and has rejoined as a new one.
    pub rejoined: bool,
    /// Requests adopted from dead servers.
    pub adopted: Vec<String>,
}

impl Cluster {
    /// Joins the cluster as a new incarnation of `id`. Refuses when another
    /// live process heartbeats under the same ID: its heartbeat is watched
    /// for two intervals, and one that moves means that process is alive.
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        store: Arc<dyn Store>,
        id: String,
        name: Option<String>,
        address: String,
        timing: Timing,
        metrics: Arc<Metrics>,
        tracer: Tracer,
        data_dir: &Path,
        exited: Option<i64>,
    ) -> Result<Self, JoinError> {
        let configured_ms = timing.lease.as_millis() as i64;
        let cluster_ms = store.cluster_lease(configured_ms).await?;
        if cluster_ms != configured_ms {
            return Err(JoinError::LeaseMismatch {
                cluster_ms,
                configured_ms,
            });
        }
        let before = store.server(&id).await?;
        if let Some(before) = before
            && before.status == ServerStatus::Running
            && before.heartbeat_age_ms < timing.lease.as_millis() as i64
        {
            if exited == Some(before.incarnation) {
                tracing::info!(server = %id, incarnation = before.incarnation, "the previous incarnation ran from this data folder during this boot and has exited: joining at once");
            } else {
                tracing::info!(server = %id, "the previous incarnation's heartbeat is recent; checking that it is gone");
                tokio::time::sleep(timing.heartbeat * 2 + Duration::from_millis(300)).await;
                if let Some(after) = store.server(&id).await?
                    && after.heartbeat_at != before.heartbeat_at
                    && after.status == ServerStatus::Running
                {
                    return Err(JoinError::IdInUse(
                        id,
                        data_dir.join("server-id").display().to_string(),
                    ));
                }
            }
        }
        let sent = Instant::now();
        let incarnation = store.join(&id, name.as_deref(), &address).await?;
        record_join(data_dir, incarnation);
        let (lease, _) = watch::channel(Lease {
            valid_until: sent + timing.lease,
            incarnation,
            stopping: false,
        });
        tracing::info!(server = %id, incarnation, "joined the cluster");
        Ok(Self {
            store,
            id,
            incarnation: AtomicI64::new(incarnation),
            name,
            address,
            timing,
            lease,
            healthy_since: std::sync::Mutex::new(Some(Instant::now())),
            metrics,
            data_dir: data_dir.to_owned(),
            tracer,
        })
    }

    /// The current incarnation.
    pub fn incarnation(&self) -> i64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    /// The timing in use.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// A receiver of lease updates, for attempts.
    pub fn lease(&self) -> watch::Receiver<Lease> {
        self.lease.subscribe()
    }

    /// One heartbeat, then (if this server has been healthy for a whole
    /// lease) one round of death detection and takeover.
    ///
    /// Waiting a whole lease of healthy heartbeats before judging others
    /// keeps a server that just reconnected after a database outage from
    /// finding everyone dead before they could heartbeat again. A heartbeat
    /// whose round trip took more than half a lease is no ground to judge
    /// others either: the database is slow for everyone, and their
    /// heartbeats may be waiting as long, so the healthy lease starts again
    /// after it. Each database call of the tick is
    /// bounded by a lease, so a database that stops answering cannot hold
    /// the loop for ever.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        // A call that takes a whole lease is given up: the loop must move on
        // before this server's own lease runs out. (Half a lease gave up on
        // heartbeats that a busy machine would have answered.)
        let bound = self.timing.lease;
        let sent = Instant::now();
        let heartbeat = bounded(bound, self.store.heartbeat(&self.id, self.incarnation())).await;
        let round_trip = sent.elapsed();
        match heartbeat {
            Ok(true) => {
                let incarnation = self.incarnation();
                self.lease.send_modify(|lease| {
                    lease.valid_until = sent + self.timing.lease;
                    lease.incarnation = incarnation;
                });
                self.healthy_since.lock().expect("lock").get_or_insert(sent);
            }
            Ok(false) => {
                tracing::warn!(server = %self.id, incarnation = self.incarnation(), "found marked dead while alive; stopping all executions and rejoining");
                // Attempts of the lost incarnation wait at their next host
                // call; the new incarnation's lease tells them to stop.
                self.lease.send_modify(|lease| lease.valid_until = sent);
                let sent = Instant::now();
                let incarnation = bounded(
                    bound,
                    self.store
                        .join(&self.id, self.name.as_deref(), &self.address),
                )
                .await?;
                self.incarnation.store(incarnation, Ordering::SeqCst);
                record_join(&self.data_dir, incarnation);
                self.lease.send_modify(|lease| {
                    lease.valid_until = sent + self.timing.lease;
                    lease.incarnation = incarnation;
                });
                *self.healthy_since.lock().expect("lock") = Some(sent);
                report.rejoined = true;
                tracing::info!(server = %self.id, incarnation, "rejoined the cluster");
            }
            Err(e) => {
                *self.healthy_since.lock().expect("lock") = None;
                return Err(e);
            }
        }
        if round_trip > bound / 2 {
            // Others' heartbeats were held as long, and the ones that failed
            // meanwhile retry on their own schedule: the healthy lease this
            // server waits before judging starts again now (skipping only
            // this tick found a server dead on the next one, 20 ms later).
            *self.healthy_since.lock().expect("lock") = Some(Instant::now());
            tracing::warn!(
                round_trip_ms = round_trip.as_millis() as u64,
                "the heartbeat took more than half a lease; not judging other servers for a lease"
            );
            return Ok(report);
        }
        let healthy_for = self
            .healthy_since
            .lock()
            .expect("lock")
            .map(|since| since.elapsed())
            .unwrap_or_default();
        if healthy_for < self.timing.lease || self.lease.borrow().stopping {
            return Ok(report);
        }
        let lease_ms = self.timing.lease.as_millis() as i64;
        for dead in bounded(bound, self.store.dead_servers(lease_ms)).await? {
            if dead == self.id {
                continue;
            }
            let started = Instant::now();
            let started_wall = std::time::SystemTime::now();
            let takeover = bounded(
                bound,
                self.store
                    .take_over(&dead, &self.id, self.incarnation(), lease_ms),
            )
            .await?;
            if let Some(takeover) = takeover {
                self.metrics.record_takeover(started.elapsed());
                for request in &takeover.requests {
                    let mut span = self
                        .tracer
                        .start("takeover", SpanContext::of_request(request));
                    span.started_at(started_wall);
                    span.set("baton.request.id", request.as_str());
                    span.set("baton.server", self.id.as_str());
                    span.set("baton.dead_server", takeover.dead.as_str());
                }
                tracing::warn!(
                    dead = %takeover.dead,
                    adopted = takeover.requests.len(),
                    waiting_for_their_server = takeover.stranded.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "took over a dead server"
                );
                report.adopted.extend(takeover.requests);
            }
        }
        Ok(report)
    }

    /// Ends this incarnation cleanly: marks the lease stopping (attempts
    /// stop at their next host call), then records the server `stopped` and
    /// hands its movable requests to the cluster.
    pub async fn stop(&self) -> Result<Vec<String>, StoreError> {
        self.lease.send_modify(|lease| lease.stopping = true);
        self.store.stop_server(&self.id, self.incarnation()).await
    }
}

/// `operation`, given up (as the database being away) when it takes longer
/// than `bound`.
async fn bounded<T>(
    bound: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(bound, operation)
        .await
        .unwrap_or(Err(StoreError::Unanswered(bound)))
}
