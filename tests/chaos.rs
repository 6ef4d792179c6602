//! Chaos test: three servers on a PostgreSQL cluster of the test's own, a
//! steady stream of 5-checkpoint requests, and faults at seeded random
//! moments, free to overlap: kill -9 (restarted once the others have found
//! the server dead), SIGSTOP past the lease, PostgreSQL crash restarts, and
//! a server that stops itself inside a claim's transaction. Then every
//! accepted request is checked one by one, and every side effect is checked
//! against the journal.
//!
//! `BATON_CHAOS_SECS` sets the length of the fault window (default 90),
//! `TEST_SEED` the seed (printed, to rerun a failure).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PrivatePostgres, Server, Setup, Sidecar, wasm};
use tokio::sync::Mutex;

const STEPS: i64 = 5;

/// One fault of the plan.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    RestartPostgres,
}

/// What a kill saw: the server, and whether another server marked it
/// terminated (its takeover transaction ran) before it came back.
struct Kill {
    victim: String,
    taken_over: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_request_exactly_once() {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let secs: u64 = std::env::var("BATON_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    eprintln!("chaos seed: {seed} (rerun with TEST_SEED={seed}), {secs} s of faults");
    let mut rng = fastrand::Rng::with_seed(seed);

    let postgres = Arc::new(PrivatePostgres::start());
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        database: postgres.url("baton"),
        ..Setup::sqlite(dir.path())
    };
    // c0 stops itself inside the first claim transaction of each of its
    // incarnations; a watcher resumes it after the lease.
    let mut faulty = setup.clone();
    faulty.env = vec![("BATON_FAULT".into(), "pause-in-claim".into())];
    let mut servers = Vec::new();
    for i in 0..3 {
        let setup = if i == 0 { &faulty } else { &setup };
        servers.push(Arc::new(Mutex::new(
            Server::start(dir.path(), &format!("c{i}"), setup).await,
        )));
    }
    servers[0].lock().await.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    // Steps slow enough that every server always has requests in flight;
    // step 1 of each request fails once, so every request is claimed again
    // for a retry (where c0 stops inside its claim).
    sidecar.delay(150);
    sidecar.fail_first_per_key("/step/1");
    let lease = Duration::from_millis(setup.lease_ms);

    // The faults, at seeded moments over the window; each runs in a task of
    // its own, so they overlap.
    let window = Duration::from_secs(secs);
    let mut plan: Vec<(Duration, Fault)> = Vec::new();
    for _ in 0..(secs * 2 / 9).max(3) {
        plan.push((window.mul_f64(rng.f64()), Fault::Kill));
    }
    for _ in 0..(secs / 18).max(2) {
        plan.push((window.mul_f64(rng.f64()), Fault::Pause));
    }
    for _ in 0..(secs / 45).max(2) {
        plan.push((window.mul_f64(rng.f64() * 0.9), Fault::RestartPostgres));
    }
    plan.sort_by_key(|(at, _)| *at);
    let started = Instant::now();
    let kills: Arc<std::sync::Mutex<Vec<Kill>>> = Arc::default();
    let mut faults = Vec::new();
    for (at, fault) in plan.clone() {
        let victim = rng.usize(..servers.len());
        let (servers, postgres, kills) = (servers.clone(), postgres.clone(), kills.clone());
        faults.push(tokio::spawn(async move {
            tokio::time::sleep_until((started + at).into()).await;
            match fault {
                Fault::Kill => {
                    let id = {
                        let mut server = servers[victim].lock().await;
                        // A server down already is brought back by the kill
                        // that took it down; and the last server up is not
                        // killed: the promise holds while one server lives.
                        let others_up = servers.iter().enumerate().any(|(i, other)| {
                            i != victim
                                && other.try_lock().is_ok_and(|mut other| other.is_running())
                        });
                        if !server.is_running() || !others_up {
                            return;
                        }
                        server.kill();
                        server.id()
                    };
                    // Back once another server has marked it terminated, so
                    // every kill is followed by a takeover; or after 30 s,
                    // when the others were down too.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let mut taken_over = false;
                    while !taken_over && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        for (i, other) in servers.iter().enumerate() {
                            if i == victim {
                                continue;
                            }
                            let Ok(other) = other.try_lock() else {
                                continue;
                            };
                            let (_, list) = other.get_quietly("/api/servers").await;
                            taken_over |= list.as_array().is_some_and(|list| {
                                list.iter()
                                    .any(|s| s["id"] == id.as_str() && s["status"] == "terminated")
                            });
                        }
                    }
                    servers[victim].lock().await.restart().await;
                    kills.lock().unwrap().push(Kill {
                        victim: id,
                        taken_over,
                    });
                }
                Fault::Pause => {
                    servers[victim].lock().await.signal_quietly(libc::SIGSTOP);
                    tokio::time::sleep(lease + Duration::from_millis(600)).await;
                    servers[victim].lock().await.signal_quietly(libc::SIGCONT);
                }
                Fault::RestartPostgres => {
                    tokio::task::spawn_blocking(move || postgres.restart_immediate())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let watcher = {
        let server = servers[0].clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let paused = server
                    .lock()
                    .await
                    .log_text()
                    .matches("fault point pause-in-claim")
                    .count();
                if paused > seen {
                    seen = paused;
                    tokio::time::sleep(lease + Duration::from_millis(600)).await;
                    server.lock().await.signal_quietly(libc::SIGCONT);
                }
            }
        })
    };

    // Requests at a steady pace over the window, each to a random server;
    // the ids of the accepted ones are kept.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut accepted: Vec<String> = Vec::new();
    let pace = Duration::from_millis(200);
    while started.elapsed() < window {
        let target = servers[rng.usize(..servers.len())].clone();
        let Some((url, token)) = target.try_lock().ok().map(|target| {
            (
                format!("{}/api/flows/steps/requests", target.base),
                target.token.clone(),
            )
        }) else {
            tokio::time::sleep(pace).await;
            continue;
        };
        let input = json!({ "steps": STEPS, "url": sidecar.url }).to_string();
        if let Ok(response) = client.post(url).bearer_auth(token).body(input).send().await
            && response.status() == 202
            && let Ok(body) = response.json::<Value>().await
        {
            accepted.push(body["id"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(pace).await;
    }
    for fault in faults {
        fault.await.unwrap();
    }
    watcher.abort();
    let _ = watcher.await;
    let servers: Vec<Server> = servers
        .into_iter()
        .map(|server| Arc::try_unwrap(server).ok().unwrap().into_inner())
        .collect();
    let pauses_in_claims = servers[0]
        .log_text()
        .matches("fault point pause-in-claim")
        .count();

    // Let the cluster finish everything, then check each accepted request.
    let observer = &servers[1];
    let mut requests = Vec::new();
    for id in &accepted {
        let request = observer.wait_final(id, Duration::from_secs(180)).await;
        requests.push(request);
    }
    let arrivals = sidecar.key_arrivals();
    let expected_sum: i64 = (0..STEPS).map(|i| i * i).sum();
    let mut takeovers = 0;
    for request in &requests {
        assert_eq!(request["status"], "succeeded", "seed {seed}: {request:#}");
        assert_eq!(
            request["output"]["sum"], expected_sum,
            "seed {seed}: {request:#}"
        );
        let events = request["events"].as_array().unwrap();
        let kind = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
        assert_eq!(
            kind("succeeded"),
            1,
            "seed {seed}: succeeded more than once: {request:#}"
        );
        takeovers += kind("taken_over");

        let checkpoints = request["checkpoints"].as_array().unwrap();
        let seqs: Vec<i64> = checkpoints
            .iter()
            .map(|c| c["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..STEPS).collect::<Vec<_>>(),
            "seed {seed}: a sequence number twice or missing: {request:#}"
        );
        // Each checkpoint was written by the attempt that held its epoch,
        // before any later epoch began.
        let claims: HashMap<i64, &str> = events
            .iter()
            .filter(|e| e["kind"] == "attempt")
            .map(|e| (e["epoch"].as_i64().unwrap(), e["server"].as_str().unwrap()))
            .collect();
        for (seq, checkpoint) in checkpoints.iter().enumerate() {
            let epoch = checkpoint["epoch"].as_i64().unwrap();
            let server = claims.get(&epoch).unwrap_or_else(|| {
                panic!("seed {seed}: checkpoint at an epoch never claimed: {request:#}")
            });
            assert_eq!(
                *server,
                checkpoint["server"].as_str().unwrap(),
                "seed {seed}: {request:#}"
            );
            let at = checkpoint["at"].as_i64().unwrap();
            let superseded = events
                .iter()
                .filter(|e| e["epoch"].as_i64().is_some_and(|e| e > epoch))
                .map(|e| e["at"].as_i64().unwrap())
                .min();
            if let Some(superseded) = superseded {
                assert!(
                    at <= superseded,
                    "seed {seed}: a write from a stale epoch: {request:#}"
                );
            }
            // A committed step never runs again: no call with its key
            // arrived after its checkpoint was committed.
            let key = format!("{}-{seq}", request["id"].as_str().unwrap());
            let calls = arrivals.get(&key).cloned().unwrap_or_default();
            assert!(
                calls.iter().all(|&call| call <= at),
                "seed {seed}: step {key} ran again after its commit at {at}: {calls:?} {request:#}"
            );
        }
    }
    // Step 1 runs twice by design (its first call fails); any other step
    // that ran twice was in flight at a fault.
    let ran_twice = arrivals
        .iter()
        .filter(|(key, calls)| !key.ends_with("-1") && calls.len() > 1)
        .count();
    let kills = std::mem::take(&mut *kills.lock().unwrap());
    let not_taken_over: Vec<&str> = kills
        .iter()
        .filter(|kill| !kill.taken_over)
        .map(|kill| kill.victim.as_str())
        .collect();
    assert!(
        not_taken_over.is_empty(),
        "seed {seed}: killed servers never marked terminated: {not_taken_over:?}"
    );
    assert!(
        takeovers > 0,
        "seed {seed}: no request was taken over, the run proves nothing"
    );
    assert!(
        pauses_in_claims > 0,
        "seed {seed}: c0 never stopped inside a claim's transaction"
    );
    let count = |f: fn(&Fault) -> bool| plan.iter().filter(|(_, fault)| f(fault)).count();
    eprintln!(
        "chaos: {} requests in {:.0} s, {} kills, {} pauses, {} PostgreSQL restarts, \
         {pauses_in_claims} pauses inside a claim, {takeovers} requests taken over, \
         {ran_twice} steps run more than once (each in flight at a fault), none after its commit",
        accepted.len(),
        started.elapsed().as_secs_f64(),
        kills.len(),
        count(|f| matches!(f, Fault::Pause)),
        count(|f| matches!(f, Fault::RestartPostgres)),
    );
}
