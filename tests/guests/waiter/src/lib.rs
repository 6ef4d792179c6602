//! Test flow `waiter`: waits `waits` times for the event `name`, each wait
//! with `timeout_ms`, and returns what each got (null on a timeout). It
//! publishes how many it has taken as the status value `taken`.

use baton_guest::prelude::*;
use baton_guest::serde_json::Value;

#[derive(Deserialize)]
struct Input {
    name: String,
    waits: u32,
    timeout_ms: u64,
}

#[flow(other_server_retry = true)]
fn waiter(ctx: &mut Ctx, input: Input) -> Result<Vec<Option<Value>>, FlowError> {
    let mut got = Vec::new();
    for _ in 0..input.waits {
        ctx.set_status("taken", &got.len())?;
        got.push(ctx.wait_event::<Value>(&input.name, Duration::from_millis(input.timeout_ms))?);
    }
    ctx.set_status("taken", &got.len())?;
    ctx.checkpoint("done", |_| Ok(()))?;
    Ok(got)
}
