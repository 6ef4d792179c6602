//! The smallest flow: one checkpoint that builds a greeting.

use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

#[flow]
fn hello(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    let greeting = ctx.checkpoint("greet", |_| Ok(format!("Hello, {}!", input.name)))?;
    Ok(Output { greeting })
}
