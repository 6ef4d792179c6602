//! Baton's checkpoint store: the SQL and blob-folder adapter of the store
//! port (`baton_core::store`), through which servers share state.
//!
//! The cluster is every server configured with the same database and the same
//! storage path, so this crate is also the cluster's only channel. Every write
//! that changes a request carries a [`Fence`] (owner + epoch) and only
//! succeeds while the database still agrees with it; that is what stops a
//! paused or partitioned server from writing for a request it has lost.
//!
//! One SQL implementation, [`SqlStore`], serves SQLite and PostgreSQL
//! through sqlx's `Any` driver; each backend has its own migrations and a
//! few dialect fragments (the database clock). Times are milliseconds on the
//! database's clock. Each module implements one of the port's traits.
//!
//! # Layout
//!
//! - [`blob`]: the content-addressed blob folder (`objects/ab/cdef…`).
//! - `payload`: [`PayloadStore`], where a payload lives (inline in the row, or a blob).
//! - `servers`: [`ServerStore`], membership, heartbeats, takeover and handover.
//! - `flows`: [`FlowStore`], flow versions and the active version per flow.
//! - `requests`: [`RequestStore`], request lifecycle, claims and fenced outcomes.
//! - `operator`: [`OperatorStore`], cancel and re-execute.
//! - `listing`: [`ListingStore`], requests and their history for people.
//! - `checkpoints`: [`JournalStore`], the journal and grouped, fenced commits.
//! - `accounts`: [`AccountStore`], console and API accounts, sessions, tokens.
//! - `schedules`: [`ScheduleStore`], cron-style schedules fired once per tick across the cluster.
//! - `wakes`: a write that makes another server's request due tells it (PostgreSQL `LISTEN`/`NOTIFY`).
//! - [`fault`]: named fault points for tests (compiled out of release builds).
//! - `scratch` (feature `scratch`): stores of their own for tests and benchmarks.

mod accounts;
pub mod blob;
mod checkpoints;
pub mod fault;
mod flows;
mod listing;
mod operator;
mod payload;
mod requests;
mod retention;
mod schedules;
#[cfg(feature = "scratch")]
pub mod scratch;
mod servers;
mod statistics;
mod wakes;
mod writers;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use baton_core::Transition;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use tokio::sync::OwnedMutexGuard;

pub use baton_core::store::*;
pub use blob::BlobStore;

/// Turns what the database driver answered into the store port's error.
pub(crate) trait Db<T> {
    /// The answer, with a driver error classified for [`StoreError`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(database_error)
    }
}

impl<T> Db<T> for Result<T, sqlx::migrate::MigrateError> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| {
            StoreError::Database(DatabaseError {
                source: Box::new(e),
                refused: true,
            })
        })
    }
}

/// A driver error as the port classifies it: what the database said of the
/// statement itself (SQLSTATE class 22 bad data, 23 a violated constraint,
/// 42 bad SQL) does not pass with time; anything else may.
pub(crate) fn database_error(e: sqlx::Error) -> StoreError {
    let refused = match &e {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| ["22", "23", "42"].iter().any(|c| code.starts_with(c))),
        _ => false,
    };
    if !refused {
        writers::outage_seen();
    }
    StoreError::Database(DatabaseError {
        source: Box::new(e),
        refused,
    })
}

/// A pooled PostgreSQL connection idle this long is pinged before use.
const PING_WHEN_IDLE: Duration = Duration::from_millis(50);

/// Which database the checkpoint connection names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (WAL), shareable by processes on one host.
    Sqlite,
    /// A PostgreSQL server, shareable by servers on many hosts.
    Postgres,
}

impl Backend {
    /// The backend a connection URL names.
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    /// SQL for "now" on the database's clock, in milliseconds.
    pub fn now_ms(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Self::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// An empty byte string, as a literal.
    fn empty_bytes(self) -> &'static str {
        match self {
            Self::Sqlite => "X''",
            Self::Postgres => "''::bytea",
        }
    }

    /// [`Backend::now_ms`] for a bound an index scan can use. PostgreSQL's
    /// `clock_timestamp()` is volatile, so compared with it directly a row
    /// is read and tested one by one; evaluated once in a sub-select it is
    /// a parameter of the index condition. SQLite's is fixed for the
    /// statement already (and a sub-select would hide it from the index).
    fn now_bound(self) -> &'static str {
        match self {
            Self::Sqlite => self.now_ms(),
            Self::Postgres => {
                "(SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT))"
            }
        }
    }
}

/// The shared checkpoint store: database plus blob folder.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    blobs: BlobStore,
    /// The connection this process keeps for writing, taken in turns: every
    /// write's on SQLite, the checkpoint commits' on PostgreSQL.
    kept_writer: Arc<tokio::sync::Mutex<Option<PoolConnection<Any>>>>,
    /// PostgreSQL's connection for this process's heartbeat, a pool of its
    /// own: slow reads holding every connection of the main pool (each may
    /// run for up to a lease) must not hold the heartbeat until the
    /// server's lease runs out. On SQLite the heartbeat is a write like any.
    heartbeat_pool: Option<AnyPool>,
    /// PostgreSQL's other writing connections, kept between writes.
    writers: Arc<writers::WriterShelf>,
    /// The statement of a one-checkpoint commit, built once.
    commit_one: Arc<str>,
    /// Flow versions read so far, by hash: a version's row is written once
    /// and never changed or deleted, so every attempt need not read it.
    versions:
        Arc<std::sync::Mutex<std::collections::HashMap<String, baton_core::store::VersionRow>>>,
    /// Other servers' wakes, listened for on PostgreSQL.
    wakes: wakes::Wakes,
}

/// A connection to write with, held until the write commits.
///
/// On SQLite it is the process's one kept writing connection. SQLite lets
/// one connection write at a time and makes the others wait in its busy
/// handler, which sleeps whole milliseconds, and a connection drops its page
/// cache whenever another connection wrote; so this process's writers queue
/// for one kept connection in order, and it stays warm. Writers in other
/// processes sharing the file still meet the busy handler. On PostgreSQL
/// checkpoint commits keep one connection too, and any other write takes
/// the connection the last one gave back, or one from the pool
/// ([`writers`]): taking a connection from the pool and giving it back
/// costs more than the commit's own work there.
pub(crate) enum WriteConnection {
    /// The kept connection, during this writer's turn.
    Turn(OwnedMutexGuard<Option<PoolConnection<Any>>>),
    /// A connection off the shelf of kept writing connections, or one
    /// from the pool that goes there after this write.
    Shelved(writers::ShelvedWriter),
}

impl WriteConnection {
    /// Closes a connection that failed, so the next writer opens a fresh one.
    pub(crate) fn discard(self) {
        let mut connection = match self {
            Self::Turn(mut turn) => match turn.take() {
                Some(connection) => connection,
                None => return,
            },
            Self::Shelved(writer) => writer.into_inner(),
        };
        connection.close_on_drop();
    }
}

/// SQLite's `statements` as one transaction, to be sent in one call to the
/// connection's thread ([`SqliteScript::run`]): one hop there and back
/// where a transaction of n statements takes n + 2. It takes the write lock
/// as it begins (IMMEDIATE), waiting in the busy handler for a writer in
/// another process, rather than fail later on upgrading a read.
pub(crate) fn sqlite_script(statements: &[String]) -> String {
    format!("BEGIN IMMEDIATE; {}; COMMIT", statements.join("; "))
}

/// A transaction on SQLite's kept writing connection sent as scripts, one
/// call each: a whole [`sqlite_script`], or one that begins it and one that
/// ends it. Dropped before [`SqliteScript::ended`], by an error or by its
/// caller giving up on it, it may have left its transaction open on the
/// connection: the connection is then discarded, which rolls it back, so
/// the next writer never writes into it.
pub(crate) struct SqliteScript(Option<WriteConnection>);

impl SqliteScript {
    pub(crate) fn on(writer: WriteConnection) -> Self {
        Self(Some(writer))
    }

    /// Runs `script` and answers every row its statements return, in order.
    pub(crate) async fn run<'q, O>(
        &mut self,
        script: sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<O>, StoreError>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let connection = self.0.as_mut().expect("held until it ended");
        script.fetch_all(&mut **connection).await.db()
    }

    /// [`SqliteScript::run`] for rows of different shapes.
    pub(crate) async fn run_rows<'q>(
        &mut self,
        script: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let connection = self.0.as_mut().expect("held until it ended");
        script.fetch_all(&mut **connection).await.db()
    }

    /// The connection back, the transaction ended (committed or rolled
    /// back by the last script).
    pub(crate) fn ended(mut self) -> WriteConnection {
        self.0.take().expect("held until it ended")
    }
}

impl Drop for SqliteScript {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            writer.discard();
        }
    }
}

impl Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Turn(turn) => turn.as_ref().expect("a turn holds the connection"),
            Self::Shelved(writer) => writer.connection_ref(),
        }
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Turn(turn) => turn.as_mut().expect("a turn holds the connection"),
            Self::Shelved(writer) => writer.connection(),
        }
    }
}

/// The lease a server assumes when it is not told another.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// Payloads up to this size are kept inline in their row: one durable
/// database commit is cheaper than a blob's two fsyncs plus the commit.
pub const INLINE_MAX: usize = 16 * 1024;

/// What a checkpoint database is, seen without changing it (`baton
/// doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseState {
    /// The migrations it has applied (none while it does not exist: `baton
    /// up` creates it).
    pub applied: Option<i64>,
    /// The migrations this build knows.
    pub known: i64,
    /// Its clock, ms since the epoch, when it exists.
    pub now_ms: Option<i64>,
    /// With migrations to apply, the servers running on it (a heartbeat
    /// younger than a lease), which are of an older build: the open
    /// refuses to migrate under them. Each with how long ago it beat (ms).
    pub older_servers: Vec<(String, i64)>,
}

/// How many migrations the database has applied; `None` before the first
/// (no migrations table).
async fn applied_migrations(connection: &mut AnyConnection) -> Option<i64> {
    let applied: Option<(i64,)> =
        sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_optional(connection)
            .await
            .ok()
            .flatten();
    applied.map(|(n,)| n)
}

/// The servers whose heartbeat is younger than `lease`.
async fn live_servers(
    connection: &mut AnyConnection,
    backend: Backend,
    lease: Duration,
) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as(&format!(
        "SELECT id, {now} - heartbeat_at FROM servers
          WHERE status = 'running' AND heartbeat_at > {now} - $1 ORDER BY id",
        now = backend.now_ms()
    ))
    .bind(lease.as_millis() as i64)
    .fetch_all(connection)
    .await
    .db()
}

/// A migration changes what every server reads and writes (0020 put fence
/// entries in the journal, which an older build would replay as
/// checkpoints), so none runs while a server of an older build may be
/// running on the database: with migrations to apply, any server whose
/// heartbeat is younger than a lease is one, and the open is refused
/// until it has stopped. A database without servers (new, or every one
/// stopped or long dead) migrates as before.
async fn refuse_migrating_under_live_servers(
    connection: &mut AnyConnection,
    backend: Backend,
    migrator: &sqlx::migrate::Migrator,
    lease: Duration,
) -> Result<(), StoreError> {
    let applied = applied_migrations(connection).await.unwrap_or(0);
    let known = migrator.iter().count() as i64;
    let live = older_servers(connection, backend, (applied, known), lease).await?;
    if live.is_empty() {
        return Ok(());
    }
    let pending = known - applied;
    Err(StoreError::Refused(format!(
        "this build has {pending} schema change(s) the database has not had, and servers of \
         an older build are running on it: {}. They would misread what this build writes: \
         stop them, then start this build",
        name_servers(&live)
    )))
}

/// The servers that may be of an older build, with `applied` of `known`
/// migrations: when some are applied and some not, any whose heartbeat is
/// younger than `lease`. None applied means no schema yet (a new database,
/// or another server's first migration under way), so no servers either.
async fn older_servers(
    connection: &mut AnyConnection,
    backend: Backend,
    (applied, known): (i64, i64),
    lease: Duration,
) -> Result<Vec<(String, i64)>, StoreError> {
    if applied == 0 || applied >= known {
        return Ok(Vec::new());
    }
    live_servers(connection, backend, lease).await
}

/// Servers with how long ago each beat (ms), as a person reads them.
pub fn name_servers(servers: &[(String, i64)]) -> String {
    servers
        .iter()
        .map(|(id, ago)| format!("{id} (heartbeat {ago} ms ago)"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// Looks at the checkpoint database `url` without creating, migrating
    /// or writing anything; servers are live within `lease`.
    pub async fn inspect(url: &str, lease: Duration) -> Result<DatabaseState, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url);
        let known = match backend {
            Backend::Postgres => sqlx::migrate!("../../migrations/postgres").iter().count(),
            Backend::Sqlite => sqlx::migrate!("../../migrations/sqlite").iter().count(),
        } as i64;
        let absent = DatabaseState {
            applied: None,
            known,
            now_ms: None,
            older_servers: Vec::new(),
        };
        let url = match backend {
            Backend::Postgres if !sqlx::Any::database_exists(url).await.db()? => return Ok(absent),
            Backend::Postgres => url.to_owned(),
            Backend::Sqlite => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or_default();
                if !Path::new(path).exists() {
                    return Ok(absent);
                }
                format!("sqlite://{path}?mode=ro")
            }
        };
        let mut connection = sqlx::AnyConnection::connect(&url).await.db()?;
        let applied = applied_migrations(&mut connection).await.unwrap_or(0);
        let (now_ms,): (i64,) = sqlx::query_as(&format!("SELECT {}", backend.now_ms()))
            .fetch_one(&mut connection)
            .await
            .db()?;
        let older_servers =
            older_servers(&mut connection, backend, (applied, known), lease).await?;
        connection.close().await.db()?;
        Ok(DatabaseState {
            applied: Some(applied),
            known,
            now_ms: Some(now_ms),
            older_servers,
        })
    }

    /// [`SqlStore::open`] with the default lease (5 s).
    pub async fn connect(url: &str, storage: &Path) -> Result<Self, StoreError> {
        Self::open(url, storage, DEFAULT_LEASE).await
    }

    /// Connects to the checkpoint database (creating a PostgreSQL database or
    /// SQLite file if it is missing), applies migrations and opens the blob
    /// folder under `storage`.
    ///
    /// No statement may wait long enough to cost a server its `lease`: on
    /// PostgreSQL every connection gets an idle-in-transaction timeout of
    /// half a lease (so a server stopped inside a transaction loses its
    /// locks before anyone's lease runs out), a lock timeout of three
    /// quarters and a statement timeout of one lease; on SQLite the busy
    /// timeout, the wait for another process's write lock, is half a lease.
    pub async fn open(url: &str, storage: &Path, lease: Duration) -> Result<Self, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url);
        if backend == Backend::Postgres && !sqlx::Any::database_exists(url).await.db()? {
            // Two servers may race to create it; the loser sees it exist.
            if let Err(e) = sqlx::Any::create_database(url).await
                && !sqlx::Any::database_exists(url).await.db()?
            {
                return Err(database_error(e));
            }
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .db()?
            .disable_statement_logging();
        if backend == Backend::Postgres {
            // Migrations run without the timeouts below: a large one may
            // rightly take longer than a lease.
            let mut connection = sqlx::AnyConnection::connect_with(&options).await.db()?;
            let migrator = sqlx::migrate!("../../migrations/postgres");
            refuse_migrating_under_live_servers(&mut connection, backend, &migrator, lease).await?;
            migrator.run(&mut connection).await.db()?;
            connection.close().await.db()?;
        }
        let half_lease_ms = (lease.as_millis() / 2).max(1);
        let session = match backend {
            // WAL lets readers run beside the writer; FULL makes every
            // commit durable (an fsync of the WAL).
            Backend::Sqlite => format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = {half_lease_ms}; PRAGMA foreign_keys = ON;"
            ),
            Backend::Postgres => format!(
                "SET lock_timeout = {}; \
                 SET idle_in_transaction_session_timeout = {half_lease_ms}; \
                 SET statement_timeout = {};",
                (lease.as_millis() * 3 / 4).max(1),
                lease.as_millis().max(1)
            ),
        };
        let session: Arc<str> = session.into();
        let pool_options = |max_connections| {
            let session = session.clone();
            AnyPoolOptions::new()
                .max_connections(max_connections)
                // A ping before every use is a round trip per query. Only a
                // connection idle for a while is pinged (and dropped when
                // dead): a database restart cuts every idle connection and
                // takes longer than that, so the first query after one does
                // not fail on a dead connection, while a busy server pays
                // nothing.
                .test_before_acquire(false)
                .before_acquire(move |conn, meta| {
                    Box::pin(async move {
                        if backend == Backend::Postgres && meta.idle_for >= PING_WHEN_IDLE {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    let session = session.clone();
                    Box::pin(async move {
                        conn.execute(&*session).await?;
                        Ok(())
                    })
                })
        };
        let heartbeat_pool = (backend == Backend::Postgres)
            .then(|| pool_options(1).connect_lazy_with(options.clone()));
        // Some are kept for writing (`WriteConnection`): one on SQLite, up
        // to three on PostgreSQL.
        let pool = pool_options(match backend {
            Backend::Sqlite => 5,
            Backend::Postgres => 9,
        })
        .connect_with(options)
        .await
        .db()?;
        if backend == Backend::Sqlite {
            let migrator = sqlx::migrate!("../../migrations/sqlite");
            let mut connection = pool.acquire().await.db()?;
            refuse_migrating_under_live_servers(&mut connection, backend, &migrator, lease).await?;
            drop(connection);
            migrator.run(&pool).await.db()?;
        }
        Ok(Self {
            pool,
            backend,
            blobs: BlobStore::open(storage)?,
            kept_writer: Arc::default(),
            heartbeat_pool,
            writers: Arc::default(),
            commit_one: checkpoints::commit_sql(backend, 1, 1, checkpoints::TakenKey::Fail).into(),
            versions: Arc::default(),
            wakes: wakes::Wakes::of(backend, &url),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The blob folder.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The connection pool, for benchmarks that measure the raw database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection to write with; see [`WriteConnection`].
    pub(crate) async fn writer(&self) -> Result<WriteConnection, StoreError> {
        match self.backend {
            Backend::Sqlite => self.kept_writer().await,
            Backend::Postgres => {
                let connection = match self.writers.take(PING_WHEN_IDLE) {
                    Some(kept) => kept,
                    None => self.pool.acquire().await.db()?,
                };
                Ok(WriteConnection::Shelved(self.writers.lend(connection)))
            }
        }
    }

    /// The kept writing connection, in this writer's turn.
    pub(crate) async fn kept_writer(&self) -> Result<WriteConnection, StoreError> {
        let mut turn = self.kept_writer.clone().lock_owned().await;
        if turn.is_none() {
            *turn = Some(self.pool.acquire().await.db()?);
        }
        Ok(WriteConnection::Turn(turn))
    }

    /// Replaces `NOW_MS` in a statement with the backend's clock expression
    /// and `NOW_BOUND` with the same read once, for a range an index scan
    /// bounds ([`Backend::now_bound`]). Also spells out `JOURNAL_CAPACITY`.
    fn sql(&self, template: &str) -> String {
        template
            .replace("NOW_BOUND", self.backend.now_bound())
            .replace("NOW_MS", self.backend.now_ms())
            .replace("JOURNAL_CAPACITY", &JOURNAL_CAPACITY.to_string())
    }

    /// [`Self::sql`] for a statement that makes `transition`: `RULE_FROM`
    /// becomes the quoted list of the statuses its rule starts from and
    /// `RULE_TO` the status it ends in, both from `baton_core`'s table, so
    /// the SQL implements the state machine rather than deciding it.
    fn transition_sql(&self, transition: Transition, template: &str) -> String {
        let rule = transition.rule();
        let from: Vec<String> = rule
            .from
            .iter()
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        self.sql(template)
            .replace("RULE_FROM", &from.join(", "))
            .replace("RULE_TO", &format!("'{}'", rule.to.as_str()))
    }
}
