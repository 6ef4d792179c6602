//! Status › Flow › Status List and the request detail page.

use maud::{Markup, html};

use super::{csrf_field, encode};
use crate::{Page, layout, time};

/// One row of the Status List.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Status string (`waiting_retry`, …).
    pub status: String,
    /// Plain status label.
    pub label: String,
    /// Owner server's name.
    pub owner: String,
    /// Attempts started.
    pub attempts: i64,
    /// Held by an operator.
    pub held: bool,
    /// Last checkpoint name.
    pub last_checkpoint: String,
    /// Created, ms.
    pub created_at: i64,
    /// Updated, ms.
    pub updated_at: i64,
}

/// The Status List's filters, as given in the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    /// Status string.
    pub status: Option<String>,
    /// Flow name.
    pub flow: Option<String>,
    /// Owner server ID.
    pub server: Option<String>,
    /// Created on or after (YYYY-MM-DD).
    pub from: Option<String>,
    /// Created before the end of (YYYY-MM-DD).
    pub to: Option<String>,
    /// Request ID prefix.
    pub id: Option<String>,
    /// `yes`: only held requests; `no`: only those not held.
    pub held: Option<String>,
    /// Keyset cursor: list requests older than this one.
    pub after: Option<String>,
}

impl Filters {
    /// The filters as a query string, without the cursor.
    pub fn query(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("flow", &self.flow),
            ("server", &self.server),
            ("from", &self.from),
            ("to", &self.to),
            ("id", &self.id),
            ("held", &self.held),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Status › Flow › Status List.
pub fn requests_page(
    page: &Page,
    filters: &Filters,
    statuses: &[(&str, &str)],
    servers: &[(String, String)],
    rows: &[RequestView],
    older: Option<&str>,
    flash: Option<&str>,
) -> Markup {
    // The rows' own routes, with the page's filters and cursor.
    let rows_at = |route: &str| {
        format!(
            "/status/requests/{route}?{}{}",
            filters.query(),
            filters
                .after
                .as_deref()
                .map(|a| format!("&after={}", encode(a)))
                .unwrap_or_default()
        )
    };
    let (pushed, live) = (rows_at("live"), rows_at("rows"));
    layout(
        page,
        html! {
            @if let Some(flash) = flash { p.flash { (flash) } }
            form.filters method="get" action="/status/requests" {
                label { "Status" select name="status" {
                    option value="" { "any" }
                    @for (value, label) in statuses {
                        option value=(value) selected[filters.status.as_deref() == Some(value)] { (label) }
                    }
                } }
                label { "Flow" input name="flow" value=[filters.flow.as_deref()]; }
                label { "Server" select name="server" {
                    option value="" { "any" }
                    @for (id, name) in servers {
                        option value=(id) selected[filters.server.as_deref() == Some(id.as_str())] { (name) }
                    }
                } }
                label { "From" input type="date" name="from" value=[filters.from.as_deref()]; }
                label { "To" input type="date" name="to" value=[filters.to.as_deref()]; }
                label { "ID starts with" input name="id" value=[filters.id.as_deref()]; }
                label { "Held" select name="held" {
                    option value="" { "any" }
                    option value="yes" selected[filters.held.as_deref() == Some("yes")] { "held" }
                    option value="no" selected[filters.held.as_deref() == Some("no")] { "not held" }
                } }
                button { "Filter" }
            }
            form method="post" action="/status/requests/actions" {
                (csrf_field(page))
                table {
                    thead { tr { th { span.visually-hidden { "Select" } } th { "ID" } th { "Flow" } th { "Status" } th { "Server" } th { "Attempts" } th { "Last checkpoint" } th { "Created" } th { "Updated" } } }
                    tbody #requests hx-ext="sse" sse-connect=(pushed) sse-swap="requests" hx-get=(live) hx-trigger="every 30s" hx-swap="innerHTML" {
                        (request_rows(rows))
                    }
                }
                p {
                    button name="action" value="reexecute" { "Re-execute selected" }
                    " "
                    button name="action" value="cancel" { "Cancel selected" }
                    " "
                    button name="action" value="hold" { "Hold selected" }
                    " "
                    button name="action" value="resume" { "Resume selected" }
                }
            }
            @if let Some(older) = older {
                p { a href={"/status/requests?" (filters.query()) "&after=" (encode(older))} { "Older →" } }
            }
            p {
                "Export every request these filters match: "
                a href={"/status/requests.csv?" (filters.query())} download { "CSV" }
                " · "
                a href={"/status/requests.jsonl?" (filters.query())} download { "JSON Lines" }
            }
        },
    )
}

/// The Status List's rows (the live fragment). A checkbox keeps its state
/// across refreshes (`hx-preserve`).
pub fn request_rows(rows: &[RequestView]) -> Markup {
    html! {
        @for row in rows {
            tr.request data-id=(row.id) data-status=(row.status) {
                td { input type="checkbox" name="id" value=(row.id) id={"select-" (row.id)} aria-label={"Select request " (row.id)} hx-preserve; }
                td { a href={"/status/requests/" (row.id)} { code { (row.id) } } }
                td { (row.flow) }
                td class=(row.status) { (row.label) @if row.held { " " span.held { "(held)" } } }
                td { (row.owner) }
                td { (row.attempts) }
                td { (row.last_checkpoint) }
                td { (time(row.created_at)) }
                td { (time(row.updated_at)) }
            }
        }
    }
}

/// A committed checkpoint on the request detail page.
#[derive(Debug, Clone)]
pub struct CheckpointView {
    /// Journal generation.
    pub generation: i64,
    /// Position.
    pub seq: i64,
    /// Name.
    pub name: String,
    /// Name of the server that wrote it.
    pub server: String,
    /// Epoch it was written at.
    pub epoch: i64,
    /// Commit time, ms.
    pub at: i64,
    /// Payload size.
    pub size: i64,
}

/// One entry of a request's history.
#[derive(Debug, Clone)]
pub struct EventView {
    /// When, ms.
    pub at: i64,
    /// What.
    pub kind: baton_core::EventKind,
    /// Name of the server (or account) that did it.
    pub server: String,
    /// Epoch.
    pub epoch: Option<i64>,
    /// Details.
    pub detail: String,
}

/// A JSON payload shown escaped, pretty and possibly truncated.
#[derive(Debug, Clone)]
pub struct PayloadView {
    /// Pretty JSON (already truncated).
    pub preview: String,
    /// Whether the preview is cut.
    pub truncated: bool,
    /// Where the whole payload downloads from.
    pub download: String,
}

/// Everything on the request detail page.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    /// The row.
    pub request: RequestView,
    /// Pinned version.
    pub version: String,
    /// Epoch.
    pub epoch: i64,
    /// The current journal generation, whose checkpoints an operator can
    /// re-execute or fork from.
    pub generation: i64,
    /// Whether the request may be re-executed in place (in error, or
    /// waiting for a retry).
    pub reexecutable: bool,
    /// One page of checkpoints, all generations.
    pub checkpoints: Vec<CheckpointView>,
    /// Where the next page of checkpoints is, if there are more.
    pub checkpoints_more: Option<String>,
    /// One page of history.
    pub events: Vec<EventView>,
    /// Where the next page of history is, if there is more.
    pub events_more: Option<String>,
    /// Input.
    pub input: PayloadView,
    /// Output, once succeeded.
    pub output: Option<PayloadView>,
    /// Last error.
    pub error: Option<String>,
    /// The flow's details of the last error, pretty JSON.
    pub error_details: Option<String>,
    /// The event the flow waits for, while it waits.
    pub waiting_for: Option<String>,
    /// The child request the flow waits for, while it waits.
    pub waiting_for_child: Option<String>,
    /// The request whose flow started this one.
    pub parent: Option<String>,
    /// The values the flow published (`ctx.set_status`), by key, as JSON.
    pub status_values: Vec<(String, String)>,
    /// The requests its flow started, newest first (the first hundred).
    pub children: Vec<RequestView>,
    /// Whether the request can still take events (it has not finished).
    pub takes_events: bool,
    /// The idempotency key of the event form, new on every render.
    pub event_key: String,
}

const PALETTE: [&str; 6] = [
    "#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2",
];

/// The checkpoint timeline: time across, one colour per server; attempts
/// (claims) as vertical lines.
pub fn timeline(detail: &RequestDetail) -> Markup {
    let (width, height, left) = (760.0, 90.0, 10.0);
    let attempts: Vec<&EventView> = detail
        .events
        .iter()
        .filter(|e| e.kind.starts_a_run())
        .collect();
    let times: Vec<i64> = detail
        .checkpoints
        .iter()
        .map(|c| c.at)
        .chain(detail.events.iter().map(|e| e.at))
        .collect();
    let (Some(&start), Some(&end)) = (times.iter().min(), times.iter().max()) else {
        return html! {};
    };
    let span = (end - start).max(1) as f64;
    let x = |at: i64| left + (at - start) as f64 / span * (width - 2.0 * left);
    let mut servers: Vec<&str> = Vec::new();
    for name in detail
        .checkpoints
        .iter()
        .map(|c| c.server.as_str())
        .chain(attempts.iter().map(|e| e.server.as_str()))
    {
        if !servers.contains(&name) {
            servers.push(name);
        }
    }
    let color = |server: &str| {
        PALETTE[servers.iter().position(|s| *s == server).unwrap_or(0) % PALETTE.len()]
    };
    html! {
        svg.timeline width=(width) height=(height + 20.0 * servers.len() as f64) viewBox={"0 0 " (width) " " (height + 20.0 * servers.len() as f64)} role="img" {
            title { "Checkpoint timeline" }
            line x1=(left) y1="45" x2=(width - left) y2="45" stroke="#9ca3af" {}
            @for attempt in &attempts {
                line x1=(x(attempt.at)) y1="15" x2=(x(attempt.at)) y2="75" stroke=(color(&attempt.server)) stroke-dasharray="3,2" {
                    title { (attempt.kind.as_str()) " by " (attempt.server) " at " (time(attempt.at)) }
                }
            }
            @for checkpoint in &detail.checkpoints {
                circle.checkpoint cx=(x(checkpoint.at)) cy="45" r="5" fill=(color(&checkpoint.server)) {
                    title { "#" (checkpoint.seq) " " (checkpoint.name) " by " (checkpoint.server) " at " (time(checkpoint.at)) ", " (checkpoint.size) " bytes" }
                }
            }
            text x=(left) y="88" { (time(start)) }
            text x=(width - left) y="88" text-anchor="end" { (time(end)) }
            @for (i, server) in servers.iter().enumerate() {
                rect x=(left) y=(height + 20.0 * i as f64 + 4.0) width="10" height="10" fill=(color(server)) {}
                text x=(left + 16.0) y=(height + 20.0 * i as f64 + 13.0) { (server) }
            }
        }
    }
}

fn payload(title: &str, view: &PayloadView) -> Markup {
    html! {
        h2 { (title) }
        pre { (view.preview) }
        @if view.truncated { p { "Truncated. " a href=(view.download) { "Download the whole " (title.to_lowercase()) } } }
    }
}

/// The request detail's summary rows (the live fragment).
pub fn request_summary(
    request: &RequestView,
    version: &str,
    epoch: i64,
    parent: Option<&str>,
) -> Markup {
    html! {
        tr { th { "Flow" } td { (request.flow) } }
        @if let Some(parent) = parent {
            tr { th { "Parent" } td { a href={"/status/requests/" (parent)} { code { (parent) } } } }
        }
        tr { th { "Version" } td { code { (version) } } }
        tr { th { "Status" } td class=(request.status) { (request.label) @if request.held { " " span.held { "(held: it does not run until resumed)" } } } }
        tr { th { "Server" } td { (request.owner) } }
        tr { th { "Attempts" } td { (request.attempts) } }
        tr { th { "Last checkpoint" } td { (request.last_checkpoint) } }
        tr { th { "Epoch" } td { (epoch) } }
        tr { th { "Created" } td { (time(request.created_at)) } }
        tr { th { "Updated" } td { (time(request.updated_at)) } }
    }
}

/// The request detail page.
pub fn request_page(page: &Page, detail: &RequestDetail) -> Markup {
    let request = &detail.request;
    layout(
        page,
        html! {
            table {
                tbody #summary hx-ext="sse" sse-connect={"/status/requests/" (request.id) "/live"} sse-swap="summary" hx-swap="innerHTML" {
                    (request_summary(request, &detail.version, detail.epoch, detail.parent.as_deref()))
                }
            }
            p {
                form.inline method="post" action={"/status/requests/" (request.id) "/reexecute"} { (csrf_field(page)) button { "Re-execute" } }
                " "
                form.inline method="post" action={"/status/requests/" (request.id) "/cancel"} { (csrf_field(page)) button { "Cancel" } }
                " "
                @if request.held {
                    form.inline method="post" action={"/status/requests/" (request.id) "/resume"} { (csrf_field(page)) button { "Resume" } }
                } @else if detail.takes_events {
                    form.inline method="post" action={"/status/requests/" (request.id) "/hold"} { (csrf_field(page)) button { "Hold" } }
                }
            }
            @if let Some(event) = &detail.waiting_for { p.waiting { "Waiting for the event " code { (event) } "." } }
            @if let Some(child) = &detail.waiting_for_child {
                p.waiting { "Waiting for its child request " a href={"/status/requests/" (child)} { code { (child) } } " to end." }
            }
            @if detail.takes_events {
                details open[detail.waiting_for.is_some()] {
                    summary { "Send an event" }
                    form method="post" action={"/status/requests/" (request.id) "/events"} {
                        (csrf_field(page))
                        input type="hidden" name="key" value=(detail.event_key);
                        label { "Name " input type="text" name="name" required maxlength="100" value=[detail.waiting_for.as_deref()]; }
                        label { "Event (JSON) " textarea name="data" rows="3" { "null" } }
                        button { "Send" }
                    }
                }
            }
            @if !detail.status_values.is_empty() {
                h2 { "Status values" }
                table.status-values {
                    thead { tr { th { "Key" } th { "Value" } } }
                    @for (key, value) in &detail.status_values { tr { td { code { (key) } } td { code { (value) } } } }
                }
            }
            @if !detail.children.is_empty() {
                h2 { "Children" }
                p { "Requests its flow started; cancelling this request cancels those not finished." }
                table.children {
                    thead { tr { th { "Request" } th { "Flow" } th { "Status" } th { "Created" } } }
                    @for child in &detail.children {
                        tr {
                            td { a href={"/status/requests/" (child.id)} { code { (child.id) } } }
                            td { (child.flow) }
                            td class=(child.status) { (child.label) }
                            td { (time(child.created_at)) }
                        }
                    }
                }
            }
            @if let Some(error) = &detail.error { h2 { "Error" } pre.error { (error) } }
            @if let Some(details) = &detail.error_details { h2 { "Error details" } pre.error { (details) } }
            h2 { "Checkpoints" }
            (timeline(detail))
            table {
                thead { tr { th { "#" } th { "Name" } th { "Server" } th { "Epoch" } th { "At" } th { "Size" } th { "Run again from here" } } }
                @for c in &detail.checkpoints {
                    tr {
                        td { (c.generation) "." (c.seq) } td { (c.name) } td { (c.server) } td { (c.epoch) } td { (time(c.at)) } td { (c.size) " B" }
                        td {
                            @if c.generation == detail.generation {
                                @if detail.reexecutable {
                                    form.inline method="post" action={"/status/requests/" (request.id) "/reexecute"} {
                                        (csrf_field(page)) input type="hidden" name="from" value=(c.seq);
                                        button aria-label={"Re-execute from checkpoint " (c.seq)} { "Re-execute" }
                                    }
                                    " "
                                }
                                form.inline method="post" action={"/status/requests/" (request.id) "/fork"} {
                                    (csrf_field(page)) input type="hidden" name="from" value=(c.seq);
                                    button aria-label={"Fork a new request from checkpoint " (c.seq)} { "Fork" }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(more) = &detail.checkpoints_more { p { a href=(more) { "More checkpoints" } } }
            h2 { "Attempts and owners" }
            table {
                thead { tr { th { "At" } th { "Event" } th { "By" } th { "Epoch" } th { "Detail" } } }
                @for e in &detail.events {
                    tr { td { (time(e.at)) } td { (e.kind.as_str()) } td { (e.server) } td { @if let Some(epoch) = e.epoch { (epoch) } } td { (e.detail) } }
                }
            }
            @if let Some(more) = &detail.events_more { p { a href=(more) { "More history" } } }
            (payload("Input", &detail.input))
            @if let Some(output) = &detail.output { (payload("Output", output)) }
        },
    )
}
