//! The Status List, a request's detail page, its downloads and the
//! operator's actions on requests.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect};
use baton_console::{
    CheckpointView, EventView, Filters, PayloadView, RequestDetail, RequestView, Section,
};
use baton_core::RequestStatus;
use baton_core::store::{CHILD_WAIT_PREFIX, RequestFilter, RequestRow, StoreError, StoredPayload};

use super::servers::server_names;
use super::{PageError, PageResult, check_csrf, form_field, frame, html};
use crate::http::auth::Account;
use crate::http::state::AppState;
use crate::requests::DetailQuery;

/// Rows per page of the Status List.
const PAGE_SIZE: i64 = 50;
/// Characters of a payload shown in its preview.
const PREVIEW: usize = 4096;
/// The largest payload a page reads for its preview.
const PREVIEW_LOAD_MAX: usize = 1 << 20;

fn request_view(request: &RequestRow, names: &HashMap<String, String>) -> RequestView {
    RequestView {
        id: request.id.clone(),
        flow: request.flow.clone(),
        status: request.status.as_str().to_owned(),
        label: request.status.label().to_owned(),
        owner: request
            .owner
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .unwrap_or_else(|| "(handed over)".into()),
        attempts: request.attempts,
        held: request.held,
        last_checkpoint: request.last_checkpoint.clone().unwrap_or_default(),
        created_at: request.created_at,
        updated_at: request.updated_at,
    }
}

/// Milliseconds at the start of a `YYYY-MM-DD` day (UTC).
fn day_start(date: &str) -> Option<i64> {
    let day: jiff::civil::Date = date.parse().ok()?;
    midnight(day)
}

/// Milliseconds at the end of a `YYYY-MM-DD` day (UTC): the next one's start.
fn day_end(date: &str) -> Option<i64> {
    let day: jiff::civil::Date = date.parse().ok()?;
    midnight(day.tomorrow().ok()?)
}

fn midnight(day: jiff::civil::Date) -> Option<i64> {
    let start = day.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(start.timestamp().as_millisecond())
}

/// The store's filter for the Status List's filters, one page long.
fn request_filter(filters: &Filters) -> Result<RequestFilter, PageError> {
    let status =
        match filters.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(RequestStatus::parse(s).ok_or_else(|| {
                PageError(StatusCode::BAD_REQUEST, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
    Ok(RequestFilter {
        status,
        flow: filters.flow.clone().filter(|s| !s.is_empty()),
        server: filters.server.clone().filter(|s| !s.is_empty()),
        after: filters.after.clone().filter(|s| !s.is_empty()),
        id_prefix: filters.id.clone().filter(|s| !s.is_empty()),
        created_from: filters.from.as_deref().and_then(day_start),
        created_before: filters.to.as_deref().and_then(day_end),
        held: match filters.held.as_deref().unwrap_or_default() {
            "" => None,
            "yes" => Some(true),
            "no" => Some(false),
            other => {
                return Err(PageError(
                    StatusCode::BAD_REQUEST,
                    format!("held is yes or no, not {other:?}"),
                ));
            }
        },
        parent: None,
        limit: PAGE_SIZE + 1,
    })
}

/// The page of rows the filters select, and the cursor of the next page.
async fn filtered(
    state: &AppState,
    filters: &Filters,
) -> Result<(Vec<RequestRow>, Option<String>), PageError> {
    let mut rows = state.store.list_requests(&request_filter(filters)?).await?;
    let older = (rows.len() as i64 > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|r| r.id.clone())
    });
    Ok((rows, older.flatten()))
}

/// Every request the Status List's filters match, as CSV.
pub(super) async fn export_csv(
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
) -> PageResult {
    let filter = request_filter(&filters)?;
    Ok(crate::http::export::response(
        state.store.clone(),
        filter,
        crate::http::export::Export::Csv,
    ))
}

/// Every request the Status List's filters match, as JSON Lines.
pub(super) async fn export_json_lines(
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
) -> PageResult {
    let filter = request_filter(&filters)?;
    Ok(crate::http::export::response(
        state.store.clone(),
        filter,
        crate::http::export::Export::JsonLines,
    ))
}

pub(super) async fn requests(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> PageResult {
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Status List",
        Section::Requests,
    )
    .await;
    let names = server_names(&state).await?;
    let (rows, older) = filtered(&state, &filters).await?;
    let views: Vec<RequestView> = rows.iter().map(|r| request_view(r, &names)).collect();
    let statuses: Vec<(&str, &str)> = RequestStatus::ALL
        .iter()
        .map(|s| (s.as_str(), s.label()))
        .collect();
    let mut servers: Vec<(String, String)> = names.into_iter().collect();
    servers.sort();
    let body = baton_console::requests_page(
        &page,
        &filters,
        &statuses,
        &servers,
        &views,
        older.as_deref(),
        None,
    );
    Ok(html(body, cookie))
}

/// The Status List's rows for `filters`, as the fragment the page swaps in.
async fn rows_fragment(state: &AppState, filters: &Filters) -> Result<String, PageError> {
    let names = server_names(state).await?;
    let (rows, _) = filtered(state, filters).await?;
    let views: Vec<RequestView> = rows.iter().map(|r| request_view(r, &names)).collect();
    Ok(baton_console::request_rows(&views).into_string())
}

pub(super) async fn request_rows(
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
) -> PageResult {
    Ok(Html(rows_fragment(&state, &filters).await?).into_response())
}

/// `GET /status/requests/live?…`: the Status List's rows for these
/// filters, pushed as the cluster changes.
pub(super) async fn live_requests(
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
) -> axum::response::Response {
    let feed = state.live.clone();
    crate::http::live::stream(&feed, "requests", move || {
        let (state, filters) = (state.clone(), filters.clone());
        async move { rows_fragment(&state, &filters).await.ok() }
    })
    .into_response()
}

/// `GET /status/requests/{id}/live`: the detail page's summary, pushed as
/// the cluster changes.
pub(super) async fn live_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> axum::response::Response {
    let feed = state.live.clone();
    crate::http::live::stream(&feed, "summary", move || {
        let (state, id) = (state.clone(), id.clone());
        async move {
            let request = state.store.request(&id).await.ok()??;
            let names = server_names(&state).await.ok()?;
            let view = request_view(&request, &names);
            let summary = baton_console::request_summary(
                &view,
                &request.version,
                request.epoch,
                request.parent.as_deref(),
            );
            Some(summary.into_string())
        }
    })
    .into_response()
}

/// What an operator does to a request from the console.
#[derive(Debug, Clone, Copy)]
enum Action {
    Reexecute,
    Cancel,
    Hold,
    Resume,
}

impl Action {
    /// The action a form's `action` field names.
    fn parse(field: Option<&str>) -> Option<Self> {
        match field? {
            "reexecute" => Some(Self::Reexecute),
            "cancel" => Some(Self::Cancel),
            "hold" => Some(Self::Hold),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }
}

/// Applies an operator's action as this server; answers with the outcome.
async fn act(
    state: &AppState,
    account: &Account,
    id: &str,
    action: Action,
    from: Option<i64>,
) -> Result<(), StoreError> {
    match action {
        Action::Reexecute => state.requests.reexecute(id, &account.name, from).await,
        Action::Cancel => state.requests.cancel(id, &account.name).await,
        Action::Hold => state.requests.hold(id, &account.name).await.map(drop),
        Action::Resume => state.requests.resume(id, &account.name).await.map(drop),
    }
}

pub(super) async fn bulk_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let action = Action::parse(form_field(&form, "action")).ok_or_else(|| {
        PageError(
            StatusCode::BAD_REQUEST,
            "choose re-execute, cancel, hold or resume".into(),
        )
    })?;
    let ids: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            "select at least one request".into(),
        ));
    }
    let mut lines = Vec::new();
    for id in ids {
        match act(&state, &account, id, action, None).await {
            Ok(()) => lines.push(format!("{id}: done")),
            Err(e) => lines.push(format!("{id}: {e}")),
        }
    }
    let (page, cookie) = frame(
        &state,
        &headers,
        Some(&account),
        "Status List",
        Section::Requests,
    )
    .await;
    Ok(html(
        baton_console::message_page(&page, &lines.join("; ")),
        cookie,
    ))
}

/// `POST /status/requests/{id}/{action}`: re-execute (from a checkpoint
/// with the field `from`), cancel, hold or resume one request from its
/// detail page, then show it again; or `fork` it from checkpoint `from`
/// into a new request, then show that one.
pub(super) async fn single_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let from = match form_field(&form, "from") {
        None => None,
        Some(from) => Some(from.parse::<i64>().map_err(|_| {
            PageError(
                StatusCode::BAD_REQUEST,
                format!("from is a checkpoint's number, not {from:?}"),
            )
        })?),
    };
    if action == "fork" {
        let from = from.ok_or_else(|| {
            PageError(
                StatusCode::BAD_REQUEST,
                "a fork starts from a checkpoint: choose one".into(),
            )
        })?;
        let new = state.requests.fork(&id, &account.name, from).await?;
        return Ok(Redirect::to(&format!("/status/requests/{new}")).into_response());
    }
    let action = Action::parse(Some(&action))
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "no such action".into()))?;
    act(&state, &account, &id, action, from).await?;
    Ok(Redirect::to(&format!("/status/requests/{id}")).into_response())
}

/// Sends an event to the request from the detail page's form (`name`,
/// `data`), as the operator.
pub(super) async fn send_event(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let name = form_field(&form, "name").unwrap_or_default().trim();
    let data = form_field(&form, "data").unwrap_or("null");
    // The form's own key: submitted twice (a double click, a resend after
    // a lost answer), it keeps one event.
    let key = form_field(&form, "key").filter(|k| !k.is_empty());
    state
        .requests
        .send_event(&id, name, data.as_bytes(), key, &account.name)
        .await?;
    Ok(Redirect::to(&format!("/status/requests/{id}")).into_response())
}

/// An escaped, pretty preview of a payload. One larger than
/// [`PREVIEW_LOAD_MAX`] is not read at all (it can be 64 MiB): the page
/// links to its download instead.
async fn preview(state: &AppState, payload: &StoredPayload, download: String) -> PayloadView {
    if payload.size as usize > PREVIEW_LOAD_MAX {
        return PayloadView {
            preview: format!("({} bytes, too large to preview)", payload.size),
            truncated: true,
            download,
        };
    }
    let text = match state.store.read_payload(payload.clone()).await {
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(e) => format!("({e})"),
    };
    let truncated = text.len() > PREVIEW;
    let mut cut = PREVIEW.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    PayloadView {
        preview: text[..cut].to_owned(),
        truncated,
        download,
    }
}

pub(super) async fn request_detail(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> PageResult {
    let request = state
        .store
        .request(&id)
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("there is no request {id}")))?;
    let names = server_names(&state).await?;
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let page = query.page(&*state.store, &id).await?;
    let more = |checkpoints: Option<i64>, events: Option<i64>| {
        format!(
            "/status/requests/{id}?checkpoints_after={}&events_after={}",
            checkpoints.unwrap_or(-1),
            events.unwrap_or(-1)
        )
    };
    let checkpoints_more = page
        .checkpoints_next
        .map(|next| more(Some(next), query.events_after));
    let events_more = page
        .events_next
        .map(|next| more(query.checkpoints_after, Some(next)));
    let checkpoints = page
        .checkpoints
        .into_iter()
        .map(|c| CheckpointView {
            generation: c.generation,
            seq: c.seq,
            name: c.name,
            server: name(&c.server),
            epoch: c.epoch,
            at: c.at,
            size: c.payload.size,
        })
        .collect();
    let events = page
        .events
        .into_iter()
        .map(|e| EventView {
            at: e.at,
            kind: e.kind,
            server: e.server.as_deref().map(name).unwrap_or_default(),
            epoch: e.epoch,
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let detail = RequestDetail {
        request: request_view(&request, &names),
        version: request.version.clone(),
        epoch: request.epoch,
        generation: request.generation,
        reexecutable: matches!(
            request.status,
            RequestStatus::Error | RequestStatus::WaitingRetry
        ),
        checkpoints,
        checkpoints_more,
        events,
        events_more,
        input: preview(
            &state,
            &request.input,
            format!("/status/requests/{id}/input"),
        )
        .await,
        output: match &request.output {
            Some(output) => {
                Some(preview(&state, output, format!("/status/requests/{id}/output")).await)
            }
            None => None,
        },
        error: request.error.clone(),
        waiting_for: request
            .waiting_for
            .clone()
            .filter(|w| !w.starts_with(CHILD_WAIT_PREFIX)),
        waiting_for_child: request
            .waiting_for
            .as_deref()
            .and_then(|w| w.strip_prefix(CHILD_WAIT_PREFIX))
            .map(str::to_owned),
        parent: request.parent.clone(),
        status_values: state.store.status_values(&id).await?,
        children: crate::requests::children(&*state.store, &id)
            .await?
            .iter()
            .map(|child| request_view(child, &names))
            .collect(),
        takes_events: !request.status.is_final(),
        event_key: format!("console:{}", crate::http::credentials::secret()),
        error_details: request.error_details.as_deref().map(|details| {
            serde_json::from_str::<serde_json::Value>(details)
                .and_then(|json| serde_json::to_string_pretty(&json))
                .unwrap_or_else(|_| details.to_owned())
        }),
    };
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        &format!("Request {id}"),
        Section::Requests,
    )
    .await;
    Ok(html(baton_console::request_page(&page, &detail), cookie))
}

async fn download(state: &AppState, id: &str, output: bool) -> PageResult {
    let request = state
        .store
        .request(id)
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("there is no request {id}")))?;
    let payload = if output {
        request.output
    } else {
        Some(request.input)
    };
    let payload = payload.ok_or_else(|| {
        PageError(
            StatusCode::NOT_FOUND,
            "the request has no output yet".into(),
        )
    })?;
    let bytes = state.store.read_payload(payload).await?;
    let name = format!(
        "attachment; filename=\"{id}-{}.json\"",
        if output { "output" } else { "input" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from(bytes),
    )
        .into_response())
}

pub(super) async fn download_input(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    download(&state, &id, false).await
}

pub(super) async fn download_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    download(&state, &id, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_utc_and_ends_at_the_next_midnight() {
        // 2026-11-18 11:06:40 UTC is 1_795_000_000_000.
        assert_eq!(
            day_start("2026-11-18"),
            Some(1_795_000_000_000 - (11 * 3600 + 6 * 60 + 40) * 1000)
        );
        assert_eq!(day_end("2024-02-28"), day_start("2024-02-29"));
        assert_eq!(day_end("2026-12-31"), day_start("2027-01-01"));
        assert_eq!(day_start("2026-02-30"), None);
        assert_eq!(day_start("yesterday"), None);
    }
}
