//! The canonical order flow: reserve stock, charge, wait for the warehouse
//! to say the parcel left (the `shipped` event), then book the shipment, or
//! refund when it does not come in time. Each step is a POST carrying the
//! step's idempotency key, so a step that runs again after a crash is
//! recognised by the service it calls.

use baton_guest::prelude::*;

#[flow(
    other_server_retry = true,
    max_retries = 5,
    retry_interval = "10s",
    resources = ["https://*.example.com"]
)]
fn order(ctx: &mut Ctx, order: Order) -> Result<Receipt, FlowError> {
    let hold: Hold = ctx.checkpoint("reserve", |step| post(step, &order.stock_url, &order))?;
    let charge: Charge = ctx.checkpoint("charge", |step| post(step, &order.payment_url, &hold))?;
    ctx.set_status("charge", &charge.id)?;
    let within = Duration::from_secs(order.ship_within_hours * 3600);
    let Some(shipped) = ctx.wait_event::<Shipped>("shipped", within)? else {
        let refund: Refund =
            ctx.checkpoint("refund", |step| post(step, &order.refund_url, &charge))?;
        return Err(
            FlowError::fatal("not shipped in time: the charge was refunded").with_details(&refund),
        );
    };
    let label: Label = ctx.checkpoint("ship", |step| post(step, &order.shipping_url, &shipped))?;
    Ok(Receipt {
        charge: charge.id,
        tracking: label.tracking,
    })
}

#[derive(Serialize, Deserialize)]
struct Order {
    item: String,
    quantity: u32,
    stock_url: String,
    payment_url: String,
    refund_url: String,
    shipping_url: String,
    /// How long the warehouse has to send `shipped`.
    #[serde(default = "three_days")]
    ship_within_hours: u64,
}

fn three_days() -> u64 {
    72
}

#[derive(Serialize, Deserialize)]
struct Hold {
    hold: String,
}

#[derive(Serialize, Deserialize)]
struct Charge {
    id: String,
}

#[derive(Serialize, Deserialize)]
struct Refund {
    refund: String,
}

/// What the warehouse sends with `shipped`.
#[derive(Serialize, Deserialize)]
struct Shipped {
    parcel: String,
}

#[derive(Serialize, Deserialize)]
struct Label {
    tracking: String,
}

#[derive(Serialize)]
struct Receipt {
    charge: String,
    tracking: String,
}

/// POSTs `body` as JSON with the step's idempotency key; a non-2xx answer is
/// an error, a 2xx answer is parsed as JSON.
fn post<T: DeserializeOwned>(
    step: &Step,
    url: &str,
    body: &impl Serialize,
) -> Result<T, FlowError> {
    step.http()
        .post(url)
        .idempotency_key(step.key())
        .json(body)
        .send()?
        .error_for_status()?
        .json()
}

#[cfg(test)]
mod tests {
    use baton_guest::testing::{Harness, Response};
    use serde_json::json;

    use super::*;

    fn input() -> serde_json::Value {
        json!({
            "item": "book",
            "quantity": 2,
            "stock_url": "https://stock.example.com/holds",
            "payment_url": "https://pay.example.com/charges",
            "refund_url": "https://pay.example.com/refunds",
            "shipping_url": "https://ship.example.com/labels",
            "ship_within_hours": 24,
        })
    }

    fn services() -> Harness {
        let ok = |body| Response::json(200, &body);
        Harness::new()
            .route(
                "POST",
                "https://stock.example.com/holds",
                ok(json!({ "hold": "h1" })),
            )
            .route(
                "POST",
                "https://pay.example.com/charges",
                ok(json!({ "id": "ch1" })),
            )
            .route(
                "POST",
                "https://pay.example.com/refunds",
                ok(json!({ "refund": "re1" })),
            )
            .route(
                "POST",
                "https://ship.example.com/labels",
                ok(json!({ "tracking": "T1" })),
            )
    }

    #[test]
    fn a_shipped_order_books_the_label_even_when_cut_anywhere() {
        let run = services()
            .event_after(
                Duration::from_secs(3600),
                "shipped",
                &json!({ "parcel": "p1" }),
            )
            .crash_at_every_checkpoint(order, &input());
        let receipt = serde_json::to_value(run.output.unwrap()).unwrap();
        assert_eq!(receipt, json!({ "charge": "ch1", "tracking": "T1" }));
        let urls: Vec<&str> = run.calls.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://stock.example.com/holds",
                "https://pay.example.com/charges",
                "https://ship.example.com/labels"
            ]
        );
        assert_eq!(
            run.calls[2].json::<serde_json::Value>().unwrap(),
            json!({ "parcel": "p1" })
        );
        assert_eq!(run.status["charge"], json!("ch1"));
        assert_eq!(run.elapsed, Duration::from_secs(3600));
    }

    #[test]
    fn an_order_not_shipped_in_time_is_refunded_even_when_cut_anywhere() {
        let run = services()
            .event_after(
                Duration::from_secs(25 * 3600),
                "shipped",
                &json!({ "parcel": "p1" }),
            )
            .crash_at_every_checkpoint(order, &input());
        let error = run.output.err().unwrap();
        assert!(error.is_fatal(), "{error}");
        assert_eq!(error.details(), Some(&json!({ "refund": "re1" })));
        assert_eq!(
            run.calls.last().unwrap().url,
            "https://pay.example.com/refunds"
        );
        assert_eq!(
            run.calls
                .last()
                .unwrap()
                .json::<serde_json::Value>()
                .unwrap(),
            json!({ "id": "ch1" })
        );
        assert_eq!(run.elapsed, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn a_declined_charge_is_retried_and_nothing_is_shipped() {
        let run = services()
            .route(
                "POST",
                "https://pay.example.com/charges",
                Response::new(402, "declined"),
            )
            .run(order, &input());
        let error = run.output.err().unwrap();
        assert!(
            !error.is_fatal() && error.message().contains("402"),
            "{error}"
        );
        assert_eq!(run.calls.len(), 2);
    }
}
