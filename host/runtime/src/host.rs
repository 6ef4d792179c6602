//! The host side of a flow's imports, and the sandbox each attempt runs in.

use std::future::Future;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{CheckpointStart, Egress, HostAbort, Journal, LogLevel};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../guest-sdk/wit",
        world: "flow",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::baton::flow::{http, journal};

/// Bytes of a flow's stderr kept to explain a trap (a Rust panic message).
const STDERR_CAPTURE: usize = 8 * 1024;

/// Everything one attempt's wasmtime store holds.
pub(crate) struct State<J> {
    /// `None` while a component is only inspected for its properties.
    pub(crate) journal: Option<J>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) stderr: MemoryOutputPipe,
    limits: SandboxLimits,
    http: Http,
}

/// What a flow's HTTP calls go through: the server's client (redirects
/// off) and the origins this flow may call.
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) egress: Egress,
}

/// Per-attempt limits; exceeding one traps with a sentence that says which.
pub(crate) struct SandboxLimits {
    pub(crate) memory_bytes: usize,
    /// Epoch ticks of guest execution allowed to this attempt.
    pub(crate) ticks_left: u64,
    pub(crate) time_limit: Duration,
    /// Wall-clock time the attempt may last.
    pub(crate) wall_limit: Duration,
    /// When the attempt must end: a host call still waiting then ends it.
    pub(crate) wall_deadline: tokio::time::Instant,
    /// The largest HTTP answer body a call may receive.
    pub(crate) http_body: usize,
}

impl<J: Journal> State<J> {
    pub(crate) fn new(journal: Option<J>, limits: SandboxLimits, http: Http) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = WasiCtx::builder();
        // No env, args, preopened dirs, stdin or sockets; clocks frozen at the
        // epoch and a fixed random stream, so std's hidden uses of clocks and
        // randomness are deterministic on replay.
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![
                0x5a, 0x17, 0xc3, 0x8e,
            ]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x3d, 0x91]))
            .insecure_random_seed(0x0ba7_0ba7);
        Self {
            journal,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            stderr,
            limits,
            http,
        }
    }

    fn journal(&mut self) -> wasmtime::Result<&mut J> {
        self.journal.as_mut().ok_or_else(no_journal)
    }

    /// The store's epoch callback: each tick of guest execution costs one
    /// unit of the attempt's time budget, and yields to the async runtime so
    /// a busy flow never starves the server.
    pub(crate) fn on_epoch_tick(
        mut store: StoreContextMut<'_, Self>,
    ) -> wasmtime::Result<UpdateDeadline> {
        let limits = &mut store.data_mut().limits;
        if limits.ticks_left == 0 {
            return Err(wasmtime::Error::msg(format!(
                "flow exceeded its time limit of {:?} of execution",
                limits.time_limit
            )));
        }
        limits.ticks_left -= 1;
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Runs `wait`, a host call that waits (an HTTP answer, a pause), until
/// it ends, the attempt is interrupted (cancelled, moved elsewhere, the
/// server stopping) or the attempt's wall-clock limit passes. Without this a
/// cancelled attempt would hold its slot until the wait was over.
async fn bounded<J: Journal, T>(
    journal: &mut Option<J>,
    limits: &SandboxLimits,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let journal = journal.as_mut().ok_or_else(no_journal)?;
    tokio::select! {
        biased;
        abort = journal.interrupted() => Err(trap(abort)),
        result = within_wall_limit(limits, wait) => result,
    }
}

/// Runs `wait` until it ends or the attempt's wall-clock limit passes.
async fn within_wall_limit<T>(
    limits: &SandboxLimits,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    tokio::select! {
        biased;
        () = tokio::time::sleep_until(limits.wall_deadline) => Err(past_wall_limit(limits)),
        result = wait => result,
    }
}

fn no_journal() -> wasmtime::Error {
    wasmtime::Error::msg("a flow may not call the host while its properties are read")
}

fn past_wall_limit(limits: &SandboxLimits) -> wasmtime::Error {
    trap(HostAbort(format!(
        "the attempt passed its wall-clock limit of {:?} (attempt_wall_limit_s) while waiting in a host call",
        limits.wall_limit
    )))
}

/// Links Baton's interfaces and the deny-all WASI context.
pub(crate) fn add_to_linker<J: Journal>(linker: &mut Linker<State<J>>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    journal::add_to_linker::<_, HasSelf<State<J>>>(linker, |state| state)?;
    http::add_to_linker::<_, HasSelf<State<J>>>(linker, |state| state)?;
    Ok(())
}

impl<J: Journal> WasiView for State<J> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<J: Journal> ResourceLimiter for State<J> {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(wasmtime::Error::msg(format!(
                "flow exceeded its memory limit of {} MiB",
                self.limits.memory_bytes >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn trap(abort: HostAbort) -> wasmtime::Error {
    wasmtime::Error::new(abort)
}

/// The longest checkpoint name a flow may use, in bytes.
const CHECKPOINT_NAME_MAX: usize = 1024;
/// Checkpoint names the host keeps for its own journaled values.
const RESERVED_PREFIX: &str = "baton:";
/// The longest `pause` a flow may ask for: a pause holds an instance and a
/// slot (a cancel ends it at once; the cap keeps a flow that pauses in a
/// loop polling the journal for cancels in between).
const PAUSE_MAX_MS: u64 = 10_000;
/// The longest log line a flow may write, in bytes; the rest is cut.
const LOG_LINE_MAX: usize = 4096;

/// Why a flow may not use `name` for a checkpoint. The SDK never sends such
/// a name; a guest that calls the import directly can, and must not forge
/// the host's own records or fill the journal with huge names.
fn refuse_checkpoint_name(name: &str) -> Option<String> {
    if name.len() > CHECKPOINT_NAME_MAX {
        Some(format!(
            "a checkpoint name of {} bytes is longer than the limit of {CHECKPOINT_NAME_MAX} bytes",
            name.len()
        ))
    } else if name.contains('\0') {
        Some(format!("checkpoint name {name:?} contains a NUL byte"))
    } else if name.starts_with(RESERVED_PREFIX) {
        Some(format!(
            "checkpoint name {name:?} starts with {RESERVED_PREFIX:?}, which is reserved for Baton's own records"
        ))
    } else {
        None
    }
}

/// A flow's log line as the server writes it: control characters (newlines
/// included) escaped, so a flow cannot forge lines of the server's log, and
/// at most [`LOG_LINE_MAX`] bytes of the message.
fn log_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(LOG_LINE_MAX) + 32);
    for (at, c) in message.char_indices() {
        if line.len() >= LOG_LINE_MAX {
            line.push_str(&format!("… ({} more bytes cut)", message.len() - at));
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

impl<J: Journal> journal::Host for State<J> {
    async fn begin_checkpoint(
        &mut self,
        name: String,
    ) -> wasmtime::Result<journal::CheckpointStart> {
        if let Some(why) = refuse_checkpoint_name(&name) {
            return Err(trap(HostAbort(why)));
        }
        let CheckpointStart {
            position,
            key,
            recorded,
        } = self.journal()?.begin_checkpoint(name).await.map_err(trap)?;
        Ok(journal::CheckpointStart {
            position,
            key,
            recorded,
        })
    }

    async fn commit_checkpoint(&mut self, position: u32, payload: Vec<u8>) -> wasmtime::Result<()> {
        // Replay hands the payload back to the flow as JSON, and the console
        // shows it as JSON: anything else is refused before it is stored.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(trap(HostAbort(format!(
                "the value committed for checkpoint position {position} is not JSON: {e}"
            ))));
        }
        self.journal()?
            .commit_checkpoint(position, payload)
            .await
            .map_err(trap)
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.journal()?.now_ms().await.map_err(trap)
    }

    async fn random_u64(&mut self) -> wasmtime::Result<u64> {
        self.journal()?.random_u64().await.map_err(trap)
    }

    async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        // The journal's own sleep races against the interrupt; here only
        // the wall-clock limit is added.
        let Self {
            journal, limits, ..
        } = self;
        let journal = journal.as_mut().ok_or_else(no_journal)?;
        within_wall_limit(limits, async { journal.sleep_ms(ms).await.map_err(trap) }).await
    }

    async fn wait_event(
        &mut self,
        name: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let Self {
            journal, limits, ..
        } = self;
        let journal = journal.as_mut().ok_or_else(no_journal)?;
        within_wall_limit(limits, async {
            journal.wait_event(name, timeout_ms).await.map_err(trap)
        })
        .await
    }

    async fn set_status(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        if key.is_empty() || key.chars().count() > STATUS_KEY_MAX {
            return Err(trap(HostAbort(format!(
                "a status key is 1 to {STATUS_KEY_MAX} characters"
            ))));
        }
        if value.len() > STATUS_VALUE_MAX {
            return Err(trap(HostAbort(format!(
                "a status value is at most {STATUS_VALUE_MAX} bytes"
            ))));
        }
        self.journal()?.set_status(key, value).await.map_err(trap)
    }

    async fn pause_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        if ms > PAUSE_MAX_MS {
            return Err(trap(HostAbort(format!(
                "a pause of {ms} ms is longer than the limit of {PAUSE_MAX_MS} ms; use a durable sleep to wait longer"
            ))));
        }
        self.journal()?.guard().await.map_err(trap)?;
        // A zero pause returns at once rather than wait for the timer's next tick.
        if ms == 0 {
            return Ok(());
        }
        bounded(&mut self.journal, &self.limits, async {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
        .await
    }

    async fn start_flow(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<String, String>> {
        self.journal()?.start_flow(flow, input).await.map_err(trap)
    }

    async fn wait_child(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.journal()?.wait_child(id).await.map_err(trap)
    }

    async fn log(&mut self, level: journal::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            journal::Level::Debug => LogLevel::Debug,
            journal::Level::Info => LogLevel::Info,
            journal::Level::Warn => LogLevel::Warn,
            journal::Level::Error => LogLevel::Error,
        };
        self.journal()?.log(level, &log_line(&message));
        Ok(())
    }
}

/// Longest status key a flow may publish.
const STATUS_KEY_MAX: usize = 100;

/// Largest status value a flow may publish.
const STATUS_VALUE_MAX: usize = 64 * 1024;

/// Outgoing HTTP waits at most this long for an answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

impl<J: Journal> http::Host for State<J> {
    async fn send(
        &mut self,
        request: http::Request,
    ) -> wasmtime::Result<Result<http::Response, String>> {
        // A live side effect: only while this server still owns the request.
        self.journal()?.guard().await.map_err(trap)?;
        let mut request = request;
        // The called service joins the request's trace, unless the flow
        // set its own context.
        if let Some(traceparent) = self.journal()?.traceparent()
            && !request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
        {
            request
                .headers
                .push(("traceparent".to_owned(), traceparent));
        }
        let started = std::time::Instant::now();
        let sending = send(&self.http, self.limits.http_body, request);
        let answer = bounded(&mut self.journal, &self.limits, async { Ok(sending.await) }).await;
        if let Ok(journal) = self.journal() {
            journal.http_done(started.elapsed());
        }
        answer
    }
}

async fn send(
    http: &Http,
    body_limit: usize,
    request: http::Request,
) -> Result<http::Response, String> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {:?}", request.method))?;
    // The SDK puts the method and the URL before an error: the message
    // here says only what happened.
    let destination = http.egress.check(&request.url).await?;
    // A name is connected to at the address just checked, so a second
    // lookup cannot lead the call to another one.
    let pinned;
    let client = match &destination.pinned {
        Some((host, address)) => {
            pinned = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(host, *address)
                .build()
                .map_err(|e| error_chain(&e))?;
            &pinned
        }
        None => &http.client,
    };
    let mut builder = client
        .request(method, destination.url)
        .timeout(HTTP_TIMEOUT)
        .body(request.body);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let mut response = builder
        .send()
        .await
        .map_err(|e| error_chain(&e.without_url()))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Read a chunk at a time: the body lives in host memory, outside the
    // flow's memory limit, so it is cut off at the limit.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", error_chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > body_limit {
            return Err(format!(
                "the answer is larger than the limit of {} bytes",
                body_limit
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(http::Response {
        status,
        headers,
        body,
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A clock that always reads the Unix epoch: WASI time is not a flow's to see.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_that_forge_or_flood_the_journal_are_refused() {
        assert_eq!(refuse_checkpoint_name("step-1"), None);
        assert_eq!(refuse_checkpoint_name(&"n".repeat(1024)), None);
        for name in ["baton:now", &"n".repeat(1025), "a\0b"] {
            assert!(refuse_checkpoint_name(name).is_some(), "{name:?}");
        }
    }

    #[test]
    fn log_lines_are_escaped_and_capped() {
        assert_eq!(log_line("plain é"), "plain é");
        assert_eq!(log_line("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        let long = log_line(&"x".repeat(10_000));
        assert!(long.starts_with(&"x".repeat(LOG_LINE_MAX)));
        assert!(long.ends_with("… (5904 more bytes cut)"), "{long}");
    }
}
