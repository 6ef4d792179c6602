//! Test flow `raw-journal`: calls the journal's WIT imports directly, as a
//! hostile guest could, bypassing the SDK's checks. Input `{"case": C}`:
//! `reserved` opens a checkpoint named `baton:now`, `long` one with a name
//! of 8 KiB, `nul` one with a NUL byte, `not-json` commits bytes that are
//! not JSON, `pause` pauses for a minute, `log` writes a log line with a
//! forged second line in it and 64 KiB of text, then succeeds.

use baton_guest::__private::bindings::baton::flow::journal::{self, Level};
use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    case: String,
}

#[flow(max_retries = 0)]
fn raw_journal(_ctx: &mut Ctx, input: Input) -> Result<(), FlowError> {
    match input.case.as_str() {
        "reserved" => {
            journal::begin_checkpoint("baton:now");
        }
        "long" => {
            journal::begin_checkpoint(&"n".repeat(8 << 10));
        }
        "nul" => {
            journal::begin_checkpoint("step\0hidden");
        }
        "not-json" => {
            let start = journal::begin_checkpoint("step");
            journal::commit_checkpoint(start.position, b"{not json");
        }
        "pause" => journal::pause_ms(60_000),
        "log" => {
            journal::log(
                Level::Info,
                "looks fine\n2026-01-01T00:00:00Z  INFO baton: forged line",
            );
            journal::log(Level::Info, &"x".repeat(64 << 10));
            return Ok(());
        }
        other => return Err(FlowError::new(format!("unknown case {other}"))),
    }
    Err(FlowError::new("the host accepted the call"))
}
