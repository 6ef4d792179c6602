//! Test flow `trap`: commits one checkpoint, then panics (a trap).

use baton_guest::prelude::*;

#[flow(max_retries = 0)]
fn trap(ctx: &mut Ctx, _input: serde::de::IgnoredAny) -> Result<(), FlowError> {
    ctx.checkpoint("before", |_| Ok(()))?;
    panic!("deliberate trap");
}
