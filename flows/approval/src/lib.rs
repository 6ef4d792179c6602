//! An approval: one `review` child request per reviewer, each waiting for
//! its reviewer's `decision` event (sent from the console); approved when
//! every reviewer approves. Cancelling the approval cancels its reviews.

use baton_guest::prelude::*;

#[flow(
    other_server_retry = true,
    max_retries = 3,
    retry_interval = "10s",
    resources = ["flow:review"]
)]
fn approval(ctx: &mut Ctx, input: Input) -> Result<Approved, FlowError> {
    let mut reviews = Vec::new();
    for reviewer in &input.reviewers {
        let review = Review {
            reviewer,
            within_hours: input.within_hours,
        };
        reviews.push(ctx.start_flow("review", &review)?);
    }
    let mut approved_by = Vec::new();
    for review in &reviews {
        let decision: Decision = review.wait(ctx)?;
        if !decision.approved {
            return Err(
                FlowError::fatal(format!("refused by {}", decision.reviewer))
                    .with_details(&decision),
            );
        }
        approved_by.push(decision.reviewer);
    }
    Ok(Approved {
        subject: input.subject,
        approved_by,
    })
}

#[derive(Deserialize)]
struct Input {
    subject: String,
    reviewers: Vec<String>,
    #[serde(default = "one_day")]
    within_hours: u64,
}

fn one_day() -> u64 {
    24
}

/// The input of a `review` child.
#[derive(Serialize)]
struct Review<'a> {
    reviewer: &'a str,
    within_hours: u64,
}

/// The output of a `review` child.
#[derive(Serialize, Deserialize)]
struct Decision {
    reviewer: String,
    approved: bool,
    comment: String,
}

#[derive(Serialize)]
struct Approved {
    subject: String,
    approved_by: Vec<String>,
}

#[cfg(test)]
mod tests {
    use baton_guest::testing::Harness;
    use serde_json::{Value, json};

    use super::*;

    /// Reviews that decide as `approve` says, by reviewer.
    fn reviews(approve: fn(&str) -> bool) -> Harness {
        Harness::new().child("review", move |input: &Value| {
            let reviewer = input["reviewer"].as_str().unwrap_or_default();
            Ok(json!({ "reviewer": reviewer, "approved": approve(reviewer), "comment": "" }))
        })
    }

    fn input() -> Value {
        json!({ "subject": "laptop", "reviewers": ["ada", "bob"] })
    }

    #[test]
    fn approved_when_every_reviewer_approves_even_when_cut_anywhere() {
        let run = reviews(|_| true).crash_at_every_checkpoint(approval, &input());
        let approved = serde_json::to_value(run.output.unwrap()).unwrap();
        assert_eq!(
            approved,
            json!({ "subject": "laptop", "approved_by": ["ada", "bob"] })
        );
        let names: Vec<&str> = run.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "baton:start:review",
                "baton:start:review",
                "baton:child:test-request-child-0",
                "baton:child:test-request-child-1"
            ]
        );
    }

    #[test]
    fn one_refusal_refuses_the_approval() {
        let run =
            reviews(|reviewer| reviewer != "bob").crash_at_every_checkpoint(approval, &input());
        let error = run.output.err().unwrap();
        assert!(
            error.is_fatal() && error.message() == "refused by bob",
            "{error}"
        );
    }

    #[test]
    fn a_review_in_error_fails_the_approval_naming_it() {
        let run = Harness::new()
            .child("review", |_| Err("the reviewer left".to_owned()))
            .run(approval, &input());
        let error = run.output.err().unwrap();
        assert!(error.is_fatal(), "{error}");
        assert!(error.message().contains("the reviewer left"), "{error}");
        assert_eq!(error.details().unwrap()["flow"], json!("review"));
    }
}
