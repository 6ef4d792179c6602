//! Test flow `starter`: starts the flow its input names as a child and
//! returns the child's output. It declares `flow:hello` only, so starting
//! any other flow is refused.

use baton_guest::prelude::*;

#[flow(max_retries = 0, resources = ["flow:hello"])]
fn starter(ctx: &mut Ctx, flow: String) -> Result<baton_guest::serde_json::Value, FlowError> {
    let child = ctx.start_flow(&flow, &baton_guest::serde_json::json!({ "name": "child" }))?;
    child.wait(ctx)
}
