//! Test flow `steps-fresh`: a retry starts over from the first step.

use baton_guest::prelude::*;
use steps_body::{Input, Output};

#[flow(
    begin_checkpoint = "not use",
    other_server_retry = true,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://127.0.0.1:*"]
)]
fn steps_fresh(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    steps_body::run(ctx, input)
}
