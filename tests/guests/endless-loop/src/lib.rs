//! Test flow `endless-loop`: commits one checkpoint, then spins forever; the
//! host must interrupt it.

use baton_guest::prelude::*;

#[flow(max_retries = 0)]
fn endless_loop(ctx: &mut Ctx, _input: serde::de::IgnoredAny) -> Result<(), FlowError> {
    ctx.checkpoint("before", |_| Ok(()))?;
    let mut counter = 0u64;
    loop {
        // black_box keeps the optimiser from proving the loop does nothing.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
