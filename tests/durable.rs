//! One server on SQLite: the durable core, end to end with real processes.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use baton_store::{NewRequest, Outcome, SqlStore};
use baton_store::{PayloadStore, RequestStore, ServerStore};
use serde_json::{Value, json};
use support::{Server, Setup, Sidecar, git, wasm};

const LONG: Duration = Duration::from_secs(60);

fn checkpoint_names(request: &Value) -> Vec<String> {
    support::checkpoints(request)
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_runs_and_bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;

    let (status, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"name":"Ada"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["output"], json!({ "greeting": "Hello, Ada!" }));

    let (status, body) = server
        .post("/api/flows/hello/requests", r#"{"name": "#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = server.post("/api/flows/nope/requests", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("\"nope\""),
        "{body}"
    );

    let (status, body) = server
        .post("/api/flows", b"\0asm garbage bytes".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid flow component"),
        "{body}"
    );

    let (status, body) = server.post("/api/flows", b"not wasm at all".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = server.get("/api/requests/does-not-exist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());

    // The flow's input is checked by the flow: a wrong shape is a flow error.
    let (_, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"nom":1}"#)
        .await;
    assert_eq!(body["status"], "error", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid input"),
        "{body}"
    );
}

/// Durable events: one sent before the flow waits is kept, the flow leaves
/// its slot while nothing has come, later ones wake it and arrive in the
/// order sent (one through `baton send`), each is journaled once; a wait
/// with nothing coming times out; a finished or unknown request takes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_kept_delivered_in_order_once_and_waits_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("waiter")).await;
    let send = async |id: &str, name: &str, body: &str| {
        server
            .post(
                &format!("/api/requests/{id}/events/{name}"),
                body.to_owned(),
            )
            .await
    };

    let id = server
        .start_request(
            "waiter",
            json!({ "name": "item", "waits": 3, "timeout_ms": 600_000 }),
        )
        .await;
    let (status, body) = send(&id, "item", r#"{"n": 1}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The first is taken, then the flow waits with nothing to take: it
    // leaves its slot (a `sleeping` event) until the next comes.
    let waiting = server
        .wait_request(&id, LONG, |r| {
            checkpoint_names(r).contains(&"baton:event:item".to_owned())
                && r["next_attempt_at"].is_i64()
        })
        .await;
    assert_eq!(waiting["status"], "running", "{waiting:#}");
    assert_eq!(waiting["waiting_for"], "item", "{waiting:#}");
    assert_eq!(
        waiting["status_values"],
        json!({ "taken": 1 }),
        "{waiting:#}"
    );
    // With a key, a send retried (its answer lost) keeps one event; the
    // key with another event is refused.
    let path = format!("/api/requests/{id}/events/item");
    let (status, body) = server.post_keyed(&path, r#"{"n": 2}"#, "second").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["kept"], true, "{body}");
    let (status, body) = server.post_keyed(&path, r#"{"n": 2}"#, "second").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kept"], false, "{body}");
    let (status, body) = server.post_keyed(&path, r#"{"n": 9}"#, "second").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for _ in 0..2 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "send",
                &id,
                "item",
                "--data",
                r#"{"n": 3}"#,
                "--key",
                "third",
            ])
            .args(["--server", &server.base, "--token", &server.token])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let done = server.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["output"], json!([{ "n": 1 }, { "n": 2 }, { "n": 3 }]));
    assert_eq!(done["status_values"], json!({ "taken": 3 }));
    assert!(
        done["attempts"].as_i64().unwrap() >= 2,
        "it left its slot: {done:#}"
    );
    assert_eq!(
        checkpoint_names(&done),
        [
            "baton:wait:item",
            "baton:event:item",
            "baton:wait:item",
            "baton:event:item",
            "baton:wait:item",
            "baton:event:item",
            "done"
        ]
    );

    let id = server
        .start_request(
            "waiter",
            json!({ "name": "never", "waits": 1, "timeout_ms": 300 }),
        )
        .await;
    let timed_out = server.wait_final(&id, LONG).await;
    assert_eq!(timed_out["output"], json!([null]), "{timed_out:#}");
    assert_eq!(
        checkpoint_names(&timed_out),
        ["baton:wait:never", "baton:timeout:never", "done"]
    );

    let (status, body) = send(&id, "never", "1").await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished request: {body}");
    let (status, _) = send("no-such-request", "x", "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&id, "never", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// What a first-time author meets on the command line: `run --wait` names
/// the request before waiting, `wait` and `flows` exist, a mistyped flow
/// suggests the right one, and a missing token says where it was looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_the_request_first_and_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;
    let baton = |args: &[&str], token: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
        command.args(args).args(["--server", &server.base]);
        if token {
            command.args(["--token", &server.token]);
        }
        let output = command
            .env_remove("BATON_TOKEN")
            .env("BATON_DATA", dir.path().join("no-server-here"))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, out, err) = baton(
        &["run", "hello", "--input", r#"{"name":"Ada"}"#, "--wait"],
        true,
    );
    assert!(ok, "{err}");
    let id = err
        .lines()
        .find_map(|line| line.strip_prefix("request "))
        .unwrap_or_else(|| panic!("no request line in {err:?}"))
        .to_owned();
    let output: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(output["greeting"], "Hello, Ada!");

    let (ok, again, err) = baton(&["wait", &id], true);
    assert!(ok, "{err}");
    assert_eq!(again, out);

    let (ok, flows, err) = baton(&["flows"], true);
    assert!(ok, "{err}");
    assert!(
        flows.lines().any(|line| line.starts_with("hello ")),
        "{flows}"
    );

    let (ok, _, err) = baton(&["run", "helo", "--input", "{}"], true);
    assert!(!ok);
    assert!(
        err.contains(r#"there is no flow named "helo"; did you mean "hello"?"#),
        "{err}"
    );

    let (ok, _, err) = baton(&["requests"], false);
    assert!(!ok);
    assert!(
        err.contains("--token")
            && err.contains("BATON_TOKEN")
            && err.contains(
                &dir.path()
                    .join("no-server-here/admin.token")
                    .display()
                    .to_string()
            ),
        "{err}"
    );
}

/// A fatal flow error ends the request at its first attempt although
/// retries are left, with its details in the API; a step retried inside the
/// attempt succeeds without a second attempt, and a fatal error inside it is
/// not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_errors_skip_retries_and_steps_retry_inside_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("errors")).await;

    let id = server
        .start_request("errors", json!({ "mode": "fatal" }))
        .await;
    let fatal = server.wait_final(&id, LONG).await;
    assert_eq!(fatal["status"], "error", "{fatal:#}");
    assert_eq!(fatal["attempts"], 1, "{fatal:#}");
    assert_eq!(fatal["error"], "the card was declined", "{fatal:#}");
    assert_eq!(
        fatal["error_details"],
        json!({ "code": "insufficient_funds", "retryable": false })
    );

    let id = server
        .start_request("errors", json!({ "mode": "flaky", "failing_tries": 2 }))
        .await;
    let flaky = server.wait_final(&id, LONG).await;
    assert_eq!(flaky["status"], "succeeded", "{flaky:#}");
    assert_eq!(flaky["output"], 3, "two failed tries, then the third");
    assert_eq!(flaky["attempts"], 1, "{flaky:#}");
    assert_eq!(checkpoint_names(&flaky), ["flaky"]);

    let id = server
        .start_request("errors", json!({ "mode": "flaky-fatal" }))
        .await;
    let refused = server.wait_final(&id, LONG).await;
    assert_eq!(refused["status"], "error", "{refused:#}");
    assert_eq!(refused["attempts"], 1, "{refused:#}");
    assert_eq!(refused["error_details"], json!({ "tries": 1 }));
    assert!(checkpoint_names(&refused).is_empty());
}

/// A start retried with the same idempotency key (a caller whose answer was
/// lost) finds the request the first start made, through the API and the
/// CLI, even when the retries race; the same key with another input is
/// refused, and another flow's key space is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_starts_a_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;
    let start = "/api/flows/hello/requests";
    let ada = r#"{"name":"Ada"}"#;

    let (status, first) = server.post_keyed(start, ada, "order-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["created"], true);
    let id = first["id"].as_str().unwrap().to_owned();

    let (status, again) = server.post_keyed(start, ada, "order-1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["id"].as_str(), &again["created"]),
        (Some(&*id), &json!(false))
    );

    let (status, waited) = server
        .post_keyed(&format!("{start}?wait=true"), ada, "order-1")
        .await;
    assert_eq!(status, StatusCode::OK, "{waited}");
    assert_eq!(waited["id"].as_str(), Some(&*id));
    assert_eq!(waited["output"], json!({ "greeting": "Hello, Ada!" }));

    let (status, other) = server
        .post_keyed(start, r#"{"name":"Bob"}"#, "order-1")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{other}");
    let error = other["error"].as_str().unwrap();
    assert!(
        error.contains(&id) && error.contains("different input"),
        "{error}"
    );

    let (status, bad) = server.post_keyed(start, ada, &"k".repeat(300)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // Retries that race: one request, every answer names it.
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let (url, token) = (format!("{}{start}", server.base), server.token.clone());
            tokio::spawn(async move {
                let answer = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", "burst")
                    .body(ada)
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{answer:?}");
                answer.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.unwrap());
    }
    let created: Vec<&Value> = answers.iter().filter(|a| a["created"] == true).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let burst = created[0]["id"].as_str().unwrap();
    for answer in &answers {
        assert_eq!(answer["id"].as_str(), Some(burst), "{answers:?}");
    }

    // The CLI's --key: two runs print the same request.
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "hello", "--input", ada, "--key", "cli-1"])
            .args(["--server", &server.base, "--token", &server.token])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let (one, two) = (run(), run());
    assert!(!one.is_empty() && one != id && one != burst);
    assert_eq!(one, two);

    let (_, listed) = server.get("/api/requests?flow=hello&limit=100").await;
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![&*id, burst, &*one];
    expected.sort_unstable();
    assert_eq!(ids, expected, "one request per key and nothing else");
}

/// `baton up --deploy` (the quick start's way in) deploys what it is
/// given before it listens: here a component file, taken as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_deploys_what_it_is_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("hello.wasm");
    std::fs::write(&component, wasm("hello")).unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--deploy".into(), component.display().to_string()];
    let server = Server::start(dir.path(), "solo", &setup).await;
    let (status, flows) = server.get("/api/flows").await;
    assert_eq!(status, StatusCode::OK, "{flows}");
    let names: Vec<&str> = flows
        .as_array()
        .unwrap()
        .iter()
        .map(|flow| flow["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello"]);
    let (_, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"name":"Ada"}"#)
        .await;
    assert_eq!(body["output"]["greeting"], "Hello, Ada!", "{body}");
}

/// A parent starts its children once, waits for them without holding a
/// slot, and ends with what they returned; the children are ordinary
/// requests naming their parent, each waiting for an event an operator
/// sends, and the detail of each side names the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_waits_for_the_children_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("approval")).await;
    server.deploy(wasm("review")).await;
    let parent = server
        .start_request(
            "approval",
            json!({ "subject": "laptop", "reviewers": ["ada", "bob"] }),
        )
        .await;
    let waiting = server
        .wait_request(&parent, LONG, |r| {
            r["children"].as_array().is_some_and(|c| c.len() == 2)
                && r["waiting_for"].as_str().is_some()
        })
        .await;
    let children = reviews_of(&server, &waiting).await;
    assert_eq!(
        waiting["waiting_for"],
        format!("baton:child:{}", children["ada"]),
        "{waiting:#}"
    );
    assert_eq!(
        checkpoint_names(&waiting),
        ["baton:start:review", "baton:start:review"]
    );
    for child in children.values() {
        let review = server.request(child).await;
        assert_eq!(review["parent"], parent.as_str(), "{review:#}");
        let (status, body) = server
            .post(
                &format!("/api/requests/{child}/events/decision"),
                r#"{"approved": true}"#,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let done = server.wait_final(&parent, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        done["output"],
        json!({ "subject": "laptop", "approved_by": ["ada", "bob"] })
    );
    // Each child was created once, whatever the parent's replays.
    let (_, listed) = server.get(&format!("/api/requests?parent={parent}")).await;
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut expected: Vec<&str> = children.values().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The children listed in a waiting parent's detail, by the reviewer each
/// waits for (once each has started waiting for its decision).
async fn reviews_of(server: &Server, parent: &Value) -> std::collections::BTreeMap<String, String> {
    let mut reviews = std::collections::BTreeMap::new();
    for child in parent["children"].as_array().unwrap() {
        let id = child["id"].as_str().unwrap();
        let review = server
            .wait_request(id, LONG, |r| r["waiting_for"] == "decision")
            .await;
        let reviewer = review["status_values"]["reviewer"].as_str().unwrap();
        reviews.insert(reviewer.to_owned(), id.to_owned());
    }
    reviews
}

/// A flow starts only the flows it declared (`flow:NAME` resources); the
/// refusal says what to declare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_starts_only_the_flows_it_declared() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    for flow in ["starter", "hello", "review"] {
        server.deploy(wasm(flow)).await;
    }
    let allowed = server.start_request("starter", json!("hello")).await;
    let done = server.wait_final(&allowed, LONG).await;
    assert_eq!(
        done["output"],
        json!({ "greeting": "Hello, child!" }),
        "{done:#}"
    );

    let refused = server.start_request("starter", json!("review")).await;
    let done = server.wait_final(&refused, LONG).await;
    assert_eq!(done["status"], "error", "{done:#}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains(r#"may not start the flow "review""#)
            && error.contains(r#"resources = ["flow:review"]"#),
        "{error}"
    );
    assert_eq!(done["children"], json!([]), "no child was created");
}

/// Cancelling a parent cancels its unfinished children in the same commit;
/// a child cancelled on its own ends its parent's wait with an error that
/// names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("approval")).await;
    server.deploy(wasm("review")).await;
    let children_of = async |parent: &str| {
        let waiting = server
            .wait_request(parent, LONG, |r| {
                r["children"].as_array().is_some_and(|c| c.len() == 2)
                    && r["waiting_for"].as_str().is_some()
            })
            .await;
        reviews_of(&server, &waiting).await
    };

    let input = json!({ "subject": "desk", "reviewers": ["ada", "bob"] });
    let parent = server.start_request("approval", input.clone()).await;
    let children = children_of(&parent).await;
    let (status, body) = server
        .post(&format!("/api/requests/{parent}/cancel"), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for child in children.values() {
        let child = server.request(child).await;
        assert_eq!(child["status"], "cancelled", "{child:#}");
        let last = child["events"].as_array().unwrap().last().unwrap().clone();
        assert!(
            last["detail"]
                .as_str()
                .unwrap()
                .ends_with(&format!("with its parent {parent}")),
            "{last:#}"
        );
    }

    let parent = server.start_request("approval", input).await;
    let children = children_of(&parent).await;
    // The parent waits for the first reviewer's child.
    let (status, body) = server
        .post(&format!("/api/requests/{}/cancel", children["ada"]), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = server.wait_final(&parent, LONG).await;
    assert_eq!(done["status"], "error", "{done:#}");
    assert_eq!(
        done["error"],
        format!(
            "the child request {} (review) was cancelled",
            children["ada"]
        )
    );
    assert_eq!(done["error_details"]["child"], children["ada"].as_str());
    assert_eq!(server.request(&children["bob"]).await["status"], "running");
}

/// A request held from another server stops before its next step (that
/// server's heartbeat tells its attempt), runs no more while held, and
/// resumed it runs on from where it stopped: each step ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_stops_at_its_next_step_and_resumed_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let runner = Server::start(dir.path(), "runner", &setup).await;
    let operator = Server::start(dir.path(), "operator", &setup).await;
    runner.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(300);

    const STEPS: u64 = 12;
    let id = runner
        .start_request("steps", json!({ "steps": STEPS, "url": sidecar.url }))
        .await;
    runner
        .wait_request(&id, LONG, |r| support::checkpoints(r).len() >= 2)
        .await;
    let (ok, out, err) = operator.cli(&["hold", &id]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("{id} held: it runs no more until resumed")
    );
    let (ok, out, _) = operator.cli(&["hold", &id]);
    assert!(ok);
    assert_eq!(out.trim(), format!("{id} was held already"));

    let stopped = operator
        .wait_request(&id, LONG, |r| r["status"] == "waiting_retry")
        .await;
    assert_eq!(stopped["held"], true, "{stopped:#}");
    let kinds: Vec<(&str, &str)> = stopped["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(kinds.contains(&("held", "by admin")), "{kinds:?}");
    assert!(
        kinds.contains(&("released", "held: its attempt stopped before its next step")),
        "{kinds:?}"
    );
    let (_, listed) = operator.get("/api/requests?held=true").await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);

    // Due at once, but held: no server claims it.
    let done_before = support::checkpoints(&stopped).len();
    assert!(done_before < STEPS as usize, "{stopped:#}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = operator.request(&id).await;
    assert_eq!(
        (still["status"].as_str(), support::checkpoints(&still).len()),
        (Some("waiting_retry"), done_before),
        "{still:#}"
    );

    let (ok, out, err) = operator.cli(&["resume", &id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id} resumed"));
    let done = runner.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["held"], false, "{done:#}");
    let expected: u64 = (0..STEPS).map(|i| i * i).sum();
    assert_eq!(done["output"]["sum"], expected);
    let seqs: Vec<i64> = support::checkpoints(&done).iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (0..STEPS as i64).collect::<Vec<_>>(), "{done:#}");
    for key in done["output"]["keys"].as_array().unwrap() {
        assert_eq!(
            sidecar.keys()[key.as_str().unwrap()],
            1,
            "step {key} ran twice"
        );
    }
    let (_, listed) = operator.get("/api/requests?held=true").await;
    assert_eq!(listed, json!([]));

    let (status, body) = operator.post(&format!("/api/requests/{id}/hold"), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"],
        format!("request {id} cannot be held: it has finished (succeeded)")
    );
}

/// Re-executed from checkpoint 2, a request in error keeps its first two
/// steps (not run again) and runs on from step 2 in a new generation;
/// forked from checkpoint 4, a finished request stays as it was and a new
/// request replays the first four and runs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reexecutes_from_a_checkpoint_or_forks_into_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    // Every attempt (one and two retries) fails at step 3.
    sidecar.fail("/step/3", 3);
    const STEPS: i64 = 6;
    let expected: i64 = (0..STEPS).map(|i| i * i).sum();
    let id = server
        .start_request("steps", json!({ "steps": STEPS, "url": sidecar.url }))
        .await;
    let failed = server.wait_final(&id, LONG).await;
    assert_eq!(failed["status"], "error", "{failed:#}");

    let (ok, out, err) = server.cli(&["reexecute", &id, "--from", "2"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("{id} re-executed from checkpoint 2 on ")),
        "{out}"
    );
    let done = server.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["output"]["sum"], expected);
    let checkpoints = support::checkpoints(&done);
    let first: Vec<_> = checkpoints.iter().filter(|c| c.generation == 0).collect();
    let second: Vec<_> = checkpoints.iter().filter(|c| c.generation == 1).collect();
    assert_eq!(
        first.len(),
        3,
        "steps 0 to 2 were committed before the error"
    );
    assert_eq!(
        second.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (0..STEPS).collect::<Vec<_>>()
    );
    for seq in 0..2 {
        assert_eq!(
            (&second[seq].name, second[seq].at),
            (&first[seq].name, first[seq].at),
            "checkpoint {seq} is the first generation's, copied"
        );
    }
    assert_ne!(second[2].at, first[2].at, "step 2 ran again");
    let keys = sidecar.keys();
    for (key, times) in [
        (format!("{id}-0"), 1),
        (format!("{id}-1"), 1),
        (format!("{id}-1.2"), 1),
        (format!("{id}-1.5"), 1),
    ] {
        assert_eq!(keys.get(&key), Some(&times), "{key}: {keys:?}");
    }
    let events = done["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "reexecuted" && e["detail"] == "by admin, from checkpoint 2"),
        "{events:?}"
    );

    let (status, body) = server
        .post(&format!("/api/requests/{id}/reexecute?from=2"), "")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = server
        .post(
            &format!("/api/requests/{id}/reexecute?from=99&fork=true"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"],
        format!(
            "request {id} has 6 checkpoints in its current journal generation: \
             choose a checkpoint from 0 to 6"
        )
    );

    let (ok, out, err) = server.cli(&["reexecute", &id, "--from", "4", "--fork"]);
    assert!(ok, "{err}");
    let fork = out.trim().to_owned();
    assert!(
        err.contains(&format!("forked from {id} at checkpoint 4")),
        "{err}"
    );
    let forked = server.wait_final(&fork, LONG).await;
    assert_eq!(forked["status"], "succeeded", "{forked:#}");
    assert_eq!(forked["output"]["sum"], expected);
    let keys = sidecar.keys();
    for seq in 0..STEPS {
        let calls = keys.get(&format!("{fork}-{seq}")).copied();
        let live = seq >= 4;
        assert_eq!(calls, live.then_some(1), "step {seq} of the fork: {keys:?}");
    }
    assert!(
        forked["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "forked"
                && e["detail"] == format!("from {id} at checkpoint 4 by admin")),
        "{forked:#}"
    );
    let source = server.request(&id).await;
    assert_eq!(source["status"], "succeeded");
    assert_eq!(support::checkpoints(&source).len(), checkpoints.len());
    assert!(
        source["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "forked"
                && e["detail"] == format!("into {fork} from checkpoint 4 by admin")),
        "{source:#}"
    );
}

/// `baton purge` deletes the finished requests it selects, by age, status
/// and flow, and nothing else; a dry run only counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_requests_are_purged_by_age_and_a_dry_run_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let mut finished = Vec::new();
    for _ in 0..3 {
        let id = server.start_request("steps", json!({ "steps": 2 })).await;
        assert_eq!(server.wait_final(&id, LONG).await["status"], "succeeded");
        finished.push(id);
    }
    let sleeper = server
        .start_request("steps", json!({ "steps": 2, "sleep_ms": 600_000 }))
        .await;
    server
        .wait_request(&sleeper, LONG, |r| r["last_checkpoint"] == "baton:sleep")
        .await;
    let purge = |args: &[&str]| {
        let (ok, out, err) = server.cli(&[&["purge"], args].concat());
        assert!(ok, "{err}");
        out.trim().to_owned()
    };

    assert_eq!(
        purge(&["--older-than", "1h"]),
        "deleted 0 requests and 0 blobs no row names"
    );
    assert_eq!(
        purge(&["--older-than", "0ms", "--status", "error"]),
        "deleted 0 requests and 0 blobs no row names"
    );
    assert_eq!(
        purge(&["--older-than", "0ms", "--dry-run"]),
        "would delete 3 requests and 0 blobs no row names"
    );
    for id in &finished {
        server.request(id).await;
    }
    assert_eq!(
        purge(&["--older-than", "0ms", "--flow", "steps"]),
        "deleted 3 requests and 0 blobs no row names"
    );
    for id in &finished {
        let (status, _) = server.get(&format!("/api/requests/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }
    assert_eq!(server.request(&sleeper).await["status"], "running");

    let (ok, _, err) = server.cli(&["purge", "--older-than", "soon"]);
    assert!(!ok);
    assert!(err.contains("is not a length of time"), "{err}");
}

/// The statistics count what the server did (its checkpoints within the
/// ten seconds it writes them in), over the API and as the console's
/// charts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_requests_and_checkpoints_and_chart_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 3);
    let failed = server
        .start_request("steps", json!({ "steps": 2, "url": sidecar.url }))
        .await;
    assert_eq!(server.wait_final(&failed, LONG).await["status"], "error");
    for _ in 0..3 {
        let id = server.start_request("steps", json!({ "steps": 4 })).await;
        assert_eq!(server.wait_final(&id, LONG).await["status"], "succeeded");
    }
    // 1 checkpoint of the failed one (its step 0, replayed after) and 4
    // of each other.
    let stats = support::eventually(LONG, "the checkpoints to be counted", async || {
        let (status, stats) = server.get("/api/statistics?flow=steps").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        (stats["flows"][0]["checkpoints"] == 13).then_some(stats)
    })
    .await;
    let steps = &stats["flows"][0];
    assert_eq!(steps["name"], "steps");
    assert_eq!(
        [
            &steps["started"],
            &steps["succeeded"],
            &steps["failed"],
            &steps["retries"]
        ],
        [4, 3, 1, 2]
    );
    assert!(steps["p99_ms"].as_i64().unwrap() <= 60_000, "{steps}");
    let started: f64 = stats["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["started_per_min"].as_f64().unwrap())
        .sum();
    assert_eq!(started, 4.0);
    let (status, _) = server.get("/api/statistics?from=10&to=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, page) = server.page("/status/statistics?window=1h&flow=steps").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page.matches("<polyline").count(), 3, "{page}");
    assert!(
        page.contains("<title>Requests started and finished</title>"),
        "{page}"
    );
    assert!(
        page.contains("<td>steps</td><td>4</td><td>3</td><td>1</td>"),
        "{page}"
    );
    let (status, _) = server.page("/status/statistics?window=2y").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (ok, out, err) = server.cli(&["statistics", "--window", "1h", "--flow", "steps"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|line| line.starts_with("steps "))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..8],
        ["steps", "4", "3", "1", "0", "2", "0", "13"],
        "{out}"
    );
}

/// A console page left open holds a live stream; a clean stop (SIGTERM)
/// ends it instead of waiting for it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_ends_the_open_live_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let mut live = reqwest::Client::new()
        .get(format!("{}/status/servers/live", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let first = live.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: servers") && first.contains("solo"),
        "{first}"
    );

    server.signal(libc::SIGTERM);
    let exited = tokio::time::timeout(
        LONG,
        tokio::task::spawn_blocking(move || server.wait_exit()),
    )
    .await
    .expect("the server stopped while a live page was open")
    .unwrap();
    assert!(exited.success(), "{exited:?}");
    while let Ok(Some(_)) = live.chunk().await {}
}

/// `#[flow(retention = "7d")]` travels in the component and is read at
/// deploy; a flow that declares none (as every one built before) has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_declares_its_retention_in_its_component() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("sleeper")).await;
    server.deploy(wasm("steps")).await;
    let (_, flows) = server.get("/api/flows").await;
    let retention = |name: &str| {
        flows
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["properties"]["retention_ms"].clone())
            .unwrap()
    };
    assert_eq!(retention("sleeper"), json!(604_800_000), "{flows:#}");
    assert_eq!(retention("steps"), Value::Null, "{flows:#}");
}

/// `baton replay` downloads a request's bundle and replays its journal
/// here: its own build reproduces it, another build that returns something
/// else is named as diverging (from a file or a deployed version), and a
/// journal the flow leaves is named at the position where it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_replays_here_and_another_build_is_named_where_it_diverges() {
    use baton::engine::replay::{Asked, Recorded, Verdict, replay};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let id = server
        .start_request("steps", json!({ "steps": 3, "sleep_ms": 10 }))
        .await;
    let done = server.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let baton = |args: &[&str]| server.cli(args);
    let (ok, out, err) = baton(&["replay", &id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("reproduces") && out.contains("4 checkpoints replayed, the same output"),
        "{out}"
    );

    let v2 = support::guests().join("steps_v2.wasm");
    let (ok, _, err) = baton(&["replay", &id, "--wasm", &v2.display().to_string()]);
    assert!(!ok);
    assert!(err.contains("diverges") && err.contains("1000005"), "{err}");
    let hash = server.deploy(wasm("steps_v2")).await;
    let (ok, _, err) = baton(&["replay", &id, "--version", &hash]);
    assert!(!ok);
    assert!(
        err.contains(&format!("against version {hash}")) && err.contains("1000005"),
        "{err}"
    );

    // The journal's path, left: named at its position.
    let hello = wasm("hello");
    let input = br#"{"name":"Ada"}"#;
    let greet = |name: &str| Recorded {
        name: name.into(),
        value: br#""Hello, Ada!""#.to_vec(),
    };
    assert_eq!(
        replay(hello.clone(), input, "r", 0, vec![greet("welcome")]).await,
        Verdict::Diverged {
            position: 0,
            recorded: "welcome".into(),
            asked: Asked::Checkpoint("greet".into())
        }
    );
    assert_eq!(
        replay(hello.clone(), input, "r", 0, vec![]).await,
        Verdict::ReachedEnd {
            replayed: 0,
            next: "greet".into()
        }
    );
    assert_eq!(
        replay(hello, input, "r", 0, vec![greet("greet")]).await,
        Verdict::Finished {
            result: Ok(br#"{"greeting":"Hello, Ada!"}"#.to_vec())
        }
    );
}

/// `baton deploy --check N` replays the flow's journals against the new
/// version before activating it: a build that leaves them is refused,
/// naming each request and checkpoint, and the active version stays; one
/// that keeps them is activated; `--force` activates with the list as
/// warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_would_leave_journals_is_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let original = server.deploy(wasm("steps")).await;
    let finished = server.start_request("steps", json!({ "steps": 2 })).await;
    server.wait_final(&finished, LONG).await;
    // Unfinished: asleep for an hour after its first step.
    let asleep = server
        .start_request("steps", json!({ "steps": 2, "sleep_ms": 3_600_000 }))
        .await;
    server
        .wait_request(&asleep, LONG, |r| checkpoint_names(r).len() == 2)
        .await;
    let deploy = |args: &[&str]| server.cli(&[&["deploy"], args].concat());
    let file = |stem: &str| {
        support::guests()
            .join(format!("{stem}.wasm"))
            .display()
            .to_string()
    };
    let active = async || {
        let (_, flows) = server.get("/api/flows").await;
        flows[0]["version"].as_str().unwrap().to_owned()
    };

    let (ok, _, err) = deploy(&["--check", "10", &file("steps_renamed")]);
    assert!(!ok, "{err}");
    for id in [&finished, &asleep] {
        assert!(
            err.contains(&format!(
                r#"request {id} at checkpoint 0: the journal records "step-0", the new version asks for "square-0""#
            )),
            "{err}"
        );
    }
    assert_eq!(active().await, original);

    let (ok, out, err) = deploy(&["--check", "10", &file("steps_v2")]);
    assert!(ok, "{err}");
    assert!(out.starts_with("steps "), "{out}");
    assert_ne!(active().await, original);

    let (ok, _, err) = deploy(&["--check", "10", "--force", &file("steps_renamed")]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "activated although it leaves a journal: request {asleep}"
        )),
        "{err}"
    );
}

/// The Status List's filter exports every request it matches, streamed a
/// keyset page at a time, as CSV and as JSON Lines (API and CLI): each
/// request once, across page boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_request_is_exported_once_as_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;
    server.deploy(wasm("steps")).await;
    let mut started = std::collections::BTreeSet::new();
    for i in 0..1_201 {
        started.insert(
            server
                .start_request("hello", json!({ "name": format!("n{i}") }))
                .await,
        );
    }
    let other = server.start_request("steps", json!({ "steps": 1 })).await;

    let response = reqwest::Client::new()
        .get(format!("{}/api/requests.csv?flow=hello", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = response.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,flow,version,status,held,owner,attempts,last_checkpoint,parent,created_at,updated_at,error"
        )
    );
    let mut exported = std::collections::BTreeSet::new();
    for line in lines {
        let id = line.split(',').next().unwrap().to_owned();
        assert!(exported.insert(id), "exported twice: {line}");
    }
    assert_eq!(exported, started);
    assert!(!csv.contains(&other));

    let (ok, out, err) = server.cli(&["requests", "--jsonl", "--flow", "hello"]);
    assert!(ok, "{err}");
    let mut exported = std::collections::BTreeSet::new();
    for line in out.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["flow"], "hello");
        assert!(
            exported.insert(row["id"].as_str().unwrap().to_owned()),
            "{line}"
        );
    }
    assert_eq!(exported, started);
}

/// `baton new` writes a flow crate into a flows workspace whose test passes
/// natively as written, and which deploys and runs on the input `{}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_flow_is_tested_deployed_and_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = support::root();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let manifest = std::fs::read_to_string(root.join("flows/Cargo.toml"))
        .unwrap()
        .replace(
            r#"members = ["hello", "order", "batch-import", "approval", "review"]"#,
            r#"members = ["hello"]"#,
        )
        .replace(
            "../guest-sdk",
            &root.join("guest-sdk").display().to_string(),
        );
    std::fs::write(flows.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root.join("flows/Cargo.lock"), flows.join("Cargo.lock")).unwrap();
    copy_source(&root.join("flows/hello"), &flows.join("hello"));

    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let baton = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .env("BATON_SERVER", &server.base)
            .env("BATON_TOKEN", &server.token)
            // The repository's build folder: the dependencies are built.
            .env("CARGO_TARGET_DIR", root.join("target"))
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        assert!(output.status.success(), "baton {args:?}: {out}{err}");
        out
    };
    let flows_arg = flows.display().to_string();
    let out = baton(&["new", "invoice-sync", "--dir", &flows_arg]);
    assert!(out.contains("baton deploy"), "{out}");
    let workspace = std::fs::read_to_string(flows.join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains(r#"members = ["hello", "invoice-sync"]"#),
        "{workspace}"
    );

    let crate_dir = flows.join("invoice-sync");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = std::process::Command::new(cargo)
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .unwrap();
    let test_out = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && test_out.contains("1 passed"),
        "{test_out}{}",
        String::from_utf8_lossy(&test.stderr)
    );

    let deployed = baton(&["deploy", &crate_dir.display().to_string()]);
    assert!(deployed.starts_with("invoice-sync "), "{deployed}");
    let out = baton(&["run", "invoice-sync", "--input", "{}", "--wait"]);
    let output: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(output, json!({ "greeting": "Hello, world!" }));

    let again = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["new", "invoice-sync", "--dir", &flows_arg])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already has a member"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_replays_committed_steps_without_running_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/3", 1);

    let id = server
        .start_request("steps", json!({ "steps": 5, "url": sidecar.url }))
        .await;
    let request = server.wait_final(&id, LONG).await;

    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["attempts"], 2);
    assert_eq!(request["output"]["sum"], (0..5).map(|i| i * i).sum::<u64>());
    for step in [0, 1, 2, 4] {
        assert_eq!(
            sidecar.calls(&format!("/step/{step}")),
            1,
            "step {step} ran again"
        );
    }
    assert_eq!(sidecar.calls("/step/3"), 2);
    // The step that failed kept its idempotency key across attempts.
    let keys = sidecar.keys();
    assert_eq!(keys[&format!("{id}-3")], 2);
    assert_eq!(keys.len(), 5);
    assert_eq!(
        checkpoint_names(&request),
        ["step-0", "step-1", "step-2", "step-3", "step-4"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_the_interval_and_stop_at_max_retries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 1000);

    let id = server
        .start_request("steps", json!({ "steps": 3, "url": sidecar.url }))
        .await;
    let request = server.wait_final(&id, LONG).await;

    assert_eq!(request["status"], "error");
    // max_retries = 2: the first attempt and two retries.
    assert_eq!(request["attempts"], 3);
    assert_eq!(sidecar.calls("/step/1"), 3);
    assert_eq!(sidecar.calls("/step/0"), 1);
    assert!(
        request["error"]
            .as_str()
            .unwrap()
            .contains("step 1 failed with status 500"),
        "{request:#}"
    );
    let starts: Vec<i64> = request["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "attempt")
        .map(|e| e["at"].as_i64().unwrap())
        .collect();
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 200,
            "retry came before retry_interval: {starts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_checkpoint_not_use_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps_fresh")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/2", 1);

    let id = server
        .start_request("steps-fresh", json!({ "steps": 4, "url": sidecar.url }))
        .await;
    let request = server.wait_final(&id, LONG).await;

    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(
        sidecar.calls("/step/0"),
        2,
        "the retry must run step 0 again"
    );
    assert_eq!(sidecar.calls("/step/1"), 2);
    assert_eq!(sidecar.calls("/step/3"), 1);
    assert_eq!(request["generation"], 1);
    // The second run's keys differ from the first run's.
    let keys: Vec<&str> = request["output"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys[0], format!("{id}-1.0"));
}

/// Waking from a durable sleep long enough to free the slot is not a retry:
/// a `begin_checkpoint = not use` flow continues its journal generation
/// (it started over, re-running its first step, until its journal filled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_checkpoint_not_use_wakes_from_a_long_sleep_where_it_slept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps_fresh")).await;
    let sidecar = Sidecar::start().await;

    let id = server
        .start_request(
            "steps-fresh",
            json!({ "steps": 2, "url": sidecar.url, "sleep_ms": 6000 }),
        )
        .await;
    let request = server.wait_final(&id, LONG).await;

    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(
        sidecar.calls("/step/0"),
        1,
        "step 0 ran before the sleep only"
    );
    assert_eq!(sidecar.calls("/step/1"), 1);
    assert_eq!(request["generation"], 0, "{request:#}");
    assert_eq!(
        checkpoint_names(&request),
        ["step-0", "baton:sleep", "step-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_checkpoint_order_is_a_nondeterminism_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("nondeterministic")).await;
    let sidecar = Sidecar::start().await;
    sidecar.answers("/name", vec![(200, "alpha"), (200, "beta")]);
    sidecar.answers("/gate", vec![(500, "no"), (200, "yes")]);

    let input = json!({ "name_url": format!("{}/name", sidecar.url), "gate_url": format!("{}/gate", sidecar.url) });
    let id = server.start_request("nondeterministic", input).await;
    let request = server.wait_final(&id, LONG).await;

    assert_eq!(request["status"], "error");
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains("nondeterminism at checkpoint position 0"),
        "{error}"
    );
    assert!(
        error.contains("\"alpha\"") && error.contains("\"beta\""),
        "{error}"
    );
    // Nothing was overwritten: the journal still holds the first run's record.
    assert_eq!(checkpoint_names(&request), ["alpha"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_flows_end_in_error_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = ["--time-limit-s", "1", "--memory-limit-mib", "32"]
        .map(String::from)
        .to_vec();
    let server = Server::start(dir.path(), "solo", &setup).await;
    for guest in ["trap", "endless_loop", "memory_bomb", "hello"] {
        server.deploy(wasm(guest)).await;
    }
    let trap = server.start_request("trap", json!(null)).await;
    let endless = server.start_request("endless-loop", json!(null)).await;
    let bomb = server.start_request("memory-bomb", json!(null)).await;

    let error = |request: Value| {
        assert_eq!(request["status"], "error", "{request:#}");
        request["error"].as_str().unwrap().to_owned()
    };
    let trapped = server.wait_final(&trap, LONG).await;
    // The step before the trap is committed before the trap's outcome,
    // though the flow went on after it without another host call.
    assert_eq!(checkpoint_names(&trapped), ["before"]);
    let trap = error(trapped);
    assert!(trap.contains("deliberate trap"), "{trap}");
    let endless = error(server.wait_final(&endless, LONG).await);
    assert!(endless.contains("time limit"), "{endless}");
    let bomb = error(server.wait_final(&bomb, LONG).await);
    assert!(bomb.contains("memory limit of 32 MiB"), "{bomb}");

    let (status, body) = server
        .post(
            "/api/flows/hello/requests?wait=true",
            r#"{"name":"still here"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_flow_the_server_resumes_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("batch_import")).await;
    let input = json!({ "records": 3000, "batch": 200, "delay_ms": 150 });

    let id = server.start_request("batch-import", input.clone()).await;
    let before = server
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 4
        })
        .await;
    server.kill();
    let committed = before["checkpoints"].as_array().unwrap().len();

    server.restart().await;
    let resumed = server.wait_final(&id, LONG).await;
    assert_eq!(resumed["status"], "succeeded", "{resumed:#}");

    let reference = server.start_request("batch-import", input).await;
    let reference = server.wait_final(&reference, LONG).await;
    assert_eq!(resumed["output"], reference["output"]);
    assert_eq!(resumed["output"]["batches"], 15);

    let checkpoints = resumed["checkpoints"].as_array().unwrap();
    let seqs: Vec<i64> = checkpoints
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..15).collect::<Vec<_>>(),
        "every batch committed exactly once"
    );
    // The batches committed before the kill were replayed, not redone.
    let first_epoch = checkpoints[0]["epoch"].as_i64().unwrap();
    let from_first = checkpoints
        .iter()
        .filter(|c| c["epoch"].as_i64() == Some(first_epoch))
        .count();
    assert!(from_first >= committed, "{from_first} < {committed}");
    assert!(checkpoints.last().unwrap()["epoch"].as_i64().unwrap() > first_epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    let version = server.deploy(wasm("hello")).await;

    let store = SqlStore::connect(&setup.database, &setup.storage)
        .await
        .unwrap();
    let big = json!({ "name": "x".repeat(40_000) })
        .to_string()
        .into_bytes();
    let input = store.put_payload(big).unwrap();
    assert!(
        input.inline.is_none(),
        "a large input lives in the blob folder"
    );
    let path = store.blobs().path(&input.hash);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    store
        .create_request(
            &NewRequest {
                id: "corrupted-input".into(),
                flow: "hello".into(),
                version,
                owner: server.id(),
                incarnation: store
                    .server(&server.id())
                    .await
                    .unwrap()
                    .unwrap()
                    .incarnation,
                input: input.clone(),
                other_server_retry: false,
                resume: true,
                idempotency_key: None,
                parent: None,
                while_active: false,
            },
            false,
        )
        .await
        .unwrap();
    let request = server.wait_final("corrupted-input", LONG).await;
    assert_eq!(request["status"], "error");
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("blob {} is corrupted", input.hash)),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_resources_are_warned_about_and_checked_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let folder = std::path::Path::new("/tmp/baton-local-resource-test");
    let _ = std::fs::remove_dir_all(folder);

    let (status, deployed) = server.post("/api/flows", wasm("local_resources")).await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    let warnings: Vec<&str> = deployed["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("http://localhost:9 is a loopback address"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("folder /tmp/baton-local-resource-test"),
        "{warnings:?}"
    );
    let (_, flows) = server.get("/api/flows").await;
    assert_eq!(
        flows[0]["properties"]["resources"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // This server lacks the folder: the request ends in error naming both.
    let (_, body) = server
        .post(
            "/api/flows/local-resources/requests?wait=true",
            r#"{"steps": 1}"#,
        )
        .await;
    assert_eq!(body["status"], "error", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("folder:/tmp/baton-local-resource-test") && error.contains(&server.id()),
        "{error}"
    );

    std::fs::create_dir_all(folder).unwrap();
    let (_, body) = server
        .post(
            "/api/flows/local-resources/requests?wait=true",
            r#"{"steps": 1}"#,
        )
        .await;
    assert_eq!(body["status"], "succeeded", "{body}");
    std::fs::remove_dir_all(folder).unwrap();
}

/// A flows repository with the `hello` flow, greeting with `word`.
fn write_flows(repo: &std::path::Path, word: &str) {
    let root = support::root();
    let fake_tool = format!(
        "#!/bin/sh\ntouch {}\nexit 1\n",
        repo.parent().unwrap().join("toolchain-ran").display()
    );
    let files = [
        (
            "Cargo.toml".to_owned(),
            std::fs::read_to_string(root.join("flows/Cargo.toml"))
                .unwrap()
                .replace(
                    r#"members = ["hello", "order", "batch-import", "approval", "review"]"#,
                    r#"members = ["hello"]"#,
                )
                .replace(
                    "../guest-sdk",
                    &root.join("guest-sdk").display().to_string(),
                ),
        ),
        // A cargo configuration that runs the repository's own "rustc"
        // wrapper: Update's cargo never reads it.
        (
            ".cargo/config.toml".to_owned(),
            format!(
                "[build]\nrustc-wrapper = \"{}\"\n",
                repo.join("toolchain/bin/rustc").display()
            ),
        ),
        // A toolchain file choosing a "cargo" that only leaves a marker:
        // Update builds with Baton's own toolchain instead.
        (
            "rust-toolchain.toml".to_owned(),
            format!(
                "[toolchain]\npath = \"{}\"\n",
                repo.join("toolchain").display()
            ),
        ),
        ("toolchain/bin/cargo".to_owned(), fake_tool.clone()),
        ("toolchain/bin/rustc".to_owned(), fake_tool),
        (
            "hello/Cargo.toml".to_owned(),
            std::fs::read_to_string(root.join("flows/hello/Cargo.toml")).unwrap(),
        ),
        (
            "hello/src/lib.rs".to_owned(),
            std::fs::read_to_string(root.join("flows/hello/src/lib.rs"))
                .unwrap()
                .replace("Hello, {}!", &format!("{word}, {{}}!")),
        ),
    ];
    for (path, text) in files {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for tool in ["cargo", "rustc"] {
        std::fs::set_permissions(
            repo.join("toolchain/bin").join(tool),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    // Update builds `--locked`: the repository commits its lock file, the
    // example flows' lock trimmed to this workspace.
    let lock = repo.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(root.join("flows/Cargo.lock"), &lock).unwrap();
        let status = std::process::Command::new("cargo")
            .args(["metadata", "--offline", "--format-version", "1"])
            .env("RUSTUP_TOOLCHAIN", baton::vcs::deploy::baton_toolchain())
            // Not the repository's own rustc wrapper, which only fails.
            .env("CARGO_BUILD_RUSTC_WRAPPER", "")
            .current_dir(repo)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "trimming the lock file");
    }
}

/// A flows repository in `dir`: the author's clone (`author`, tracking
/// `origin/main`) holding the `hello` flow, its bare remote, and the
/// server's checkout (`checkout`) of that remote.
fn flows_repository(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let author = dir.join("author");
    std::fs::create_dir_all(&author).unwrap();
    write_flows(&author, "Hello");
    support::flows_remote(dir, "hello flow")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_fast_forwards_the_flows_repository_and_deploys_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (author, checkout) = flows_repository(dir.path());

    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec![
        "--flows-repo".into(),
        checkout.display().to_string(),
        "--flows-build-dir".into(),
        support::root()
            .join("target/flows-repo")
            .display()
            .to_string(),
    ];
    let server = Server::start(dir.path(), "solo", &setup).await;
    let (status, repo) = server.get("/api/version-control").await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["branch"], "main");
    assert_eq!(repo["head"]["message"], "hello flow");
    assert!(
        repo["remote"].as_str().unwrap().starts_with("file://"),
        "{repo}"
    );

    // The author changes the flow and pushes; Update pulls and deploys it.
    write_flows(&author, "Hi");
    git(&author, &["commit", "-q", "-am", "greet with Hi"]);
    git(&author, &["push", "-q", "origin", "main"]);
    let (status, report) = server.post("/api/version-control/update", "").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let flows = report["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{report}");
    assert_eq!(flows[0]["flow"], "hello", "{report}");
    assert!(flows[0]["error"].is_null(), "{report}");
    // Nothing of this machine's cargo home is in the component: servers
    // whose homes differ build the same bytes.
    let version = flows[0]["new"].as_str().unwrap();
    let component = std::fs::read(
        setup
            .storage
            .join("objects")
            .join(&version[..2])
            .join(&version[2..]),
    )
    .unwrap();
    let home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    assert!(
        !component.windows(home.len()).any(|w| w == home.as_bytes()),
        "the component names {home}"
    );
    // The SDK is a path outside this repository: the version depends on
    // where it is, and Update says so.
    let warning = flows[0]["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("baton-guest") && warning.contains("outside the repository"),
        "{report}"
    );
    let (_, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"name":"Ada"}"#)
        .await;
    assert_eq!(body["output"]["greeting"], "Hi, Ada!", "{body}");
    let (_, repo) = server.get("/api/version-control").await;
    assert_eq!(repo["head"]["message"], "greet with Hi");
    let head = repo["head"]["id"].as_str().unwrap().to_owned();
    support::eventually(LONG, "the server to report its flows HEAD", async || {
        let (_, list) = server.get("/api/servers").await;
        (list[0]["flows_head"] == head.as_str()).then_some(())
    })
    .await;

    // A flow that does not compile: the report carries the compiler's
    // words, not a pointer to messages the server's caller never sees.
    let source = author.join("hello/src/lib.rs");
    let broken = std::fs::read_to_string(&source)
        .unwrap()
        .replace("Ok(", "Ok(no_such_greeting + ");
    std::fs::write(&source, broken).unwrap();
    git(&author, &["commit", "-q", "-am", "break the flow"]);
    git(&author, &["push", "-q", "origin", "main"]);
    let (status, report) = server.post("/api/version-control/update", "").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let error = report["flows"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no_such_greeting") && !error.contains("messages are above"),
        "{report}"
    );
    write_flows(&author, "Hi");
    git(&author, &["commit", "-q", "-am", "mend the flow"]);
    git(&author, &["push", "-q", "origin", "main"]);
    let (status, report) = server.post("/api/version-control/update", "").await;
    assert_eq!(status, StatusCode::OK, "{report}");

    // Diverged history is refused and explained; nothing moves.
    git(
        &checkout,
        &["commit", "-q", "--allow-empty", "-m", "a local commit"],
    );
    git(
        &author,
        &["commit", "-q", "--allow-empty", "-m", "a remote commit"],
    );
    git(&author, &["push", "-q", "origin", "main"]);
    let (status, refused) = server.post("/api/version-control/update", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("diverged"),
        "{refused}"
    );
    let (_, repo) = server.get("/api/version-control").await;
    assert_eq!(repo["head"]["message"], "a local commit");
    assert!(
        !dir.path().join("toolchain-ran").exists(),
        "the repository's toolchain file chose the cargo that ran, or its cargo configuration the rustc"
    );
    assert!(
        !checkout.join("target").exists(),
        "the build wrote into the checkout"
    );
}

/// Copies the source files under `from` to `to`, build folders left out.
fn copy_source(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, name) = (entry.path(), entry.file_name());
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            copy_source(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Two servers that build the same commit from checkouts at different
/// paths, each into a build folder of its own, get the same component, so
/// they agree on the version and the drift view stays quiet. The SDK is a
/// path dependency inside the repository here; one outside it is reported
/// by Update (see `update_fast_forwards_the_flows_repository_and_deploys_what_changed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_builds_do_not_depend_on_where_the_checkout_is() {
    use baton::vcs::deploy::{Builder, component_bytes, path_dependencies_outside};

    let dir = tempfile::tempdir().unwrap();
    let root = support::root();
    let mut components = Vec::new();
    for (checkout, build) in [("one", "first"), ("elsewhere/two", "second")] {
        let checkout = dir.path().join(checkout).join("flows");
        copy_source(&root.join("guest-sdk"), &checkout.join("guest-sdk"));
        write_flows(&checkout, "Hello");
        std::fs::write(
            checkout.join("Cargo.toml"),
            std::fs::read_to_string(checkout.join("Cargo.toml"))
                .unwrap()
                .replace(&root.join("guest-sdk").display().to_string(), "guest-sdk")
                .replace("[workspace]\n", "[workspace]\nexclude = [\"guest-sdk\"]\n"),
        )
        .unwrap();
        // Kept between runs: only what comes from a registry is reused.
        let builder = Builder::Repository {
            target_dir: root.join("target/flows-reproducible").join(build),
        };
        let crate_dir = checkout.join("hello");
        assert_eq!(
            path_dependencies_outside(&crate_dir, &builder, &checkout).unwrap(),
            Vec::<String>::new()
        );
        let built = component_bytes(&crate_dir, &builder).await.unwrap();
        assert_eq!(built.len(), 1);
        components.push(built.into_iter().next().unwrap().1);
    }
    assert!(
        components[0] == components[1],
        "the same source built at two paths differs ({} and {} bytes)",
        components[0].len(),
        components[1].len()
    );
}

/// A server whose Update deploys the `dist/*.wasm` committed in its flows
/// repository, never building; and the author's clone of that repository.
async fn prebuilt_flows_server(dir: &std::path::Path) -> (std::path::PathBuf, Server) {
    let (author, checkout) = flows_repository(dir);
    let mut setup = Setup::sqlite(dir);
    setup.extra = vec![
        "--flows-repo".into(),
        checkout.display().to_string(),
        "--build-flows".into(),
        "false".into(),
    ];
    (author, Server::start(dir, "solo", &setup).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_builds_deploys_committed_components_and_never_runs_cargo() {
    let dir = tempfile::tempdir().unwrap();
    let (author, server) = prebuilt_flows_server(dir.path()).await;

    // The author pushes a build script that would leave a marker if it ran,
    // and the component they built themselves.
    let marker = dir.path().join("build-script-ran");
    std::fs::write(
        author.join("hello/build.rs"),
        format!(
            "fn main() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(author.join("dist")).unwrap();
    std::fs::write(author.join("dist/hello.wasm"), support::wasm("hello")).unwrap();
    git(&author, &["add", "."]);
    git(
        &author,
        &["commit", "-q", "-m", "a build script and the built flow"],
    );
    git(&author, &["push", "-q", "origin", "main"]);

    let (status, report) = server.post("/api/version-control/update", "").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let flows = report["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{report}");
    assert_eq!(flows[0]["path"], "dist/hello.wasm", "{report}");
    assert_eq!(flows[0]["flow"], "hello", "{report}");
    assert!(flows[0]["error"].is_null(), "{report}");
    let (_, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"name":"Ada"}"#)
        .await;
    assert_eq!(body["output"]["greeting"], "Hello, Ada!", "{body}");
    assert!(!marker.exists(), "the repository's build script ran");
    assert!(
        !dir.path().join("toolchain-ran").exists(),
        "the repository's toolchain ran"
    );
}

/// Update replays a changed flow's journals against its new version: one
/// that would diverge keeps the flow on its old version and is named;
/// `baton sync --force` deploys it all the same, with the divergence as a
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_keeps_a_flow_whose_journals_would_diverge_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (author, server) = prebuilt_flows_server(dir.path()).await;
    let publish = |guest: &str, message: &str| {
        std::fs::create_dir_all(author.join("dist")).unwrap();
        std::fs::write(author.join("dist/steps.wasm"), support::wasm(guest)).unwrap();
        git(&author, &["add", "."]);
        git(&author, &["commit", "-q", "-m", message]);
        git(&author, &["push", "-q", "origin", "main"]);
    };
    let active = async || {
        let (_, flows) = server.get("/api/flows").await;
        flows
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "steps")
            .map(|f| f["version"].as_str().unwrap().to_owned())
    };

    publish("steps", "steps");
    let (ok, _, err) = server.cli(&["sync"]);
    assert!(ok, "{err}");
    let original = active().await.unwrap();
    let finished = server.start_request("steps", json!({ "steps": 2 })).await;
    server.wait_final(&finished, LONG).await;

    publish("steps_renamed", "rename the checkpoints");
    let (ok, out, _) = server.cli(&["sync"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            r#"request {finished} at checkpoint 0: the journal records "step-0", the new version asks for "square-0""#
        )),
        "{out}"
    );
    assert_eq!(active().await.unwrap(), original);

    // A version the journal agrees with goes through.
    publish("steps_v2", "a compatible change");
    let (ok, _, err) = server.cli(&["sync"]);
    assert!(ok, "{err}");
    let compatible = active().await.unwrap();
    assert_ne!(compatible, original);

    publish("steps_renamed", "rename them again");
    let (ok, _, err) = server.cli(&["sync", "--force"]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("request {finished} at checkpoint 0")),
        "{err}"
    );
    assert_ne!(active().await.unwrap(), compatible);
}

/// Closes every connection to the test database and refuses new ones, or
/// lets them in again: the database is away, as in a restart or a network cut.
async fn set_database_away(url: &str, away: bool) {
    use sqlx::Connection;
    let (server, name) = url.rsplit_once('/').unwrap();
    let mut admin = sqlx::AnyConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {}",
        !away
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    if away {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_for_a_while_delays_the_flow_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        heartbeat_ms: 500,
        lease_ms: 15_000,
        ..Setup::postgres(dir.path())
    };
    sqlx::any::install_default_drivers();
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("batch_import")).await;
    let id = server
        .start_request(
            "batch-import",
            json!({ "records": 2000, "batch": 100, "delay_ms": 150 }),
        )
        .await;
    server
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 3
        })
        .await;

    set_database_away(&setup.database, true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = server.get(&format!("/api/requests/{id}")).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert!(body["error"].as_str().is_some(), "{body}");
    set_database_away(&setup.database, false).await;

    let done = server.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 1, "the attempt waited instead of failing");
    assert_eq!(done["failures"], 0);
    let seqs: Vec<i64> = done["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..20).collect::<Vec<_>>(),
        "each batch committed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sleep_gives_its_slot_back_and_resumes_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = ["--capacity", "1"].map(String::from).to_vec();
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("sleeper")).await;
    server.deploy(wasm("hello")).await;

    let started = std::time::Instant::now();
    let sleeper = server.start_request("sleeper", json!({ "ms": 6000 })).await;
    let sleeping = server
        .wait_request(&sleeper, LONG, |r| {
            r["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "sleeping")
        })
        .await;
    assert_eq!(sleeping["status"], "running", "a sleeping flow is running");

    // The only slot is free while the flow sleeps.
    let hello = server
        .start_request("hello", json!({ "name": "Ada" }))
        .await;
    let hello = server.wait_final(&hello, LONG).await;
    assert_eq!(hello["status"], "succeeded", "{hello:#}");

    let done = server.wait_final(&sleeper, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_eq!(done["attempts"], 2, "resumed once, after the sleep");
    assert_eq!(done["failures"], 0);
    assert_eq!(
        server.log_text().matches("sleeper goes to sleep").count(),
        1,
        "a log line is written live, not again on replay"
    );
    assert_eq!(
        checkpoint_names(&done),
        [
            "baton:now",
            "before",
            "baton:sleep",
            "after",
            "baton:random"
        ],
        "the resumed attempt replayed the clock, the first step and the sleep"
    );
    let after = &done["checkpoints"].as_array().unwrap()[3];
    assert!(
        hello["updated_at"].as_i64() < after["at"].as_i64(),
        "hello ran while the sleeper slept: {hello:#} {after:#}"
    );
}

/// Creates a request for `flow` owned by `server` through a store of the
/// test's own, already claimed by the server's current incarnation (as a
/// create whose answer was lost leaves it), and returns the claim's fence.
async fn claimed_request(
    store: &SqlStore,
    server: &Server,
    flow: &str,
    version: &str,
    input: Value,
) -> baton_store::Fence {
    let owner = server.id();
    let incarnation = store.server(&owner).await.unwrap().unwrap().incarnation;
    let claim = store
        .create_request(
            &NewRequest {
                id: store.new_request_id(),
                flow: flow.into(),
                version: version.into(),
                owner,
                incarnation,
                input: store.put_payload(input.to_string().into_bytes()).unwrap(),
                other_server_retry: false,
                resume: true,
                idempotency_key: None,
                parent: None,
                while_active: false,
            },
            true,
        )
        .await
        .unwrap()
        .expect("created running");
    claim.fence
}

/// A request the database records as running here, with no attempt behind
/// it (a claim or a create whose answer was lost), is found by its server
/// and run; it stayed `running` until the server restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_without_an_attempt_is_picked_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    let version = server.deploy(wasm("hello")).await;
    let store = SqlStore::connect(&setup.database, &setup.storage)
        .await
        .unwrap();

    let fence = claimed_request(&store, &server, "hello", &version, json!({ "name": "Ada" })).await;
    let request = server.wait_final(&fence.request, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(request["output"]["greeting"], "Hello, Ada!");
    let released = request["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "released")
        .cloned()
        .expect("a released event");
    assert_eq!(released["epoch"], fence.epoch, "{request:#}");
}

/// The storage folder away for a while (renamed, as an unmounted share
/// would be) postpones the attempts that need it instead of ending their
/// requests in `error`; when it is back they succeed, and the blobs written
/// meanwhile were not put into a fresh folder that the return would hide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_folder_away_for_a_while_postpones_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    let version = server.deploy(wasm("hello")).await;
    let store = SqlStore::connect(&setup.database, &setup.storage)
        .await
        .unwrap();

    // Inputs (and so outputs) too large to be kept inline: they are blobs.
    let name = "x".repeat(40_000);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let fence =
            claimed_request(&store, &server, "hello", &version, json!({ "name": name })).await;
        // Due in two seconds, when the storage folder is away.
        store
            .finish(
                &fence,
                &Outcome::Postponed {
                    reason: "the test holds it".into(),
                    delay_ms: 2000,
                },
            )
            .await
            .unwrap();
        ids.push(fence.request);
    }
    let away = dir.path().join("store-away");
    std::fs::rename(&setup.storage, &away).unwrap();
    for id in &ids {
        server
            .wait_request(id, LONG, |r| {
                r["events"].as_array().unwrap().iter().any(|e| {
                    e["kind"] == "postponed"
                        && e["detail"].as_str().is_some_and(|d| d.contains("input"))
                })
            })
            .await;
    }
    assert!(
        !setup.storage.exists(),
        "nothing recreated the storage folder while it was away"
    );
    std::fs::rename(&away, &setup.storage).unwrap();

    for id in &ids {
        let request = server.wait_final(id, LONG).await;
        assert_eq!(request["status"], "succeeded", "{request:#}");
        assert_eq!(request["failures"], 0, "{request:#}");
        assert_eq!(
            request["output"]["greeting"],
            format!("Hello, {name}!"),
            "{id}"
        );
    }
}

/// A server killed with SIGKILL and restarted at once on its own data
/// folder joins without watching its previous incarnation's heartbeat (it
/// holds the folder's lock, so that process has exited) and resumes the
/// request; a copied folder is still watched (`cluster::a_cloned_data_folder_is_refused_while_its_original_lives`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_its_own_data_folder_joins_at_once_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let mut server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(200);
    let id = server
        .start_request("steps", json!({ "steps": 6, "url": sidecar.url }))
        .await;
    server
        .wait_request(&id, LONG, |r| {
            r["checkpoints"].as_array().unwrap().len() >= 2
        })
        .await;
    server.restart().await;
    let done = server.wait_final(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let log = server.log_text();
    assert!(log.contains("has exited: joining at once"), "{log}");
    assert!(!log.contains("checking that it is gone"), "{log}");
}
