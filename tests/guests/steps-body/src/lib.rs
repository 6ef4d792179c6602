//! The body shared by the `steps`, `steps-fresh` and `steps-local` test
//! flows, which differ only in their `#[flow]` properties.
//!
//! Input `{"steps": N, "url": "http://..."}` (`url` optional). Step `i` is
//! the checkpoint `step-<i>`; with a URL it POSTs `{"i": i}` to
//! `<url>/step/<i>` with the step's idempotency key, and fails unless the
//! answer is 2xx (the test server decides which steps fail). Its recorded
//! value is `i * i`. With `"sleep_ms": M` the flow sleeps durably for M ms
//! after step 0. Output `{"sum": Σ i*i, "keys": [key of each step]}`.

use baton_guest::prelude::*;

/// The flow's input.
#[derive(Deserialize)]
pub struct Input {
    /// Number of steps.
    pub steps: u32,
    /// Base URL of the test server; no HTTP when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// A durable sleep of this many milliseconds after the first step.
    #[serde(default)]
    pub sleep_ms: Option<u64>,
}

/// The flow's output.
#[derive(Serialize)]
pub struct Output {
    /// Sum of the steps' values.
    pub sum: u64,
    /// Each step's idempotency key, in order.
    pub keys: Vec<String>,
}

/// Runs the steps.
pub fn run(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    let mut sum = 0;
    let mut keys = Vec::new();
    for i in 0..input.steps {
        let square: u64 = ctx.checkpoint(&format!("step-{i}"), |step| {
            if let Some(url) = &input.url {
                let answer = step
                    .http()
                    .post(format!("{url}/step/{i}"))
                    .idempotency_key(step.key())
                    .json(&baton_guest::serde_json::json!({ "i": i }))
                    .send()?;
                if !answer.is_success() {
                    let status = answer.status();
                    return Err(FlowError::new(format!(
                        "step {i} failed with status {status}"
                    )));
                }
            }
            Ok(u64::from(i) * u64::from(i))
        })?;
        sum += square;
        keys.extend(ctx.last_key().map(str::to_owned));
        if let (0, Some(ms)) = (i, input.sleep_ms) {
            ctx.sleep(Duration::from_millis(ms));
        }
    }
    Ok(Output { sum, keys })
}
