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
pub use engine::{Attempt, AttemptError, FlowComponent, Runtime, RuntimeConfig};
pub use redact::{redact_text, redact_url};

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

/// Properties a flow declares about itself (the WIT `properties` record).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowProperties {
    /// Flow name.
    pub name: String,
    /// May another server resume the flow when its server dies?
    pub other_server_retry: bool,
    /// `true` for `begin_checkpoint = use`: retries resume after the last
    /// checkpoint; `false` (`not use`) starts them over.
    pub begin_checkpoint: bool,
    /// Automatic retries after a flow error.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub retry_interval_ms: u64,
    /// Growth of the delay per failed attempt (1.0 = constant).
    pub backoff_factor: f64,
    /// Cap on the delay.
    pub max_retry_interval_ms: Option<u64>,
    /// Resources the flow declares (`http://…`, `folder:/…`, `connection:…`).
    #[serde(default)]
    pub resources: Vec<String>,
}

impl Default for FlowProperties {
    /// The SPEC's defaults: stays on its server, resumes from the last
    /// checkpoint, 3 retries 10 s apart.
    fn default() -> Self {
        Self {
            name: String::new(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 3,
            retry_interval_ms: 10_000,
            backoff_factor: 1.0,
            max_retry_interval_ms: None,
            resources: Vec::new(),
        }
    }
}

impl FlowProperties {
    /// Delay before the retry that follows `failures` failed attempts
    /// (1 for the first retry): `retry_interval × backoff^(failures − 1)`,
    /// capped by `max_retry_interval` and by [`MAX_RETRY_DELAY_MS`], so it
    /// never overflows the database's time arithmetic.
    pub fn retry_delay_ms(&self, failures: u32) -> i64 {
        // NaN, below 1 and infinite factors are clamped before use.
        let factor = if self.backoff_factor.is_nan() {
            1.0
        } else {
            self.backoff_factor.clamp(1.0, f64::MAX)
        };
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        // 0 × ∞ would be NaN: no interval is no delay, whatever the backoff.
        let delay = match self.retry_interval_ms {
            0 => 0.0,
            interval => interval as f64 * factor.powi(exponent),
        };
        let cap = self
            .max_retry_interval_ms
            .unwrap_or(u64::MAX)
            .min(MAX_RETRY_DELAY_MS as u64) as f64;
        // A float-to-integer cast saturates; `delay` is at most `cap` here.
        delay.min(cap) as i64
    }
}

/// The longest delay before a retry: a hundred years, far inside the range
/// of the database's millisecond timestamps.
pub const MAX_RETRY_DELAY_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

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
    /// A log line from the flow.
    fn log(&mut self, level: LogLevel, message: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let properties = FlowProperties {
            name: "f".into(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 5,
            retry_interval_ms: 100,
            backoff_factor: 2.0,
            max_retry_interval_ms: Some(500),
            resources: Vec::new(),
        };
        let delays: Vec<i64> = (1..=5).map(|n| properties.retry_delay_ms(n)).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    /// `retry_interval × backoff^n` overflowed and, cast to a signed delay,
    /// came out negative: the retry fired at once.
    #[test]
    fn a_huge_backoff_saturates_instead_of_retrying_at_once() {
        let properties = FlowProperties {
            name: "f".into(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 1000,
            retry_interval_ms: u64::MAX / 2,
            backoff_factor: 1e300,
            max_retry_interval_ms: None,
            resources: Vec::new(),
        };
        for failures in [1, 2, 64, 1000, u32::MAX] {
            assert_eq!(properties.retry_delay_ms(failures), MAX_RETRY_DELAY_MS);
        }
        let nan = FlowProperties {
            backoff_factor: f64::NAN,
            retry_interval_ms: 100,
            ..properties
        };
        assert_eq!(nan.retry_delay_ms(40), 100);
    }
}
