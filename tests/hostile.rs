//! Hostile callers and hostile flows against real server processes: bad
//! query values, huge histories, forged journal calls, password guessing.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{Server, Setup, Sidecar, wasm};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_timeout_that_is_not_a_number_of_seconds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;
    for timeout in ["NaN", "inf", "-inf", "-1", "1e300"] {
        let (status, body) = server
            .post(
                &format!("/api/flows/hello/requests?wait=true&timeout={timeout}"),
                r#"{"name":"Ada"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "timeout={timeout}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("timeout"),
            "{body}"
        );
    }
    let (_, requests) = server.get("/api/requests").await;
    assert_eq!(requests, json!([]), "a refused start created a request");
    let (status, body) = server
        .post(
            "/api/flows/hello/requests?wait=true&timeout=30",
            r#"{"name":"Ada"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["greeting"], "Hello, Ada!");
}

/// Follows a detail list (`checkpoints` or `events`) page by page.
async fn all_pages(server: &Server, id: &str, list: &str) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut after: Option<i64> = None;
    loop {
        let cursor = after
            .map(|a| format!("&{list}_after={a}"))
            .unwrap_or_default();
        let (status, page) = server
            .get(&format!("/api/requests/{id}?limit=2{cursor}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page[list].as_array().unwrap();
        assert!(items.len() <= 2, "a page of two held {}", items.len());
        rows.extend(items.iter().cloned());
        pages += 1;
        match page[format!("{list}_next")].as_i64() {
            Some(next) => after = Some(next),
            None => return (rows, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_detail_pages_checkpoints_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    let id = server.start_request("steps", json!({ "steps": 5 })).await;
    let request = server.wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");

    let (checkpoints, pages) = all_pages(&server, &id, "checkpoints").await;
    let names: Vec<&str> = checkpoints
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["step-0", "step-1", "step-2", "step-3", "step-4"]);
    assert_eq!(pages, 3);
    let (events, _) = all_pages(&server, &id, "events").await;
    assert_eq!(events, request["events"].as_array().unwrap().clone());
    assert!(events.len() >= 3, "{events:?}");
    assert_eq!(request["checkpoints_next"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_server_stores_is_its_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    // A storage folder someone made readable to all beforehand.
    std::fs::create_dir_all(&setup.storage).unwrap();
    std::fs::set_permissions(&setup.storage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("hello")).await;
    let (status, body) = server
        .post("/api/flows/hello/requests?wait=true", r#"{"name":"Ada"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut paths = vec![server.data.clone(), setup.storage.clone()];
    let mut seen = Vec::new();
    while let Some(path) = paths.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        if meta.is_dir() {
            paths.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen.push((path, meta.permissions().mode() & 0o777, meta.is_dir()));
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("baton.db")
        {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            seen.push((path, mode, false));
        }
    }
    let names: Vec<String> = seen
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["server-id", "admin.token", "baton.db", "objects"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    for (path, mode, is_dir) in seen {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} has mode {mode:o}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_journal_calls_that_forge_or_flood_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("raw_journal")).await;
    for (case, why) in [
        ("reserved", "reserved for Baton"),
        ("long", "longer than the limit of 1024 bytes"),
        ("nul", "NUL byte"),
        ("not-json", "is not JSON"),
        ("pause", "longer than the limit of 10000 ms"),
    ] {
        let id = server
            .start_request("raw-journal", json!({ "case": case }))
            .await;
        let request = server.wait_final(&id, LONG).await;
        assert_eq!(request["status"], "error", "{case}: {request:#}");
        let error = request["error"].as_str().unwrap();
        assert!(error.contains(why), "{case}: {error}");
        assert_eq!(request["checkpoints"], json!([]), "{case}: {request:#}");
    }

    let id = server
        .start_request("raw-journal", json!({ "case": "log" }))
        .await;
    let request = server.wait_final(&id, LONG).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    let log = server.log_text();
    assert!(
        log.contains("looks fine"),
        "the flow's line is missing:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-01-01T00:00:00Z")),
        "a flow forged a log line:\n{log}"
    );
    assert!(log.contains(&"x".repeat(4096)), "the long line is missing");
    assert!(
        !log.contains(&"x".repeat(4097)),
        "a log line was not capped"
    );
}

/// The console's login form, posted as a browser would (CSRF cookie and
/// field), optionally through a proxy that names the client.
struct LoginForm {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

impl LoginForm {
    async fn open(server: &Server) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = http
            .get(format!("{}/login", server.base))
            .send()
            .await
            .unwrap();
        let csrf = support::csrf_of(form.headers()["set-cookie"].to_str().unwrap());
        Self {
            http,
            base: server.base.clone(),
            csrf,
        }
    }

    async fn post(
        &self,
        username: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/login", self.base))
            .header("cookie", format!("baton_csrf={}", self.csrf));
        if let Some(client) = forwarded_for {
            request = request.header("x-forwarded-for", client);
        }
        request
            .form(&[
                ("csrf", self.csrf.as_str()),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }
}

/// Behind a trusted proxy every client arrives from the proxy's address:
/// the login throttle counts each by the address the proxy saw
/// (`X-Forwarded-For`), so one client's guessing does not lock out the
/// others, and the header counts only when the proxy sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_is_throttled_by_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("baton.toml");
    std::fs::write(&config, "trusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--config".into(), config.display().to_string()];
    let server = Server::start(dir.path(), "solo", &setup).await;
    let form = LoginForm::open(&server).await;
    let login = async |forwarded_for: &str, username: &str| {
        form.post(username, "guess", Some(forwarded_for))
            .await
            .status()
            .as_u16()
    };
    // One client guesses under many names until its address must wait; a
    // forged first entry does not change who it is to the proxy.
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(login("198.51.100.1, 203.0.113.9", &format!("guess{i}")).await);
    }
    assert!(
        statuses.contains(&429),
        "the guessing client was never throttled: {statuses:?}"
    );
    assert_eq!(login("203.0.113.9", "someone").await, 429);
    // Another client behind the same proxy is not.
    assert_eq!(login("203.0.113.10", "someone").await, 401);
}

/// A `429` whose `Retry-After` asks for a wait within the throttle's
/// bounds (15 minutes at most).
fn assert_must_wait(refused: &reqwest::Response) {
    assert_eq!(
        refused.status().as_u16(),
        429,
        "the right password while waiting"
    );
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_logins_must_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let form = LoginForm::open(&server).await;
    let login = async |username: &str, password: &str| form.post(username, password, None).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(login("admin", "guess").await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429]);
    let refused = login("admin", support::ADMIN_PASSWORD).await;
    assert_must_wait(&refused);
    // Another account from the same address still gets its answer.
    assert_eq!(login("nobody", "guess").await.status().as_u16(), 401);

    let huge = form.post("admin", &"p".repeat(64 << 10), None).await;
    assert_eq!(huge.status().as_u16(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_current_passwords_must_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let http = reqwest::Client::new();
    let change = async |current: &str| {
        http.post(format!("{}/api/password", server.base))
            .bearer_auth(&server.token)
            .body(json!({ "current": current, "password": "another long one" }).to_string())
            .send()
            .await
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(change("guess").await.status().as_u16());
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 403, 429]);
    let refused = change(support::ADMIN_PASSWORD).await;
    assert_must_wait(&refused);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("try again")),
        "{body}"
    );
    // They count as failed logins of the account: the console's login waits too.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = "ab".repeat(32);
    let answer = login
        .post(format!("{}/login", server.base))
        .header("cookie", format!("baton_csrf={csrf}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "admin"),
            ("password", support::ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_error_shows_no_credentials_of_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("steps")).await;
    // Nothing listens on port 1: the call fails and its error names the URL.
    let id = server
        .start_request(
            "steps",
            json!({ "steps": 1, "url": "http://flows:hunter2@127.0.0.1:1" }),
        )
        .await;
    let request = server.wait_final(&id, LONG).await;
    assert_eq!(request["status"], "error", "{request:#}");
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains("http://flows:***@127.0.0.1:1/step/0"),
        "{error}"
    );
    assert!(!request.to_string().contains("hunter2"), "{request:#}");
    assert!(!server.log_text().contains("hunter2"), "the log shows it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_calls_only_the_origins_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    // `steps` declares `http://127.0.0.1:*`.
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    let run = async |url: String| {
        let id = server
            .start_request("steps", json!({ "steps": 1, "url": url }))
            .await;
        server.wait_final(&id, LONG).await
    };

    let request = run(sidecar.url.clone()).await;
    assert_eq!(request["status"], "succeeded", "{request:#}");
    assert_eq!(sidecar.calls("/step/0"), 1);

    // The same server by a name the flow did not declare.
    let by_name = sidecar.url.replace("127.0.0.1", "localhost");
    let request = run(by_name.clone()).await;
    assert_eq!(request["status"], "error", "{request:#}");
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("flow steps may not call {by_name}/step/0"))
            && error.contains("not among the HTTP resources the flow declares"),
        "{error}"
    );
    assert_eq!(sidecar.calls("/step/0"), 1, "the refused call went out");

    // The cloud metadata address.
    let request = run("http://169.254.169.254".into()).await;
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains("flow steps may not call http://169.254.169.254/step/0"),
        "{error}"
    );

    // An answer larger than the 16 MiB the host holds for a flow.
    let big = "x".repeat(17 << 20);
    sidecar.answers("/big/step/0", vec![(200, big.as_str())]);
    let request = run(format!("{}/big", sidecar.url)).await;
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains("is larger than the limit of 16777216 bytes"),
        "{error}"
    );
    assert_eq!(
        error.matches("/big/step/0").count(),
        1,
        "said once: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_does_not_get_a_server_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let flooded = Server::start(dir.path(), "s0", &setup).await;
    let watcher = Server::start(dir.path(), "s1", &setup).await;
    let status_of_flooded = async || {
        let (_, servers) = watcher.get("/api/servers").await;
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == flooded.id())
            .cloned()
            .unwrap()
    };
    let before = status_of_flooded().await;
    assert_eq!(before["status"], "running", "{before}");

    let http = reqwest::Client::new();
    let csrf = "f".repeat(64);
    let logins = (0..500).map(|i| {
        let request = http
            .post(format!("{}/login", flooded.base))
            .header("cookie", format!("baton_csrf={csrf}"))
            .form(&[
                ("csrf", csrf.clone()),
                ("username", format!("guess-{i}")),
                ("password", "guess".to_owned()),
            ]);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let flood = tokio::spawn(all_at_once(logins.collect()));
    let mut oldest_heartbeat_ms = 0;
    while !flood.is_finished() {
        let seen = status_of_flooded().await;
        assert_eq!(
            seen["status"], "running",
            "taken over during the flood: {seen}"
        );
        oldest_heartbeat_ms = oldest_heartbeat_ms.max(seen["heartbeat_age_ms"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses = flood.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "the address was never throttled");
    let after = status_of_flooded().await;
    assert_eq!(after["status"], "running", "{after}");
    assert_eq!(after["incarnation"], before["incarnation"], "{after}");
    println!("oldest heartbeat seen during the flood: {oldest_heartbeat_ms} ms");
}

/// Runs the futures at once and gathers their outputs in order.
async fn all_at_once<F: Future<Output = u16> + Send + 'static>(futures: Vec<F>) -> Vec<u16> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// A `baton up` on SQLite in `dir/name`, with `password` as
/// `BATON_ADMIN_PASSWORD` (none: unset); its stdout and stderr go to files.
fn first_start(dir: &std::path::Path, name: &str, password: Option<&str>) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .arg("up")
        .arg("--data")
        .arg(dir.join(name))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            dir.join(format!("{name}.db")).display()
        ))
        .arg("--storage")
        .arg(dir.join(format!("{name}-store")))
        .env("BATON_LOG", "info")
        .env_remove("BATON_ADMIN_PASSWORD")
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    if let Some(password) = password {
        command.env("BATON_ADMIN_PASSWORD", password);
    }
    command.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_password_is_long_and_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();

    let mut short = first_start(dir.path(), "short", Some("tooshort"));
    let status = support::eventually(LONG, "the server to refuse", async || {
        short.try_wait().unwrap()
    })
    .await;
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("short.log")).unwrap();
    assert!(log.contains("needs at least 12"), "{log}");

    let mut generated = first_start(dir.path(), "generated", None);
    let base = support::eventually(LONG, "the server to listen", async || {
        let out = std::fs::read_to_string(dir.path().join("generated.out")).unwrap();
        baton::server::listening_address(&out).map(str::to_owned)
    })
    .await;
    let file = dir.path().join("generated/admin.password");
    let password = std::fs::read_to_string(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let log = std::fs::read_to_string(dir.path().join("generated.log")).unwrap();
    assert!(
        !log.contains(&password),
        "the password is in the log:\n{log}"
    );
    assert!(log.contains("admin.password"), "{log}");
    // It is the admin's password.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = "a".repeat(64);
    let login = http
        .post(format!("{base}/login"))
        .header("cookie", format!("baton_csrf={csrf}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "admin"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    generated.kill().unwrap();
    generated.wait().unwrap();
}

/// A cancel frees the slot of a flow waiting for an HTTP answer, and on the
/// server running the attempt it does so at once: with a heartbeat ten
/// minutes apart, nothing else frees the slot before the flow's call gives
/// up on its answer. The cancelled attempt commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_an_attempt_here_at_once_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--capacity".into(), "1".into()];
    (setup.heartbeat_ms, setup.lease_ms) = (600_000, 2_400_000);
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.delay(60_000);
    let slow = server
        .start_request("steps", json!({ "steps": 1, "url": sidecar.url }))
        .await;
    support::eventually(LONG, "the slow call to arrive", async || {
        (sidecar.calls("/step/0") == 1).then_some(())
    })
    .await;
    // The one slot is taken: this request waits for it.
    let next = server.start_request("steps", json!({ "steps": 2 })).await;
    let (status, body) = server
        .post(&format!("/api/requests/{slow}/cancel"), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Well under the 30 s after which the call itself gives up, the minute
    // its answer takes and the heartbeat's ten.
    let done = server.wait_final(&next, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        sidecar.answered("/step/0"),
        0,
        "the slow call was still unanswered"
    );
    let cancelled = server.request(&slow).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert_eq!(cancelled["checkpoints"], json!([]), "{cancelled:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_waits_past_its_wall_clock_limit_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--attempt-wall-limit-s".into(), "1".into()];
    let server = Server::start(dir.path(), "solo", &setup).await;
    server.deploy(wasm("raw_journal")).await;
    // Each pause is within the cap; together they wait 100 s.
    let script = vec![json!({ "pause": 10_000 }); 10];
    let id = server
        .start_request("raw-journal", json!({ "script": script }))
        .await;
    let request = server.wait_final(&id, Duration::from_secs(150)).await;
    assert_eq!(request["status"], "error", "{request:#}");
    let error = request["error"].as_str().unwrap();
    assert!(
        error.contains("wall-clock limit of 1s (attempt_wall_limit_s)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_can_be_changed_revoked_disabled_deleted_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::sqlite(dir.path());
    setup.extra = vec!["--token-ttl-s".into(), "2".into()];
    let server = Server::start(dir.path(), "solo", &setup).await;
    let http = reqwest::Client::new();
    let with = async |token: &str| {
        let response = http
            .get(format!("{}/api/requests", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    let account = json!({ "name": "ops", "password": "a long password", "role": "operator" });
    let (status, body) = server.post("/api/accounts", account.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issue = async || {
        let (status, body) = server.post("/api/accounts/ops/tokens", "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    };

    // Revoked through the CLI, by whoever holds it.
    let token = issue().await;
    assert_eq!(with(&token).await, 200);
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["revoke", "--server", &server.base, "--token", &token])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(cli.stdin.take().unwrap(), "{token}").unwrap();
    assert!(cli.wait().unwrap().success());
    assert_eq!(with(&token).await, 401);

    // Disabled, enabled, deleted.
    let token = issue().await;
    let (status, _) = server.post("/api/accounts/ops/disable", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with(&token).await, 401);
    let (status, _) = server.post("/api/accounts/ops/enable", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with(&token).await, 200);
    let (status, _) = server.delete("/api/accounts/ops").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with(&token).await, 401);
    let (_, accounts) = server.get("/api/accounts").await;
    assert_eq!(
        accounts,
        json!([{ "name": "admin", "role": "admin", "disabled": false }])
    );
    // An admin cannot lock themselves out.
    let (status, _) = server.post("/api/accounts/admin/disable", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .post(
            "/api/accounts/admin/role",
            json!({ "role": "viewer" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .post(
            "/api/accounts/nobody/role",
            json!({ "role": "viewer" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A password change needs the current one.
    let change = |current: &str| json!({ "current": current, "password": "another long one" });
    let (status, _) = server
        .post("/api/password", change("wrong password").to_string())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server
        .post("/api/password", change(support::ADMIN_PASSWORD).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An issued token expires (token_ttl_s = 2); admin.token does not.
    let (status, _) = server.post("/api/accounts", account.to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    // The CLI gives it another role.
    let demoted = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "manage",
            "ops",
            "--role",
            "viewer",
            "--server",
            &server.base,
        ])
        .args(["--token", &server.token])
        .status()
        .unwrap();
    assert!(demoted.success());
    let (_, accounts) = server.get("/api/accounts").await;
    assert_eq!(
        accounts[1],
        json!({ "name": "ops", "role": "viewer", "disabled": false })
    );
    let token = issue().await;
    assert_eq!(with(&token).await, 200);
    support::eventually(LONG, "the token to expire", async || {
        (with(&token).await == 401).then_some(())
    })
    .await;
    assert_eq!(with(&server.token).await, 200);
}
