//! Write Baton flows: durable workflows that run as WebAssembly components.
//!
//! A flow is a Rust function marked [`#[flow]`](macro@flow), built as a
//! `cdylib` for `wasm32-wasip2`. The host runs it once per request attempt.
//! Side effects go inside [`Ctx::checkpoint`] steps: each step's result is
//! committed durably, and when an attempt fails (a step error, a trap, a
//! server crash) the retry runs the function again from the top, replaying
//! committed steps instead of running them.
//!
//! ```
//! use baton_guest::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order {
//!     item: String,
//!     quantity: u32,
//!     stock_url: String,
//!     payment_url: String,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hold {
//!     hold: String,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Charge {
//!     id: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Receipt {
//!     charge: String,
//! }
//!
//! #[flow(other_server_retry = true, max_retries = 5, retry_interval = "10s")]
//! fn order(ctx: &mut Ctx, order: Order) -> Result<Receipt, FlowError> {
//!     let hold: Hold = ctx.checkpoint("reserve", |step| {
//!         step.http().post(&order.stock_url).idempotency_key(step.key()).json(&order).send()?.error_for_status()?.json()
//!     })?;
//!     ctx.sleep(Duration::from_secs(1));
//!     let charge: Charge = ctx.checkpoint("charge", |step| {
//!         step.http().post(&order.payment_url).idempotency_key(step.key()).json(&hold).send()?.error_for_status()?.json()
//!     })?;
//!     ctx.log(format!("charged {} for {} x {}", charge.id, order.quantity, order.item));
//!     Ok(Receipt { charge: charge.id })
//! }
//! ```
//!
//! The flow's crate needs `baton-guest` and `serde` (for the derives):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! baton-guest = { path = "../../guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! and is built with `cargo build --release --target wasm32-wasip2`.
//!
//! # Determinism
//!
//! A retry must take the same path as the attempt it resumes. Read the clock,
//! randomness and the outside world only through [`Ctx`] and inside
//! checkpoint steps; do not use `std::time`, `std::env`, files or threads.
//! The host gives a flow no clock, randomness, files or network of its own.
//!
//! # Layout
//!
//! - [`flow`](macro@flow): the attribute that turns a function into the
//!   component's exports and declares the flow's properties.
//! - [`Ctx`] and [`Step`] (module `ctx`): checkpoints, durable sleep, the
//!   journaled clock and randomness, logs.
//! - [`http`]: outgoing requests, performed by the host.
//! - [`FlowError`] (module `error`): why a flow or a step failed.
//! - [`prelude`]: everything a flow needs in one `use`.
//! - `bindings` (private): the code `wit-bindgen` generates from
//!   `wit/baton.wit`.
#![deny(missing_docs)]

mod ctx;
mod error;
mod host;
pub mod http;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

/// Makes a function the flow of this component and declares the flow's
/// properties.
///
/// The function has the shape
/// `fn name(ctx: &mut Ctx, input: I) -> Result<O, FlowError>`, where the
/// input `I` is `Deserialize` and the output `O` is `Serialize`; both travel
/// as JSON. The flow is named after the function, with `_` turned into `-`
/// (`fn batch_import` is the flow `batch-import`). One `#[flow]` per crate.
///
/// | Property | Values | Default |
/// |---|---|---|
/// | `other_server_retry` | `true` / `false`: may another server resume the request when its server dies | `false` |
/// | `begin_checkpoint` | `"use"` (a retry resumes after the last checkpoint) / `"not use"` (a retry starts over) | `"use"` |
/// | `max_retries` | retries after a failed attempt before the request is in error | `3` |
/// | `retry_interval` | delay before the first retry: `"250ms"`, `"10s"`, `"2m"`, `"1h"` | `"10s"` |
/// | `backoff` | factor applied to the delay after each failure, at least `1.0` | `1.0` (constant) |
/// | `max_retry_interval` | upper bound of the delay when backing off | none |
/// | `resources` | what the flow reaches besides Baton: `"https://api.example.com"` (HTTP origins it calls), `"folder:/data"`, `"connection:db"`, `"flow:review"` (flows it starts as children) | none |
/// | `retention` | how long the flow's finished requests are kept before the cluster's purge deletes them: `"12h"`, `"7d"` | the server's `retention` |
///
/// ```
/// use baton_guest::prelude::*;
///
/// #[flow(max_retries = 10, retry_interval = "1s", backoff = 2.0, max_retry_interval = "5m")]
/// fn nightly_report(ctx: &mut Ctx, day: String) -> Result<u32, FlowError> {
///     ctx.checkpoint("count", |_| Ok(day.len() as u32))
/// }
/// ```
///
/// An unknown property or a bad value is a compile error:
///
/// ```compile_fail
/// use baton_guest::prelude::*;
///
/// #[flow(retry_interval = "soon")] // expects a duration such as "250ms", "10s", ...
/// fn impatient(ctx: &mut Ctx, input: ()) -> Result<(), FlowError> {
///     Ok(input)
/// }
/// ```
pub use baton_guest_macros::flow;
pub use ctx::{ChildHandle, Ctx, Retry, Step};
pub use error::FlowError;
pub use serde;
pub use serde_json;

/// Everything a flow needs: `use baton_guest::prelude::*;`.
pub mod prelude {
    pub use crate::http;
    pub use crate::{ChildHandle, Ctx, FlowError, Retry, Step, flow};
    pub use serde::de::DeserializeOwned;
    pub use serde::{Deserialize, Serialize};
    pub use std::time::Duration;
}

#[allow(missing_docs, unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "flow",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "::baton_guest::__private::bindings",
    });
}

/// Used by the code `#[flow]` generates; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{BeginCheckpoint, FlowError as RunError, Guest, Properties};

    /// The generated bindings, named by the export macro.
    pub mod bindings {
        pub use crate::bindings::*;
    }

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::{Ctx, FlowError};

    /// Runs a flow function on a JSON input: the body of the exported `run`.
    pub fn run<I, O>(
        input: &[u8],
        flow: impl FnOnce(&mut Ctx, I) -> Result<O, FlowError>,
    ) -> Result<Vec<u8>, RunError>
    where
        I: DeserializeOwned,
        O: Serialize,
    {
        let output = crate::call_flow(input, flow).map_err(run_error)?;
        serde_json::to_vec(&output)
            .map_err(|e| run_error(FlowError::new(format!("invalid output: {e}"))))
    }

    /// The error as the `run` export returns it.
    fn run_error(error: FlowError) -> RunError {
        RunError {
            details: error.details().and_then(|d| serde_json::to_vec(d).ok()),
            fatal: error.is_fatal(),
            message: error.message().to_owned(),
        }
    }
}

/// Calls a flow function on its JSON input, as a server's attempt does.
fn call_flow<I, O>(
    input: &[u8],
    flow: impl FnOnce(&mut Ctx, I) -> Result<O, FlowError>,
) -> Result<O, FlowError>
where
    I: serde::de::DeserializeOwned,
{
    // An input that does not decode never will: no retry can help.
    let input = serde_json::from_slice(input)
        .map_err(|e| FlowError::fatal(format!("invalid input: {e}")))?;
    flow(&mut Ctx::new(), input)
}

// Lets the paths the macros generate (`::baton_guest::...`) resolve inside
// this crate too, in its doctests and tests.
extern crate self as baton_guest;
