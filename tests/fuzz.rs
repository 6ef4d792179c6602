//! Property tests with random and malformed inputs against a real server:
//! bodies for every API route, component bytes for deploy, and scripts of
//! raw journal calls from a guest. Seeded: the seed is printed, and
//! `TEST_SEED=<seed>` runs the same inputs again; `BATON_FUZZ_ITERATIONS`
//! scales how many each test tries (the defaults fit CI).

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{Server, Setup, wasm};

const LONG: Duration = Duration::from_secs(60);

/// The generator for one test, seeded from `TEST_SEED` or at random, and
/// the seed printed so a failure can be run again.
fn rng(test: &str) -> fastrand::Rng {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: TEST_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// `default` scaled by `BATON_FUZZ_ITERATIONS` (the number for a test
/// whose default is 100).
fn iterations(default: usize) -> usize {
    std::env::var("BATON_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(default, |n| (n * default / 100).max(1))
}

/// A string with the characters that break parsers: NUL, controls,
/// quotes, escapes, multi-byte and right-to-left text.
fn nasty_string(rng: &mut fastrand::Rng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "\0", "\n", "\r\n", "\"", "\\", "'", "<script>", "%00", "%", "&", "=", "+", "é", "💥",
        "\u{202e}", "\u{feff}", "baton:", "..", "/", " ", "a", "admin", "0", "-1", "1e999",
    ];
    let len = rng.usize(0..=max);
    (0..len)
        .map(|_| match rng.u8(0..3) {
            0 => PIECES[rng.usize(..PIECES.len())].to_owned(),
            1 => rng.alphanumeric().to_string(),
            _ => char::from_u32(rng.u32(0..0x11_0000))
                .unwrap_or('?')
                .to_string(),
        })
        .collect()
}

/// A random JSON value at most `depth` levels deep.
fn json_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e300),
        4 => json!(nasty_string(rng, 20)),
        5 => Value::Array(
            (0..rng.usize(0..5))
                .map(|_| json_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            const KEYS: &[&str] = &[
                "name", "password", "role", "flow", "cron", "input", "local", "case", "script",
                "steps", "url",
            ];
            Value::Object(
                (0..rng.usize(0..6))
                    .map(|_| {
                        let key = if rng.bool() {
                            KEYS[rng.usize(..KEYS.len())].to_owned()
                        } else {
                            nasty_string(rng, 8)
                        };
                        (key, json_value(rng, depth - 1))
                    })
                    .collect(),
            )
        }
    }
}

/// A random body and the content type it is sent with.
fn body(rng: &mut fastrand::Rng) -> (Vec<u8>, Option<&'static str>) {
    const TYPES: &[Option<&str>] = &[
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/octet-stream"),
        Some("multipart/form-data; boundary=x"),
    ];
    let content_type = TYPES[rng.usize(..TYPES.len())];
    let bytes = match rng.u8(0..7) {
        // Random bytes: invalid UTF-8, NULs.
        0 => (0..rng.usize(0..4096)).map(|_| rng.u8(..)).collect(),
        1 | 2 => json_value(rng, 4).to_string().into_bytes(),
        // Deeply nested.
        3 => {
            let depth = rng.usize(100..50_000);
            let (open, close) = if rng.bool() {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let mut nested = open.repeat(depth);
            if rng.bool() {
                nested.push_str(&close.repeat(depth));
            }
            nested.into_bytes()
        }
        // A form.
        4 => (0..rng.usize(0..8))
            .map(|_| format!("{}={}", nasty_string(rng, 6), nasty_string(rng, 12)))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes(),
        // Valid JSON cut short, or with a NUL or invalid UTF-8 spliced in.
        5 => {
            let mut bytes = json_value(rng, 3).to_string().into_bytes();
            let at = rng.usize(..=bytes.len());
            match rng.u8(0..3) {
                0 => bytes.truncate(at),
                1 => bytes.insert(at, 0),
                _ => bytes.splice(at..at, [0xff, 0xc3]).for_each(drop),
            }
            bytes
        }
        // Large.
        _ => vec![b'a'; rng.usize(1 << 16..4 << 20)],
    };
    (bytes, content_type)
}

/// What must not change when a call is refused: the requests, flows,
/// accounts, schedules and server names the API shows.
async fn snapshot(server: &Server) -> Value {
    let mut state = json!({});
    for (key, path) in [
        ("requests", "/api/requests?limit=1000"),
        ("flows", "/api/flows"),
        ("accounts", "/api/accounts"),
        ("schedules", "/api/schedules"),
        ("servers", "/api/servers"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        state[key] = match key {
            // A request's status moves on by itself; its existence does not.
            "requests" => json!(
                body.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].clone())
                    .collect::<Vec<_>>()
            ),
            "servers" => json!(
                body.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| [s["id"].clone(), s["name"].clone()])
                    .collect::<Vec<_>>()
            ),
            _ => body,
        };
    }
    state
}

/// A path segment: one that exists, or junk.
fn segment(rng: &mut fastrand::Rng, real: &str) -> String {
    match rng.u8(0..4) {
        0 => real.to_owned(),
        1 => "%00".into(),
        2 => "x".repeat(rng.usize(1..5000)),
        _ => nasty_string(rng, 12)
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect(),
    }
}

fn query(rng: &mut fastrand::Rng) -> String {
    const KEYS: &[&str] = &[
        "status",
        "flow",
        "server",
        "limit",
        "after",
        "wait",
        "timeout",
        "checkpoints_after",
        "events_after",
    ];
    let pairs: Vec<String> = (0..rng.usize(0..4))
        .map(|_| {
            let value: String = nasty_string(rng, 10)
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            format!("{}={value}", KEYS[rng.usize(..KEYS.len())])
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

fn assert_alive(server: &mut Server) {
    assert!(
        server.is_running(),
        "the server died:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_for_every_route_are_refused_without_a_trace() {
    let mut rng = rng("routes");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("hello")).await;
    let id = server
        .start_request("hello", json!({ "name": "Ada" }))
        .await;
    server.wait_final(&id, LONG).await;
    let server_id = server.id();
    let http = reqwest::Client::new();
    let mut before = snapshot(&server).await;
    let mut refused = 0;
    for _ in 0..iterations(300) {
        let (method, path) = match rng.u8(0..18) {
            0 => ("POST", "/api/flows".to_owned()),
            1 => ("GET", format!("/api/flows{}", query(&mut rng))),
            2 => (
                "POST",
                format!(
                    "/api/flows/{}/requests{}",
                    segment(&mut rng, "hello"),
                    query(&mut rng)
                ),
            ),
            3 => ("GET", format!("/api/requests{}", query(&mut rng))),
            4 => (
                "GET",
                format!(
                    "/api/requests/{}{}",
                    segment(&mut rng, &id),
                    query(&mut rng)
                ),
            ),
            5 => (
                "POST",
                format!("/api/requests/{}/reexecute", segment(&mut rng, &id)),
            ),
            6 => (
                "POST",
                format!("/api/requests/{}/cancel", segment(&mut rng, &id)),
            ),
            7 => ("POST", "/api/schedules".to_owned()),
            8 => (
                "DELETE",
                format!("/api/schedules/{}", segment(&mut rng, "nightly")),
            ),
            9 => ("POST", "/api/version-control/update".to_owned()),
            10 => ("POST", "/api/accounts".to_owned()),
            11 => (
                "POST",
                format!("/api/accounts/{}/tokens", segment(&mut rng, "nobody")),
            ),
            12 => (
                "POST",
                format!("/api/servers/{}/name", segment(&mut rng, &server_id)),
            ),
            13 => {
                let action = ["password", "disable", "enable", "role", "tokens"][rng.usize(0..5)];
                (
                    if action == "tokens" { "DELETE" } else { "POST" },
                    format!("/api/accounts/{}/{action}", segment(&mut rng, "nobody")),
                )
            }
            14 => (
                "DELETE",
                format!("/api/accounts/{}", segment(&mut rng, "nobody")),
            ),
            15 => ("POST", "/api/password".to_owned()),
            16 => ("POST", "/api/tokens/revoke".to_owned()),
            _ => ("POST", "/login".to_owned()),
        };
        let (bytes, content_type) = body(&mut rng);
        let mut request = http
            .request(method.parse().unwrap(), format!("{}{path}", server.base))
            .bearer_auth(&server.token)
            .body(bytes.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // A refusal that comes before the body was read closes the
            // connection under a client still sending: the server must
            // still be there.
            Err(e) => {
                let (status, _) = server.get("/api/servers").await;
                assert_eq!(status, StatusCode::OK, "{method} {path}: {e}");
                assert_eq!(snapshot(&server).await, before, "{method} {path}: {e}");
                continue;
            }
        };
        let status = response.status();
        let answer = response.text().await.unwrap_or_default();
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        assert!(
            !status.is_server_error(),
            "{method} {path} with {content_type:?} {shown:?}: {status} {answer}"
        );
        let after = snapshot(&server).await;
        if status.is_client_error() {
            refused += 1;
            assert_eq!(
                after, before,
                "{method} {path} with {shown:?} was refused ({status} {answer}) but changed the state"
            );
        }
        before = after;
    }
    // One body over the 64 MiB limit per route that takes one.
    let huge = vec![b'{'; (64 << 20) + 1];
    for path in [
        "/api/flows".to_owned(),
        "/api/flows/hello/requests".to_owned(),
        "/api/accounts".to_owned(),
        "/api/schedules".to_owned(),
        format!("/api/servers/{server_id}/name"),
    ] {
        let response = http
            .post(format!("{}{path}", server.base))
            .bearer_auth(&server.token)
            .body(huge.clone())
            .send()
            .await;
        // The server may close the connection before reading it all.
        if let Ok(response) = response {
            assert!(
                response.status().is_client_error(),
                "{path}: {}",
                response.status()
            );
        }
    }
    assert_eq!(snapshot(&server).await, before);
    assert!(refused > 0, "no call was refused");
    assert_alive(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_component_bytes_deploy_nothing() {
    let mut rng = rng("components");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    let hello = wasm("hello");
    for _ in 0..iterations(100) {
        let bytes: Vec<u8> = match rng.u8(0..3) {
            0 => (0..rng.usize(0..8192)).map(|_| rng.u8(..)).collect(),
            // A component header and random sections.
            1 => {
                let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
                bytes.extend((0..rng.usize(0..8192)).map(|_| rng.u8(..)));
                bytes
            }
            // A real flow cut short.
            _ => hello[..rng.usize(..hello.len())].to_vec(),
        };
        let (status, body) = server.post("/api/flows", bytes).await;
        assert!(status.is_client_error(), "{status} {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (_, flows) = server.get("/api/flows").await;
    assert_eq!(flows, json!([]), "something was deployed");
    assert_alive(&mut server);
}

/// One raw journal call of the `raw-journal` guest's script.
#[derive(Debug, Clone)]
enum Call {
    Begin(String),
    Commit(u32, Vec<u8>, bool),
    Now,
    Random,
    Sleep(u64),
    Pause(u64),
    Log(String),
}

impl Call {
    fn random(rng: &mut fastrand::Rng, open: u32) -> Call {
        const VALID: &[&[u8]] = &[b"1", b"{\"a\":[1,2]}", b"\"\\u0000\"", b" null ", b"[]"];
        const INVALID: &[&[u8]] = &[b"", b"{", b"\xff\xfe", b"nul\0", b"1 2", b"{'a':1}"];
        match rng.u8(0..10) {
            0..=2 => Call::Begin(match rng.u8(0..8) {
                0 => "baton:now".into(),
                1 => "n".repeat(1025),
                2 => "a\0b".into(),
                3 => String::new(),
                4 => "n".repeat(1024),
                _ => nasty_string(rng, 6)
                    .replace('\0', "")
                    .replace("baton:", "b"),
            }),
            3..=5 => {
                let position = match rng.u8(0..4) {
                    0 => rng.u32(..),
                    1 => open.saturating_sub(1),
                    _ => open,
                };
                if rng.u8(0..4) == 0 {
                    Call::Commit(
                        position,
                        INVALID[rng.usize(..INVALID.len())].to_vec(),
                        false,
                    )
                } else {
                    Call::Commit(position, VALID[rng.usize(..VALID.len())].to_vec(), true)
                }
            }
            6 => {
                if rng.bool() {
                    Call::Now
                } else {
                    Call::Random
                }
            }
            7 => Call::Sleep(rng.u64(0..30)),
            8 => Call::Pause(if rng.u8(0..6) == 0 {
                10_001
            } else {
                rng.u64(0..30)
            }),
            _ => Call::Log(nasty_string(rng, 40)),
        }
    }

    fn json(&self) -> Value {
        match self {
            Call::Begin(name) => json!({ "begin": name }),
            Call::Commit(position, payload, _) => json!({ "commit": [position, payload] }),
            Call::Now => json!("now"),
            Call::Random => json!("random"),
            Call::Sleep(ms) => json!({ "sleep": ms }),
            Call::Pause(ms) => json!({ "pause": ms }),
            Call::Log(text) => json!({ "log": text }),
        }
    }
}

/// What the host should make of a script: the checkpoint names it commits
/// (in order) and whether the flow gets to the end.
fn model(script: &[Call]) -> (Vec<String>, bool) {
    let mut committed = Vec::new();
    let mut open: Option<(u32, String)> = None;
    for call in script {
        let position = committed.len() as u32;
        match call {
            Call::Begin(name) => {
                if name.len() > 1024 || name.contains('\0') || name.starts_with("baton:") {
                    return (committed, false);
                }
                open = Some((position, name.clone()));
            }
            Call::Commit(at, _, valid) => match open.take() {
                Some((open, name)) if *valid && open == *at => committed.push(name),
                _ => return (committed, false),
            },
            Call::Now | Call::Random | Call::Sleep(_) => {
                let name = match call {
                    Call::Now => "baton:now",
                    Call::Random => "baton:random",
                    _ => "baton:sleep",
                };
                committed.push(name.to_owned());
                open = None;
            }
            Call::Pause(ms) if *ms > 10_000 => return (committed, false),
            Call::Pause(_) | Call::Log(_) => {}
        }
    }
    (committed, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_raw_journal_calls_commit_only_what_the_rules_allow() {
    let mut rng = rng("journal");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("raw_journal")).await;
    let mut runs = Vec::new();
    for _ in 0..iterations(40) {
        let mut script: Vec<Call> = Vec::new();
        let mut open = 0;
        for _ in 0..rng.usize(1..12) {
            let call = Call::random(&mut rng, open);
            script.push(call.clone());
            open = model(&script).0.len() as u32;
        }
        let input = json!({ "script": script.iter().map(Call::json).collect::<Vec<_>>() });
        let id = server.start_request("raw-journal", input).await;
        runs.push((id, script));
    }
    for (id, script) in runs {
        let request = server.wait_final(&id, LONG).await;
        let (names, finishes) = model(&script);
        let expected = if finishes { "succeeded" } else { "error" };
        assert_eq!(request["status"], expected, "{script:?}\n{request:#}");
        let stored: Vec<Value> = request["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["seq"], c["name"]]))
            .collect();
        let modelled: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(seq, name)| json!([seq, name]))
            .collect();
        assert_eq!(stored, modelled, "{script:?}\n{request:#}");
        if finishes {
            assert_eq!(
                request["output"].as_array().map(Vec::len),
                Some(script.len())
            );
        } else {
            assert!(
                !request["error"].as_str().unwrap_or_default().is_empty(),
                "{request:#}"
            );
        }
    }
    assert_alive(&mut server);
}
