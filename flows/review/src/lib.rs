//! One reviewer's decision, started as a child of `approval`: it waits for
//! the `decision` event, which the reviewer sends from the request's page
//! in the console (or `baton send ID decision --data '{"approved": true}'`).

use baton_guest::prelude::*;

#[flow(other_server_retry = true, max_retries = 3, retry_interval = "10s")]
fn review(ctx: &mut Ctx, review: Review) -> Result<Decision, FlowError> {
    ctx.set_status("reviewer", &review.reviewer)?;
    let within = Duration::from_secs(review.within_hours * 3600);
    let (approved, comment) = match ctx.wait_event::<Verdict>("decision", within)? {
        Some(verdict) => (verdict.approved, verdict.comment),
        None => (
            false,
            format!("no decision within {} hours", review.within_hours),
        ),
    };
    Ok(Decision {
        reviewer: review.reviewer,
        approved,
        comment,
    })
}

#[derive(Deserialize)]
struct Review {
    reviewer: String,
    #[serde(default = "one_day")]
    within_hours: u64,
}

fn one_day() -> u64 {
    24
}

/// What the reviewer sends.
#[derive(Deserialize)]
struct Verdict {
    approved: bool,
    #[serde(default)]
    comment: String,
}

#[derive(Serialize)]
struct Decision {
    reviewer: String,
    approved: bool,
    comment: String,
}

#[cfg(test)]
mod tests {
    use baton_guest::testing::Harness;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_reviewers_decision_is_returned_even_when_cut_anywhere() {
        let run = Harness::new()
            .event_after(
                Duration::from_secs(600),
                "decision",
                &json!({ "approved": true, "comment": "fine" }),
            )
            .crash_at_every_checkpoint(review, &json!({ "reviewer": "ada" }));
        let decision = serde_json::to_value(run.output.unwrap()).unwrap();
        assert_eq!(
            decision,
            json!({ "reviewer": "ada", "approved": true, "comment": "fine" })
        );
        assert_eq!(run.status["reviewer"], json!("ada"));
    }

    #[test]
    fn no_decision_in_time_is_a_refusal() {
        let run = Harness::new()
            .crash_at_every_checkpoint(review, &json!({ "reviewer": "bob", "within_hours": 2 }));
        let decision = serde_json::to_value(run.output.unwrap()).unwrap();
        assert_eq!(decision["approved"], json!(false));
        assert_eq!(run.elapsed, Duration::from_secs(2 * 3600));
    }
}
