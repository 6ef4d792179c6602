//! Chaos smoke test: three servers on PostgreSQL, a steady stream of
//! 5-checkpoint requests, kill -9 and SIGSTOP/SIGCONT at seeded random
//! moments, then an invariant checker over everything the cluster recorded.
//! Rerun a failure with `TEST_SEED=<seed printed below>`.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, Setup, Sidecar, wasm};

const REQUESTS: usize = 300;
const KILLS: usize = 20;
const PAUSES: usize = 5;
const STEPS: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_request_exactly_once() {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos seed: {seed} (rerun with TEST_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(Server::start(dir.path(), &format!("c{i}"), &setup).await);
    }
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    // Steps slow enough that every server always has requests in flight.
    sidecar.delay(150);

    // The disruptions, at seeded moments over the submission window.
    let window = Duration::from_secs(60);
    let mut plan: Vec<(Duration, bool)> = (0..KILLS + PAUSES)
        .map(|i| (window.mul_f64(rng.f64()), i < KILLS))
        .collect();
    plan.sort();
    let mut plan = plan.into_iter().peekable();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut submitted = 0;
    let (mut kills, mut pauses) = (0, 0);
    while submitted < REQUESTS || plan.peek().is_some() {
        let now = started.elapsed();
        if let Some(&(at, kill)) = plan.peek()
            && at <= now
        {
            plan.next();
            let victim = rng.usize(..servers.len());
            if kill {
                servers[victim].kill();
                // A crashed server comes back after its lease has run out,
                // so the others take its requests over first.
                tokio::time::sleep(Duration::from_millis(setup.lease_ms + 500)).await;
                servers[victim].restart().await;
                kills += 1;
            } else {
                servers[victim].signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(setup.lease_ms + 600)).await;
                servers[victim].signal(libc::SIGCONT);
                pauses += 1;
            }
            continue;
        }
        let due = window.mul_f64(submitted as f64 / REQUESTS as f64);
        if submitted < REQUESTS && due <= now {
            let target = &servers[rng.usize(..servers.len())];
            let url = format!("{}/api/flows/steps/requests", target.base);
            let input = json!({ "steps": STEPS, "url": sidecar.url }).to_string();
            if let Ok(response) = client
                .post(url)
                .bearer_auth(&target.token)
                .body(input)
                .send()
                .await
                && response.status() == 202
            {
                submitted += 1;
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((kills, pauses), (KILLS, PAUSES));

    // Let the cluster finish everything, then check what it recorded.
    let observer = &servers[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    let requests: Vec<Value> = loop {
        let (_, list) = observer.get("/api/requests?limit=1000").await;
        let list = list.as_array().cloned().unwrap_or_default();
        let unfinished: Vec<&Value> = list
            .iter()
            .filter(|r| r["status"] != "succeeded" && r["status"] != "error")
            .collect();
        if unfinished.is_empty() {
            break list;
        }
        if Instant::now() > deadline {
            let (_, servers_view) = observer.get("/api/servers").await;
            let first = observer
                .request(unfinished[0]["id"].as_str().unwrap())
                .await;
            panic!(
                "seed {seed}: {} requests did not finish, e.g. {first:#}\nservers: {servers_view:#}\n{}",
                unfinished.len(),
                servers
                    .iter()
                    .map(|s| format!("--- {}\n{}", s.name, s.log_text()))
                    .collect::<String>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        requests.len() >= REQUESTS,
        "seed {seed}: {} requests recorded",
        requests.len()
    );

    let expected_sum: i64 = (0..STEPS).map(|i| i * i).sum();
    let mut takeovers = 0;
    for summary in &requests {
        let id = summary["id"].as_str().unwrap();
        let request = observer.request(id).await;
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
        let claims: HashMap<i64, (&str, i64)> = events
            .iter()
            .filter(|e| e["kind"] == "attempt")
            .map(|e| {
                (
                    e["epoch"].as_i64().unwrap(),
                    (e["server"].as_str().unwrap(), e["at"].as_i64().unwrap()),
                )
            })
            .collect();
        for checkpoint in checkpoints {
            let epoch = checkpoint["epoch"].as_i64().unwrap();
            let (server, _) = claims.get(&epoch).unwrap_or_else(|| {
                panic!("seed {seed}: checkpoint at an epoch never claimed: {request:#}")
            });
            assert_eq!(
                *server,
                checkpoint["server"].as_str().unwrap(),
                "seed {seed}: {request:#}"
            );
            let superseded = events
                .iter()
                .filter(|e| e["epoch"].as_i64().is_some_and(|e| e > epoch))
                .map(|e| e["at"].as_i64().unwrap())
                .min();
            if let Some(superseded) = superseded {
                assert!(
                    checkpoint["at"].as_i64().unwrap() <= superseded,
                    "seed {seed}: a write from a stale epoch: {request:#}"
                );
            }
        }
    }
    assert!(
        takeovers > 0,
        "seed {seed}: no takeover happened, the run proves nothing"
    );
    eprintln!(
        "chaos: {} requests, {kills} kills, {pauses} pauses, {takeovers} takeovers",
        requests.len()
    );
}
