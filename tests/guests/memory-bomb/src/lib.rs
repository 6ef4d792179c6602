//! Test flow `memory-bomb`: allocates and touches 1 MiB at a time until the
//! host's memory limit stops it.

use baton_guest::prelude::*;

#[flow(max_retries = 0)]
fn memory_bomb(_ctx: &mut Ctx, _input: serde::de::IgnoredAny) -> Result<(), FlowError> {
    let mut hoard = Vec::new();
    loop {
        // Non-zero bytes so that every page is really written.
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}
