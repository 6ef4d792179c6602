//! Test flow `raw-journal`: calls the journal's WIT imports directly, as a
//! hostile guest could, bypassing the SDK's checks.
//!
//! Input `{"case": C}`: `reserved` opens a checkpoint named `baton:now`,
//! `long` one with a name of 8 KiB, `nul` one with a NUL byte, `not-json`
//! commits bytes that are not JSON, `pause` pauses for a minute, `log`
//! writes a log line with a forged second line in it and 64 KiB of text,
//! then succeeds.
//!
//! Input `{"script": [CALL, …]}` makes the calls in order, whatever they
//! are: `{"begin": NAME}`, `{"commit": [POSITION, [BYTE, …]]}`, `"now"`,
//! `"random"`, `{"sleep": MS}`, `{"pause": MS}`, `{"log": TEXT}`. Output:
//! one entry per call, `{"position": P, "recorded": true|false}` for a
//! begin and `null` for the others.

use baton_guest::__private::bindings::baton::flow::journal::{self, Level};
use baton_guest::prelude::*;
use baton_guest::serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    case: Option<String>,
    #[serde(default)]
    script: Vec<Call>,
}

/// One raw journal call of a script.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Call {
    Begin(String),
    Commit(u32, Vec<u8>),
    Now,
    Random,
    Sleep(u64),
    Pause(u64),
    Log(String),
}

#[flow(max_retries = 0)]
fn raw_journal(_ctx: &mut Ctx, input: Input) -> Result<Vec<Value>, FlowError> {
    let Some(case) = input.case else {
        return Ok(input.script.into_iter().map(call).collect());
    };
    match case.as_str() {
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
            return Ok(Vec::new());
        }
        other => return Err(FlowError::new(format!("unknown case {other}"))),
    }
    Err(FlowError::new("the host accepted the call"))
}

fn call(call: Call) -> Value {
    match call {
        Call::Begin(name) => {
            let start = journal::begin_checkpoint(&name);
            json!({ "position": start.position, "recorded": start.recorded.is_some() })
        }
        Call::Commit(position, payload) => {
            journal::commit_checkpoint(position, &payload);
            Value::Null
        }
        Call::Now => {
            journal::now_ms();
            Value::Null
        }
        Call::Random => {
            journal::random_u64();
            Value::Null
        }
        Call::Sleep(ms) => {
            journal::sleep_ms(ms);
            Value::Null
        }
        Call::Pause(ms) => {
            journal::pause_ms(ms);
            Value::Null
        }
        Call::Log(text) => {
            journal::log(Level::Info, &text);
            Value::Null
        }
    }
}
