//! What an operator deploys with: the systemd unit is one systemd accepts,
//! hardened, `baton doctor` tells what a server needs before it starts, and
//! `/metrics` is what Prometheus reads, a request's trace reaches an OTLP
//! collector, and the `just` tasks deploy to the
//! servers the justfile itself starts.
//! (The example config's keys and defaults are checked by the `config`
//! unit tests.)

mod support;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{OtlpReceiver, Server, Setup, Sidecar, git, wasm};

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("deploy/baton.service")).unwrap();
    // The unit as installed, pointing at this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("baton.service");
    std::fs::write(
        &installed,
        unit.replace("/usr/local/bin/baton", env!("CARGO_BIN_EXE_baton")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&installed)
        .output()
        .expect("systemd-analyze (Debian's systemd package) checks the unit");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    // The threshold is in tenths: fail above an exposure of 5.0 of 10.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=50"])
        .arg(&installed)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success() && report.contains("Overall exposure level"),
        "exposure above 5.0:\n{report}"
    );
}

/// `baton doctor` on a fresh machine warns about what `baton up` will
/// create; beside a running server it finds the database migrated and the
/// folders writable, and fails on the port taken and on a storage folder
/// that is not the cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_is_missing_and_what_is_wrong() {
    let doctor = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("doctor")
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = |check: &str| {
            out.lines()
                .find(|l| l[5..].starts_with(&format!("{check} ")))
                .unwrap_or_else(|| panic!("no {check} line in {out}"))
                .to_owned()
        };
        (
            output.status.success(),
            line("database"),
            line("data"),
            line("storage"),
            line("listen"),
        )
    };

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, database, data_line, storage, listen) = doctor(&[
        "--data",
        &data.display().to_string(),
        "--listen",
        &free.to_string(),
    ]);
    assert!(ok);
    assert!(
        database.starts_with("warn ") && database.contains("does not exist yet"),
        "{database}"
    );
    assert!(data_line.starts_with("warn "), "{data_line}");
    assert!(storage.starts_with("warn "), "{storage}");
    assert!(
        listen.starts_with("ok ") && listen.contains("is free"),
        "{listen}"
    );

    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    let taken = server.base.trim_start_matches("http://").to_owned();
    let storage_path = setup.storage.display().to_string();
    let args = [
        "--data",
        &server.data.display().to_string(),
        "--database",
        &setup.database,
        "--storage",
        &storage_path,
        "--listen",
        &taken,
    ];
    let (ok, database, data_line, storage, listen) = doctor(&args);
    assert!(!ok, "the port is taken");
    assert!(
        database.starts_with("ok ") && database.contains("migrations applied"),
        "{database}"
    );
    assert!(
        data_line.starts_with("ok ") && data_line.contains("writable"),
        "{data_line}"
    );
    assert!(
        storage.starts_with("ok ") && storage.contains("writable"),
        "{storage}"
    );
    assert!(
        listen.starts_with("FAIL ") && listen.contains(&taken),
        "{listen}"
    );

    // A storage folder without the cluster's objects: not the shared one.
    let empty = tempfile::tempdir().unwrap();
    let mut elsewhere = args.map(str::to_owned);
    elsewhere[5] = empty.path().display().to_string();
    let elsewhere: Vec<&str> = elsewhere.iter().map(String::as_str).collect();
    let (_, _, _, storage, _) = doctor(&elsewhere);
    assert!(
        storage.starts_with("FAIL ") && storage.contains("mounted"),
        "{storage}"
    );
}

/// `/metrics` after a request that failed once and then succeeded: promtool
/// (Prometheus's own checker) accepts it, and the counters and histograms
/// say what happened, by flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_what_happened_by_flow() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 1);
    let id = server
        .start_request("steps", json!({ "steps": 3, "url": sidecar.url }))
        .await;
    let done = server.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let (status, text) = server.page("/metrics").await;
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) checks the metrics");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && complaints.trim().is_empty(),
        "{complaints}\n{text}"
    );

    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    };
    // Attempt 1 committed step 0 and failed at step 1; attempt 2 replayed
    // step 0 and committed steps 1 and 2, calling the sidecar three times.
    assert_eq!(value("baton_attempts_total{flow=\"steps\"}"), 2.0);
    assert_eq!(value("baton_retries_total{flow=\"steps\"}"), 1.0);
    assert_eq!(
        value("baton_requests_finished_total{flow=\"steps\",status=\"succeeded\"}"),
        1.0
    );
    assert_eq!(value("baton_checkpoints_total{flow=\"steps\"}"), 3.0);
    // The last step was committed with the outcome: no commit of its own
    // (and no commit group).
    assert_eq!(
        value("baton_checkpoint_commit_seconds_count{flow=\"steps\"}"),
        2.0
    );
    assert_eq!(
        value("baton_guest_http_duration_seconds_count{flow=\"steps\"}"),
        4.0
    );
    assert_eq!(
        value("baton_request_duration_seconds_count{flow=\"steps\",status=\"succeeded\"}"),
        1.0
    );
    assert_eq!(value("baton_commit_group_size_count"), 2.0);
    assert!(value("baton_server_heartbeat_age_seconds{server=\"solo\"}") < 60.0);
    assert!(value("baton_database_connections{state=\"idle\"}") >= 0.0);
    assert!(
        text.lines()
            .any(|line| line.starts_with("baton_build_info{version=\"")
                && line.contains(",wasmtime=\"48.")
                && line.ends_with("} 1")),
        "{text}"
    );
}

/// The bash completion script, loaded into a real bash, completes the
/// subcommands and a subcommand's flags.
#[test]
fn bash_completes_subcommands_and_flags() {
    let complete = |words: &str| {
        let script = format!(
            "source <('{}' completions bash)\n\
             COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
             _baton baton \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            env!("CARGO_BIN_EXE_baton")
        );
        let output = Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut words: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        words.sort();
        words
    };
    assert_eq!(complete("baton sched"), ["schedule", "schedules"]);
    assert!(
        complete("baton schedule --t").contains(&"--tz".to_owned()),
        "{:?}",
        complete("baton schedule --")
    );
    for shell in ["zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && script.contains("schedules"),
            "{script}"
        );
    }
}

/// What an operator does with the justfile, as documented: `just cluster 2`
/// (here with a flows repository whose Update deploys committed
/// components), `just deploy` of a component to the second server (it read
/// the wrong server's admin token before), `just sync` of a pushed change,
/// then the cluster stops with its recipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_just_tasks_deploy_to_and_sync_the_cluster_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let justfile = support::root().join("justfile");
    let just = |args: &[&str]| {
        let mut command = Command::new("just");
        command
            .arg("--justfile")
            .arg(&justfile)
            .arg("--working-directory")
            .arg(work)
            .args(args)
            .env("BATON_BIN", env!("CARGO_BIN_EXE_baton"))
            .env_remove("BATON_DATA")
            .env_remove("BATON_TOKEN")
            .env("RUST_BACKTRACE", "0");
        command
    };
    let run = |args: &[&str]| {
        let output = just(args)
            .output()
            .expect("just (`pip install rust-just`) runs the recipes");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "just {args:?}:\n{out}\n{err}");
        out
    };
    let list = run(&["--list"]);
    for recipe in ["cluster", "deploy", "sync", "commit-flows", "install"] {
        assert!(list.contains(&format!("\n    {recipe} ")), "{list}");
    }

    // A flows repository: the author's clone, the shared remote, and the
    // servers' checkout.
    std::fs::create_dir_all(work.join("author/dist")).unwrap();
    std::fs::write(work.join("author/README.md"), "flows\n").unwrap();
    let (author, checkout) = support::flows_remote(work, "empty flows");
    std::fs::write(work.join("hello.wasm"), wasm("hello")).unwrap();

    let database = support::postgres_database();
    let mut cluster = just(&[
        "cluster",
        "2",
        &database.url,
        "hello.wasm",
        "--flows-repo",
        checkout.to_str().unwrap(),
        "--build-flows",
        "false",
    ]);
    for port in [8081, 8082] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port}, where `just cluster` puts a server, is taken"
        );
    }
    let output = work.join("cluster.log");
    let log = std::fs::File::create(&output).unwrap();
    let mut cluster = cluster
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let _stop_on_failure = ProcessGroup(cluster.id());
    let http = reqwest::Client::new();
    let token = |i: u32| std::fs::read_to_string(work.join(format!("cluster/s{i}/admin.token")));
    let flows_on = |port: u16| {
        let (http, token) = (http.clone(), token(1));
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{port}/api/flows"))
                .bearer_auth(token.ok()?.trim())
                .send()
                .await
                .ok()?;
            let flows: serde_json::Value = response.json().await.ok()?;
            let mut names: Vec<String> = flows
                .as_array()?
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            Some(names)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(flows_on(8081).await == Some(vec!["hello".into()])
        && flows_on(8082).await.is_some()
        && token(2).is_ok())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not come up with hello deployed:\n{}",
            std::fs::read_to_string(&output).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    std::fs::write(work.join("steps.wasm"), wasm("steps")).unwrap();
    let deployed = run(&["deploy", "steps.wasm", "http://127.0.0.1:8082"]);
    assert!(deployed.contains("steps"), "{deployed}");
    assert_eq!(
        flows_on(8081).await,
        Some(vec!["hello".into(), "steps".into()])
    );

    std::fs::write(author.join("dist/waiter.wasm"), wasm("waiter")).unwrap();
    git(&author, &["add", "."]);
    git(&author, &["commit", "-q", "-m", "the waiter flow"]);
    git(&author, &["push", "-q", "origin", "main"]);
    let synced = run(&["sync", "http://127.0.0.1:8081"]);
    assert!(synced.contains("waiter"), "{synced}");
    assert_eq!(
        flows_on(8082).await,
        Some(vec!["hello".into(), "steps".into(), "waiter".into()])
    );

    // SIGTERM to the recipe's process group: each server stops cleanly.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the process group of a child this test spawned.
    unsafe {
        libc::kill(-(cluster.id() as i32), libc::SIGTERM);
    }
    cluster.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:8081").is_ok()
        || std::net::TcpStream::connect("127.0.0.1:8082").is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster's servers outlived its recipe"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process group killed when the test ends, also when it fails, so no
/// server is left holding the cluster's ports.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on the process group of a child this test spawned.
        unsafe {
            libc::kill(-(self.0 as i32), libc::SIGKILL);
        }
    }
}

/// The value of a span's attribute `key`.
fn attribute<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let value = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or(&serde_json::Value::Null);
    if value.is_null() {
        return value;
    }
    value
        .get("stringValue")
        .or_else(|| value.get("intValue"))
        .or_else(|| value.get("boolValue"))
        .unwrap()
}

/// A request whose step 1 fails once, traced to an OTLP collector: one
/// trace holds submit, the retry's claim, two attempts with their live
/// checkpoints, each HTTP call under its checkpoint, the outcomes and the
/// request's root span; and each call the flow made carried the
/// `traceparent` of its own span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_exports_its_span_tree_and_its_calls_carry_traceparent() {
    let collector = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--otlp-endpoint".into(), collector.url.clone()];
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 1);
    let id = server
        .start_request("steps", json!({ "steps": 3, "url": sidecar.url }))
        .await;
    let done = server.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    // The root span comes with the outcome, at the next export (1 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (trace, spans) = loop {
        let root = collector.request_root(&id);
        if let Some(root) = root {
            let trace = root["traceId"].as_str().unwrap().to_owned();
            let spans = collector.spans_of(&trace);
            // submit, claim, 2 attempts, 2 outcomes, 4 checkpoints, 4 calls, the root.
            if spans.len() >= 15 {
                break (trace, spans);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trace did not arrive: {:#?}",
            collector.request_root(&id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(spans.len(), 15, "{spans:#?}");
    let named = |name: &str| -> Vec<&serde_json::Value> {
        spans.iter().filter(|s| s["name"] == name).collect()
    };
    let id_of = |span: &serde_json::Value| span["spanId"].as_str().unwrap().to_owned();
    let parent_of = |span: &serde_json::Value| span["parentSpanId"].as_str().map(str::to_owned);

    let root = named("request");
    assert_eq!(root.len(), 1);
    let root = root[0];
    assert_eq!(parent_of(root), None);
    assert_eq!(attribute(root, "baton.request.id"), id.as_str());
    assert_eq!(attribute(root, "baton.flow"), "steps");
    assert_eq!(root["status"]["code"], 1);
    assert_eq!(
        root["resource"]["attributes"][0]["value"]["stringValue"],
        "baton"
    );
    for name in ["submit", "claim"] {
        let spans = named(name);
        assert_eq!(spans.len(), 1, "{name}: {spans:#?}");
        assert_eq!(parent_of(spans[0]), Some(id_of(root)), "{name}");
    }
    assert_eq!(attribute(named("submit")[0], "baton.claimed"), true);

    let mut attempts = named("attempt");
    attempts.sort_by_key(|a| attribute(a, "baton.attempt").as_str().unwrap().to_owned());
    assert_eq!(attempts.len(), 2);
    let mut calls_expected = Vec::new();
    for (attempt, (outcome, steps)) in attempts.iter().zip([
        ("retry", ["step-0", "step-1"]),
        ("succeeded", ["step-1", "step-2"]),
    ]) {
        assert_eq!(parent_of(attempt), Some(id_of(root)));
        assert_eq!(attribute(attempt, "baton.request.id"), id.as_str());
        assert_eq!(attribute(attempt, "baton.flow"), "steps");
        assert!(attribute(attempt, "baton.server").is_string());
        assert!(attribute(attempt, "baton.epoch").is_string(), "{attempt:#}");
        assert_eq!(attribute(attempt, "baton.outcome"), outcome);
        let children = |name: &str| -> Vec<&serde_json::Value> {
            spans
                .iter()
                .filter(|s| s["name"] == name && parent_of(s) == Some(id_of(attempt)))
                .collect()
        };
        let outcomes = children("outcome");
        assert_eq!(outcomes.len(), 1);
        assert_eq!(attribute(outcomes[0], "baton.outcome"), outcome);
        let mut checkpoints = children("checkpoint");
        checkpoints.sort_by_key(|c| {
            attribute(c, "baton.checkpoint.position")
                .as_str()
                .unwrap()
                .to_owned()
        });
        let names: Vec<&str> = checkpoints
            .iter()
            .map(|c| attribute(c, "baton.checkpoint.name").as_str().unwrap())
            .collect();
        assert_eq!(names, steps);
        for checkpoint in checkpoints {
            let calls: Vec<_> = named("http")
                .into_iter()
                .filter(|h| parent_of(h) == Some(id_of(checkpoint)))
                .collect();
            assert_eq!(calls.len(), 1, "{checkpoint:#}");
            assert_eq!(calls[0]["kind"], 3);
            calls_expected.push(format!("00-{trace}-{}-01", id_of(calls[0])));
        }
    }
    let received: Vec<String> = sidecar
        .traceparents()
        .into_iter()
        .map(|header| header.expect("every call carries a traceparent"))
        .collect();
    assert_eq!(received, calls_expected);
}

/// `baton bench scale` runs end to end on small numbers: both stores are
/// seeded through the current schema, every figure is printed for both with
/// their ratio, and each server's takeover moved exactly the requests the
/// dead server owned (the bench checks that itself and fails otherwise).
#[test]
fn bench_scale_prints_every_figure_for_both_stores() {
    let output = Command::new(env!("CARGO_BIN_EXE_baton"))
        .current_dir(support::root())
        .env("RUST_BACKTRACE", "0")
        .args([
            "bench",
            "scale",
            "--small-finished",
            "200",
            "--small-sleepers",
            "20",
            "--large-finished",
            "2000",
            "--large-sleepers",
            "200",
            "--samples",
            "3",
            "--requests",
            "2",
            "--throughput-requests",
            "16",
            "--takeover",
            "100",
            "--idle-secs",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for figure in [
        "scheduler poll (due query) p50",
        "heartbeat p99",
        "running attempts read (fencing watch) p50",
        "server listing (live watch, scrape) p50",
        "Server List page p50",
        "Status List page p50",
        "/metrics scrape p50",
        "one request end to end, alone p50",
        "against (10 + 2) raw commits",
        "checkpoints/s, 16 in flight",
        "checkpoints/s, 64 in flight",
        "server CPU per checkpoint (user+sys)",
        "server CPU while idle",
        "server's memory (RSS it added)",
        "takeover of 100 requests",
    ] {
        let line = stdout
            .lines()
            .find(|line| line.trim_start().starts_with(figure))
            .unwrap_or_else(|| panic!("no {figure:?} in\n{stdout}"));
        // Two figures and their ratio, each a number.
        let numbers = line[figure.len()..]
            .split_whitespace()
            .filter(|word| word.trim_end_matches('×').parse::<f64>().is_ok())
            .count();
        assert_eq!(numbers, 3, "{line}");
    }
}
