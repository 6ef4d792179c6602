//! Group commit: concurrent checkpoint writes of many attempts share one
//! durable database transaction, and a request alone pays no hop to another
//! task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use baton_core::store::{CheckpointWrite, JournalStore, StoreError};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// How a grouped commit failed for one write.
#[derive(Debug, Clone)]
pub enum CommitError {
    /// The fence no longer holds.
    Fenced,
    /// The write can never be committed (the journal is full, the database
    /// refuses its data).
    Refused(String),
    /// The database failed; the write may be retried.
    Unavailable(String),
}

impl CommitError {
    fn of(e: StoreError) -> Self {
        match e {
            StoreError::Fenced { .. } => Self::Fenced,
            outage if outage.is_outage() => Self::Unavailable(outage.to_string()),
            refused => Self::Refused(refused.to_string()),
        }
    }
}

/// Groups concurrent checkpoint commits into one database transaction.
///
/// The writer that finds no commit in flight leads: it commits, in its own
/// task, its write and whatever is queued by then. Writers arriving
/// meanwhile queue; when the leader is done it hands the lead to the oldest
/// of them, who commits the whole queue. So a request alone pays no hop to
/// another task, and under load many checkpoints share one durable commit.
#[derive(Clone)]
pub struct Committer(Arc<CommitterShared>);

struct CommitterShared {
    journal: Arc<dyn JournalStore>,
    metrics: Arc<Metrics>,
    state: std::sync::Mutex<CommitterState>,
}

#[derive(Default)]
struct CommitterState {
    /// A writer is committing; later writers queue.
    leading: bool,
    queue: VecDeque<Queued>,
}

struct Queued {
    write: CheckpointWrite,
    turn: oneshot::Sender<Turn>,
}

/// What a queued writer is told.
enum Turn {
    /// Its write was committed (or not) with a leader's group.
    Done(Result<(), CommitError>),
    /// It leads now, with its own write given back.
    Lead(CheckpointWrite),
}

/// Most checkpoints committed in one transaction.
const MAX_GROUP: usize = 256;

impl Committer {
    /// A committer over the journal of a store.
    pub fn new(journal: Arc<dyn JournalStore>, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(CommitterShared {
            journal,
            metrics,
            state: std::sync::Mutex::default(),
        }))
    }

    pub async fn commit(&self, write: CheckpointWrite) -> Result<(), CommitError> {
        let (turn, waiting) = oneshot::channel();
        let leads = {
            let mut state = self.0.state.lock().expect("committer lock");
            if state.leading {
                state.queue.push_back(Queued {
                    write: write.clone(),
                    turn,
                });
                false
            } else {
                state.leading = true;
                true
            }
        };
        if leads {
            return self.lead(write).await;
        }
        let mut waiting = Waiting(&self.0, Some(waiting));
        let turn = waiting.1.as_mut().expect("still waiting").await;
        waiting.1 = None;
        match turn {
            Ok(Turn::Done(result)) => result,
            Ok(Turn::Lead(write)) => self.lead(write).await,
            Err(_) => Err(CommitError::Unavailable(
                "the commit group was abandoned".into(),
            )),
        }
    }

    /// Commits `own` with the queued writes, then hands the lead on (also
    /// when this future is dropped half-way: see [`Lead`]).
    async fn lead(&self, own: CheckpointWrite) -> Result<(), CommitError> {
        let _lead = Lead(&self.0);
        let (mut writes, mut turns) = (vec![own], Vec::new());
        {
            let mut state = self.0.state.lock().expect("committer lock");
            let take = state.queue.len().min(MAX_GROUP - 1);
            for queued in state.queue.drain(..take) {
                writes.push(queued.write);
                turns.push(queued.turn);
            }
        }
        let started = Instant::now();
        let results = self.0.journal.commit_checkpoints(&writes).await;
        self.0
            .metrics
            .record_commit(writes.len(), started.elapsed());
        let mut results: Vec<Result<(), CommitError>> = match results {
            Ok(results) => results
                .into_iter()
                .map(|result| result.map_err(CommitError::of))
                .collect(),
            // The database refused the statement itself, not for an outage:
            // one write of the group may be at fault, and must not fail the
            // others. Each is committed alone, so only its own is refused.
            Err(e) if writes.len() > 1 && !e.is_outage() => {
                let mut alone = Vec::with_capacity(writes.len());
                for write in &writes {
                    alone.push(
                        match self
                            .0
                            .journal
                            .commit_checkpoints(std::slice::from_ref(write))
                            .await
                        {
                            Ok(mut result) => result.remove(0).map_err(CommitError::of),
                            Err(e) => Err(CommitError::of(e)),
                        },
                    );
                }
                alone
            }
            Err(e) => vec![Err(CommitError::of(e)); writes.len()],
        };
        let own = results.remove(0);
        for (turn, result) in turns.into_iter().zip(results) {
            let _ = turn.send(Turn::Done(result));
        }
        own
    }
}

/// Passes the lead to the oldest queued writer still waiting, or lets it
/// lapse when none is.
fn pass_lead(shared: &CommitterShared) {
    let mut state = shared.state.lock().expect("committer lock");
    while let Some(next) = state.queue.pop_front() {
        if next.turn.send(Turn::Lead(next.write)).is_ok() {
            return;
        }
    }
    state.leading = false;
}

/// The lead, held while committing: passed on when the commit is done or
/// its future dropped half-way.
struct Lead<'a>(&'a CommitterShared);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        pass_lead(self.0);
    }
}

/// A queued writer's wait. Dropped before its turn was read, it closes the
/// channel, and a lead that reached it already is passed on, so the lead is
/// never lost with a writer that went away.
struct Waiting<'a>(&'a CommitterShared, Option<oneshot::Receiver<Turn>>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut turn) = self.1.take() {
            turn.close();
            if let Ok(Turn::Lead(_)) = turn.try_recv() {
                pass_lead(self.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use baton_core::store::{
        CheckpointRecord, Fence, JournalGeneration, PayloadStore, RequestStore, ServerStore,
        async_trait,
    };
    use baton_store::SqlStore;
    use baton_store::scratch::{ScratchStore, new_request};

    use super::*;

    /// A store of its own with the flow version `v1` deployed and the
    /// server `me` joined.
    async fn store_with_a_flow(postgres: bool) -> ScratchStore {
        let scratch = ScratchStore::open(postgres).await;
        scratch.store.join("me", None, "me:1").await.unwrap();
        scratch
    }

    /// A new request of `v1`, claimed by `me`, and the write of its first
    /// checkpoint, named `name`.
    async fn first_write(store: &SqlStore, name: &str) -> CheckpointWrite {
        let incarnation = store.server("me").await.unwrap().unwrap().incarnation;
        let claim = store
            .create_request(
                &new_request(store, &store.new_request_id(), "me", incarnation),
                true,
            )
            .await
            .unwrap()
            .unwrap();
        CheckpointWrite {
            fence: claim.fence,
            journal: claim.journal,
            ordinal: claim.appends_at,
            seq: 0,
            name: name.into(),
            payload: store.put_payload(b"1".to_vec()).unwrap(),
        }
    }

    /// A writer that had the lead passed to it and went away before taking
    /// it up must not take the lead with it: the next writer commits.
    #[tokio::test]
    async fn a_writer_dropped_with_the_lead_passes_it_on() {
        let scratch = store_with_a_flow(false).await;
        let store = &scratch.store;
        let write = first_write(store, "step").await;
        let committer = Committer::new(Arc::new(store.clone()), Arc::new(Metrics::default()));

        // Another writer is committing, so this one queues.
        committer.0.state.lock().unwrap().leading = true;
        let mut queued = Box::pin(committer.commit(write.clone()));
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "a writer behind a leader waits");
        // The leader is done and passes the lead to it; it goes away unread.
        pass_lead(&committer.0);
        drop(queued);

        let next =
            tokio::time::timeout(Duration::from_secs(10), committer.commit(write.clone())).await;
        assert!(
            matches!(next, Ok(Ok(()))),
            "the next writer leads and commits"
        );
        assert_eq!(store.journal(&write.journal).await.unwrap().len(), 1);
    }

    /// When the database refuses a group's statement for one write's data
    /// (here a NUL byte PostgreSQL cannot store in text), the others of the
    /// group still commit; before, the whole group failed as "database
    /// away", and the poisoned attempt retried for ever with its neighbours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_the_database_refuses_fails_alone_in_its_group() {
        let scratch = store_with_a_flow(true).await;
        let store = &scratch.store;
        let writes = [
            first_write(store, "kept").await,
            first_write(store, "bad\0name").await,
        ];
        let committer = Committer::new(Arc::new(store.clone()), Arc::new(Metrics::default()));

        // Both queue behind a leader, then the lead passes to the first,
        // which commits the two as one group.
        committer.0.state.lock().unwrap().leading = true;
        let mut kept = Box::pin(committer.commit(writes[0].clone()));
        let mut bad = Box::pin(committer.commit(writes[1].clone()));
        for queued in [&mut kept, &mut bad] {
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx).is_pending())).await;
            assert!(pending);
        }
        pass_lead(&committer.0);
        let (kept, bad) = tokio::join!(kept, bad);

        assert!(matches!(kept, Ok(())), "{kept:?}");
        assert!(matches!(bad, Err(CommitError::Refused(_))), "{bad:?}");
        assert_eq!(store.journal(&writes[0].journal).await.unwrap().len(), 1);
        assert!(store.journal(&writes[1].journal).await.unwrap().is_empty());
        store.close().await;
    }

    /// A second adapter of the journal: the SQL store, whose first
    /// `outages` commits find the database away.
    struct AwayAtFirst {
        store: SqlStore,
        outages: AtomicUsize,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl JournalStore for AwayAtFirst {
        async fn journal(
            &self,
            generation: &JournalGeneration,
        ) -> Result<Vec<CheckpointRecord>, StoreError> {
            self.store.journal(generation).await
        }

        async fn checkpoints(
            &self,
            request: &str,
            after: Option<i64>,
            limit: i64,
        ) -> Result<Vec<CheckpointRecord>, StoreError> {
            self.store.checkpoints(request, after, limit).await
        }

        async fn inbox_event(
            &self,
            request: &str,
            name: &str,
            index: i64,
        ) -> Result<Option<String>, StoreError> {
            self.store.inbox_event(request, name, index).await
        }

        async fn set_status(
            &self,
            fence: &Fence,
            key: &str,
            value: &str,
        ) -> Result<(), StoreError> {
            self.store.set_status(fence, key, value).await
        }

        async fn commit_checkpoints(
            &self,
            writes: &[CheckpointWrite],
        ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let away = self
                .outages
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if away {
                return Err(StoreError::Unanswered(Duration::from_secs(1)));
            }
            self.store.commit_checkpoints(writes).await
        }
    }

    /// A group the database does not answer fails every write in it as
    /// retryable, without committing them one by one (that is for a
    /// refused statement), and their retries commit.
    #[tokio::test]
    async fn a_group_met_by_an_outage_fails_retryably_and_commits_on_retry() {
        let scratch = store_with_a_flow(false).await;
        let store = &scratch.store;
        let writes = [first_write(store, "a").await, first_write(store, "b").await];
        let journal = Arc::new(AwayAtFirst {
            store: store.clone(),
            outages: AtomicUsize::new(1),
            calls: AtomicUsize::new(0),
        });
        let committer = Committer::new(journal.clone(), Arc::new(Metrics::default()));

        committer.0.state.lock().unwrap().leading = true;
        let mut a = Box::pin(committer.commit(writes[0].clone()));
        let mut b = Box::pin(committer.commit(writes[1].clone()));
        for queued in [&mut a, &mut b] {
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx).is_pending())).await;
            assert!(pending);
        }
        pass_lead(&committer.0);
        let (a, b) = tokio::join!(a, b);
        assert!(matches!(a, Err(CommitError::Unavailable(_))), "{a:?}");
        assert!(matches!(b, Err(CommitError::Unavailable(_))), "{b:?}");
        assert_eq!(
            journal.calls.load(Ordering::SeqCst),
            1,
            "one group statement"
        );
        for write in &writes {
            assert!(store.journal(&write.journal).await.unwrap().is_empty());
        }

        for write in &writes {
            committer.commit(write.clone()).await.unwrap();
            let committed = store.journal(&write.journal).await.unwrap();
            assert_eq!(committed.len(), 1);
            assert_eq!(committed[0].name, write.name);
        }
    }
}
