//! Test flow `steps-local`: only the server that started a request may
//! retry it.

use baton_guest::prelude::*;
use steps_body::{Input, Output};

#[flow(
    other_server_retry = false,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://127.0.0.1:*"]
)]
fn steps_local(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    steps_body::run(ctx, input)
}
