//! Imports `records` generated records in batches of `batch`, one checkpoint
//! per batch. Each batch pauses `delay_ms` to stand for real work, so a run
//! is long enough to kill a server in the middle of it; the resumed run's
//! output equals an uninterrupted one.

use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {
    records: u64,
    batch: u64,
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Serialize)]
struct Output {
    records: u64,
    batches: u64,
    checksum: String,
}

#[flow(other_server_retry = true, max_retries = 3, retry_interval = "1s")]
fn batch_import(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {
    if input.batch == 0 {
        return Err(FlowError::new("batch must be at least 1"));
    }
    let batches = input.records.div_ceil(input.batch);
    let mut checksum = 0;
    for k in 0..batches {
        let records = k * input.batch..input.records.min((k + 1) * input.batch);
        let batch_sum: u64 = ctx.checkpoint(&format!("batch-{k}"), |step| {
            step.pause(Duration::from_millis(input.delay_ms));
            Ok(records.map(record).fold(0, mix))
        })?;
        checksum = mix(checksum, batch_sum);
    }
    Ok(Output {
        records: input.records,
        batches,
        checksum: format!("{checksum:016x}"),
    })
}

/// Record `i`: deterministic, so every run imports the same data.
fn record(i: u64) -> u64 {
    splitmix64(i)
}

/// Order-sensitive combination of a running checksum with the next value.
fn mix(acc: u64, value: u64) -> u64 {
    splitmix64(acc ^ value)
}

/// The splitmix64 finaliser (Steele, Lea, Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use baton_guest::testing::Harness;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_checksum_is_the_same_when_cut_at_any_batch() {
        let input = json!({ "records": 10, "batch": 3 });
        let run = Harness::new().crash_at_every_checkpoint(batch_import, &input);
        let output = run.output.unwrap();
        assert_eq!((output.records, output.batches), (10, 4));
        let names: Vec<&str> = run.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["batch-0", "batch-1", "batch-2", "batch-3"]);
    }
}
