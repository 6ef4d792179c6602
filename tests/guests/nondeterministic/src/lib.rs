//! Test flow `nondeterministic`: names its first checkpoint after an HTTP
//! answer read outside any checkpoint (what a flow must not do). The test
//! server answers "alpha" then "beta", and fails the first `gate`, so the
//! retry opens a differently named checkpoint at position 0.

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
    let name = http::get(&input.name_url).send()?.text();
    ctx.checkpoint(&name, |_| Ok(1u32))?;
    ctx.checkpoint("gate", |_| {
        http::get(&input.gate_url).send()?.error_for_status()?;
        Ok(())
    })
}
