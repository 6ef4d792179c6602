//! Test flow `local-resources`: the `steps` body, declared to use a loopback
//! HTTP host and a server-local folder while allowing other servers to
//! retry it, which Baton must warn about and check on every server.

use baton_guest::prelude::*;
use steps_body::{Input, Output};

#[flow(
    other_server_retry = true,
    max_retries = 2,
    retry_interval = "200ms",
    resources = ["http://localhost:9", "folder:/tmp/baton-local-resource-test"]
)]
fn local_resources(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    steps_body::run(ctx, input)
}
