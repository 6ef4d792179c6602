//! Traces of a request's life, exported over OTLP/HTTP (JSON encoding) to
//! `otlp_endpoint` when it is configured; without it nothing is recorded.
//!
//! A request's trace id and its root span's id are derived from the request
//! id, so every server that touches the request (the one it was submitted
//! to, the ones that run its attempts, one that takes it over) adds to one
//! trace without storing anything. The tree:
//!
//! ```text
//! request                       (root; written by the server that ends it)
//! ├── submit                    (create, and claim when a slot was free)
//! ├── claim                     (a later claim by the scheduler)
//! ├── takeover                  (adopted from a dead server)
//! └── attempt                   (request id, flow, server, epoch)
//!     ├── checkpoint            (one per live step, with its name)
//!     │   └── http              (a flow's call; its traceparent names this span)
//!     └── outcome               (writing how the attempt ended)
//! ```
//!
//! Spans queue in a bounded channel and a task posts them in batches; a
//! full queue or an unreachable collector drops spans, never slows a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// Spans waiting for export before new ones are dropped.
const QUEUE: usize = 16_384;
/// Spans per export request.
const BATCH: usize = 512;
/// How long a span waits at most before it is exported.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// A trace's id and one of its spans': what a child or a `traceparent`
/// header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace: [u8; 16],
    pub span: [u8; 8],
}

impl SpanContext {
    /// The root span of request `id`'s trace.
    pub fn of_request(id: &str) -> Self {
        let hash = blake3::hash(format!("baton request trace {id}").as_bytes());
        let bytes = hash.as_bytes();
        Self {
            trace: bytes[..16].try_into().expect("16 bytes"),
            span: bytes[16..24].try_into().expect("8 bytes"),
        }
    }

    /// The W3C `traceparent` header naming this span (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace), hex(&self.span))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

fn new_span_id() -> [u8; 8] {
    // Zero is not a valid span id.
    fastrand::u64(1..).to_be_bytes()
}

/// OTLP span kinds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Internal = 1,
    Client = 3,
}

/// A finished span.
#[derive(Debug)]
struct Span {
    context: SpanContext,
    parent: Option<[u8; 8]>,
    name: &'static str,
    kind: Kind,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Span {
    fn to_otlp(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
                    Value::Bool(b) => json!({ "boolValue": b }),
                    Value::String(s) => json!({ "stringValue": s }),
                    other => json!({ "stringValue": other.to_string() }),
                };
                json!({ "key": key, "value": value })
            })
            .collect();
        let mut span = json!({
            "traceId": hex(&self.context.trace),
            "spanId": hex(&self.context.span),
            "name": self.name,
            "kind": self.kind as u8,
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": self.end_ns.to_string(),
            "attributes": attributes,
            "status": match &self.error {
                Some(message) => json!({ "code": 2, "message": message }),
                None => json!({ "code": 1 }),
            },
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = json!(hex(&parent));
        }
        span
    }
}

enum Message {
    Span(Span),
    Flush(oneshot::Sender<()>),
}

/// This server's tracer; a disabled one records nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    queue: Option<Arc<Queue>>,
}

struct Queue {
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

impl Tracer {
    /// A tracer that exports to the OTLP/HTTP collector at `endpoint`
    /// (e.g. `http://127.0.0.1:4318`), as server `server` (`name`).
    pub fn exporting(endpoint: &str, server: &str, name: &str) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let resource = json!({
            "attributes": [
                { "key": "service.name", "value": { "stringValue": "baton" } },
                { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
                { "key": "service.instance.id", "value": { "stringValue": server } },
                { "key": "baton.server.name", "value": { "stringValue": name } },
            ]
        });
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        tokio::spawn(export(receiver, url, resource));
        Self {
            queue: Some(Arc::new(Queue {
                sender,
                dropped: AtomicU64::new(0),
            })),
        }
    }

    /// Whether spans are recorded.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Opens a span `name` under `parent`.
    pub fn start(&self, name: &'static str, parent: SpanContext) -> OpenSpan {
        OpenSpan {
            tracer: self.clone(),
            span: self.queue.as_ref().map(|_| Span {
                context: SpanContext {
                    trace: parent.trace,
                    span: new_span_id(),
                },
                parent: Some(parent.span),
                name,
                kind: Kind::Internal,
                start_ns: now_ns(),
                end_ns: 0,
                attributes: Vec::new(),
                error: None,
            }),
        }
    }

    /// Records the root span of request `id`, from its creation at
    /// `created_at_ms` to now, ending in `status` (`Some(why)` when it
    /// failed).
    pub fn request_ended(&self, id: &str, flow: &str, created_at_ms: i64, error: Option<String>) {
        if self.queue.is_none() {
            return;
        }
        self.send(Span {
            context: SpanContext::of_request(id),
            parent: None,
            name: "request",
            kind: Kind::Internal,
            start_ns: (created_at_ms.max(0) as u64).saturating_mul(1_000_000),
            end_ns: now_ns(),
            attributes: vec![("baton.request.id", json!(id)), ("baton.flow", json!(flow))],
            error,
        });
    }

    fn send(&self, span: Span) {
        let Some(queue) = &self.queue else { return };
        if queue.sender.try_send(Message::Span(span)).is_err()
            && queue.dropped.fetch_add(1, Ordering::Relaxed) % 10_000 == 0
        {
            tracing::warn!("the trace export queue is full; spans are dropped");
        }
    }

    /// Exports what is queued; returns once it was posted (or failed).
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, flushed) = oneshot::channel();
        if queue.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), flushed).await;
        }
    }
}

/// A span being timed; it is recorded when it ends (or is dropped).
pub struct OpenSpan {
    tracer: Tracer,
    span: Option<Span>,
}

impl OpenSpan {
    /// Its context, for children; a disabled span's is zero.
    pub fn context(&self) -> SpanContext {
        self.span.as_ref().map_or(
            SpanContext {
                trace: [0; 16],
                span: [0; 8],
            },
            |span| span.context,
        )
    }

    /// The `traceparent` header naming this span, if it is recorded.
    pub fn traceparent(&self) -> Option<String> {
        self.span.as_ref().map(|span| span.context.traceparent())
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.span {
            span.attributes.push((key, value.into()));
        }
    }

    /// Moves the span's start back to `start` (it was opened after the fact).
    pub fn started_at(&mut self, start: SystemTime) {
        if let Some(span) = &mut self.span {
            span.start_ns = start
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
        }
    }

    /// Sets the span kind.
    pub fn kind(&mut self, kind: Kind) {
        if let Some(span) = &mut self.span {
            span.kind = kind;
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(span) = &mut self.span {
            span.error = Some(message.into());
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.end_ns = now_ns();
            self.tracer.send(span);
        }
    }
}

/// Posts the queued spans in batches until every tracer is gone.
async fn export(mut receiver: mpsc::Receiver<Message>, url: String, resource: Value) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let mut batch: Vec<Span> = Vec::new();
    let mut failing = false;
    loop {
        let message = if batch.is_empty() {
            receiver.recv().await
        } else {
            match tokio::time::timeout(EXPORT_EVERY, receiver.recv()).await {
                Ok(message) => message,
                Err(_) => {
                    post(&http, &url, &resource, &mut batch, &mut failing).await;
                    continue;
                }
            }
        };
        match message {
            Some(Message::Span(span)) => {
                batch.push(span);
                if batch.len() >= BATCH {
                    post(&http, &url, &resource, &mut batch, &mut failing).await;
                }
            }
            Some(Message::Flush(done)) => {
                post(&http, &url, &resource, &mut batch, &mut failing).await;
                let _ = done.send(());
            }
            None => {
                post(&http, &url, &resource, &mut batch, &mut failing).await;
                return;
            }
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    resource: &Value,
    batch: &mut Vec<Span>,
    failing: &mut bool,
) {
    if batch.is_empty() {
        return;
    }
    let spans: Vec<Value> = batch.drain(..).map(|span| span.to_otlp()).collect();
    let body = json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": { "name": "baton", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    });
    let answer = http.post(url).json(&body).send().await;
    let ok = matches!(&answer, Ok(response) if response.status().is_success());
    // Say it once when exports start failing and once when they recover.
    if !ok && !*failing {
        match answer {
            Ok(response) => {
                tracing::warn!(%url, status = response.status().as_u16(), "the trace collector refused spans; they are dropped")
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "the trace collector is unreachable; spans are dropped")
            }
        }
    } else if ok && *failing {
        tracing::info!(%url, "the trace collector takes spans again");
    }
    *failing = !ok;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_one_trace_whoever_records_it() {
        let a = SpanContext::of_request("0193-a");
        assert_eq!(a, SpanContext::of_request("0193-a"));
        assert_ne!(a.trace, SpanContext::of_request("0193-b").trace);
        let header = a.traceparent();
        assert_eq!(header.len(), 55, "{header}");
        assert!(
            header.starts_with("00-") && header.ends_with("-01"),
            "{header}"
        );
    }

    #[test]
    fn a_disabled_tracer_records_nothing() {
        let tracer = Tracer::default();
        let span = tracer.start("attempt", SpanContext::of_request("x"));
        assert!(!tracer.enabled());
        assert_eq!(span.traceparent(), None);
    }
}
