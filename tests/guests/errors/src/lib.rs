//! Test flow `errors`: fatal errors with details, and a step retried inside
//! the attempt. Three retries are declared, so a fatal error ending the
//! request at its first attempt is the host's doing, not the budget's.

use baton_guest::prelude::*;
use baton_guest::serde_json::json;

#[derive(Deserialize)]
struct Input {
    /// `fatal`, `flaky` or `flaky-fatal`.
    mode: String,
    /// How many tries of the flaky step fail before one succeeds.
    #[serde(default)]
    failing_tries: u32,
}

#[flow(max_retries = 3, retry_interval = "100ms")]
fn errors(ctx: &mut Ctx, input: Input) -> Result<u32, FlowError> {
    let retry = Retry::times(3)
        .interval(Duration::from_millis(20))
        .backoff(2.0);
    let mut tries = 0;
    match input.mode.as_str() {
        "fatal" => Err(FlowError::fatal("the card was declined")
            .with_details(json!({ "code": "insufficient_funds", "retryable": false }))),
        "flaky" => ctx.checkpoint_with("flaky", retry, |_| {
            tries += 1;
            if tries <= input.failing_tries {
                Err(FlowError::new(format!("try {tries} failed")))
            } else {
                Ok(tries)
            }
        }),
        "flaky-fatal" => ctx.checkpoint_with("flaky", retry, |_| {
            tries += 1;
            Err::<u32, _>(
                FlowError::fatal("refused for good").with_details(json!({ "tries": tries })),
            )
        }),
        other => Err(FlowError::new(format!("unknown mode {other}"))),
    }
}
