//! The database's faults, with real processes: PostgreSQL crash-restarted
//! under load on a cluster of the test's own.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{PrivatePostgres, Server, Setup, Sidecar, wasm};

const LONG: Duration = Duration::from_secs(120);

/// Three servers with requests in flight while PostgreSQL restarts
/// (immediate mode: every connection cut) twice: every request succeeds
/// with the right output, each checkpoint is committed once, and no server
/// is marked terminated for the outage alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_under_load_loses_nothing_and_kills_no_server() {
    let postgres = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        database: postgres.url("baton"),
        ..Setup::sqlite(dir.path())
    };
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(Server::start(dir.path(), &format!("p{i}"), &setup).await);
    }
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(100);

    const STEPS: u64 = 20;
    let mut ids = Vec::new();
    for i in 0..12 {
        let server = &servers[i % servers.len()];
        ids.push(
            server
                .start_request("steps", json!({ "steps": STEPS, "url": sidecar.url }))
                .await,
        );
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        postgres.restart_immediate();
    }

    let expected: u64 = (0..STEPS).map(|i| i * i).sum();
    for id in &ids {
        let request = servers[0].wait_final(id, LONG).await;
        assert_eq!(request["status"], "succeeded", "{request:#}");
        assert_eq!(request["output"]["sum"], expected, "{request:#}");
        let seqs: Vec<u64> = request["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..STEPS).collect::<Vec<_>>(), "{request:#}");
    }
    let (_, list) = servers[0].get("/api/servers").await;
    for server in list.as_array().unwrap() {
        assert_eq!(
            (server["status"].as_str(), server["incarnation"].as_i64()),
            (Some("running"), Some(1)),
            "no server was found dead for the outage: {list:#}"
        );
    }
}
