//! Test flow `steps` rebuilt with its checkpoints renamed (`square-<i>`
//! where `steps` has `step-<i>`): it cannot replay a journal of `steps`,
//! which the deploy gate must see.

use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    steps: u32,
}

#[flow(
    other_server_retry = true,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://127.0.0.1:*"]
)]
fn steps(ctx: &mut Ctx, input: Input) -> Result<u64, FlowError> {
    let mut sum = 0;
    for i in 0..input.steps {
        sum += ctx.checkpoint(&format!("square-{i}"), |_| Ok(u64::from(i * i)))?;
    }
    Ok(sum)
}
