//! The order flow of the specification: reserve stock, charge, wait, ship.
//! Each step is a POST carrying the step's idempotency key, so a step that
//! runs again after a crash is recognised by the service it calls.

use baton_guest::prelude::*;

#[derive(Serialize, Deserialize)]
struct Order {
    item: String,
    quantity: u32,
    stock_url: String,
    payment_url: String,
    shipping_url: String,
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
struct Label {
    tracking: String,
}

#[derive(Serialize)]
struct Receipt {
    charge: String,
    tracking: String,
}

#[flow(
    other_server_retry = true,
    max_retries = 5,
    retry_interval = "10s",
    resources = ["https://*.example.com"]
)]
fn order(ctx: &mut Ctx, order: Order) -> Result<Receipt, FlowError> {
    let hold: Hold = ctx.checkpoint("reserve", |step| post(&order.stock_url, step, &order))?;
    let charge: Charge = ctx.checkpoint("charge", |step| post(&order.payment_url, step, &hold))?;
    ctx.sleep(Duration::from_secs(1));
    let label: Label = ctx.checkpoint("ship", |step| post(&order.shipping_url, step, &charge))?;
    Ok(Receipt {
        charge: charge.id,
        tracking: label.tracking,
    })
}

/// POSTs `body` as JSON with the step's idempotency key; a non-2xx answer is
/// an error, a 2xx answer is parsed as JSON.
fn post<T: DeserializeOwned>(
    url: &str,
    step: &Step,
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
