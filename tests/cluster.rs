//! Three real server processes on PostgreSQL sharing one storage folder:
//! failover after kill -9, a paused owner, a clean stop, flows that must
//! stay, re-execution.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, Setup, Sidecar, eventually, wasm};

const LONG: Duration = Duration::from_secs(90);

async fn cluster(dir: &std::path::Path, setup: &Setup, n: usize) -> Vec<Server> {
    let mut servers = Vec::new();
    for i in 0..n {
        servers.push(Server::start(dir, &format!("s{i}"), setup).await);
    }
    servers
}

/// The checkpoints of a request as `(seq, server id, epoch)`.
fn checkpoints(request: &Value) -> Vec<(i64, String, i64)> {
    support::checkpoints(request)
        .into_iter()
        .map(|c| (c.seq, c.server, c.epoch))
        .collect()
}

fn assert_each_seq_once(request: &Value, steps: i64) {
    let seqs: Vec<i64> = checkpoints(request).iter().map(|c| c.0).collect();
    assert_eq!(seqs, (0..steps).collect::<Vec<_>>(), "{request:#}");
}

fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// A request waiting for an event on a server that is killed: another
/// server takes it over, and the event sent there wakes it and is
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_a_waiting_request_whose_server_died() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("waiter")).await;

    let id = servers[0]
        .start_request(
            "waiter",
            json!({ "name": "go", "waits": 1, "timeout_ms": 600_000 }),
        )
        .await;
    servers[1]
        .wait_request(&id, LONG, |r| {
            r["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "sleeping")
        })
        .await;
    let owner = servers[0].id();
    servers[0].kill();
    servers[1]
        .wait_request(&id, LONG, |r| r["owner"] != owner.as_str())
        .await;

    let (status, body) = servers[1]
        .post(&format!("/api/requests/{id}/events/go"), r#"{"ok": true}"#)
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let done = servers[1].wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["output"], json!([{ "ok": true }]));
    let names: Vec<String> = support::checkpoints(&done)
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["baton:wait:go", "baton:event:go", "done"]);
    assert_ne!(done["owner"], owner.as_str());
}

/// A parent and its children on a server that dies: another server takes
/// them all over, the children get their decisions there, and the parent,
/// woken by its children's ends, finishes with no child created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_and_its_children_survive_their_servers_death() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("approval")).await;
    servers[0].deploy(wasm("review")).await;

    let parent = servers[0]
        .start_request(
            "approval",
            json!({ "subject": "laptop", "reviewers": ["ada", "bob"] }),
        )
        .await;
    let waiting = servers[1]
        .wait_request(&parent, LONG, |r| {
            r["children"].as_array().is_some_and(|c| c.len() == 2)
                && r["waiting_for"].as_str().is_some()
        })
        .await;
    let children: Vec<String> = waiting["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    for child in &children {
        servers[1]
            .wait_request(child, LONG, |r| r["waiting_for"] == "decision")
            .await;
    }
    let owner = servers[0].id();
    servers[0].kill();
    for child in &children {
        servers[1]
            .wait_request(child, LONG, |r| r["owner"] != owner.as_str())
            .await;
        let (status, body) = servers[1]
            .post(
                &format!("/api/requests/{child}/events/decision"),
                r#"{"approved": true}"#,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    }
    let done = servers[1].wait_final(&parent, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["output"]["approved_by"], json!(["ada", "bob"]));
    assert_ne!(done["owner"], owner.as_str());
    let (_, listed) = servers[1]
        .get(&format!("/api/requests?parent={parent}"))
        .await;
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut started: Vec<&str> = children.iter().map(String::as_str).collect();
    started.sort();
    assert_eq!(listed, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_moves_the_request_to_another_server() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 3).await;
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(250);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 10, "url": sidecar.url }))
        .await;
    let before = servers[1]
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 3
        })
        .await;
    let owner = servers[0].id();
    servers[0].kill();
    let committed = before["checkpoints"].as_array().unwrap().len() as u32;

    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["output"]["sum"], sum_of_squares(10));
    assert_each_seq_once(&request, 10);
    let new_owner = request["owner"].as_str().unwrap();
    assert_ne!(new_owner, owner);
    // Steps committed before the kill were not run again.
    for step in 0..committed {
        assert_eq!(
            sidecar.calls(&format!("/step/{step}")),
            1,
            "step {step} repeated"
        );
    }
    let events: Vec<&str> = request["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"taken_over"), "{events:?}");
    let servers_view = servers[1].get("/api/servers").await.1;
    let dead = servers_view
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == owner.as_str())
        .unwrap();
    assert_eq!(dead["status"], "terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_writes_nothing_after_losing_its_request_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let servers = cluster(dir.path(), &setup, 3).await;
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(250);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 10, "url": sidecar.url }))
        .await;
    servers[1]
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 2
        })
        .await;
    let paused = servers[0].id();
    servers[0].signal(libc::SIGSTOP);
    let request = servers[1].wait_final(&id, LONG).await;
    servers[0].signal(libc::SIGCONT);
    assert_eq!(request["status"], "succeeded", "{request:#}");

    // The paused server comes back, learns it was found dead, and rejoins.
    let rejoined = eventually(LONG, "the paused server to rejoin", async || {
        let (_, list) = servers[1].get("/api/servers").await;
        list.as_array()?
            .iter()
            .find(|s| {
                s["id"] == paused.as_str()
                    && s["status"] == "running"
                    && s["incarnation"].as_i64() > Some(1)
            })
            .cloned()
    })
    .await;
    assert!(
        rejoined["heartbeat_age_ms"].as_i64() < Some(setup.lease_ms as i64),
        "the rejoined server heartbeats: {rejoined:#}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let after = servers[1].request(&id).await;
    assert_eq!(
        checkpoints(&after),
        checkpoints(&request),
        "nothing was written after the move"
    );
    assert_each_seq_once(&after, 10);
    let takeover_epoch = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "taken_over")
        .and_then(|e| e["epoch"].as_i64())
        .expect("a takeover event");
    for (seq, server, epoch) in checkpoints(&after) {
        assert!(
            server != paused || epoch < takeover_epoch,
            "checkpoint {seq} written by the paused server at epoch {epoch}"
        );
    }
    assert_eq!(after["status"], "succeeded");
    assert!(
        servers[0]
            .log_text()
            .contains("found marked dead while alive")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_requests_over_without_waiting_for_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::postgres(dir.path());
    // A lease far longer than the test: only a handover can move the request.
    setup.lease_ms = 120_000;
    let mut servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(200);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 8, "url": sidecar.url }))
        .await;
    servers[1]
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 2
        })
        .await;
    let stopping = servers[0].id();
    servers[0].signal(libc::SIGTERM);
    assert!(servers[0].wait_exit().success(), "a clean stop exits 0");

    let request = servers[1].wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["owner"], servers[1].id().as_str());
    assert_each_seq_once(&request, 8);
    let (_, list) = servers[1].get("/api/servers").await;
    let stopped = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == stopping.as_str())
        .unwrap()
        .clone();
    assert_eq!(stopped["status"], "stopped");
}

/// Two servers; a `steps-local` request (its flow must stay) started on the
/// first, which is killed once two steps are committed; returned when the
/// request shows as waiting for its dead owner, with that view of it.
struct StrandedRequest {
    servers: Vec<Server>,
    sidecar: Sidecar,
    id: String,
    owner: String,
    waiting: Value,
    _dir: tempfile::TempDir,
}

async fn stranded_request() -> StrandedRequest {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("steps_local")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(200);

    let id = servers[0]
        .start_request("steps-local", json!({ "steps": 6, "url": sidecar.url }))
        .await;
    servers[1]
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 2
        })
        .await;
    let owner = servers[0].id();
    servers[0].kill();

    // The owner is found dead, but the request is not moved: it shows as
    // waiting for a retry by its own server, which nothing runs now.
    let waiting = servers[1]
        .wait_request(&id, LONG, |r| r["status"] == "waiting_retry")
        .await;
    assert_eq!(waiting["owner"], owner.as_str(), "{waiting:#}");
    StrandedRequest {
        servers,
        sidecar,
        id,
        owner,
        waiting,
        _dir: dir,
    }
}

/// A clean stop whose drain outlasts the lease (an attempt spinning in the
/// guest, deaf to interrupts until its time limit) keeps heartbeating, so it
/// hands its requests over instead of being found dead and taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_with_a_slow_drain_hands_over_instead_of_being_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("endless_loop")).await;
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(200);

    let spinning = servers[0].start_request("endless-loop", json!({})).await;
    let id = servers[0]
        .start_request("steps", json!({ "steps": 8, "url": sidecar.url }))
        .await;
    for request in [&spinning, &id] {
        servers[1]
            .wait_request(request, LONG, |r| {
                !r["checkpoints"].as_array().unwrap().is_empty()
            })
            .await;
    }
    servers[0].signal(libc::SIGTERM);
    assert!(servers[0].wait_exit().success(), "a clean stop exits 0");

    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    let events: Vec<&str> = request["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(events.contains(&"handed_over"), "{request:#}");
    assert!(!events.contains(&"taken_over"), "{request:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_that_must_stay_waits_for_its_own_server() {
    let StrandedRequest {
        mut servers,
        sidecar: _sidecar,
        id,
        owner,
        waiting,
        _dir,
    } = stranded_request().await;
    let events: Vec<&str> = waiting["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(events.contains(&"owner_down"), "{waiting:#}");
    assert!(!events.contains(&"taken_over"), "{waiting:#}");

    servers[0].restart().await;
    let request = servers[0].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["owner"], owner.as_str());
    let writers: HashSet<String> = checkpoints(&request).into_iter().map(|c| c.1).collect();
    assert_eq!(writers, HashSet::from([owner]));
}

/// The product's own scenario: a request whose flow must stay, on a server
/// that dies for good, is re-executed from another server, which becomes its
/// owner and finishes it (it answered 409 "it is running" for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecute_rescues_a_dead_servers_request_that_must_stay() {
    let StrandedRequest {
        servers,
        sidecar,
        id,
        owner: _,
        waiting,
        _dir,
    } = stranded_request().await;
    let (status, body) = servers[1]
        .post(&format!("/api/requests/{id}/reexecute"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["owner"], servers[1].id().as_str());
    assert_each_seq_once(&request, 6);
    assert_eq!(
        request["output"]["sum"].as_u64(),
        Some(sum_of_squares(6)),
        "{request:#}"
    );
    // The steps the dead server committed were replayed, not run again.
    let committed_by_dead = checkpoints(&waiting).len();
    for step in 0..committed_by_dead {
        assert_eq!(sidecar.calls(&format!("/step/{step}")), 1, "step {step}");
    }
}

/// A server stopped while it holds a claim's row lock on PostgreSQL must not
/// freeze the others: its transaction is ended by the database within half
/// a lease, the others keep heartbeating, take it over and finish its work.
/// (Without the timeouts, the takeover waited on the lock for ever, the
/// detectors' heartbeats with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_paused_inside_a_claim_transaction_stalls_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut faulty = setup.clone();
    faulty.env = vec![("BATON_FAULT".into(), "pause-in-claim".into())];
    let servers = [
        Server::start(dir.path(), "s0", &faulty).await,
        Server::start(dir.path(), "s1", &setup).await,
        Server::start(dir.path(), "s2", &setup).await,
    ];
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    // Step 1 fails once, so s0 claims the request again for its retry,
    // and stops inside that claim's transaction.
    sidecar.fail("/step/1", 1);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 4, "url": sidecar.url }))
        .await;
    let paused = servers[0].id();
    eventually(LONG, "s0 to stop at its fault point", async || {
        servers[0]
            .log_text()
            .contains("fault point pause-in-claim")
            .then_some(())
    })
    .await;

    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_ne!(request["owner"], paused.as_str(), "{request:#}");
    assert_each_seq_once(&request, 4);
    let (_, list) = servers[1].get("/api/servers").await;
    for server in list.as_array().unwrap() {
        if server["id"] == paused.as_str() {
            assert_eq!(server["status"], "terminated", "{list:#}");
        } else {
            assert_eq!(
                (server["status"].as_str(), server["incarnation"].as_i64()),
                (Some("running"), Some(1)),
                "no live server was found dead: {list:#}"
            );
        }
    }

    servers[0].signal(libc::SIGCONT);
    eventually(LONG, "the paused server to rejoin", async || {
        let (_, list) = servers[1].get("/api/servers").await;
        list.as_array()?
            .iter()
            .find(|s| s["id"] == paused.as_str() && s["incarnation"].as_i64() > Some(1))
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = servers[1].request(&id).await;
    assert_eq!(
        checkpoints(&after),
        checkpoints(&request),
        "the paused server wrote nothing stale"
    );
}

/// Servers judge each other by one lease: the first server stores it, and
/// a server started with another one refuses to start, saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_lease_refuses_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let _first = Server::start(dir.path(), "first", &setup).await;
    let other = Setup {
        lease_ms: setup.lease_ms * 3,
        ..setup.clone()
    };
    let Err(log) = Server::try_start(dir.path(), "second", &other).await else {
        panic!("a server with another lease joined");
    };
    assert!(
        log.contains(&format!("the cluster's lease is {} ms", setup.lease_ms))
            && log.contains(&format!("--lease-ms {}", setup.lease_ms)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecute_makes_the_calling_server_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let servers = cluster(dir.path(), &setup, 2).await;
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 3);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 3, "url": sidecar.url }))
        .await;
    let failed = servers[0].wait_final(&id, LONG).await;
    assert_eq!(failed["status"], "error", "{failed:#}");

    let (status, refused) = servers[1].post("/api/requests/nope/reexecute", "").await;
    assert_eq!(status, 404, "{refused}");
    let (status, body) = servers[1]
        .post(&format!("/api/requests/{id}/reexecute"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["owner"], servers[1].id().as_str());
    let (status, body) = servers[0]
        .post(&format!("/api/requests/{id}/reexecute"), "")
        .await;
    assert_eq!(
        status, 409,
        "a succeeded request is not re-executed: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("succeeded"));
    // Step 0 was committed by the first owner and replayed by the second.
    assert_eq!(sidecar.calls("/step/0"), 1);
}

/// The process's output once it exited; killed, with a failed test, when
/// it runs past `limit`.
fn exits_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the process still ran after {limit:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_data_folder_is_refused_while_its_original_lives() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let original = Server::start(dir.path(), "original", &setup).await;
    let clone = dir.path().join("clone");
    std::fs::create_dir_all(&clone).unwrap();
    // The whole folder: also the record of the original's join, which names
    // the folder it joined from, so the copy still watches the heartbeat.
    for file in ["server-id", "last-join"] {
        std::fs::copy(original.data.join(file), clone.join(file)).unwrap();
    }

    let clone_process = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("up")
        .arg("--data")
        .arg(&clone)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            &setup.database,
            "--heartbeat-ms",
            "200",
            "--lease-ms",
            "1000",
        ])
        .arg("--storage")
        .arg(&setup.storage)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A clone that joined would run for ever: fail instead of hanging.
    let output = exits_within(clone_process, Duration::from_secs(30));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already heartbeating from another live process"),
        "{stderr}"
    );

    // A second process on the same data folder is refused at once.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("up")
        .arg("--data")
        .arg(&original.data)
        .args(["--listen", "127.0.0.1:0", "--database", &setup.database])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another baton process"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_keeps_its_version_across_a_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 2).await;
    let v1 = servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(250);

    let id = servers[0]
        .start_request("steps", json!({ "steps": 8, "url": sidecar.url }))
        .await;
    servers[1]
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 2
        })
        .await;
    // Version 2 becomes active while the version 1 request runs.
    let v2 = servers[1].deploy(wasm("steps_v2")).await;
    assert_ne!(v1, v2);
    let (_, flows) = servers[1].get("/api/flows").await;
    assert_eq!(flows[0]["version"], v2.as_str());
    // Every server loads the new active version: their flow-sets agree.
    eventually(
        LONG,
        "both servers to report the same flow-set",
        async || {
            let (_, list) = servers[1].get("/api/servers").await;
            let sets: Vec<&str> = list
                .as_array()?
                .iter()
                .filter_map(|s| s["flow_set"].as_str())
                .collect();
            (sets.len() == 2 && sets[0] == sets[1]).then_some(())
        },
    )
    .await;
    // The server that started version 1 starts version 2 now, though the
    // deploy came through the other server.
    let after = servers[0]
        .start_request("steps", json!({ "steps": 2 }))
        .await;
    let (_, created) = servers[0].get(&format!("/api/requests/{after}")).await;
    assert_eq!(created["version"], v2.as_str());
    servers[0].kill();

    let request = servers[1].wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(
        request["version"],
        v1.as_str(),
        "the request kept its version"
    );
    assert_eq!(
        request["output"]["sum"],
        sum_of_squares(8),
        "version 1 finished it"
    );
    assert_eq!(request["owner"], servers[1].id().as_str());

    // New requests run the active version.
    let fresh = servers[1]
        .start_request("steps", json!({ "steps": 2 }))
        .await;
    let fresh = servers[1].wait_final(&fresh, LONG).await;
    assert_eq!(fresh["version"], v2.as_str());
    assert_eq!(fresh["output"]["sum"], 1_000_001);

    // A version whose component is gone from the storage path: an error
    // naming the hash, never another version.
    let blob = setup.storage.join("objects").join(&v1[..2]).join(&v1[2..]);
    std::fs::remove_file(&blob).unwrap();
    let mut stale = servers.remove(0);
    stale.restart().await;
    let (status, _) = stale.post("/api/flows", wasm("steps")).await;
    assert_eq!(
        status, 201,
        "redeploying v1 makes it active and restores its blob"
    );
    std::fs::remove_file(&blob).unwrap();
    std::fs::remove_dir_all(stale.data.join("compiled")).ok();
    stale.restart().await;
    // The restarted server cannot load the active version: its flow-set
    // differs from the others', which the Server List shows as drift.
    let (a, b) = (stale.id(), servers[0].id());
    eventually(LONG, "the flow-sets to differ", async || {
        let (_, list) = stale.get("/api/servers").await;
        let set = |id: &str| {
            list.as_array()?.iter().find(|s| s["id"] == id)?["flow_set"]
                .as_str()
                .map(str::to_owned)
        };
        let (mine, theirs) = (set(&a)?, set(&b)?);
        (mine != theirs).then_some(())
    })
    .await;
    let orphan = stale.start_request("steps", json!({ "steps": 1 })).await;
    let orphan = stale.wait_final(&orphan, LONG).await;
    assert_eq!(orphan["status"], "error", "{orphan:#}");
    assert!(
        orphan["error"].as_str().unwrap().contains(&v1),
        "{orphan:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_tick_while_a_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = cluster(dir.path(), &setup, 3).await;
    servers[0].deploy(wasm("hello")).await;
    let schedule = json!({ "name": "tick", "flow": "hello", "cron": "* * * * * *", "input": { "name": "cron" } });
    let (status, body) = servers[0]
        .post("/api/schedules", schedule.to_string())
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = servers[0]
        .post(
            "/api/schedules",
            json!({ "name": "bad", "flow": "hello", "cron": "99 * * * * *" }).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = servers[0]
        .post(
            "/api/schedules",
            json!({ "name": "zoned", "flow": "hello", "cron": "0 30 9 * * *", "tz": "Mars/Olympus" })
                .to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown time zone \"Mars/Olympus\""),
        "{body}"
    );
    // A zoned schedule's next tick is 09:30 on Berlin's clock, whatever
    // Berlin's offset is on that day.
    let (status, body) = servers[0]
        .post(
            "/api/schedules",
            json!({ "name": "zoned", "flow": "hello", "cron": "0 30 9 * * *", "tz": "Europe/Berlin" })
                .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tz"], "Europe/Berlin");
    let next = jiff::Timestamp::from_millisecond(body["next_fire_at"].as_i64().unwrap())
        .unwrap()
        .in_tz("Europe/Berlin")
        .unwrap();
    assert_eq!(
        (next.hour(), next.minute(), next.second()),
        (9, 30, 0),
        "{next}"
    );
    let (status, _) = servers[0].delete("/api/schedules/zoned").await;
    assert_eq!(status, 200);

    tokio::time::sleep(Duration::from_secs(3)).await;
    servers[0].kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = servers[1].delete("/api/schedules/tick").await;
    assert_eq!(status, 200);

    let (_, list) = servers[1].get("/api/requests?flow=hello&limit=1000").await;
    let mut ticks: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .unwrap()
                .strip_prefix("tick-")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    ticks.sort();
    assert!(ticks.len() >= 6, "{ticks:?}");
    // One request per second, no tick missing, none twice, across the kill.
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "{ticks:?}");
    }
    for id in list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
    {
        let request = servers[1].wait_final(&id, LONG).await;
        assert_eq!(request["output"]["greeting"], "Hello, cron!", "{request:#}");
    }
}
