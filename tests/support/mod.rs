//! What the integration tests share: built guests, real server processes,
//! a side-effect HTTP server, deadlines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use baton::http::api::dto::CheckpointView;
use baton_store::scratch::ScratchDatabase;
use serde_json::{Value, json};

/// The console's CSRF token in a `Set-Cookie` value that sets it.
pub fn csrf_of(set_cookie: &str) -> String {
    set_cookie
        .trim_start_matches("baton_csrf=")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The repository root.
/// Runs git in `dir` with a fixed identity.
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Flow Author",
            "-c",
            "user.email=author@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} in {}", dir.display());
}

/// Makes `dir/author` (already holding the files) a git repository, with
/// its first commit (`message`) pushed to a shared remote `dir/remote.git` that it
/// tracks, and the servers' clone of it in `dir/checkout`; returns the
/// author's folder and the checkout.
pub fn flows_remote(dir: &Path, message: &str) -> (PathBuf, PathBuf) {
    let (author, remote, checkout) = (
        dir.join("author"),
        dir.join("remote.git"),
        dir.join("checkout"),
    );
    git(&author, &["init", "-q"]);
    git(&author, &["add", "."]);
    git(&author, &["commit", "-q", "-m", message]);
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            author.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
    );
    let remote = format!("file://{}", remote.display());
    git(&author, &["remote", "add", "origin", &remote]);
    git(&author, &["fetch", "-q", "origin"]);
    git(&author, &["branch", "-q", "--set-upstream-to=origin/main"]);
    git(dir, &["clone", "-q", &remote, checkout.to_str().unwrap()]);
    (author, checkout)
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds the example flows and the test guests once per test binary and
/// returns the folder holding the `.wasm` files.
pub fn guests() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        baton::vcs::deploy::ensure_guest_target(&root(), &baton::vcs::deploy::Builder::Admin)
            .expect("the guest target");
        for workspace in ["flows", "tests/guests"] {
            let status = Command::new(&cargo)
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .current_dir(root().join(workspace))
                .status()
                .expect("running cargo for the guests");
            assert!(
                status.success(),
                "building the guests in {workspace} failed"
            );
        }
        root().join("target/wasm32-wasip2/release")
    })
}

/// The bytes of a built guest, by file stem (`steps`, `batch_import`, …).
pub fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(guests().join(format!("{name}.wasm"))).unwrap()
}

/// A PostgreSQL database of its own for one test (on the server that
/// `BATON_TEST_POSTGRES` names, by default the local one), dropped, with
/// any connections still open, when the last holder lets go.
pub fn postgres_database() -> Arc<ScratchDatabase> {
    Arc::new(ScratchDatabase::postgres("baton_test"))
}

/// The password of the `admin` account the first test server creates.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Setup {
    pub database: String,
    pub storage: PathBuf,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    pub extra: Vec<String>,
    /// Environment variables for the server process (e.g. `BATON_FAULT`).
    pub env: Vec<(String, String)>,
    /// The PostgreSQL database `database` names, kept while a clone lives.
    pub postgres: Option<Arc<ScratchDatabase>>,
}

impl Setup {
    /// One-server SQLite setup in `dir`.
    pub fn sqlite(dir: &Path) -> Self {
        Self {
            database: format!("sqlite://{}", dir.join("baton.db").display()),
            storage: dir.join("store"),
            heartbeat_ms: 200,
            lease_ms: 1000,
            extra: Vec::new(),
            env: Vec::new(),
            postgres: None,
        }
    }

    /// A cluster setup sharing a PostgreSQL database and a storage folder.
    pub fn postgres(dir: &Path) -> Self {
        let postgres = postgres_database();
        Self {
            database: postgres.url.clone(),
            postgres: Some(postgres),
            ..Self::sqlite(dir)
        }
    }
}

/// A real `baton up` process.
pub struct Server {
    pub name: String,
    pub base: String,
    /// The admin API token the server wrote to its data folder.
    pub token: String,
    pub data: PathBuf,
    setup: Setup,
    child: Option<Child>,
    log: PathBuf,
    http: reqwest::Client,
}

impl Server {
    /// Starts a server named `name` with its data folder in `dir/name`.
    pub async fn start(dir: &Path, name: &str, setup: &Setup) -> Server {
        Self::try_start(dir, name, setup)
            .await
            .unwrap_or_else(|log| panic!("{log}"))
    }

    /// Starts a server like [`Server::start`]; `Err` holds what it said
    /// when it exited before listening.
    pub async fn try_start(dir: &Path, name: &str, setup: &Setup) -> Result<Server, String> {
        let mut server = Server {
            name: name.to_owned(),
            base: String::new(),
            token: String::new(),
            data: dir.join(name),
            setup: setup.clone(),
            child: None,
            log: dir.join(format!("{name}.log")),
            http: reqwest::Client::new(),
        };
        server.launch().await?;
        Ok(server)
    }

    async fn launch(&mut self) -> Result<(), String> {
        let out = self.data.with_extension("out");
        let _ = std::fs::remove_file(&out);
        let stdout = std::fs::File::create(&out).unwrap();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("up")
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", "127.0.0.1:0", "--name", &self.name])
            .arg("--database")
            .arg(&self.setup.database)
            .arg("--storage")
            .arg(&self.setup.storage)
            .args(["--heartbeat-ms", &self.setup.heartbeat_ms.to_string()])
            .args(["--lease-ms", &self.setup.lease_ms.to_string()])
            .args(&self.setup.extra)
            .envs(self.setup.env.iter().map(|(k, v)| (k, v)))
            .env("BATON_LOG", "info,sqlx=warn")
            .env("BATON_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // A server runs on its own, not under the cargo that runs the
            // tests and would choose the toolchain for it.
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting baton");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(base) = baton::server::listening_address(&text) {
                self.base = base.to_owned();
                let token = std::fs::read_to_string(self.data.join("admin.token")).unwrap();
                self.token = token.trim().to_owned();
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "server {} exited with {status} before listening; log:\n{}",
                    self.name,
                    self.log_text()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "server {} did not start; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server ID kept in its data folder.
    pub fn id(&self) -> String {
        std::fs::read_to_string(self.data.join("server-id"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal if the process is there (a chaos fault may have
    /// killed it meanwhile).
    pub fn signal_quietly(&self, signal: i32) {
        if self.child.is_some() {
            self.signal(signal);
        }
    }

    /// A GET that answers `Null` when the server does not answer at all.
    pub async fn get_quietly(&self, path: &str) -> (StatusCode, Value) {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(2))
            .bearer_auth(&self.token);
        match request.send().await {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT, SIGTERM…).
    pub fn signal(&self, signal: i32) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Waits for the process to exit after a signal.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = self.child.as_mut().unwrap().wait().unwrap();
        self.child = None;
        status
    }

    /// Starts the process again on the same data folder.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await.unwrap_or_else(|log| panic!("{log}"));
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// One authenticated API call; the answer's status and JSON body
    /// (`null` when it is not JSON).
    async fn call(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A console page's status and HTML, read with the admin token.
    pub async fn page(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }

    /// Runs the `baton` command against this server with its token:
    /// whether it succeeded, its stdout and its stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .args(["--server", &self.base, "--token", &self.token])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        self.call(self.http.post(url).body(body)).await
    }

    /// POST with an `Idempotency-Key` header.
    pub async fn post_keyed(&self, path: &str, body: &str, key: &str) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        self.call(
            self.http
                .post(url)
                .header("Idempotency-Key", key)
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Deploys a component; returns its version hash.
    pub async fn deploy(&self, wasm: Vec<u8>) -> String {
        let (status, body) = self.post("/api/flows", wasm).await;
        assert_eq!(status, StatusCode::CREATED, "deploy failed: {body}");
        body["version"].as_str().unwrap().to_owned()
    }

    /// Starts a request; returns its id.
    pub async fn start_request(&self, flow: &str, input: Value) -> String {
        let (status, body) = self
            .post(&format!("/api/flows/{flow}/requests"), input.to_string())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "start failed: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn request(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/requests/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls the request until `done` holds for it, or panics at the deadline.
    pub async fn wait_request(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let request = self.request(id).await;
            if done(&request) {
                return request;
            }
            assert!(
                Instant::now() < deadline,
                "request {id} did not get there in {limit:?}: {request:#}\nlog of {}:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the request to finish (succeeded, error or cancelled).
    pub async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        self.wait_request(id, limit, |r| {
            matches!(
                r["status"].as_str(),
                Some("succeeded" | "error" | "cancelled")
            )
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on a child we spawned: a stopped test server is resumed so it can die.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A local HTTP server that flows call for their side effects. It counts
/// every call per path and per idempotency key, and can be told to fail a
/// path a number of times or to answer slowly.
#[derive(Clone)]
pub struct Sidecar {
    pub url: String,
    state: Arc<Mutex<SidecarState>>,
}

#[derive(Default)]
struct SidecarState {
    calls: HashMap<String, u32>,
    /// Calls answered per path (a slow answer counts once it is sent).
    answered: HashMap<String, u32>,
    /// Arrival times (ms since the Unix epoch) of the calls per idempotency key.
    keys: HashMap<String, Vec<i64>>,
    fail: HashMap<String, u32>,
    /// Paths whose first call per idempotency key fails.
    fail_first: std::collections::HashSet<String>,
    delay_ms: u64,
    answers: HashMap<String, Vec<(u16, String)>>,
    /// The `traceparent` header of each call, in arrival order.
    traceparents: Vec<Option<String>>,
}

impl Sidecar {
    pub async fn start() -> Sidecar {
        let state = Arc::new(Mutex::new(SidecarState::default()));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::any(sidecar_call))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sidecar { url, state }
    }

    /// Calls seen on `path` (e.g. `/step/3`).
    pub fn calls(&self, path: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Calls on `path` answered so far.
    pub fn answered(&self, path: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .answered
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Every call count by path.
    pub fn all_calls(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls seen per idempotency key.
    /// The `traceparent` header of each call so far, in arrival order.
    pub fn traceparents(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().traceparents.clone()
    }

    pub fn keys(&self) -> HashMap<String, u32> {
        self.state
            .lock()
            .unwrap()
            .keys
            .iter()
            .map(|(key, times)| (key.clone(), times.len() as u32))
            .collect()
    }

    /// When each call per idempotency key arrived, in ms since the Unix
    /// epoch (the clock PostgreSQL on this host reads too).
    pub fn key_arrivals(&self) -> HashMap<String, Vec<i64>> {
        self.state.lock().unwrap().keys.clone()
    }

    /// The next `times` calls on `path` answer 500.
    pub fn fail(&self, path: &str, times: u32) {
        self.state
            .lock()
            .unwrap()
            .fail
            .insert(path.to_owned(), times);
    }

    /// The first call on `path` with each idempotency key answers 500; the
    /// next ones with that key succeed.
    pub fn fail_first_per_key(&self, path: &str) {
        self.state
            .lock()
            .unwrap()
            .fail_first
            .insert(path.to_owned());
    }

    /// Every call waits this long before answering.
    pub fn delay(&self, ms: u64) {
        self.state.lock().unwrap().delay_ms = ms;
    }

    /// Calls on `path` get these answers in turn (the last one repeats).
    pub fn answers(&self, path: &str, answers: Vec<(u16, &str)>) {
        self.state.lock().unwrap().answers.insert(
            path.to_owned(),
            answers
                .into_iter()
                .map(|(s, b)| (s, b.to_owned()))
                .collect(),
        );
    }
}

async fn sidecar_call(
    State(state): State<Arc<Mutex<SidecarState>>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let path = format!("/{path}");
    let (delay, answer) = {
        let mut state = state.lock().unwrap();
        let n = {
            let calls = state.calls.entry(path.clone()).or_default();
            *calls += 1;
            *calls
        };
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        state.traceparents.push(traceparent);
        let mut first_with_key = false;
        if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let calls = state.keys.entry(key.to_owned()).or_default();
            calls.push(now);
            first_with_key = calls.len() == 1;
        }
        let answer = if first_with_key && state.fail_first.contains(&path) {
            (500, "deliberate first failure".to_owned())
        } else if let Some(left) = state.fail.get_mut(&path).filter(|left| **left > 0) {
            *left -= 1;
            (500, "deliberate failure".to_owned())
        } else if let Some(answers) = state.answers.get(&path) {
            answers[(n as usize - 1).min(answers.len() - 1)].clone()
        } else {
            (200, json!({ "ok": true, "path": path }).to_string())
        };
        (state.delay_ms, answer)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    *state.lock().unwrap().answered.entry(path).or_default() += 1;
    (StatusCode::from_u16(answer.0).unwrap(), answer.1)
}

/// An OTLP/HTTP trace collector (JSON encoding): keeps every span posted
/// to `<url>/v1/traces`.
pub struct OtlpReceiver {
    pub url: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    if headers.get("content-type").and_then(|v| v.to_str().ok())
                        != Some("application/json")
                    {
                        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
                    }
                    let Ok(export) = serde_json::from_str::<Value>(&body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let mut kept = kept.lock().unwrap();
                    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            for span in scope["spans"].as_array().into_iter().flatten() {
                                let mut span = span.clone();
                                span["resource"] = resource["resource"].clone();
                                kept.push(span);
                            }
                        }
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        OtlpReceiver { url, spans }
    }

    /// The root span of request `id`, once received.
    pub fn request_root(&self, id: &str) -> Option<Value> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .find(|span| {
                span["name"] == "request"
                    && span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["key"] == "baton.request.id" && a["value"]["stringValue"] == id)
            })
            .cloned()
    }

    /// The spans received so far of the trace `trace` (hex), each with its
    /// resource under `"resource"`.
    pub fn spans_of(&self, trace: &str) -> Vec<Value> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span["traceId"] == trace)
            .cloned()
            .collect()
    }
}

/// A PostgreSQL cluster of this test's own, for tests that restart or stop
/// the database (the shared one on 5432 serves other tests meanwhile).
/// Stopped and removed when dropped, also when the test fails.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    /// Restarts that overlap would fail: one at a time.
    restarting: Mutex<()>,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePostgres {
    /// initdb and start on a free loopback port, as the `postgres` user when
    /// the test runs as root (PostgreSQL refuses to run as root).
    pub fn start() -> PrivatePostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("baton-pg-{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let postgres = Self {
            port,
            dir,
            restarting: Mutex::new(()),
        };
        postgres.shell(&format!("chown postgres {}", postgres.dir.display()), true);
        postgres.pg(&format!(
            "{PG_BIN}/initdb -D {}/data -A trust -U postgres",
            postgres.dir.display()
        ));
        postgres.pg_ctl("start");
        postgres
    }

    /// The URL of a database of this cluster (created by the first store).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A crash restart: every connection is cut, nothing is shut down cleanly.
    /// Stops the database at once (every connection cut) until [`Self::resume`].
    pub fn stop_immediate(&self) {
        let _one_at_a_time = self.restarting.lock().unwrap();
        self.pg_ctl("stop -m immediate");
    }

    /// Starts the database [`Self::stop_immediate`] stopped.
    pub fn resume(&self) {
        let _one_at_a_time = self.restarting.lock().unwrap();
        self.pg_ctl("start");
    }

    pub fn restart_immediate(&self) {
        let _one_at_a_time = self.restarting.lock().unwrap();
        self.pg_ctl("restart -m immediate");
    }

    fn pg_ctl(&self, action: &str) {
        self.pg(&format!(
            "{PG_BIN}/pg_ctl -D {dir}/data -l {dir}/log -w -o '-p {port} -k {dir} -c listen_addresses=127.0.0.1' {action}",
            dir = self.dir.display(),
            port = self.port
        ));
    }

    fn pg(&self, command: &str) {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        if root {
            self.shell(&format!("su postgres -s /bin/sh -c \"{command}\""), false);
        } else {
            self.shell(command, false);
        }
    }

    fn shell(&self, command: &str, quiet: bool) {
        let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
        assert!(
            quiet || out.status.success(),
            "{command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "su postgres -s /bin/sh -c '{PG_BIN}/pg_ctl -D {}/data -m immediate stop' || {PG_BIN}/pg_ctl -D {}/data -m immediate stop",
                self.dir.display(),
                self.dir.display()
            ))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of PostgreSQL that loses answers: every chunk the
/// database sends back is dropped, with the connection cut, at a set rate,
/// after the client's bytes were forwarded (so a COMMIT may be applied and
/// its answer lost), and each chunk can be delayed.
pub struct LossyProxy {
    pub port: u16,
    loss_per_mille: Arc<std::sync::atomic::AtomicU32>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    cut: Arc<std::sync::atomic::AtomicU64>,
}

impl LossyProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: u16) -> LossyProxy {
        use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = LossyProxy {
            port: listener.local_addr().unwrap().port(),
            loss_per_mille: Arc::new(AtomicU32::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            cut: Arc::new(AtomicU64::new(0)),
        };
        let (loss, delay, cut) = (
            proxy.loss_per_mille.clone(),
            proxy.delay_ms.clone(),
            proxy.cut.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (loss, delay, cut) = (loss.clone(), delay.clone(), cut.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upward = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let wait = delay.load(Ordering::Relaxed);
                        if wait > 0 {
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                        }
                        if fastrand::u32(..1000) < loss.load(Ordering::Relaxed) {
                            cut.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    upward.abort();
                });
            }
        });
        proxy
    }

    /// From now on, lose this many answers in a thousand.
    pub fn lose(&self, per_mille: u32) {
        self.loss_per_mille
            .store(per_mille, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on, delay every answer this long.
    pub fn delay(&self, ms: u64) {
        self.delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Connections cut with an answer lost so far.
    pub fn cut(&self) -> u64 {
        self.cut.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The checkpoints of a request as `GET /api/requests/{id}` shows them,
/// read with the API's own type.
pub fn checkpoints(request: &Value) -> Vec<CheckpointView> {
    serde_json::from_value(request["checkpoints"].clone()).expect("a request's checkpoints")
}
