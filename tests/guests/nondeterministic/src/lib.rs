//! Test flow `nondeterministic`: names its first checkpoint after an HTTP
//! answer read outside any checkpoint (what a flow must not do). The SDK
//! sends HTTP only from a step, so it calls the host's import itself, as a
//! flow that bypasses the SDK could. The test server answers "alpha" then
//! "beta", and fails the first `gate`, so the retry opens a differently
//! named checkpoint at position 0.

use baton_guest::__private::bindings::baton::flow::http as raw;
use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    name_url: String,
    gate_url: String,
}

#[flow(
    max_retries = 1,
    retry_interval = "100ms",
    resources = ["http://127.0.0.1:*"]
)]
fn nondeterministic(ctx: &mut Ctx, input: Input) -> Result<(), FlowError> {
    let name = raw::send(&raw::Request {
        method: "GET".into(),
        url: input.name_url,
        headers: Vec::new(),
        body: Vec::new(),
    })?
    .body;
    ctx.checkpoint(&String::from_utf8_lossy(&name), |_| Ok(1u32))?;
    ctx.checkpoint("gate", |step| {
        step.http()
            .get(&input.gate_url)
            .send()?
            .error_for_status()?;
        Ok(())
    })
}
