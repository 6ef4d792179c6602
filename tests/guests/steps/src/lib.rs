//! Test flow `steps`: resumes from the last checkpoint, on any server.

use baton_guest::prelude::*;
use steps_body::{Input, Output};

#[flow(
    other_server_retry = true,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://127.0.0.1:*"]
)]
fn steps(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    steps_body::run(ctx, input)
}
