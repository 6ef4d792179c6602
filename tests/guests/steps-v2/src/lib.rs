//! Test flow `steps`, version 2: the same flow name and checkpoints as
//! `steps`, but its output's sum is offset by a million, so a test can tell
//! which version finished a request.

use baton_guest::prelude::*;
use steps_body::{Input, Output};

#[flow(
    other_server_retry = true,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://127.0.0.1:*"]
)]
fn steps(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    let mut output = steps_body::run(ctx, input)?;
    output.sum += 1_000_000;
    Ok(output)
}
