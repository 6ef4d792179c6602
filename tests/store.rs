//! The checkpoint store's contract, every test on SQLite and on PostgreSQL.

mod support;

use std::time::Duration;

use baton_core::{EventKind, RequestStatus};
use baton_store::scratch::{ScratchStore, new_request};
use baton_store::{
    AccountRow, CheckpointWrite, Claim, JOURNAL_CAPACITY, NewRequest, Outcome, RequestFilter,
    SqlStore, StoreError, VersionRow,
};
use baton_store::{
    AccountStore, FlowStore, JournalStore, ListingStore, OperatorStore, PayloadStore, RequestStore,
    ServerStore,
};

/// A store of its own (SQLite file or PostgreSQL database) with one flow.
struct Db {
    store: SqlStore,
    scratch: ScratchStore,
}

async fn open(postgres: bool) -> Db {
    let scratch = ScratchStore::open(postgres).await;
    Db {
        store: scratch.store.clone(),
        scratch,
    }
}

impl Db {
    async fn request(&self, id: &str, owner: &str, movable: bool) {
        self.request_with(id, owner, movable, true).await;
    }

    /// A request whose flow declares `begin_checkpoint` as given by `resume`.
    async fn request_with(&self, id: &str, owner: &str, movable: bool, resume: bool) {
        self.create(id, owner, movable, resume, None).await;
    }

    /// A child request of `parent`.
    async fn child(&self, id: &str, owner: &str, parent: &str) {
        self.create(id, owner, true, true, Some(parent)).await;
    }

    async fn create(
        &self,
        id: &str,
        owner: &str,
        movable: bool,
        resume: bool,
        parent: Option<&str>,
    ) {
        let new = NewRequest {
            other_server_retry: movable,
            resume,
            parent: parent.map(str::to_owned),
            ..new_request(&self.store, id, owner, self.incarnation(owner).await)
        };
        self.store.create_request(&new, false).await.unwrap();
    }

    /// `server` claims `id` as its current incarnation.
    async fn claim(&self, id: &str, server: &str) -> Result<Option<Claim>, StoreError> {
        let incarnation = self.incarnation(server).await;
        self.store.claim(id, server, incarnation).await
    }

    async fn incarnation(&self, server: &str) -> i64 {
        self.store
            .server(server)
            .await
            .unwrap()
            .unwrap()
            .incarnation
    }

    async fn commit(&self, claim: &Claim, seq: i64) -> Result<(), StoreError> {
        let payload = self
            .store
            .put_payload(seq.to_string().into_bytes())
            .unwrap();
        // The attempt appends after its fence entry, each position after
        // what it replayed (the entries of other epochs).
        let replayed = self
            .store
            .journal(&claim.journal)
            .await
            .unwrap()
            .iter()
            .filter(|c| c.epoch != claim.fence.epoch)
            .count() as i64;
        let write = CheckpointWrite {
            fence: claim.fence.clone(),
            journal: claim.journal,
            ordinal: claim.appends_at + seq - replayed,
            seq,
            name: format!("step-{seq}"),
            payload,
        };
        self.store
            .commit_checkpoints(&[write])
            .await
            .unwrap()
            .remove(0)
    }

    /// `parent`, claimed by `server`, leaves its attempt to wait an hour for
    /// its child `child`: the wait's wake-up time.
    async fn wait_for_child(&self, parent: &str, server: &str, child: &str) -> i64 {
        let far = self.store.now_ms().await.unwrap() + 3_600_000;
        let claim = self.claim(parent, server).await.unwrap().unwrap();
        let waiting = Outcome::Sleeping {
            wake_at_ms: far,
            event: Some(format!("baton:child:{child}")),
        };
        self.store.finish(&claim.fence, &waiting).await.unwrap();
        far
    }

    /// Makes `id`'s heartbeat older than any lease used here.
    async fn age(&self) {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

const LEASE_MS: i64 = 10;

/// The IDs of `me`'s requests due now.
async fn due(store: &SqlStore, me: &str) -> Vec<String> {
    store
        .due_requests(me, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|due| due.id)
        .collect()
}

/// The due query looks as far ahead as asked, and says how long until each
/// request it finds is due: what a scheduler sleeps for.
async fn the_due_query_looks_ahead_as_far_as_asked(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("now", "a", true).await;
    db.request("later", "a", true).await;
    let later = db.claim("later", "a").await.unwrap().unwrap();
    let retry = Outcome::Retry {
        error: "boom".into(),
        details: None,
        delay_ms: 60_000,
    };
    store.finish(&later.fence, &retry).await.unwrap();

    assert_eq!(due(store, "a").await, ["now"]);
    let ahead = store.due_requests("a", 10, 120_000).await.unwrap();
    assert_eq!(
        ahead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["now", "later"]
    );
    assert!(ahead[0].is_due());
    assert!(
        (50_000..=60_000).contains(&ahead[1].in_ms) && !ahead[1].is_due(),
        "{ahead:?}"
    );
    assert_eq!(store.due_requests("a", 10, 30_000).await.unwrap().len(), 1);
}

async fn a_stale_epoch_cannot_commit_or_finish(db: Db) {
    let store = &db.store;
    let a = store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let first = db.claim("r", "a").await.unwrap().expect("a claims");
    db.commit(&first, 0).await.unwrap();

    db.age().await;
    let b = store.join("b", None, "b:1").await.unwrap();
    let takeover = store
        .take_over("a", "b", b, LEASE_MS)
        .await
        .unwrap()
        .expect("a is dead");
    assert_eq!(takeover.requests, ["r"]);

    // The old owner is fenced: no checkpoint, no outcome.
    assert!(matches!(
        db.commit(&first, 1).await,
        Err(StoreError::Fenced { .. })
    ));
    let finished = store.finish(&first.fence, &Outcome::error("late")).await;
    assert!(matches!(finished, Err(StoreError::Fenced { .. })));
    assert!(
        !store.heartbeat("a", a).await.unwrap(),
        "a learns it was found dead"
    );

    let second = db.claim("r", "b").await.unwrap().expect("b claims");
    assert!(second.fence.epoch > first.fence.epoch);
    assert_eq!(
        store.journal(&second.journal).await.unwrap().len(),
        1,
        "the journal survived the move"
    );
    db.commit(&second, 1).await.unwrap();
    // The same position again under the same fence, as a retry whose answer
    // was lost sends it, is answered as committed and writes nothing more.
    db.commit(&second, 1).await.unwrap();
    // A gap is refused.
    assert!(matches!(
        db.commit(&second, 3).await,
        Err(StoreError::Fenced { .. })
    ));
    let journal = store.journal(&second.journal).await.unwrap();
    assert_eq!(
        journal
            .iter()
            .map(|c| (c.seq, c.server.as_str()))
            .collect::<Vec<_>>(),
        [(0, "a"), (1, "b")]
    );
}

/// The names of the checkpoints in `claim`'s journal generation.
async fn step_names(store: &SqlStore, claim: &Claim) -> Vec<String> {
    let journal = store.journal(&claim.journal).await.unwrap();
    journal.into_iter().map(|c| c.name).collect()
}

/// An outcome that carries its attempt's last checkpoint commits both or
/// neither: under a fence lost before it neither; retried after a lost
/// answer, nothing more; a child's (whose parent it wakes) both.
async fn an_outcome_commits_its_last_checkpoint_with_it(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    let write = |claim: &Claim, seq: i64| CheckpointWrite {
        fence: claim.fence.clone(),
        journal: claim.journal,
        ordinal: claim.appends_at + seq,
        seq,
        name: format!("step-{seq}"),
        payload: store.put_payload(seq.to_string().into_bytes()).unwrap(),
    };
    let succeeded = || Outcome::Succeeded(store.put_payload(b"\"done\"".to_vec()).unwrap());

    db.request("done", "a", true).await;
    let done = db.claim("done", "a").await.unwrap().unwrap();
    db.commit(&done, 0).await.unwrap();
    store
        .finish_with_checkpoint(&write(&done, 1), &succeeded())
        .await
        .unwrap();
    assert_eq!(step_names(store, &done).await, ["step-0", "step-1"]);
    let row = store.request("done").await.unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Succeeded);
    assert_eq!(row.last_checkpoint.as_deref(), Some("step-1"));
    let again = store
        .finish_with_checkpoint(&write(&done, 1), &succeeded())
        .await;
    assert!(matches!(again, Err(StoreError::Fenced { .. })), "{again:?}");
    assert_eq!(step_names(store, &done).await, ["step-0", "step-1"]);

    db.request("moved", "a", true).await;
    let moved = db.claim("moved", "a").await.unwrap().unwrap();
    db.commit(&moved, 0).await.unwrap();
    store.cancel("moved", "a", "operator").await.unwrap();
    let late = store
        .finish_with_checkpoint(&write(&moved, 1), &succeeded())
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    assert_eq!(step_names(store, &moved).await, ["step-0"]);
    let row = store.request("moved").await.unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Cancelled);

    db.request("p", "a", true).await;
    db.child("c", "a", "p").await;
    let far = db.wait_for_child("p", "a", "c").await;
    let child = db.claim("c", "a").await.unwrap().unwrap();
    store
        .finish_with_checkpoint(&write(&child, 0), &succeeded())
        .await
        .unwrap();
    assert_eq!(step_names(store, &child).await, ["step-0"]);
    let row = store.request("c").await.unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Succeeded);
    let woken = store.request("p").await.unwrap().unwrap();
    assert!(woken.next_attempt_at.unwrap() < far, "due at once");
}

/// A start that must find its version still active creates nothing once a
/// deploy replaced it, and says so; one pinned to its version (a fork's, a
/// child's) is created as asked.
async fn a_start_of_a_replaced_version_creates_nothing(db: Db) {
    let store = &db.store;
    let incarnation = store.join("a", None, "a:1").await.unwrap();
    let start = |id: &str| NewRequest {
        while_active: true,
        ..new_request(store, id, "a", incarnation)
    };
    store.create_request(&start("before"), false).await.unwrap();
    store
        .deploy(&VersionRow {
            hash: "v2".into(),
            flow: "f".into(),
            size: 1,
            properties: Default::default(),
            deployed_at: 0,
        })
        .await
        .unwrap();
    let replaced = store.create_request(&start("after"), true).await;
    assert!(
        matches!(&replaced, Err(StoreError::VersionReplaced { version, .. }) if version == "v1"),
        "{replaced:?}"
    );
    assert!(store.request("after").await.unwrap().is_none());
    let pinned = new_request(store, "pinned", "a", incarnation);
    store.create_request(&pinned, false).await.unwrap();
    let current = NewRequest {
        version: "v2".into(),
        ..start("current")
    };
    store.create_request(&current, true).await.unwrap();
    for (id, version) in [("before", "v1"), ("pinned", "v1"), ("current", "v2")] {
        let row = store.request(id).await.unwrap().unwrap();
        assert_eq!(row.version, version, "{id}");
    }
}

async fn a_group_commit_fences_each_write_alone(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("kept", "a", true).await;
    db.request("lost", "a", true).await;
    let kept = db.claim("kept", "a").await.unwrap().unwrap();
    let lost = db.claim("lost", "a").await.unwrap().unwrap();
    store.cancel("lost", "a", "operator").await.unwrap();
    let write = |claim: &Claim| CheckpointWrite {
        fence: claim.fence.clone(),
        journal: claim.journal,
        ordinal: claim.appends_at,
        seq: 0,
        name: "step-0".into(),
        payload: store.put_payload(b"1".to_vec()).unwrap(),
    };
    let results = store
        .commit_checkpoints(&[write(&kept), write(&lost)])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Fenced { .. })));
    assert_eq!(store.journal(&kept.journal).await.unwrap().len(), 1);
    assert!(store.journal(&lost.journal).await.unwrap().is_empty());
    let kept = store.request("kept").await.unwrap().unwrap();
    assert_eq!(kept.last_checkpoint.as_deref(), Some("step-0"));
}

async fn a_new_generation_continues_the_journal_after_the_last_checkpoint(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request_with("r", "a", true, false).await;
    db.request("other", "a", true).await;
    let first = db.claim("r", "a").await.unwrap().unwrap();
    let other = db.claim("other", "a").await.unwrap().unwrap();
    db.commit(&first, 0).await.unwrap();
    db.commit(&other, 0).await.unwrap();
    db.commit(&first, 1).await.unwrap();
    store
        .finish(
            &first.fence,
            &Outcome::Retry {
                error: "boom".into(),
                details: None,
                delay_ms: 0,
            },
        )
        .await
        .unwrap();

    // `begin_checkpoint = not use`: the retry starts a generation after
    // the first attempt's fence entry and its two checkpoints.
    let second = db.claim("r", "a").await.unwrap().unwrap();
    assert_eq!(
        (second.journal.number, second.journal.base),
        (1, 3),
        "{:?}",
        second.journal
    );
    assert!(store.journal(&second.journal).await.unwrap().is_empty());
    db.commit(&second, 0).await.unwrap();
    assert!(
        matches!(db.commit(&first, 2).await, Err(StoreError::Fenced { .. })),
        "the old generation is closed"
    );
    let journal = store.journal(&second.journal).await.unwrap();
    assert_eq!(
        journal
            .iter()
            .map(|c| (c.generation, c.seq))
            .collect::<Vec<_>>(),
        [(1, 0)]
    );
    let all = store.checkpoints("r", None, i64::MAX).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| (c.generation, c.seq, c.name.as_str()))
            .collect::<Vec<_>>(),
        [(0, 0, "step-0"), (0, 1, "step-1"), (1, 0, "step-0")]
    );
    assert_eq!(
        store
            .request("r")
            .await
            .unwrap()
            .unwrap()
            .last_checkpoint
            .as_deref(),
        Some("step-0")
    );
    assert_eq!(
        store
            .checkpoints("other", None, i64::MAX)
            .await
            .unwrap()
            .len(),
        1
    );

    // The next retry starts another; one that finds it empty keeps it.
    let retry = Outcome::Retry {
        error: "boom".into(),
        details: None,
        delay_ms: 0,
    };
    store.finish(&second.fence, &retry).await.unwrap();
    let third = db.claim("r", "a").await.unwrap().unwrap();
    assert_eq!((third.journal.number, third.journal.base), (2, 5));
    store.finish(&third.fence, &retry).await.unwrap();
    let fourth = db.claim("r", "a").await.unwrap().unwrap();
    assert_eq!(fourth.journal, third.journal);
}

async fn a_full_journal_refuses_the_next_checkpoint(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let mut claim = db.claim("r", "a").await.unwrap().unwrap();
    // As if the request's journal held all the entries it can.
    claim.appends_at = JOURNAL_CAPACITY;
    let full = db.commit(&claim, 0).await;
    assert!(
        matches!(&full, Err(StoreError::JournalFull { request }) if request == "r"),
        "{full:?}"
    );
    assert!(full.unwrap_err().to_string().contains("is full"));
    assert!(store.journal(&claim.journal).await.unwrap().is_empty());

    // The journal's last entry taken: the next claim has no room for its
    // fence entry, is refused, and leaves the request as it was.
    store.release(&claim.fence, "stopped").await.unwrap();
    sqlx::query(
        "INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
         VALUES ($1, 0, 0, 'last', 'a', $2, 0, 'h', 0, NULL)",
    )
    .bind(claim.journal.request * JOURNAL_CAPACITY + JOURNAL_CAPACITY - 1)
    .bind(claim.fence.epoch)
    .execute(store.pool())
    .await
    .unwrap();
    let before = store.request("r").await.unwrap().unwrap();
    let refused = db.claim("r", "a").await;
    assert!(
        matches!(&refused, Err(StoreError::Refused(why)) if why.contains("no fence entry")),
        "{refused:?}"
    );
    let after = store.request("r").await.unwrap().unwrap();
    assert_eq!(
        (after.status, after.epoch, after.attempts),
        (before.status, before.epoch, before.attempts)
    );
}

/// A status value is replaced by the request's current attempt only: one
/// fenced off (another claim moved the epoch) writes nothing.
async fn a_status_value_is_written_only_under_its_fence(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let first = db.claim("r", "a").await.unwrap().unwrap();
    store
        .set_status(&first.fence, "stage", "\"one\"")
        .await
        .unwrap();
    store
        .set_status(&first.fence, "stage", "\"two\"")
        .await
        .unwrap();
    store
        .finish(
            &first.fence,
            &Outcome::Retry {
                error: "again".into(),
                details: None,
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let second = db.claim("r", "a").await.unwrap().unwrap();
    assert!(matches!(
        store.set_status(&first.fence, "stage", "\"stale\"").await,
        Err(StoreError::Fenced { .. })
    ));
    store
        .set_status(&second.fence, "done", "true")
        .await
        .unwrap();
    assert_eq!(
        store.status_values("r").await.unwrap(),
        [
            ("done".to_owned(), "true".to_owned()),
            ("stage".to_owned(), "\"two\"".to_owned())
        ]
    );
}

/// An event sent while an attempt runs (it may have looked in the inbox
/// already) makes the request due at once when that attempt leaves to wait;
/// one sent to a request waiting for another name does not wake it; the
/// inbox gives events of a name in the order sent; a finished request takes
/// none.
async fn an_event_sent_during_an_attempt_is_not_lost(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let claim = db.claim("r", "a").await.unwrap().unwrap();
    store
        .send_event("r", "go", "{\"n\":1}", None, "op")
        .await
        .unwrap();
    store
        .send_event("r", "go", "{\"n\":2}", None, "op")
        .await
        .unwrap();
    let far = store.now_ms().await.unwrap() + 3_600_000;
    let waiting = Outcome::Sleeping {
        wake_at_ms: far,
        event: Some("go".into()),
    };
    store.finish(&claim.fence, &waiting).await.unwrap();
    let request = store.request("r").await.unwrap().unwrap();
    assert!(
        request.next_attempt_at.unwrap() < far,
        "due at once, not at the deadline"
    );
    assert_eq!(request.waiting_for.as_deref(), Some("go"));
    assert_eq!(
        store.inbox_event("r", "go", 1).await.unwrap().as_deref(),
        Some("{\"n\":2}")
    );
    assert_eq!(store.inbox_event("r", "go", 2).await.unwrap(), None);

    // Claimed again, it waits for another name: an event of this one is
    // kept but wakes nothing.
    let claim = db.claim("r", "a").await.unwrap().unwrap();
    let other = Outcome::Sleeping {
        wake_at_ms: far,
        event: Some("other".into()),
    };
    store.finish(&claim.fence, &other).await.unwrap();
    store.send_event("r", "go", "3", None, "op").await.unwrap();
    let request = store.request("r").await.unwrap().unwrap();
    assert_eq!(request.next_attempt_at, Some(far));
    store
        .send_event("r", "other", "4", None, "op")
        .await
        .unwrap();
    let request = store.request("r").await.unwrap().unwrap();
    assert!(request.next_attempt_at.unwrap() < far);

    store.cancel("r", "a", "op").await.unwrap();
    assert!(matches!(
        store.send_event("r", "go", "5", None, "op").await,
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        store.send_event("nope", "go", "5", None, "op").await,
        Err(StoreError::NotFound(_))
    ));
}

/// A send repeated with its idempotency key keeps one event; the key with
/// another payload is refused; another request may use the same key.
async fn an_event_key_keeps_one_event(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    db.request("s", "a", true).await;
    let send = |id, payload, key| store.send_event(id, "go", payload, Some(key), "op");
    assert!(send("r", "1", "k").await.unwrap());
    assert!(!send("r", "1", "k").await.unwrap());
    assert!(matches!(
        send("r", "2", "k").await,
        Err(StoreError::Refused(_))
    ));
    assert!(send("s", "1", "k").await.unwrap());
    assert!(send("r", "3", "k2").await.unwrap());
    // Once the request has finished, a retry of a kept send is still
    // answered as kept before; a new event is refused.
    store.cancel("r", "a", "op").await.unwrap();
    assert!(!send("r", "1", "k").await.unwrap());
    assert!(matches!(
        send("r", "4", "k3").await,
        Err(StoreError::Refused(_))
    ));
    let inbox = [
        store.inbox_event("r", "go", 0).await.unwrap(),
        store.inbox_event("r", "go", 1).await.unwrap(),
        store.inbox_event("r", "go", 2).await.unwrap(),
    ];
    assert_eq!(inbox, [Some("1".into()), Some("3".into()), None]);
}

/// A cancel takes the request's unfinished descendants with it, and leaves
/// a finished child and other requests as they were; a child's end makes
/// its waiting parent due at once.
async fn a_cancel_takes_unfinished_descendants_and_an_end_wakes_the_parent(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("p", "a", true).await;
    db.child("c1", "a", "p").await;
    db.child("c2", "a", "p").await;
    db.child("g", "a", "c1").await;
    db.request("other", "a", true).await;

    let far = db.wait_for_child("p", "a", "c2").await;
    let child = db.claim("c2", "a").await.unwrap().unwrap();
    let output = store.put_payload(b"1".to_vec()).unwrap();
    store
        .finish(&child.fence, &Outcome::Succeeded(output))
        .await
        .unwrap();
    let woken = store.request("p").await.unwrap().unwrap();
    assert!(woken.next_attempt_at.unwrap() < far, "due at once");

    store.cancel("p", "a", "op").await.unwrap();
    for (id, status) in [
        ("p", RequestStatus::Cancelled),
        ("c1", RequestStatus::Cancelled),
        ("g", RequestStatus::Cancelled),
        ("c2", RequestStatus::Succeeded),
        ("other", RequestStatus::Queued),
    ] {
        let request = store.request(id).await.unwrap().unwrap();
        assert_eq!(request.status, status, "{id}");
    }
    let listed = store
        .list_requests(&RequestFilter {
            parent: Some("p".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut children: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    children.sort();
    assert_eq!(children, ["c1", "c2"]);
}

/// A held request is neither due nor claimed until resumed; an attempt
/// under way still commits its step and is told of the hold; an end or a
/// cancel leaves nothing held.
async fn a_held_request_is_neither_due_nor_claimed_until_resumed(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    db.request("q", "a", true).await;
    assert!(store.hold("r", "a", "op").await.unwrap());
    assert!(!store.hold("r", "a", "op").await.unwrap(), "held already");
    assert_eq!(due(store, "a").await, ["q"]);
    assert!(db.claim("r", "a").await.unwrap().is_none());
    assert!(store.request("r").await.unwrap().unwrap().held);

    assert!(store.resume("r", "a", "op").await.unwrap());
    assert!(!store.resume("r", "a", "op").await.unwrap(), "not held");
    let claim = db.claim("r", "a").await.unwrap().unwrap();
    let running = |held| {
        vec![baton_store::RunningAttempt {
            request: "r".into(),
            epoch: claim.fence.epoch,
            held,
        }]
    };
    assert_eq!(store.running_on("a").await.unwrap(), running(false));
    assert!(store.hold("r", "a", "op").await.unwrap());
    assert_eq!(store.running_on("a").await.unwrap(), running(true));
    db.commit(&claim, 0).await.unwrap();
    let output = store.put_payload(b"1".to_vec()).unwrap();
    store
        .finish(&claim.fence, &Outcome::Succeeded(output))
        .await
        .unwrap();
    assert!(!store.request("r").await.unwrap().unwrap().held);
    match store.hold("r", "a", "op").await {
        Err(StoreError::Refused(why)) => {
            assert_eq!(why, "request r cannot be held: it has finished (succeeded)")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.hold("nope", "a", "op").await,
        Err(StoreError::NotFound(_))
    ));

    assert!(store.hold("q", "a", "op").await.unwrap());
    store.cancel("q", "a", "op").await.unwrap();
    assert!(!store.request("q").await.unwrap().unwrap().held);
    let kinds: Vec<EventKind> = store
        .events("r", None, 50)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    let operator: Vec<EventKind> = kinds
        .into_iter()
        .filter(|k| matches!(k, EventKind::Held | EventKind::Resumed))
        .collect();
    assert_eq!(
        operator,
        [EventKind::Held, EventKind::Resumed, EventKind::Held]
    );
}

/// A re-execute from checkpoint k starts a generation with copies of the
/// first k checkpoints, which the next claim replays (even for a flow that
/// does not resume); a fork copies them into a new request and leaves the
/// source as it was; a k past the generation's end is refused.
async fn a_reexecute_from_a_checkpoint_and_a_fork_copy_the_first_checkpoints(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request_with("r", "a", true, false).await;
    let claim = db.claim("r", "a").await.unwrap().unwrap();
    for seq in 0..3 {
        db.commit(&claim, seq).await.unwrap();
    }
    store
        .finish(&claim.fence, &Outcome::error("boom"))
        .await
        .unwrap();
    let names = |records: &[baton_store::CheckpointRecord]| {
        records
            .iter()
            .map(|r| (r.generation, r.seq, r.name.clone()))
            .collect::<Vec<_>>()
    };

    match store.reexecute("r", "a", 60_000, Some(4), "ops").await {
        Err(StoreError::Refused(why)) => assert_eq!(
            why,
            "request r has 3 checkpoints in its current journal generation: \
             choose a checkpoint from 0 to 3"
        ),
        other => panic!("{other:?}"),
    }
    store
        .reexecute("r", "a", 60_000, Some(2), "ops")
        .await
        .unwrap();
    let again = db.claim("r", "a").await.unwrap().unwrap();
    assert_eq!(again.journal.number, 1);
    let replayed = store.journal(&again.journal).await.unwrap();
    assert_eq!(
        names(&replayed),
        [(1, 0, "step-0".to_owned()), (1, 1, "step-1".to_owned())]
    );
    db.commit(&again, 2).await.unwrap();
    let output = store.put_payload(b"1".to_vec()).unwrap();
    store
        .finish(&again.fence, &Outcome::Succeeded(output))
        .await
        .unwrap();

    let new = NewRequest {
        input: store.request("r").await.unwrap().unwrap().input,
        resume: false,
        ..new_request(store, "f1", "a", db.incarnation("a").await)
    };
    store.fork(&new, "r", 1, "ops").await.unwrap();
    let forked = store.request("f1").await.unwrap().unwrap();
    assert_eq!(forked.status, RequestStatus::Queued);
    let claim = db.claim("f1", "a").await.unwrap().unwrap();
    assert_eq!(claim.journal.number, 0);
    assert_eq!(
        names(&store.journal(&claim.journal).await.unwrap()),
        [(0, 0, "step-0".to_owned())]
    );
    let source = store.checkpoints("r", None, 50).await.unwrap();
    assert_eq!(source.len(), 6, "3 + 3, untouched by the fork");
    assert!(matches!(
        store.fork(&new, "nope", 0, "ops").await,
        Err(StoreError::NotFound(_))
    ));
}

/// A purge deletes a finished request with its journal, history and inbox,
/// keeps unfinished requests and a finished child whose parent still runs,
/// and a later request that SQLite gives the purged one's number again
/// finds an empty journal. The blob sweep takes only blobs no row names;
/// one server at a time takes the purge turn.
async fn a_purge_deletes_finished_requests_with_every_row_that_names_them(db: Db) {
    use baton_store::{PurgeFilter, RetentionStore};
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("kept", "a", true).await;
    db.request("parent", "a", true).await;
    db.child("child", "a", "parent").await;
    db.request("done", "a", true).await;
    store
        .send_event("done", "go", "1", None, "op")
        .await
        .unwrap();
    let claim = db.claim("done", "a").await.unwrap().unwrap();
    for seq in 0..2 {
        db.commit(&claim, seq).await.unwrap();
    }
    let output = store.put_payload(b"1".to_vec()).unwrap();
    store
        .finish(&claim.fence, &Outcome::Succeeded(output))
        .await
        .unwrap();
    let child = db.claim("child", "a").await.unwrap().unwrap();
    store
        .finish(&child.fence, &Outcome::error("no"))
        .await
        .unwrap();
    db.claim("parent", "a").await.unwrap().unwrap();

    // A blob a running request names, and one nothing names.
    let kept = db.claim("kept", "a").await.unwrap().unwrap();
    let named = store
        .put_payload(vec![2; baton_store::INLINE_MAX + 1])
        .unwrap();
    store
        .commit_checkpoints(&[CheckpointWrite {
            fence: kept.fence.clone(),
            journal: kept.journal,
            ordinal: kept.appends_at,
            seq: 0,
            name: "big".into(),
            payload: named.clone(),
        }])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let orphan = store
        .put_payload(vec![3; baton_store::INLINE_MAX + 1])
        .unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    let all = PurgeFilter::default();
    assert_eq!(store.count_purgeable(&all).await.unwrap(), 1);
    assert_eq!(store.purge_requests(&all, 500).await.unwrap(), 1);
    assert!(store.request("done").await.unwrap().is_none());
    assert!(store.events("done", None, 50).await.unwrap().is_empty());
    assert_eq!(store.inbox_event("done", "go", 0).await.unwrap(), None);
    for id in ["kept", "parent", "child"] {
        assert!(store.request(id).await.unwrap().is_some(), "{id} is kept");
    }

    // The newest request purged: SQLite numbers the next one the same.
    db.request("last", "a", true).await;
    let last = db.claim("last", "a").await.unwrap().unwrap();
    db.commit(&last, 0).await.unwrap();
    store
        .finish(&last.fence, &Outcome::error("x"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.purge_requests(&all, 500).await.unwrap(), 1);
    db.request("next", "a", true).await;
    let next = db.claim("next", "a").await.unwrap().unwrap();
    if store.backend() == baton_store::Backend::Sqlite {
        assert_eq!(
            next.journal.request, last.journal.request,
            "the number came back"
        );
    }
    assert!(store.journal(&next.journal).await.unwrap().is_empty());

    assert_eq!(store.sweep_blobs(0, true).await.unwrap(), 1);
    assert_eq!(store.sweep_blobs(0, false).await.unwrap(), 1);
    assert!(matches!(
        store.load_payload(&orphan),
        Err(StoreError::MissingBlob { .. })
    ));
    store.load_payload(&named).unwrap();
    assert_eq!(store.sweep_blobs(0, false).await.unwrap(), 0);

    assert!(store.take_purge_turn(60_000).await.unwrap());
    assert!(!store.take_purge_turn(60_000).await.unwrap());
}

/// The transactions that create, finish, cancel and take over requests
/// count them in their minute, per flow and server; a server's checkpoint
/// counts add to the same minute.
async fn the_minutes_count_what_the_transactions_did(db: Db) {
    use baton_store::{MinuteCounts, StatisticsStore, duration_bucket};
    let store = &db.store;
    store.join("dead", None, "d:1").await.unwrap();
    store.join("a", None, "a:1").await.unwrap();
    let from = store.now_ms().await.unwrap() / 60_000 * 60_000;
    for id in ["ok", "fails", "retried", "cancelled"] {
        db.request(id, "a", true).await;
    }
    db.request("moved", "dead", true).await;
    let ok = db.claim("ok", "a").await.unwrap().unwrap();
    let output = store.put_payload(b"1".to_vec()).unwrap();
    store
        .finish(&ok.fence, &Outcome::Succeeded(output))
        .await
        .unwrap();
    let fails = db.claim("fails", "a").await.unwrap().unwrap();
    store
        .finish(&fails.fence, &Outcome::error("no"))
        .await
        .unwrap();
    let retried = db.claim("retried", "a").await.unwrap().unwrap();
    let retry = Outcome::Retry {
        error: "later".into(),
        details: None,
        delay_ms: 60_000,
    };
    store.finish(&retried.fence, &retry).await.unwrap();
    store.cancel("cancelled", "a", "op").await.unwrap();
    db.age().await;
    let b = store.join("b", None, "b:1").await.unwrap();
    store
        .take_over("dead", "b", b, LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    store
        .add_checkpoints("a", &[("f".to_owned(), 7)])
        .await
        .unwrap();

    let to = store.now_ms().await.unwrap() + 60_000;
    let mut per_server = std::collections::BTreeMap::new();
    for row in store.minutes(from, to, 60_000, Some("f")).await.unwrap() {
        assert_eq!(row.flow, "f");
        per_server
            .entry(row.server)
            .or_insert_with(MinuteCounts::default)
            .add(&row.counts);
    }
    let a = &per_server["a"];
    assert_eq!(
        (
            a.started,
            a.succeeded,
            a.failed,
            a.cancelled,
            a.retries,
            a.checkpoints
        ),
        (4, 1, 1, 1, 1, 7)
    );
    // Both ended within seconds of their creation.
    assert_eq!(a.durations.iter().sum::<i64>(), 2);
    assert_eq!(
        a.durations[..=duration_bucket(10_000)].iter().sum::<i64>(),
        2
    );
    assert_eq!(
        (per_server["dead"].started, per_server["b"].takeovers),
        (1, 1)
    );
    assert!(
        store
            .minutes(from, to, 60_000, Some("g"))
            .await
            .unwrap()
            .is_empty()
    );
    // Summed per step: one row per server for a step as long as the window.
    let stepped = store.minutes(from, to, to - from, None).await.unwrap();
    let servers: Vec<(i64, &str, i64)> = stepped
        .iter()
        .map(|row| (row.minute, row.server.as_str(), row.counts.started))
        .collect();
    assert_eq!(servers, [(from, "a", 4), (from, "b", 0), (from, "dead", 1)]);
}

/// Each outcome counts its request's duration in the bucket
/// `duration_bucket` gives it (on PostgreSQL computed in SQL, in the
/// outcome's one statement). Ages sit mid-bucket, away from the bounds.
async fn an_outcome_counts_its_duration_in_its_bucket(db: Db) {
    use baton_store::{MinuteCounts, StatisticsStore, duration_bucket};
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    let from = store.now_ms().await.unwrap() / 60_000 * 60_000;
    let ages = [30_i64, 175, 750, 20_000, 7_200_000, 30_000_000];
    for (i, age) in ages.iter().enumerate() {
        let id = format!("r{i}");
        db.request(&id, "a", true).await;
        let claim = db.claim(&id, "a").await.unwrap().unwrap();
        sqlx::query(&format!(
            "UPDATE requests SET created_at = created_at - {age} WHERE id = $1"
        ))
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
        let outcome = if i % 2 == 0 {
            Outcome::Succeeded(store.put_payload(b"1".to_vec()).unwrap())
        } else {
            Outcome::error("no")
        };
        store.finish(&claim.fence, &outcome).await.unwrap();
    }
    let to = store.now_ms().await.unwrap() + 60_000;
    let mut counted = MinuteCounts::default();
    for row in store.minutes(from, to, 60_000, Some("f")).await.unwrap() {
        counted.add(&row.counts);
    }
    let mut expected = vec![0; baton_core::store::DURATION_BUCKETS];
    for age in ages {
        expected[duration_bucket(age)] += 1;
    }
    assert_eq!(counted.durations, expected);
    assert_eq!((counted.succeeded, counted.failed), (3, 3));
}

/// The due query's time bound bounds its index scan: requests due later
/// (here 20,000 sleepers) are not read by a poll. On PostgreSQL the clock
/// compared per row could not bound it, and every poll read every sleeper.
async fn the_due_query_skips_sleepers_by_its_index(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    seed_sleepers(store, "a", 20_000).await;
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    assert!(due(store, "a").await.is_empty());
    let plan = db.scratch.due_plan("a").await.unwrap();
    let bounded = match store.backend() {
        baton_store::Backend::Sqlite => plan.contains("next_attempt_at<?"),
        baton_store::Backend::Postgres => plan
            .lines()
            .any(|line| line.contains("Index Cond") && line.contains("next_attempt_at <=")),
    };
    assert!(
        bounded,
        "the due time does not bound the index scan:\n{plan}"
    );
}

/// The server listing that the live feed and every scrape read counts no
/// requests (a count grows with the sleepers a server holds, twice a
/// second on every server); the operator's listing counts them, and stops
/// counting past `OWNED_COUNTED_UP_TO`.
async fn only_the_operators_server_listing_counts_owned_requests(db: Db) {
    use baton_core::store::OWNED_COUNTED_UP_TO;
    let store = &db.store;
    for server in ["a", "b", "c"] {
        store.join(server, None, "x:1").await.unwrap();
    }
    for id in ["r1", "r2", "r3"] {
        db.request(id, "a", true).await;
    }
    let claim = db.claim("r3", "a").await.unwrap().unwrap();
    store
        .finish(&claim.fence, &Outcome::error("done"))
        .await
        .unwrap();
    // `b` sleeps on more requests than the listing counts.
    seed_sleepers(store, "b", OWNED_COUNTED_UP_TO + 5).await;
    let owned = |servers: Vec<baton_core::store::ServerRow>| -> Vec<(String, Option<i64>)> {
        servers.into_iter().map(|s| (s.id, s.owned)).collect()
    };
    assert_eq!(
        owned(store.servers_with_owned().await.unwrap()),
        [
            ("a".to_owned(), Some(2)),
            ("b".to_owned(), Some(OWNED_COUNTED_UP_TO + 1)),
            ("c".to_owned(), Some(0)),
        ]
    );
    assert_eq!(
        owned(store.servers().await.unwrap()),
        [
            ("a".to_owned(), None),
            ("b".to_owned(), None),
            ("c".to_owned(), None)
        ]
    );
}

/// `count` requests of `owner` asleep until 2100, inserted in one statement.
async fn seed_sleepers(store: &baton_store::SqlStore, owner: &str, count: i64) {
    let columns = "INSERT INTO requests (id, flow, version, status, owner, epoch, attempts,
                       failures, generation, other_server_retry, resume, next_attempt_at,
                       input_hash, input_size, created_at, updated_at)";
    let row = format!(
        "'s' || i, 'f', 'v1', 'running', '{owner}', 1, 1, 0, 0, 1, 1, 4102444800000 + i, 'h', 2, 0, 0"
    );
    let seed = match store.backend() {
        baton_store::Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
             {columns} SELECT {row} FROM n"
        ),
        baton_store::Backend::Postgres => {
            format!("{columns} SELECT {row} FROM generate_series(1, {count}) AS g(i)")
        }
    };
    sqlx::query(&seed).execute(store.pool()).await.unwrap();
}

async fn an_outcome_reads_back_as_written(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let claim = db.claim("r", "a").await.unwrap().unwrap();
    db.commit(&claim, 0).await.unwrap();
    let output = store.put_payload(b"{\"done\":true}".to_vec()).unwrap();
    store
        .finish(&claim.fence, &Outcome::Succeeded(output.clone()))
        .await
        .unwrap();
    for request in [
        store.request("r").await.unwrap().unwrap(),
        store
            .list_requests(&RequestFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0),
    ] {
        assert_eq!(request.status, RequestStatus::Succeeded);
        assert_eq!(request.output.as_ref(), Some(&output));
        assert_eq!(store.load_payload(&request.input).unwrap(), b"{}");
        assert_eq!(request.last_checkpoint.as_deref(), Some("step-0"));
        assert_eq!(
            (request.attempts, request.epoch, request.error),
            (1, 1, None)
        );
    }
}

async fn racing_detectors_take_over_exactly_once(db: Db) {
    let store = &db.store;
    store.join("dead", None, "d:1").await.unwrap();
    for i in 0..20 {
        db.request(&format!("r{i}"), "dead", true).await;
    }
    db.request("stays", "dead", false).await;
    db.age().await;
    let b = store.join("b", None, "b:1").await.unwrap();
    let c = store.join("c", None, "c:1").await.unwrap();
    let (from_b, from_c) = tokio::join!(
        store.take_over("dead", "b", b, LEASE_MS),
        store.take_over("dead", "c", c, LEASE_MS)
    );
    let (from_b, from_c) = (from_b.unwrap(), from_c.unwrap());
    assert!(from_b.is_some() != from_c.is_some(), "exactly one takeover");
    let moved = from_b.or(from_c).unwrap().requests;
    assert_eq!(moved.len(), 20, "the flow that must stay was not moved");
    let stays = store.request("stays").await.unwrap().unwrap();
    assert_eq!(
        (stays.owner.as_deref(), stays.status),
        (Some("dead"), RequestStatus::WaitingRetry),
        "the flow that must stay shows that it waits for its server"
    );
    let dead = store.server("dead").await.unwrap().unwrap();
    assert_eq!(dead.status.as_str(), "terminated");
}

/// A server found dead while alive (a zombie before its next heartbeat)
/// claims and creates nothing: its own requests, waiting for it, stay for
/// its next incarnation or an operator.
async fn a_server_found_dead_claims_and_creates_nothing(db: Db) {
    let store = &db.store;
    let zombie = store.join("zombie", None, "z:1").await.unwrap();
    db.request("stays", "zombie", false).await;
    db.age().await;
    let b = store.join("b", None, "b:1").await.unwrap();
    store
        .take_over("zombie", "b", b, LEASE_MS)
        .await
        .unwrap()
        .expect("the zombie is found dead");

    let claimed = store.claim("stays", "zombie", zombie).await;
    assert!(
        matches!(claimed, Err(StoreError::Refused(_))),
        "{claimed:?}"
    );
    let created = store
        .create_request(&new_request(store, "new", "zombie", zombie), true)
        .await;
    assert!(
        matches!(created, Err(StoreError::Refused(_))),
        "{created:?}"
    );
    assert!(store.request("new").await.unwrap().is_none());

    // Its next incarnation takes its request back.
    let next = store.join("zombie", None, "z:1").await.unwrap();
    let claim = store.claim("stays", "zombie", next).await.unwrap();
    assert!(
        claim.is_some(),
        "the rejoined server claims its own request"
    );
}

async fn a_dead_server_cannot_take_over(db: Db) {
    let store = &db.store;
    store.join("x", None, "x:1").await.unwrap();
    let y = store.join("y", None, "y:1").await.unwrap();
    db.age().await;
    let z = store.join("z", None, "z:1").await.unwrap();
    store
        .take_over("y", "z", z, LEASE_MS)
        .await
        .unwrap()
        .expect("y is dead");
    // y was found dead; it must not adopt x's requests.
    let refused = store.take_over("x", "y", y, LEASE_MS).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.server("x").await.unwrap().unwrap().status.as_str(),
        "running"
    );
}

async fn a_clean_stop_hands_requests_to_the_cluster(db: Db) {
    let store = &db.store;
    let a = store.join("a", None, "a:1").await.unwrap();
    store.join("b", None, "b:1").await.unwrap();
    db.request("moves", "a", true).await;
    db.request("stays", "a", false).await;
    let claim = db.claim("moves", "a").await.unwrap().unwrap();
    let handed = store.stop_server("a", a).await.unwrap();
    assert_eq!(handed, ["moves"]);
    assert!(matches!(
        db.commit(&claim, 0).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(due(store, "b").await, ["moves"]);
    let taken = db
        .claim("moves", "b")
        .await
        .unwrap()
        .expect("b claims the handed-over request");
    assert_eq!(taken.fence.owner, "b");
    assert_eq!(
        store.server("a").await.unwrap().unwrap().status.as_str(),
        "stopped"
    );
}

/// A write that makes a request of server `a` due tells `a` when it
/// commits: an event sent, a child ended, a hold lifted, requests handed to
/// the cluster. PostgreSQL only; SQLite says it cannot, and the poll finds
/// them there.
async fn another_servers_write_wakes_the_owner(db: Db) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    let b = store.join("b", None, "b:1").await.unwrap();
    let wakes = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
    let listens = store
        .listen_for_wakes("a", {
            let wakes = wakes.clone();
            Box::new(move || {
                wakes.0.fetch_add(1, Ordering::SeqCst);
                wakes.1.notify_one();
            })
        })
        .await
        .unwrap();
    if store.backend() == baton_store::Backend::Sqlite {
        assert!(!listens, "SQLite cannot tell another server");
        return;
    }
    assert!(listens);
    let woken_after = |before: usize| {
        let wakes = wakes.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while wakes.0.load(Ordering::SeqCst) <= before {
                    wakes.1.notified().await;
                }
            })
            .await
            .is_ok()
        }
    };

    db.request("w", "a", true).await;
    let before = wakes.0.load(Ordering::SeqCst);
    store.send_event("w", "go", "{}", None, "op").await.unwrap();
    assert!(woken_after(before).await, "an event sent to a's request");

    store.hold("w", "b", "op").await.unwrap();
    let before = wakes.0.load(Ordering::SeqCst);
    store.resume("w", "b", "op").await.unwrap();
    assert!(woken_after(before).await, "a's request no longer held");

    db.child("c", "b", "w").await;
    let child = db.claim("c", "b").await.unwrap().unwrap();
    let before = wakes.0.load(Ordering::SeqCst);
    store
        .finish(&child.fence, &Outcome::error("no"))
        .await
        .unwrap();
    assert!(woken_after(before).await, "a child of a's request ended");

    db.request("x", "b", true).await;
    let before = wakes.0.load(Ordering::SeqCst);
    assert_eq!(store.stop_server("b", b).await.unwrap(), ["x"]);
    assert!(
        woken_after(before).await,
        "b's requests handed to the cluster"
    );
}

async fn cancel_and_reexecute_follow_the_rules(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    store.join("b", None, "b:1").await.unwrap();
    db.request("r", "a", true).await;
    let claim = db.claim("r", "a").await.unwrap().unwrap();

    let refused = store.reexecute("r", "b", 60_000, None, "ops").await;
    assert!(
        matches!(&refused, Err(StoreError::Refused(why)) if why.contains("it is running")),
        "{refused:?}"
    );

    store
        .finish(&claim.fence, &Outcome::error("boom"))
        .await
        .unwrap();
    store
        .reexecute("r", "b", 60_000, None, "ops")
        .await
        .unwrap();
    let request = store.request("r").await.unwrap().unwrap();
    assert_eq!(
        (request.status, request.owner.as_deref(), request.failures),
        (RequestStatus::WaitingRetry, Some("b"), 0)
    );
    assert!(
        db.claim("r", "a").await.unwrap().is_none(),
        "only the new owner claims it"
    );
    let claim = db.claim("r", "b").await.unwrap().unwrap();

    store.cancel("r", "b", "ops").await.unwrap();
    assert!(matches!(
        db.commit(&claim, 0).await,
        Err(StoreError::Fenced { .. })
    ));
    let again = store.cancel("r", "b", "ops").await;
    assert!(
        matches!(&again, Err(StoreError::Refused(why)) if why.contains("already cancelled")),
        "{again:?}"
    );
    assert!(matches!(
        store.cancel("nope", "b", "ops").await,
        Err(StoreError::NotFound(_))
    ));
    let kinds: Vec<&str> = store
        .events("r", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "attempt",
            "error",
            "reexecuted",
            "attempt",
            "cancelled"
        ]
    );
}

async fn requests_page_newest_first_without_gaps(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    for i in 0..25 {
        db.request(&format!("r{i:02}"), "a", true).await;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_requests(&RequestFilter {
                after: after.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id.clone());
        seen.extend(page.into_iter().map(|r| (r.created_at, r.id)));
    }
    assert_eq!(seen.len(), 25);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first: {seen:?}"
    );
    let queued = store
        .list_requests(&RequestFilter {
            status: Some(RequestStatus::Queued),
            flow: Some("f".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 25);
}

async fn payloads_are_verified_on_read(db: Db) {
    let store = &db.store;
    let small = store.put_payload(b"{\"a\":1}".to_vec()).unwrap();
    assert!(small.inline.is_some());
    assert_eq!(store.load_payload(&small).unwrap(), b"{\"a\":1}");
    let mut tampered = small.clone();
    tampered.inline = Some(b"{\"a\":2}".to_vec());
    assert!(matches!(
        store.load_payload(&tampered),
        Err(StoreError::Corrupt { .. })
    ));

    let big = store.put_payload(vec![7u8; 100_000]).unwrap();
    assert!(big.inline.is_none());
    let path = store.blobs().path(&big.hash);
    assert!(path.starts_with(store.blobs().path("").parent().unwrap()));
    std::fs::write(&path, vec![7u8; 99_999]).unwrap();
    let error = store.load_payload(&big).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("blob {} is corrupted", big.hash)),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        store.load_payload(&big),
        Err(StoreError::MissingBlob { .. })
    ));
}

/// The store's operator transitions do what `baton_core`'s state machine
/// says, for every status and with the owner live or down: the same
/// requests are allowed, they end in the same status with the same owner
/// and epoch, and a refusal gives the state machine's words.
async fn operator_transitions_follow_the_state_machine(db: Db) {
    use baton_core::{Actor, Epoch, OwnerHealth, RequestState, ServerId, Transition};

    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    let statuses = [
        RequestStatus::Queued,
        RequestStatus::Running,
        RequestStatus::WaitingRetry,
        RequestStatus::Succeeded,
        RequestStatus::Error,
        RequestStatus::Cancelled,
    ];
    let transitions = [Transition::Cancel, Transition::Reexecute];
    // Every case gets a request of its own, owned by `a`.
    let cases: Vec<(OwnerHealth, RequestStatus, Transition)> =
        [OwnerHealth::Live, OwnerHealth::Down]
            .into_iter()
            .flat_map(|health| {
                statuses.into_iter().flat_map(move |status| {
                    transitions
                        .into_iter()
                        .map(move |transition| (health, status, transition))
                })
            })
            .collect();
    for (i, (_, status, _)) in cases.iter().enumerate() {
        let id = format!("r{i}");
        db.request(&id, "a", true).await;
        if *status == RequestStatus::Queued {
            continue;
        }
        let claim = db.claim(&id, "a").await.unwrap().unwrap();
        let outcome = match status {
            RequestStatus::Running => continue,
            RequestStatus::WaitingRetry => Outcome::Retry {
                error: "boom".into(),
                details: None,
                delay_ms: 3_600_000,
            },
            RequestStatus::Succeeded => {
                Outcome::Succeeded(store.put_payload(b"1".to_vec()).unwrap())
            }
            RequestStatus::Error => Outcome::error("boom"),
            RequestStatus::Cancelled => {
                store.cancel(&id, "a", "ops").await.unwrap();
                continue;
            }
            RequestStatus::Queued => unreachable!(),
        };
        store.finish(&claim.fence, &outcome).await.unwrap();
    }
    db.age().await;
    store.join("b", None, "b:1").await.unwrap();
    for (i, (health, status, transition)) in cases.into_iter().enumerate() {
        let id = format!("r{i}");
        let before = store.request(&id).await.unwrap().unwrap();
        assert_eq!(before.status, status, "{id} is set up as {status}");
        let state = RequestState {
            status,
            owner: before.owner.as_deref().map(ServerId::new),
            epoch: Epoch(before.epoch),
            asleep: false,
            due: matches!(status, RequestStatus::Queued | RequestStatus::WaitingRetry),
            may_move: true,
        };
        let actor = Actor {
            server: ServerId::new("b"),
            attempt_epoch: None,
            owner: health,
        };
        // `a` stopped heartbeating before `db.age()`: a lease longer than
        // the test finds it live, a short one down.
        let lease_ms = match health {
            OwnerHealth::Down => LEASE_MS,
            _ => 3_600_000,
        };
        let done = match transition {
            Transition::Cancel => store.cancel(&id, "b", "ops").await,
            _ => store.reexecute(&id, "b", lease_ms, None, "ops").await,
        };
        let after = store.request(&id).await.unwrap().unwrap();
        match state.apply(transition, &actor) {
            Ok(next) => {
                assert!(
                    done.is_ok(),
                    "{transition:?} of {status} ({health:?}): {done:?}"
                );
                assert_eq!(
                    (after.status, after.owner.as_deref(), after.epoch),
                    (
                        next.status,
                        next.owner.as_ref().map(|o| o.as_str()),
                        next.epoch.0
                    ),
                    "{transition:?} of {status} ({health:?})"
                );
            }
            Err(refusal) => {
                let expected = format!("request {id} {refusal}");
                assert!(
                    matches!(&done, Err(StoreError::Refused(why)) if *why == expected),
                    "{transition:?} of {status} ({health:?}): {done:?}, expected {expected:?}"
                );
                assert_eq!(
                    (after.status, after.owner, after.epoch),
                    (before.status, before.owner, before.epoch),
                    "a refusal changes nothing"
                );
            }
        }
    }
}

/// An idempotency key names at most one request of a flow, whoever races
/// for it; the refusal names the first request and says whether the input
/// was the same. Another flow's keys are its own.
async fn an_idempotency_key_creates_one_request(db: Db) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    store
        .deploy(&VersionRow {
            hash: "g1".into(),
            flow: "g".into(),
            size: 1,
            properties: Default::default(),
            deployed_at: 0,
        })
        .await
        .unwrap();
    let incarnation = db.incarnation("a").await;
    let keyed = |id: &str, flow: &str, input: &[u8], key: &str| NewRequest {
        flow: flow.into(),
        version: if flow == "f" { "v1" } else { "g1" }.into(),
        input: store.put_payload(input.to_vec()).unwrap(),
        idempotency_key: Some(key.into()),
        ..new_request(store, id, "a", incarnation)
    };
    store
        .create_request(&keyed("first", "f", b"1", "k"), false)
        .await
        .unwrap();
    for (id, input, same) in [("again", b"1", true), ("other", b"2", false)] {
        let taken = store
            .create_request(&keyed(id, "f", input, "k"), true)
            .await;
        assert!(
            matches!(&taken, Err(StoreError::KeyTaken { request, same_input, .. })
                if request == "first" && *same_input == same),
            "{taken:?}"
        );
        assert!(
            store.request(id).await.unwrap().is_none(),
            "{id} was not created"
        );
    }
    store
        .create_request(&keyed("g-first", "g", b"1", "k"), false)
        .await
        .unwrap();

    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (store, new) = (store.clone(), keyed(&format!("race{i}"), "f", b"1", "race"));
            tokio::spawn(async move { store.create_request(&new, false).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, racer) in racers.into_iter().enumerate() {
        match racer.await.unwrap() {
            Ok(_) => winners.push(format!("race{i}")),
            Err(StoreError::KeyTaken { .. }) => {}
            Err(e) => panic!("race{i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    for i in 0..8 {
        let id = format!("race{i}");
        assert_eq!(
            store.request(&id).await.unwrap().is_some(),
            winners.contains(&id),
            "{id}"
        );
    }
}

fn account(name: &str, role: &str) -> AccountRow {
    AccountRow {
        name: name.into(),
        password_hash: "not a real hash".into(),
        role: role.into(),
    }
}

async fn the_last_enabled_admin_is_neither_disabled_nor_deleted(db: Db) {
    let store = &db.store;
    store
        .create_account(&account("root", "admin"))
        .await
        .unwrap();
    store.create_account(&account("v", "viewer")).await.unwrap();
    let last = |result: Result<bool, StoreError>| match result {
        Err(StoreError::Refused(why)) => assert!(why.contains("last enabled admin"), "{why}"),
        other => panic!("the last enabled admin went: {other:?}"),
    };
    last(store.set_disabled("root", true).await);
    last(store.delete_account("root").await);
    assert!(store.account("root").await.unwrap().is_some());
    // Other accounts come and go as before.
    assert!(store.set_disabled("v", true).await.unwrap());
    assert!(store.delete_account("v").await.unwrap());
    assert!(!store.set_disabled("nobody", true).await.unwrap());
    assert!(!store.delete_account("nobody").await.unwrap());
    // A disabled second admin does not count.
    store
        .create_account(&account("second", "admin"))
        .await
        .unwrap();
    assert!(store.set_disabled("second", true).await.unwrap());
    last(store.delete_account("root").await);
    last(store.set_disabled("root", true).await);
    assert!(store.set_disabled("second", false).await.unwrap());
    assert!(store.delete_account("root").await.unwrap());
    last(store.set_disabled("second", true).await);
    assert!(store.account("second").await.unwrap().is_some());
}

/// Two admins disabling each other at once: one of them stays.
async fn racing_disables_leave_an_enabled_admin(db: Db) {
    let store = &db.store;
    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        store.create_account(&account(&a, "admin")).await.unwrap();
        store.create_account(&account(&b, "admin")).await.unwrap();
        // Only these two are enabled admins in this round.
        for name in store.accounts().await.unwrap().into_iter().map(|a| a.0) {
            if name != a && name != b {
                store.delete_account(&name).await.unwrap();
            }
        }
        let (first, second) =
            tokio::join!(store.set_disabled(&a, true), store.set_disabled(&b, true));
        one_of_two_went_through(store, round, &first, &second).await;
    }
}

/// Of two racing changes that would each take an admin away, exactly one
/// went through, and one enabled admin remains.
async fn one_of_two_went_through(
    store: &SqlStore,
    round: usize,
    first: &Result<bool, StoreError>,
    second: &Result<bool, StoreError>,
) {
    let done = [first, second]
        .iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(done, 1, "round {round}: {first:?} {second:?}");
    let enabled_admins = store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, role, disabled)| role == "admin" && *disabled == 0)
        .count();
    assert_eq!(enabled_admins, 1, "round {round}");
}

/// Demoting follows the same rule, also when two admins demote each other
/// at once.
async fn the_last_enabled_admin_is_not_demoted(db: Db) {
    let store = &db.store;
    store
        .create_account(&account("root", "admin"))
        .await
        .unwrap();
    match store.set_role("root", "operator").await {
        Err(StoreError::Refused(why)) => assert!(why.contains("last enabled admin"), "{why}"),
        other => panic!("the last enabled admin was demoted: {other:?}"),
    }
    assert_eq!(store.account("root").await.unwrap().unwrap().role, "admin");
    assert!(!store.set_role("nobody", "viewer").await.unwrap());
    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        store.create_account(&account(&a, "admin")).await.unwrap();
        store.create_account(&account(&b, "admin")).await.unwrap();
        for (name, role, _) in store.accounts().await.unwrap() {
            if role == "admin" && name != a && name != b {
                store.set_role(&name, "viewer").await.unwrap();
            }
        }
        let (first, second) =
            tokio::join!(store.set_role(&a, "operator"), store.set_role(&b, "viewer"));
        one_of_two_went_through(store, round, &first, &second).await;
    }
    // Promoting is always allowed.
    assert!(store.set_role("root", "admin").await.unwrap());
}

/// Expired sessions and tokens are deleted, and only they: a purge that
/// deleted too much would log everyone out.
async fn expired_sessions_and_tokens_are_purged(db: Db) {
    let store = &db.store;
    store
        .create_account(&account("ada", "viewer"))
        .await
        .unwrap();
    store.create_session("old-session", "ada", 1).await.unwrap();
    store
        .create_session("live-session", "ada", 3_600_000)
        .await
        .unwrap();
    store
        .create_token("old-token", "ada", "cli", Some(1))
        .await
        .unwrap();
    store
        .create_token("live-token", "ada", "cli", Some(3_600_000))
        .await
        .unwrap();
    store
        .create_token("lasting-token", "ada", "cli", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.purge_expired_credentials().await.unwrap(), 2);
    assert!(
        store
            .session_account("live-session")
            .await
            .unwrap()
            .is_some()
    );
    for token in ["live-token", "lasting-token"] {
        assert!(
            store.token_account(token).await.unwrap().is_some(),
            "{token}"
        );
    }
    // Already gone: nothing more to delete.
    assert_eq!(store.purge_expired_credentials().await.unwrap(), 0);
}

/// Each body above runs once per backend.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::open(false).await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::open(true).await).await })*
        }
    };
}

on_both_backends!(
    a_start_of_a_replaced_version_creates_nothing,
    an_outcome_commits_its_last_checkpoint_with_it,
    a_stale_epoch_cannot_commit_or_finish,
    a_status_value_is_written_only_under_its_fence,
    an_event_sent_during_an_attempt_is_not_lost,
    an_event_key_keeps_one_event,
    a_cancel_takes_unfinished_descendants_and_an_end_wakes_the_parent,
    a_held_request_is_neither_due_nor_claimed_until_resumed,
    a_reexecute_from_a_checkpoint_and_a_fork_copy_the_first_checkpoints,
    a_purge_deletes_finished_requests_with_every_row_that_names_them,
    the_minutes_count_what_the_transactions_did,
    the_due_query_skips_sleepers_by_its_index,
    the_due_query_looks_ahead_as_far_as_asked,
    an_outcome_counts_its_duration_in_its_bucket,
    only_the_operators_server_listing_counts_owned_requests,
    a_group_commit_fences_each_write_alone,
    an_outcome_reads_back_as_written,
    racing_detectors_take_over_exactly_once,
    a_server_found_dead_claims_and_creates_nothing,
    a_dead_server_cannot_take_over,
    a_clean_stop_hands_requests_to_the_cluster,
    another_servers_write_wakes_the_owner,
    cancel_and_reexecute_follow_the_rules,
    requests_page_newest_first_without_gaps,
    payloads_are_verified_on_read,
    a_new_generation_continues_the_journal_after_the_last_checkpoint,
    a_full_journal_refuses_the_next_checkpoint,
    operator_transitions_follow_the_state_machine,
    an_idempotency_key_creates_one_request,
    expired_sessions_and_tokens_are_purged,
    the_last_enabled_admin_is_neither_disabled_nor_deleted,
    racing_disables_leave_an_enabled_admin,
    the_last_enabled_admin_is_not_demoted,
);

/// A checkpoint of the old epoch still being committed when a takeover
/// appends its fence entry: the journal's key makes the append wait for
/// it, then go after it. The checkpoint stays for the next attempt to
/// replay, and nothing the old attempt commits after it goes in. Only
/// PostgreSQL's writes overlap (SQLite's take turns on one lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_flight_during_a_takeover_stays_before_its_fence() {
    let db = open(true).await;
    let store = &db.store;
    let (first, in_flight, takeover) = a_takeover_waiting_for_a_key(&db).await;
    in_flight.commit().await.unwrap();
    let takeover = takeover.await.unwrap().unwrap().expect("a is dead");
    assert_eq!(takeover.requests, ["r"]);

    assert!(
        matches!(db.commit(&first, 2).await, Err(StoreError::Fenced { .. })),
        "the old attempt commits nothing after the fence"
    );
    let second = db.claim("r", "b").await.unwrap().unwrap();
    let replayed = store.journal(&second.journal).await.unwrap();
    assert_eq!(
        replayed
            .iter()
            .map(|c| (c.seq, c.server.as_str(), c.epoch))
            .collect::<Vec<_>>(),
        [(0, "a", first.fence.epoch), (1, "a", first.fence.epoch)]
    );
    db.commit(&second, 2).await.unwrap();
    assert_eq!(
        store
            .checkpoints("r", None, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|c| (c.seq, c.server.as_str()))
            .collect::<Vec<_>>(),
        [(0, "a"), (1, "a"), (2, "b")]
    );
}

/// Request `r` of server `a`, with one checkpoint; `a` dead, and `b`'s
/// takeover of it waiting, inside its transaction, for the journal key
/// that the old attempt's next checkpoint holds: `a`'s claim, that
/// checkpoint's transaction (not committed yet) and the takeover.
async fn a_takeover_waiting_for_a_key(
    db: &Db,
) -> (
    Claim,
    sqlx::Transaction<'static, sqlx::Any>,
    tokio::task::JoinHandle<Result<Option<baton_store::Takeover>, StoreError>>,
) {
    let store = &db.store;
    store.join("a", None, "a:1").await.unwrap();
    db.request("r", "a", true).await;
    let first = db.claim("r", "a").await.unwrap().unwrap();
    db.commit(&first, 0).await.unwrap();
    let payload = store.put_payload(b"1".to_vec()).unwrap();
    let mut in_flight = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO checkpoints (journal_key, generation, seq, name, server_id, epoch, at, hash, size, inline)
         VALUES ($1, 0, 1, 'step-1', 'a', $2, 0, $3, $4, $5)",
    )
    .bind(first.journal.key(first.appends_at + 1).unwrap())
    .bind(first.fence.epoch)
    .bind(&payload.hash)
    .bind(payload.size)
    .bind(payload.inline.as_deref())
    .execute(&mut *in_flight)
    .await
    .unwrap();
    db.age().await;
    let b = store.join("b", None, "b:1").await.unwrap();
    let takeover = tokio::spawn({
        let store = store.clone();
        async move { store.take_over("a", "b", b, LEASE_MS).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "the fence entry waits for the commit that took its key"
    );
    (first, in_flight, takeover)
}

/// A write dropped inside its transaction (its caller gave up on it)
/// leaves no lock behind: its connection sends the rollback at once rather
/// than when a later write takes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_dropped_in_its_transaction_leaves_no_lock_behind() {
    let db = open(true).await;
    let store = &db.store;
    // Its caller gives up on the takeover while it waits.
    let (_, in_flight, takeover) = a_takeover_waiting_for_a_key(&db).await;
    takeover.abort();
    assert!(takeover.await.unwrap_err().is_cancelled());
    in_flight.commit().await.unwrap();

    // The request's row and the servers' rows are free at once.
    let mut other = store.pool().acquire().await.unwrap();
    sqlx::query("SET lock_timeout = 1000")
        .execute(&mut *other)
        .await
        .unwrap();
    for update in [
        "UPDATE requests SET updated_at = updated_at WHERE id = 'r'",
        "UPDATE servers SET heartbeat_at = heartbeat_at WHERE id IN ('a', 'b')",
    ] {
        sqlx::query(update)
            .execute(&mut *other)
            .await
            .unwrap_or_else(|e| panic!("{update}: {e}"));
    }
    sqlx::query("SET lock_timeout = 0")
        .execute(&mut *other)
        .await
        .unwrap();
    drop(other);
    let b = db.incarnation("b").await;
    let takeover = store.take_over("a", "b", b, LEASE_MS).await.unwrap();
    assert_eq!(takeover.expect("a is dead").requests, ["r"]);
}

/// A server's heartbeat does not wait for a pooled connection: with every
/// one of them held by slow reads (a console user's, say, each allowed up
/// to a lease), a heartbeat waiting its turn would let the server's lease
/// run out and others take its requests over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_goes_through_while_reads_hold_every_pooled_connection() {
    let db = open(true).await;
    let store = &db.store;
    let incarnation = store.join("a", None, "a:1").await.unwrap();
    assert!(store.heartbeat("a", incarnation).await.unwrap());
    // Every connection the pool can open, held; the writes' kept ones go
    // stale meanwhile.
    let mut held = Vec::new();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(Duration::from_millis(500), store.pool().acquire()).await
    {
        held.push(connection);
    }
    assert!(!held.is_empty());
    // More reads queue for a connection, and take whichever comes back.
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let pool = store.pool().clone();
            tokio::spawn(async move {
                let connection = pool.acquire().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(connection);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for beat in 0..3 {
        let answered =
            tokio::time::timeout(Duration::from_secs(5), store.heartbeat("a", incarnation))
                .await
                .unwrap_or_else(|_| panic!("heartbeat {beat} waited for a pooled connection"));
        assert!(answered.unwrap(), "heartbeat {beat}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for read in queued {
        read.abort();
    }
    drop(held);
}

/// A store closed while a write is in flight closes once the write is
/// done: the write's connection goes back to the pool, which waits for it,
/// and is not kept for a next write that will not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_closed_during_a_write_closes_when_the_write_ends() {
    let db = open(true).await;
    let store = &db.store;
    let (_, in_flight, takeover) = a_takeover_waiting_for_a_key(&db).await;
    let closing = tokio::spawn({
        let store = store.clone();
        async move { store.close().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    in_flight.commit().await.unwrap();
    let takeover = takeover.await.unwrap().unwrap();
    assert_eq!(takeover.expect("a is dead").requests, ["r"]);
    tokio::time::timeout(Duration::from_secs(20), closing)
        .await
        .expect("the store closes once its writes are done")
        .unwrap();
}

/// The create and the outcome, each one statement, have one text each:
/// PostgreSQL plans a prepared statement afresh for its first executions
/// on each connection, so a text that varied from call to call (it once
/// named a random statistics shard) was planned on nearly every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_and_an_outcome_each_have_one_statement_text() {
    let db = open(true).await;
    let store = &db.store;
    let incarnation = store.join("a", None, "a:1").await.unwrap();
    // Four writers at once, so that several connections write and some go
    // back to the pool (the last writes' stay kept for writing).
    let writers = (0..4).map(|writer| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..6 {
                let new = new_request(&store, &format!("r{writer}-{i}"), "a", incarnation);
                let claim = store.create_request(&new, true).await.unwrap().unwrap();
                let last = CheckpointWrite {
                    fence: claim.fence.clone(),
                    journal: claim.journal,
                    ordinal: claim.appends_at,
                    seq: 0,
                    name: "step-0".into(),
                    payload: store.put_payload(b"0".to_vec()).unwrap(),
                };
                let output = store.put_payload(b"\"done\"".to_vec()).unwrap();
                store
                    .finish_with_checkpoint(&last, &Outcome::Succeeded(output))
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    // A connection given back is tested by the pool before it is idle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut connections = Vec::new();
    while let Some(connection) = store.pool().try_acquire() {
        connections.push(connection);
    }
    let mut prepared_anywhere = (0, 0);
    for connection in &mut connections {
        let (creates, outcomes): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COUNT(*) FILTER (WHERE statement LIKE 'WITH r AS (INSERT INTO requests%') AS BIGINT),
                    CAST(COUNT(*) FILTER (WHERE statement LIKE '%UPDATE requests SET status%'
                                            AND statement LIKE 'WITH c AS (%') AS BIGINT)
               FROM pg_prepared_statements",
        )
        .fetch_one(&mut **connection)
        .await
        .unwrap();
        assert!(
            creates <= 1 && outcomes <= 1,
            "one connection prepared {creates} creates and {outcomes} outcomes"
        );
        prepared_anywhere.0 += creates;
        prepared_anywhere.1 += outcomes;
    }
    assert!(
        prepared_anywhere.0 >= 1 && prepared_anywhere.1 >= 1,
        "no connection in the pool wrote: {prepared_anywhere:?}"
    );
}

/// A database of its own on which only the first `migrations` have run:
/// its URL, a pool on it, and what keeps it (a folder, a PostgreSQL
/// database).
async fn database_before(
    postgres: bool,
    migrations: usize,
) -> (
    String,
    sqlx::AnyPool,
    (
        tempfile::TempDir,
        Option<std::sync::Arc<baton_store::scratch::ScratchDatabase>>,
    ),
) {
    let dir = tempfile::tempdir().unwrap();
    let database = postgres.then(support::postgres_database);
    let (url, folder) = match &database {
        Some(database) => (database.url.clone(), "postgres"),
        None => (
            format!("sqlite://{}", dir.path().join("baton.db").display()),
            "sqlite",
        ),
    };
    sqlx::any::install_default_drivers();
    use sqlx::migrate::MigrateDatabase;
    sqlx::Any::create_database(&url).await.unwrap();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let mut before = sqlx::migrate::Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(folder),
    )
    .await
    .unwrap();
    let first = before.migrations[..migrations].to_vec();
    assert!(
        first
            .last()
            .is_none_or(|last| last.version == migrations as i64)
    );
    before.migrations = first.into();
    before.run(&pool).await.unwrap();
    (url, pool, (dir, database))
}

/// Migration 0006 re-keys an existing journal by request number and
/// ordinal: a store written before it reads back the same checkpoints and
/// goes on from them.
async fn the_journal_migration_keeps_every_checkpoint(postgres: bool) {
    use sqlx::Executor;
    let (url, pool, kept) = database_before(postgres, 5).await;
    let dir = kept.0.path();
    {
        pool.execute(
            "INSERT INTO flow_versions (hash, flow, size, properties, deployed_at)
                 VALUES ('v1', 'f', 1, '{}', 0);
             INSERT INTO requests (id, flow, version, status, owner, epoch, attempts, failures,
                     generation, other_server_retry, resume, next_attempt_at,
                     input_hash, input_size, input_inline, created_at, updated_at)
                 VALUES ('starts-over', 'f', 'v1', 'waiting_retry', 'a', 2, 2, 1, 1, 1, 0, 0,
                         'h', 0, NULL, 1, 1),
                        ('resumes', 'f', 'v1', 'queued', 'a', 0, 0, 0, 0, 1, 1, 0,
                         'h', 0, NULL, 2, 2);
             INSERT INTO checkpoints (request_id, generation, seq, name, server_id, epoch, at,
                     hash, size, inline)
                 VALUES ('starts-over', 0, 0, 'a0', 'a', 1, 1, 'h', 0, NULL),
                        ('starts-over', 0, 1, 'a1', 'a', 1, 1, 'h', 0, NULL),
                        ('starts-over', 1, 0, 'b0', 'a', 2, 1, 'h', 0, NULL),
                        ('resumes', 0, 0, 'c0', 'a', 1, 1, 'h', 0, NULL),
                        ('resumes', 0, 1, 'c1', 'a', 1, 1, 'h', 0, NULL);",
        )
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqlStore::connect(&url, &dir.join("store")).await.unwrap();
    let names = |records: Vec<baton_store::CheckpointRecord>| {
        records
            .into_iter()
            .map(|c| (c.generation, c.seq, c.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            store
                .checkpoints("starts-over", None, i64::MAX)
                .await
                .unwrap()
        ),
        [
            (0, 0, "a0".into()),
            (0, 1, "a1".into()),
            (1, 0, "b0".into())
        ]
    );
    assert_eq!(
        store
            .request("resumes")
            .await
            .unwrap()
            .unwrap()
            .last_checkpoint
            .as_deref(),
        Some("c1")
    );
    let a = store.join("a", None, "a:1").await.unwrap();

    // Generation 1 holds a checkpoint, so the retry starts generation 2
    // after all three.
    let starts_over = store.claim("starts-over", "a", a).await.unwrap().unwrap();
    assert_eq!(
        (starts_over.journal.number, starts_over.journal.base),
        (2, 3)
    );
    let resumes = store.claim("resumes", "a", a).await.unwrap().unwrap();
    assert_eq!(
        names(store.journal(&resumes.journal).await.unwrap()),
        [(0, 0, "c0".into()), (0, 1, "c1".into())]
    );
    let next = CheckpointWrite {
        fence: resumes.fence.clone(),
        journal: resumes.journal,
        ordinal: resumes.appends_at,
        seq: 2,
        name: "c2".into(),
        payload: store.put_payload(b"2".to_vec()).unwrap(),
    };
    store.commit_checkpoints(&[next]).await.unwrap()[0]
        .as_ref()
        .unwrap();
    assert_eq!(
        store
            .checkpoints("resumes", None, i64::MAX)
            .await
            .unwrap()
            .len(),
        3
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_migration_keeps_every_checkpoint_on_sqlite() {
    the_journal_migration_keeps_every_checkpoint(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_migration_keeps_every_checkpoint_on_postgres() {
    the_journal_migration_keeps_every_checkpoint(true).await;
}

/// SQLite's create and outcome are each one script on the kept writing
/// connection (`BEGIN IMMEDIATE; …; COMMIT` in one call). One stopped midway, by an
/// error (here the write lock, held elsewhere past the busy timeout) or by
/// its caller giving up on it, leaves nothing behind: not its rows, and not
/// an open transaction on the connection for the next write to land in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_write_stopped_midway_leaves_nothing_behind() {
    // A lease of 400 ms: SQLite's busy timeout is half of it.
    let scratch = ScratchStore::open_on("sqlite://", Duration::from_millis(400))
        .await
        .unwrap();
    let store = &scratch.store;
    let incarnation = store.join("a", None, "a:1").await.unwrap();
    let new = |id: &str| new_request(store, id, "a", incarnation);
    let first = store
        .create_request(&new("first"), true)
        .await
        .unwrap()
        .unwrap();
    let output = store.put_payload(b"1".to_vec()).unwrap();
    let succeeded = Outcome::Succeeded(output);

    // Another connection holds the write lock past the busy timeout: the
    // scripts cannot begin.
    let mut blocker = store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let failed = store.create_request(&new("failed"), true).await;
    assert!(failed.is_err(), "{failed:?}");
    let unfinished = store.finish(&first.fence, &succeeded).await;
    assert!(unfinished.is_err(), "{unfinished:?}");
    // A caller that gives up while its script waits for the lock; the lock
    // is let go before the busy timeout, so the script begins (and would
    // go on) after its caller has gone.
    let given_up = tokio::time::timeout(
        Duration::from_millis(50),
        store.create_request(&new("given-up"), true),
    )
    .await;
    assert!(given_up.is_err(), "the create waits for the lock");
    tokio::time::sleep(Duration::from_millis(50)).await;
    sqlx::query("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    drop(blocker);

    // The next writes commit, and nothing of the stopped ones is there
    // (read through other connections, which see only what committed).
    store
        .create_request(&new("second"), true)
        .await
        .unwrap()
        .unwrap();
    store.finish(&first.fence, &succeeded).await.unwrap();
    for stopped in ["failed", "given-up"] {
        assert!(
            store.request(stopped).await.unwrap().is_none(),
            "{stopped} was written"
        );
    }
    assert!(store.request("second").await.unwrap().is_some());
    let first = store.request("first").await.unwrap().unwrap();
    assert_eq!(first.status, RequestStatus::Succeeded);
    let ended: Vec<EventKind> = store
        .events("first", None, 50)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .filter(|k| *k == EventKind::Succeeded)
        .collect();
    assert_eq!(ended, [EventKind::Succeeded]);
}

/// A build with migrations to apply does not apply them while a server of
/// an older build is running on the database (its heartbeat younger than a
/// lease): it would misread what the new build writes (fence entries
/// replayed as checkpoints). A server long dead does not hold it back, and
/// once the live one has stopped, it migrates.
async fn no_migration_runs_under_a_live_server_of_an_older_build(postgres: bool) {
    use sqlx::Executor;
    let known = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(if postgres { "postgres" } else { "sqlite" }),
    )
    .unwrap()
    .count();
    let (url, pool, kept) = database_before(postgres, known - 1).await;
    let storage = kept.0.path().join("store");
    let now = match postgres {
        true => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        false => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    };
    pool.execute(&*format!(
        "INSERT INTO servers (id, name, incarnation, status, address, started_at, heartbeat_at)
         VALUES ('dead', 'dead', 1, 'running', 'dead:1', 0, 0),
                ('old', 'old', 1, 'running', 'old:1', {now}, {now})"
    ))
    .await
    .unwrap();
    let applied = || async {
        let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        applied as usize
    };

    // `baton doctor` sees them too, without writing anything.
    let state = SqlStore::inspect(&url, Duration::from_secs(5))
        .await
        .unwrap();
    let older: Vec<&str> = state
        .older_servers
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(older, ["old"]);

    match SqlStore::open(&url, &storage, Duration::from_secs(5)).await {
        Err(StoreError::Refused(why)) => {
            assert!(why.contains("old (heartbeat"), "{why}");
            assert!(!why.contains("dead"), "{why}");
            assert!(why.contains("1 schema change"), "{why}");
        }
        other => panic!("migrated under a live server: {:?}", other.map(|_| ())),
    }
    assert_eq!(applied().await, known - 1, "nothing was applied");

    pool.execute("UPDATE servers SET status = 'stopped' WHERE id = 'old'")
        .await
        .unwrap();
    let store = SqlStore::open(&url, &storage, Duration::from_secs(5))
        .await
        .unwrap();
    store.close().await;
    assert_eq!(applied().await, known);
}

/// A database on which another server's first migration is under way
/// (the migrations' table made, none applied, so no `servers` table yet)
/// opens and migrates: it has no servers to refuse for. Servers started
/// together on a new database met this.
async fn a_database_whose_first_migration_is_under_way_opens(postgres: bool) {
    let (url, pool, kept) = database_before(postgres, 0).await;
    let state = SqlStore::inspect(&url, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(state.older_servers.is_empty());
    let store = SqlStore::open(&url, &kept.0.path().join("store"), Duration::from_secs(5))
        .await
        .unwrap();
    store.join("a", None, "a:1").await.unwrap();
    store.close().await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_first_migration_is_under_way_opens_on_sqlite() {
    a_database_whose_first_migration_is_under_way_opens(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_first_migration_is_under_way_opens_on_postgres() {
    a_database_whose_first_migration_is_under_way_opens(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_migration_runs_under_a_live_server_of_an_older_build_on_sqlite() {
    no_migration_runs_under_a_live_server_of_an_older_build(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_migration_runs_under_a_live_server_of_an_older_build_on_postgres() {
    no_migration_runs_under_a_live_server_of_an_older_build(true).await;
}
