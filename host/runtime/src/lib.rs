//! Baton's Wasm runtime: runs one attempt of a flow component in a sandbox.
//!
//! A flow is a WebAssembly component built against `guest-sdk`'s WIT world
//! `baton:flow/flow`. The runtime compiles each version once (cached on disk
//! by content hash and engine), pre-links it (`InstancePre`) and instantiates
//! it per attempt from a pooling allocator. A flow gets no ambient authority:
//! the WASI interfaces Rust's std imports are linked to a deny-all context
//! whose clocks are frozen at the Unix epoch and whose randomness is a fixed
//! stream, so the only time, randomness and I/O a flow sees come through
//! Baton's own interfaces, which the [`Journal`] records for replay.
//!
//! # Layout
//!
//! - `egress`: [`Egress`], the HTTP origins a flow declares and may call.
//! - `engine`: [`Runtime`]: engine settings, compiled-component cache,
//!   epoch ticker, attempt execution.
//! - `host`: the host side of the `journal` and `http` interfaces, the
//!   sandbox's WASI context and resource limits.
//! - `redact`: [`redact_url`] and [`redact_text`], credentials taken out of
//!   URLs before they are shown.

mod egress;
mod engine;
mod host;
mod redact;

use std::future::Future;

pub use egress::Egress;
pub use engine::{Attempt, AttemptError, FlowComponent, FlowFailure, Runtime, RuntimeConfig};
pub use redact::{redact_text, redact_url};

/// The version of wasmtime this runtime is built with.
pub const WASMTIME_VERSION: &str = env!("BATON_WASMTIME_VERSION");

/// What a checkpoint at the next journal position looks like to the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStart {
    /// Position in the journal.
    pub position: u32,
    /// Idempotency key of the step.
    pub key: String,
    /// The recorded result when the step already ran.
    pub recorded: Option<Vec<u8>>,
}

/// Severity of a flow's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

/// Why a host call stopped the attempt; the guest traps with this message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HostAbort(pub String);

/// The host's record of an attempt: checkpoints and journaled values.
///
/// Implemented by the server's executor; the runtime calls it from the host
/// side of the `journal` interface. Every method may refuse with
/// [`HostAbort`], which traps the guest: that is how an attempt that lost its
/// request, was cancelled or hit a nondeterminism error stops at its next
/// host call.
pub trait Journal: Send + 'static {
    /// Checks that the attempt may go on before a live side effect (HTTP).
    fn guard(&mut self) -> impl Future<Output = Result<(), HostAbort>> + Send;
    /// Resolves, with the reason, once the attempt must stop (cancelled,
    /// moved elsewhere, the server stopping). A host call that waits (an
    /// HTTP answer, a pause) races against it, so it ends at once.
    fn interrupted(&mut self) -> impl Future<Output = HostAbort> + Send;
    /// Opens the checkpoint `name` at the next position.
    fn begin_checkpoint(
        &mut self,
        name: String,
    ) -> impl Future<Output = Result<CheckpointStart, HostAbort>> + Send;
    /// Commits the live result of the checkpoint at `position`.
    fn commit_checkpoint(
        &mut self,
        position: u32,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), HostAbort>> + Send;
    /// Journaled wall-clock time.
    fn now_ms(&mut self) -> impl Future<Output = Result<u64, HostAbort>> + Send;
    /// Journaled random value.
    fn random_u64(&mut self) -> impl Future<Output = Result<u64, HostAbort>> + Send;
    /// Durable sleep.
    fn sleep_ms(&mut self, ms: u64) -> impl Future<Output = Result<(), HostAbort>> + Send;
    /// Durable wait for the event `name`: its JSON, or `None` at the
    /// deadline `timeout_ms` after the wait first began.
    fn wait_event(
        &mut self,
        name: String,
        timeout_ms: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, HostAbort>> + Send;
    /// Publishes a status value of the request.
    fn set_status(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<(), HostAbort>> + Send;
    /// Starts the child request of `flow` on `input`, once: its id, or
    /// why it could not start (a sentence for the flow).
    fn start_flow(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> impl Future<Output = Result<Result<String, String>, HostAbort>> + Send;
    /// Durable wait for the child request `id` to end: its output, or why
    /// it did not succeed.
    fn wait_child(
        &mut self,
        id: String,
    ) -> impl Future<Output = Result<Result<Vec<u8>, String>, HostAbort>> + Send;
    /// A log line from the flow.
    fn log(&mut self, level: LogLevel, message: &str);
    /// The W3C `traceparent` header of the flow's HTTP call about to be
    /// sent, when the attempt is traced.
    fn traceparent(&mut self) -> Option<String>;
    /// A live HTTP call of the flow ended (answered or not) after `elapsed`.
    fn http_done(&mut self, elapsed: std::time::Duration);
}
