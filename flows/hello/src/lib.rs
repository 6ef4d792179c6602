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

#[cfg(test)]
mod tests {
    use baton_guest::testing::Harness;
    use serde_json::json;

    use super::*;

    #[test]
    fn greets_by_name_even_when_cut_anywhere() {
        let run = Harness::new().crash_at_every_checkpoint(hello, &json!({ "name": "Ada" }));
        assert_eq!(run.output.unwrap().greeting, "Hello, Ada!");
    }
}
