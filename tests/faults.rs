//! The database's faults, with real processes: PostgreSQL crash-restarted
//! under load on a cluster of the test's own, and answers lost on the way
//! back from PostgreSQL.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{LossyProxy, PrivatePostgres, Server, Setup, Sidecar, wasm};

const LONG: Duration = Duration::from_secs(120);

/// Three servers with requests in flight while PostgreSQL restarts
/// (immediate mode: every connection cut) twice: every request succeeds
/// with the right output, each checkpoint is committed once, and no server
/// is marked terminated for the outage alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_under_load_loses_nothing_and_kills_no_server() {
    let postgres = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let servers = three_servers(&postgres, dir.path()).await;
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
    assert_none_found_dead(&servers).await;
}

/// Three servers on the database `baton` of `postgres`.
async fn three_servers(postgres: &PrivatePostgres, dir: &std::path::Path) -> Vec<Server> {
    let setup = Setup {
        database: postgres.url("baton"),
        ..Setup::sqlite(dir)
    };
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(Server::start(dir, &format!("s{i}"), &setup).await);
    }
    servers
}

/// Every server is still running as its first incarnation: none was found
/// dead for the outage. On a failure, says what each server logged about
/// heartbeats and takeovers.
async fn assert_none_found_dead(servers: &[Server]) {
    let (_, list) = servers[0].get("/api/servers").await;
    for server in list.as_array().unwrap() {
        assert_eq!(
            (server["status"].as_str(), server["incarnation"].as_i64()),
            (Some("running"), Some(1)),
            "no server was found dead for the outage: {list:#}\n{}",
            judged(servers)
        );
    }
}

/// On a failure, what each server logged about heartbeats and takeovers.
fn judged(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|server| {
            let lines: Vec<String> = server
                .log_text()
                .lines()
                .filter(|l| {
                    ["heartbeat", "took over", "dead", "rejoin", "lease"]
                        .iter()
                        .any(|word| l.contains(word))
                })
                .map(str::to_owned)
                .collect();
            format!("{}:\n{}", server.name, lines.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// PostgreSQL away for four seconds, then back: the servers' heartbeats
/// come back with it, and none is found dead by another. (The heartbeat
/// loop used to wait on a status read started during the outage, whose
/// pool connect backs off for up to two seconds between tries.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_for_seconds_kills_no_server() {
    let postgres = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let servers = three_servers(&postgres, dir.path()).await;
    for _ in 0..2 {
        postgres.stop_immediate();
        tokio::time::sleep(Duration::from_secs(4)).await;
        postgres.resume();
        // Three leases: time enough for a judge to find someone dead.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert_none_found_dead(&servers).await;
}

/// A read or a write right after PostgreSQL restarted, before anything
/// else touched the database, is answered: the store's idle connections
/// (the pool's, and those kept for writing) all died with the restart, and
/// none of them is handed to a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_or_write_after_a_postgres_restart_meets_no_dead_connection() {
    use baton_store::{ServerStore, SqlStore};
    let postgres = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&postgres.url("baton"), dir.path())
        .await
        .unwrap();
    // Several reads and writes at once leave several idle connections in
    // the pool and some kept for writing.
    let warm = (0..6).map(|_| store.servers());
    for listed in futures_util::future::join_all(warm).await {
        listed.unwrap();
    }
    let joined = (0..4).map(|i| {
        let id = format!("s{i}");
        let store = store.clone();
        async move { store.join(&id, None, &format!("{id}:1")).await }
    });
    for incarnation in futures_util::future::join_all(joined).await {
        incarnation.unwrap();
    }
    postgres.restart_immediate();
    for read in 0..12 {
        if let Err(e) = store.servers().await {
            panic!("read {read} after the restart: {e}");
        }
    }
    for write in 0..4 {
        if let Err(e) = store.join(&format!("s{write}"), None, "again").await {
            panic!("write {write} after the restart: {e}");
        }
    }
}

/// Two servers reach PostgreSQL through a proxy that loses answers (the
/// statement applied, the reply gone, the connection cut) and delays the
/// rest: claims, checkpoint commits, outcomes and heartbeats all meet it.
/// Every request succeeds, each checkpoint is committed once, and no step
/// runs again after its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_leave_nothing_stuck_or_doubled() {
    let database = support::postgres_database();
    let proxy = LossyProxy::start(5432).await;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        database: database.url.replace(":5432/", &format!(":{}/", proxy.port)),
        postgres: Some(database.clone()),
        ..Setup::sqlite(dir.path())
    };
    let servers = [
        Server::start(dir.path(), "l0", &setup).await,
        Server::start(dir.path(), "l1", &setup).await,
    ];
    servers[0].deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(20);

    const STEPS: u64 = 20;
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(
            servers[i % 2]
                .start_request("steps", json!({ "steps": STEPS, "url": sidecar.url }))
                .await,
        );
    }
    proxy.delay(2);
    proxy.lose(30);

    // The servers' own reads go through the proxy too: a poll may get 503.
    for id in &ids {
        support::eventually(LONG, "the request to finish", async || {
            let (_, request) = servers[0].get_quietly(&format!("/api/requests/{id}")).await;
            matches!(
                request["status"].as_str(),
                Some("succeeded" | "error" | "cancelled")
            )
            .then_some(())
        })
        .await;
    }
    proxy.lose(0);
    let cut = proxy.cut();
    let expected: u64 = (0..STEPS).map(|i| i * i).sum();
    let mut finished = Vec::new();
    for id in &ids {
        finished.push(servers[0].request(id).await);
    }
    let arrivals = sidecar.key_arrivals();
    for request in &finished {
        assert_eq!(request["status"], "succeeded", "{request:#}");
        assert_eq!(request["output"]["sum"], expected, "{request:#}");
        let checkpoints = request["checkpoints"].as_array().unwrap();
        let seqs: Vec<u64> = checkpoints
            .iter()
            .map(|c| c["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..STEPS).collect::<Vec<_>>(), "{request:#}");
        for checkpoint in checkpoints {
            let key = format!("{}-{}", request["id"].as_str().unwrap(), checkpoint["seq"]);
            let at = checkpoint["at"].as_i64().unwrap();
            let calls = arrivals.get(&key).cloned().unwrap_or_default();
            assert!(
                calls.iter().all(|&call| call <= at),
                "step {key} ran again after its commit at {at}: {calls:?}"
            );
        }
    }
    assert!(cut > 0, "the proxy lost no answer; the test proves nothing");
    eprintln!("lost answers: {cut} connections cut with their answer lost");
}
