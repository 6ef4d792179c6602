//! Test flow `sleeper`: a durable sleep between two checkpoints, plus the
//! journaled clock and randomness, and a log line before them.

use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
    random: u64,
}

#[flow(other_server_retry = true, retention = "7d")]
fn sleeper(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    // Logged live once: the attempt resumed after the sleep replays it.
    ctx.log(format!("sleeper goes to sleep for {} ms", input.ms));
    let started = ctx.now();
    let started_ms = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_millis() as u64;
    ctx.checkpoint("before", |_| Ok(started_ms))?;
    ctx.sleep(Duration::from_millis(input.ms));
    ctx.checkpoint("after", |_| Ok(()))?;
    Ok(Output {
        slept_ms: input.ms,
        random: ctx.random(),
    })
}
