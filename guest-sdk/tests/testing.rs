//! The test harness on small flows: what it runs, and that
//! `crash_at_every_checkpoint` catches the mistakes it is there for.
#![cfg(feature = "testing")]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_guest::prelude::*;
use baton_guest::testing::{Harness, Response};
use serde_json::json;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Charge {
    id: String,
}

/// Reserve, charge, then wait a day for `shipped`, refunding without it.
fn order(ctx: &mut Ctx, cents: u64) -> Result<String, FlowError> {
    let hold: String = ctx.checkpoint("reserve", |step| {
        step.http()
            .post("https://stock.example.com/holds")
            .idempotency_key(step.key())
            .send()?
            .json()
    })?;
    let charge: Charge = ctx.checkpoint("charge", |step| {
        step.http()
            .post("https://pay.example.com/charges")
            .idempotency_key(step.key())
            .json(&json!({ "cents": cents, "hold": hold }))
            .send()?
            .error_for_status()?
            .json()
    })?;
    ctx.set_status("charge", &charge.id)?;
    ctx.log(format!("charged {}", charge.id));
    match ctx.wait_event::<String>("shipped", Duration::from_secs(24 * 3600))? {
        Some(tracking) => Ok(tracking),
        None => {
            ctx.checkpoint("refund", |step| {
                step.http()
                    .post("https://pay.example.com/refunds")
                    .idempotency_key(step.key())
                    .json(&charge)
                    .send()?
                    .error_for_status()?;
                Ok(())
            })?;
            Err(FlowError::fatal("not shipped within a day; refunded"))
        }
    }
}

fn services() -> Harness {
    Harness::new()
        .route(
            "POST",
            "https://stock.example.com/holds",
            Response::json(200, &"hold-1"),
        )
        .route(
            "POST",
            "https://pay.example.com/charges",
            Response::json(200, &json!({ "id": "ch_1" })),
        )
        .route(
            "POST",
            "https://pay.example.com/refunds",
            Response::new(204, ""),
        )
}

#[test]
fn an_event_sent_before_the_wait_is_delivered_and_the_crash_check_passes() {
    let run = services()
        .event("shipped", &"TRACK-1")
        .crash_at_every_checkpoint(order, &250);
    assert_eq!(run.output, Ok("TRACK-1".to_owned()));
    let names: Vec<&str> = run.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "reserve",
            "charge",
            "baton:wait:shipped",
            "baton:event:shipped"
        ]
    );
    assert_eq!(
        run.calls[1].json::<serde_json::Value>().unwrap(),
        json!({ "cents": 250, "hold": "hold-1" })
    );
    assert_eq!(run.calls[1].idempotency_key(), Some("test-request-1"));
    assert_eq!(run.status["charge"], json!("ch_1"));
    assert_eq!(run.logs, ["INFO charged ch_1"]);
    assert_eq!(run.elapsed, Duration::ZERO);
}

#[test]
fn an_event_after_the_timeout_is_not_delivered_and_the_flow_refunds() {
    let run = services()
        .event_after(Duration::from_secs(25 * 3600), "shipped", &"TRACK-1")
        .crash_at_every_checkpoint(order, &250);
    let error = run.output.unwrap_err();
    assert!(
        error.is_fatal() && error.message().contains("refunded"),
        "{error}"
    );
    assert_eq!(
        run.calls.last().unwrap().url,
        "https://pay.example.com/refunds"
    );
    assert_eq!(run.elapsed, Duration::from_secs(24 * 3600));

    let in_time = services()
        .event_after(Duration::from_secs(3600), "shipped", &"TRACK-2")
        .run(order, &250);
    assert_eq!(in_time.output, Ok("TRACK-2".to_owned()));
    assert_eq!(in_time.elapsed, Duration::from_secs(3600));
}

#[test]
fn clock_and_randomness_are_journaled_and_the_same_on_replay() {
    fn draw(ctx: &mut Ctx, _: ()) -> Result<(u64, u64, u64), FlowError> {
        let before = ctx.now();
        ctx.sleep(Duration::from_secs(90));
        let after = ctx.now();
        let random = ctx.random();
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        Ok((secs(before), secs(after), random))
    }
    let run = Harness::new().seed(7).crash_at_every_checkpoint(draw, &());
    let (before, after, random) = run.output.unwrap();
    assert_eq!(after - before, 90);
    assert_eq!(before, 1_767_225_600);
    let other = Harness::new().seed(8).run(draw, &());
    assert_ne!(other.output.unwrap().2, random);
}

#[test]
fn an_input_that_does_not_decode_is_fatal() {
    let run = services().run(order, &"not a number");
    let error = run.output.unwrap_err();
    assert!(
        error.is_fatal() && error.message().starts_with("invalid input"),
        "{error}"
    );
}

#[test]
fn an_unrouted_call_fails_the_step_with_a_clear_error() {
    let run = Harness::new().run(order, &1);
    let error = run.output.unwrap_err();
    assert!(
        error
            .message()
            .contains("no stub answers POST https://stock.example.com/holds"),
        "{error}"
    );
}

#[test]
#[should_panic(expected = "without an Idempotency-Key")]
fn the_crash_check_refuses_a_repeated_call_without_a_key() {
    fn careless(ctx: &mut Ctx, _: ()) -> Result<(), FlowError> {
        ctx.checkpoint("charge", |step| {
            step.http().post("https://pay.example.com/charges").send()?;
            Ok(())
        })
    }
    services().crash_at_every_checkpoint(careless, &());
}

#[test]
#[should_panic(expected = "carry the same Idempotency-Key")]
fn the_crash_check_refuses_a_key_shared_by_two_steps() {
    fn shared(ctx: &mut Ctx, order: String) -> Result<(), FlowError> {
        for name in ["reserve", "charge"] {
            let url = if name == "reserve" {
                "https://stock.example.com/holds"
            } else {
                "https://pay.example.com/charges"
            };
            ctx.checkpoint(name, |step| {
                step.http().post(url).idempotency_key(&order).send()?;
                Ok(())
            })?;
        }
        Ok(())
    }
    services().crash_at_every_checkpoint(shared, &"order-7");
}

#[test]
#[should_panic(expected = "not deterministic")]
fn the_crash_check_refuses_a_flow_that_reads_state_outside_the_journal() {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    fn drifting(ctx: &mut Ctx, _: ()) -> Result<u32, FlowError> {
        // Outside the journal: every run sees a different value.
        let seen = RUNS.fetch_add(1, Ordering::SeqCst);
        ctx.checkpoint("first", |_| Ok(1))?;
        ctx.checkpoint("second", |_| Ok(seen))
    }
    Harness::new().crash_at_every_checkpoint(drifting, &());
}

#[test]
fn a_stub_sees_each_call_and_its_step() {
    let seen = Rc::new(Cell::new(0));
    let counter = Rc::clone(&seen);
    let run = Harness::new()
        .http(move |call| {
            counter.set(counter.get() + 1);
            assert_eq!(call.step_key, format!("r1-{}", call.position));
            Ok(match call.step.as_str() {
                "reserve" => Response::json(200, &"hold-9"),
                _ => Response::json(200, &json!({ "id": "ch_9" })),
            })
        })
        .request_id("r1")
        .event("shipped", &"T")
        .run(order, &5);
    assert_eq!(run.output, Ok("T".to_owned()));
    assert_eq!(seen.get(), 2);
    assert_eq!(run.status["charge"], json!("ch_9"));
}

#[test]
fn a_child_flow_can_run_under_a_harness_of_its_own() {
    fn double(ctx: &mut Ctx, n: u64) -> Result<u64, FlowError> {
        ctx.checkpoint("double", |_| Ok(n * 2))
    }
    fn parent(ctx: &mut Ctx, n: u64) -> Result<u64, FlowError> {
        let first = ctx.start_flow("double", &n)?;
        let second = ctx.start_flow("double", &(n + 1))?;
        Ok(first.wait::<u64>(ctx)? + second.wait::<u64>(ctx)?)
    }
    let run = Harness::new()
        .child("double", |input| {
            let n = input.as_u64().ok_or("not a number")?;
            let run = Harness::new().run(double, &n);
            run.output
                .map(|doubled| json!(doubled))
                .map_err(|e| e.to_string())
        })
        .crash_at_every_checkpoint(parent, &5);
    assert_eq!(run.output, Ok(22));

    let unknown = Harness::new().run(parent, &5);
    let error = unknown.output.unwrap_err();
    assert!(
        !error.is_fatal() && error.message().contains(r#"no flow named "double""#),
        "{error}"
    );
}

fn tolerant(ctx: &mut Ctx, _: ()) -> Result<String, FlowError> {
    // The failure is not journaled: going on after it moves what follows.
    let _ = ctx.checkpoint("flaky", |_| Err::<(), _>(FlowError::new("down")));
    ctx.checkpoint("next", |step| Ok(step.key().to_owned()))
}

/// As on a server, a step that failed leaves its position to the next one.
#[test]
fn a_failed_step_takes_no_position() {
    let run = Harness::new().run(tolerant, &());
    assert_eq!(run.output, Ok("test-request-0".to_owned()));
    assert_eq!(run.checkpoints.len(), 1);
}

/// A flow that goes on after a failed step replays differently from how it
/// ran (the failed step runs again where the next one was recorded): the
/// crash check says so.
#[test]
#[should_panic(expected = "nondeterminism")]
fn the_crash_check_refuses_a_flow_that_goes_on_after_a_failed_step() {
    Harness::new().crash_at_every_checkpoint(tolerant, &());
}
