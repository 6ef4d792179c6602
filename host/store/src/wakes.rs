//! Wakes across servers: a write that makes another server's request due
//! (an event sent, a child ended, a hold lifted, requests handed to the
//! cluster) tells that server at once, so it need not wait for its next
//! poll. PostgreSQL only (`LISTEN`/`NOTIFY`); on SQLite the poll alone
//! finds them.
//!
//! A notification goes out when its transaction commits and is lost with
//! the listener's connection, so it only hastens what the poll would find:
//! the due rows stay the truth.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, Transaction};

use crate::{Backend, Db, SqlStore, StoreError};

/// The channel every server listens on; a notification's payload is the
/// server it is for, or empty for every server.
const CHANNEL: &str = "baton_wake";

/// What a store needs to listen: the database's URL (kept out of `Debug`,
/// since it may hold a password) and the listening task, ended on close or
/// when the store's last handle goes.
#[derive(Clone, Default)]
pub(crate) struct Wakes {
    url: Option<Arc<str>>,
    listener: Arc<Listener>,
}

/// The listening task, if one runs.
#[derive(Default)]
struct Listener(Mutex<Option<tokio::task::JoinHandle<()>>>);

impl Listener {
    fn replace(&self, task: Option<tokio::task::JoinHandle<()>>) {
        let old = std::mem::replace(&mut *self.0.lock().expect("listener lock"), task);
        if let Some(old) = old {
            old.abort();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.replace(None);
    }
}

impl std::fmt::Debug for Wakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakes")
            .field("listens", &self.url.is_some())
            .finish()
    }
}

impl Wakes {
    /// Wakes over the database at `url`: PostgreSQL's can listen.
    pub(crate) fn of(backend: Backend, url: &str) -> Self {
        Self {
            url: (backend == Backend::Postgres).then(|| url.into()),
            listener: Arc::default(),
        }
    }

    /// Ends the listening task, if any.
    pub(crate) fn stop(&self) {
        self.listener.replace(None);
    }
}

impl SqlStore {
    /// Calls `wake` for every notification to `me` or to every server,
    /// and once more whenever the listener's connection was lost and comes
    /// back (what was sent meanwhile is gone). `false` on SQLite.
    pub(crate) async fn listen(
        &self,
        me: &str,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Result<bool, StoreError> {
        let Some(url) = &self.wakes.url else {
            return Ok(false);
        };
        let mut listener = PgListener::connect(url).await.db()?;
        listener.listen(CHANNEL).await.db()?;
        let me = me.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        let to = notification.payload();
                        if to == me || to.is_empty() {
                            wake();
                        }
                    }
                    Ok(None) => wake(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for wakes failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        wake();
                    }
                }
            }
        });
        self.wakes.listener.replace(Some(task));
        Ok(true)
    }

    /// Tells the owner of each request `r` that `which` selects (`$1`
    /// bound to `value`) that it may be due, when `tx` commits.
    pub(crate) async fn wake_owner(
        &self,
        tx: &mut Transaction<'_, Any>,
        which: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query(&format!(
            "SELECT pg_notify('{CHANNEL}', r.owner) FROM requests r
              WHERE {which} AND r.owner IS NOT NULL"
        ))
        .bind(value)
        .execute(&mut **tx)
        .await
        .db()?;
        Ok(())
    }

    /// Tells every server that requests were handed to the cluster, when
    /// `tx` commits.
    pub(crate) async fn wake_every_server(
        &self,
        tx: &mut Transaction<'_, Any>,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query(&format!("SELECT pg_notify('{CHANNEL}', '')"))
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }
}
