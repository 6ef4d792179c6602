//! PostgreSQL's writing connections, kept between writes.
//!
//! A connection given back to sqlx's pool is tested with a round trip to
//! the database, in a task spawned for it, before another task may take
//! it; and the pool hands out its idle connections oldest first, so each
//! write lands on a connection that prepared and planned its statement
//! least recently. A write that takes the connection the last write gave
//! back pays neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, Connection};

/// Driver errors that may pass with time (a connection cut, a database
/// restarting), counted process-wide: a connection taken before one of
/// them is not kept after it, as it may be the one cut.
static OUTAGES: AtomicU64 = AtomicU64::new(0);

/// Counts a driver error that may pass with time.
pub(crate) fn outage_seen() {
    OUTAGES.fetch_add(1, Ordering::Relaxed);
}

/// Writing connections kept beside the pool, newest last.
#[derive(Debug, Default)]
pub(crate) struct WriterShelf {
    kept: std::sync::Mutex<Vec<Kept>>,
    /// The pool closes: nothing is kept any more.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Kept {
    connection: PoolConnection<Any>,
    since: Instant,
    outages: u64,
}

/// Connections kept at most: each is checked out of the pool while it is
/// kept, so the pool's other users keep the rest.
const KEPT: usize = 2;

impl WriterShelf {
    /// The connection kept last, if it was kept since no outage and for
    /// less than `fresh`; any others older than that go back to the pool.
    pub(crate) fn take(&self, fresh: Duration) -> Option<PoolConnection<Any>> {
        let outages = OUTAGES.load(Ordering::Relaxed);
        let mut kept = self.kept.lock().expect("writer shelf lock");
        kept.retain(|k| k.outages == outages && k.since.elapsed() < fresh);
        kept.pop().map(|last| last.connection)
    }

    /// `connection`, to be kept when its writer is done with it.
    pub(crate) fn lend(self: &Arc<Self>, connection: PoolConnection<Any>) -> ShelvedWriter {
        ShelvedWriter {
            connection: Some(connection),
            shelf: self.clone(),
            outages: OUTAGES.load(Ordering::Relaxed),
        }
    }

    /// Gives every kept connection back to the pool, and each one in use
    /// once its writer is done: the pool waits for its checked-out
    /// connections as it closes.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.kept.lock().expect("writer shelf lock").clear();
    }
}

/// A writing connection that goes back on its shelf when dropped, unless
/// an outage came since it was taken, or it has something to send still
/// (a dropped transaction's rollback, which the pool sends at once), or
/// the shelf is full or closed: then it goes back to the pool.
#[derive(Debug)]
pub(crate) struct ShelvedWriter {
    connection: Option<PoolConnection<Any>>,
    shelf: Arc<WriterShelf>,
    outages: u64,
}

impl ShelvedWriter {
    pub(crate) fn connection(&mut self) -> &mut PoolConnection<Any> {
        self.connection.as_mut().expect("held until dropped")
    }

    pub(crate) fn connection_ref(&self) -> &PoolConnection<Any> {
        self.connection.as_ref().expect("held until dropped")
    }

    /// The connection, not to be kept.
    pub(crate) fn into_inner(mut self) -> PoolConnection<Any> {
        self.connection.take().expect("held until dropped")
    }
}

impl Drop for ShelvedWriter {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        // `should_flush` (sqlx 0.8, hidden from its docs): bytes queued to
        // send, such as the ROLLBACK of a transaction dropped unfinished,
        // which must not wait for this connection's next writer.
        if self.outages != OUTAGES.load(Ordering::Relaxed) || connection.should_flush() {
            return;
        }
        let mut kept = self.shelf.kept.lock().expect("writer shelf lock");
        if kept.len() < KEPT && !self.shelf.closed.load(Ordering::Relaxed) {
            kept.push(Kept {
                connection,
                since: Instant::now(),
                outages: self.outages,
            });
        }
    }
}
