//! Stores of their own, for tests and benchmarks: a fresh SQLite file or
//! PostgreSQL database that is dropped when its holder lets go.

use std::path::Path;
use std::time::Duration;

use baton_core::store::{FlowStore, NewRequest, PayloadStore, StoreError, VersionRow};

use crate::{Backend, SqlStore};

/// A database of its own: a SQLite file in a given folder, or a PostgreSQL
/// database with a random name on the server `base` names, created by the
/// first store that connects and dropped (with any connections still open)
/// when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// Its connection URL.
    pub url: String,
}

impl ScratchDatabase {
    /// A database on `base`'s backend: `sqlite://…` puts a file in `dir`,
    /// `postgres://host…` a database named `<prefix>_<random>` on that server.
    pub fn new(base: &str, dir: &Path, prefix: &str) -> Self {
        let url = match Backend::of(base) {
            Backend::Sqlite => format!("sqlite://{}", dir.join("baton.db").display()),
            Backend::Postgres => {
                let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
                let server = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{server}/{prefix}_{:016x}", fastrand::u64(..))
            }
        };
        Self { url }
    }

    /// A PostgreSQL database on the server `BATON_TEST_POSTGRES` names (by
    /// default the local one).
    pub fn postgres(prefix: &str) -> Self {
        let base = std::env::var("BATON_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        Self::new(&base, Path::new("."), prefix)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if Backend::of(&self.url) != Backend::Postgres {
            return;
        }
        let url = self.url.clone();
        // A drop inside an async runtime cannot block on it: a thread with a
        // runtime of its own does it. Servers that are stopping may still be
        // connecting; a connection that comes in while the drop runs fails
        // it, so it is tried again.
        let dropped = std::thread::spawn(move || {
            use sqlx::migrate::MigrateDatabase;
            sqlx::any::install_default_drivers();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut tries = 0;
                loop {
                    match sqlx::Any::force_drop_database(&url).await {
                        Ok(()) => return Ok(()),
                        Err(_) if tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(std::io::Error::other(e)),
                    }
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the scratch database {} was not dropped: {e}", self.url),
            Err(_) => eprintln!("the scratch database {} was not dropped", self.url),
        }
    }
}

/// A [`SqlStore`] of its own with the flow `f` deployed as version `v1`:
/// the fixture of the store's contract tests, the committer's unit tests
/// and the store benchmarks.
pub struct ScratchStore {
    /// The store.
    pub store: SqlStore,
    /// Its database, dropped after the store.
    pub database: ScratchDatabase,
    _dir: tempfile::TempDir,
}

impl ScratchStore {
    /// The database's plan for the due query of server `me`, as text.
    pub async fn due_plan(&self, me: &str) -> Result<String, StoreError> {
        use sqlx::Row;
        let explain = match self.store.backend() {
            Backend::Sqlite => "EXPLAIN QUERY PLAN",
            Backend::Postgres => "EXPLAIN",
        };
        let rows = sqlx::query(&format!("{explain} {}", self.store.due_sql()))
            .bind(me)
            .bind(128_i64)
            .bind(0_i64)
            .fetch_all(self.store.pool())
            .await
            .map_err(crate::database_error)?;
        Ok(rows
            .iter()
            .map(|row| match self.store.backend() {
                Backend::Sqlite => row.get::<String, _>(3),
                Backend::Postgres => row.get::<String, _>(0),
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// On PostgreSQL (`BATON_TEST_POSTGRES`) or, if not `postgres`, on a
    /// SQLite file in a temporary folder; panics if it cannot (for tests).
    pub async fn open(postgres: bool) -> Self {
        let base = match postgres {
            true => std::env::var("BATON_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            false => "sqlite://".into(),
        };
        Self::open_on(&base, crate::DEFAULT_LEASE)
            .await
            .expect("the scratch store opens")
    }

    /// On a fresh database next to `base` (see [`ScratchDatabase::new`]),
    /// with `lease`.
    pub async fn open_on(base: &str, lease: Duration) -> Result<Self, StoreError> {
        let dir =
            tempfile::tempdir().map_err(|e| StoreError::io(Path::new("(temporary folder)"), e))?;
        let database = ScratchDatabase::new(base, dir.path(), "baton_scratch");
        let store = SqlStore::open(&database.url, &dir.path().join("store"), lease).await?;
        store
            .deploy(&VersionRow {
                hash: "v1".into(),
                flow: "f".into(),
                size: 1,
                properties: Default::default(),
                deployed_at: 0,
            })
            .await?;
        Ok(Self {
            store,
            database,
            _dir: dir,
        })
    }
}

/// A new request of the scratch flow `f` (version `v1`) with input `{}`,
/// owned by `owner` at `incarnation`, movable and resuming; set other
/// fields after it.
pub fn new_request(store: &SqlStore, id: &str, owner: &str, incarnation: i64) -> NewRequest {
    NewRequest {
        id: id.into(),
        flow: "f".into(),
        version: "v1".into(),
        owner: owner.into(),
        incarnation,
        input: store
            .put_payload(b"{}".to_vec())
            .expect("the scratch store's folder takes a payload"),
        other_server_retry: true,
        resume: true,
        idempotency_key: None,
        parent: None,
        while_active: false,
    }
}
