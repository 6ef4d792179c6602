//! Requests: start (with an idempotency key), list, show, re-execute and
//! cancel.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::RequestStatus;
use baton_core::store::{Purged, RequestFilter, RequestRow, Store, StoreError};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::retention;
use crate::http::auth::Account;
use crate::http::export::{self, Export};
use crate::http::state::AppState;
use crate::requests::{DetailQuery, SendError, SubmitError};

use super::dto::{
    BundleRecord, CheckpointView, EventSent, HoldChanged, RequestBundle, RequestChanged,
    RequestDetail, RequestSummary, Started, Waited,
};
use super::{ApiError, ApiResult};

#[derive(Deserialize)]
pub(super) struct StartQuery {
    #[serde(default)]
    wait: bool,
    /// Seconds to wait at most (default 60).
    timeout: Option<f64>,
}

/// The header naming the idempotency key of a start or of an event.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(super) async fn start_request(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let wait = wait_seconds(query.timeout)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::from(SubmitError::InvalidKey))?,
        ),
    };
    // Subscribed before the request exists, so its end cannot be missed.
    let mut finished = state.requests.finished();
    let submitted = state.requests.submit(&name, &body, key).await?;
    let id = submitted.id;
    if !query.wait {
        // A start that found its key's request answers 200, not 202: it
        // accepted nothing new.
        let status = if submitted.created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        return Ok((
            status,
            axum::Json(Started {
                id,
                created: submitted.created,
            }),
        )
            .into_response());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    loop {
        let request = state
            .store
            .request(&id)
            .await?
            .ok_or_else(|| ApiError::from(StoreError::NotFound(format!("request {id}"))))?;
        if request.status.is_final() {
            let succeeded = request.status == RequestStatus::Succeeded;
            let view = Waited {
                output: match succeeded {
                    true => Some(output(&*state.store, &request).await),
                    false => None,
                },
                error: if succeeded { None } else { request.error },
                id,
                status: request.status,
            };
            return Ok((StatusCode::OK, axum::Json(view)).into_response());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let view = Waited {
                id,
                status: request.status,
                output: None,
                error: None,
            };
            return Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response());
        }
        // Woken when an attempt here ends; polled in case another server runs it.
        let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), async {
            while let Ok(done) = finished.recv().await {
                if done == id {
                    break;
                }
            }
        })
        .await;
    }
}

/// How long `?wait=true` waits: `timeout` seconds, from 0 to an hour
/// (default 60). Anything else, NaN and infinity included, is refused.
fn wait_seconds(timeout: Option<f64>) -> ApiResult<f64> {
    match timeout {
        None => Ok(60.0),
        Some(seconds) if (0.0..=3600.0).contains(&seconds) => Ok(seconds),
        Some(seconds) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("timeout must be a number of seconds from 0 to 3600, not {seconds}"),
        )),
    }
}

async fn output(store: &dyn Store, request: &RequestRow) -> Value {
    let Some(payload) = request.output.clone() else {
        return Value::Null;
    };
    store
        .read_payload(payload)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

#[derive(Deserialize)]
pub(super) struct BundleQuery {
    version: Option<String>,
}

/// A request's bundle: its component (or the version asked for, of the
/// same flow), input and current journal generation with the values.
pub(super) async fn bundle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<BundleQuery>,
) -> ApiResult<axum::Json<RequestBundle>> {
    use base64::Engine as _;
    let store = &*state.store;
    let request = store
        .request(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("there is no request {id}")))?;
    let hash = query.version.unwrap_or_else(|| request.version.clone());
    let version = store
        .version(&hash)
        .await?
        .filter(|v| v.flow == request.flow)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("the flow {} has no version {hash}", request.flow),
            )
        })?;
    let component = store.blob(&version.hash, version.size as u64)?;
    let input = store.read_payload(request.input.clone()).await?;
    let journal = crate::engine::replay::recorded(store, &request)
        .await?
        .into_iter()
        .enumerate()
        .map(|(seq, record)| BundleRecord {
            seq: seq as i64,
            name: record.name,
            value: serde_json::from_slice(&record.value).unwrap_or(Value::Null),
        })
        .collect();
    Ok(axum::Json(RequestBundle {
        output: output(store, &request).await,
        id,
        flow: request.flow,
        version: version.hash,
        status: request.status,
        generation: request.generation,
        component: base64::engine::general_purpose::STANDARD.encode(component),
        input: serde_json::from_slice(&input).unwrap_or(Value::Null),
        journal,
        error: request.error,
    }))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    flow: Option<String>,
    server: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
    parent: Option<String>,
    held: Option<bool>,
}

/// The filter a query string asks for.
fn filter(query: ListQuery) -> ApiResult<RequestFilter> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RequestStatus::parse(s).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("unknown status {s:?}; use one of queued, running, waiting_retry, succeeded, error, cancelled"))
        })?),
    };
    Ok(RequestFilter {
        status,
        flow: query.flow.filter(|s| !s.is_empty()),
        server: query.server.filter(|s| !s.is_empty()),
        after: query.after.filter(|s| !s.is_empty()),
        parent: query.parent.filter(|s| !s.is_empty()),
        held: query.held,
        limit: query.limit.unwrap_or(50),
        ..Default::default()
    })
}

pub(super) async fn export_csv(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    Ok(export::response(
        state.store.clone(),
        filter(query)?,
        Export::Csv,
    ))
}

pub(super) async fn export_json_lines(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    Ok(export::response(
        state.store.clone(),
        filter(query)?,
        Export::JsonLines,
    ))
}

pub(super) async fn list_requests(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<RequestSummary>>> {
    let requests = state.store.list_requests(&filter(query)?).await?;
    Ok(axum::Json(
        requests.iter().map(RequestSummary::from).collect(),
    ))
}

pub(super) async fn show_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> ApiResult<axum::Json<RequestDetail>> {
    let request =
        state.store.request(&id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("there is no request {id}"))
        })?;
    let page = query.page(&*state.store, &id).await?;
    Ok(axum::Json(RequestDetail {
        summary: RequestSummary::from(&request),
        failures: request.failures,
        epoch: request.epoch,
        generation: request.generation,
        next_attempt_at: request.next_attempt_at,
        output: output(&*state.store, &request).await,
        error_details: request.error_details.as_deref().map(|details| {
            serde_json::from_str(details).unwrap_or_else(|_| Value::String(details.to_owned()))
        }),
        waiting_for: request.waiting_for.clone(),
        status_values: state
            .store
            .status_values(&id)
            .await?
            .into_iter()
            .map(|(key, value)| {
                let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
                (key, value)
            })
            .collect(),
        children: crate::requests::children(&*state.store, &id)
            .await?
            .iter()
            .map(RequestSummary::from)
            .collect(),
        checkpoints: page.checkpoints.iter().map(CheckpointView::from).collect(),
        checkpoints_next: page.checkpoints_next,
        events: page.events,
        events_next: page.events_next,
    }))
}

/// `?from=K` re-executes from checkpoint K; with `&fork=true` into a new
/// request.
#[derive(Deserialize)]
pub(super) struct ReexecuteQuery {
    from: Option<i64>,
    #[serde(default)]
    fork: bool,
}

/// Re-executes a request (operator), from a checkpoint with `from`, or
/// forks it into a new request (`201`, the new request's ID).
pub(super) async fn reexecute(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Query(query): Query<ReexecuteQuery>,
) -> ApiResult<Response> {
    let owner = Some(state.cluster.id.clone());
    if query.fork {
        let from = query.from.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "a fork starts from a checkpoint: add from=K",
            )
        })?;
        let new = state.requests.fork(&id, &account.name, from).await?;
        let changed = RequestChanged {
            id: new,
            status: RequestStatus::Queued,
            owner,
            forked_from: Some(id),
        };
        return Ok((StatusCode::CREATED, axum::Json(changed)).into_response());
    }
    state
        .requests
        .reexecute(&id, &account.name, query.from)
        .await?;
    Ok(axum::Json(RequestChanged {
        id,
        status: RequestStatus::WaitingRetry,
        owner,
        forked_from: None,
    })
    .into_response())
}

/// `POST /api/purge`'s query.
#[derive(Deserialize)]
pub(super) struct PurgeQuery {
    older_than: String,
    status: Option<String>,
    flow: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Deletes the finished requests the query selects, with their journals,
/// histories and inboxes, then the blobs no row names (admin). Dry, it
/// counts them.
pub(super) async fn purge(
    State(state): State<AppState>,
    Query(query): Query<PurgeQuery>,
) -> ApiResult<axum::Json<Purged>> {
    let filter = retention::filter(
        &query.older_than,
        query.status.as_deref(),
        query.flow.as_deref(),
    )
    .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    let purged = retention::purge(&*state.store, &[filter], query.dry_run, None).await?;
    Ok(axum::Json(purged))
}

/// Holds a request (operator): `held` says whether this call held it
/// (`false`: it was held already).
pub(super) async fn hold(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<HoldChanged>> {
    let changed = state.requests.hold(&id, &account.name).await?;
    Ok(axum::Json(HoldChanged {
        id,
        held: true,
        changed,
    }))
}

/// Resumes a held request (operator).
pub(super) async fn resume(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<HoldChanged>> {
    let changed = state.requests.resume(&id, &account.name).await?;
    Ok(axum::Json(HoldChanged {
        id,
        held: false,
        changed,
    }))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RequestChanged>> {
    state.requests.cancel(&id, &account.name).await?;
    Ok(axum::Json(RequestChanged {
        id,
        status: RequestStatus::Cancelled,
        owner: None,
        forked_from: None,
    }))
}

/// Sends an event to a request (operator): kept in its inbox for the flow's
/// `wait_event`, and the request woken if it waits.
pub(super) async fn send_event(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::from(SendError::InvalidKey))?,
        ),
    };
    let kept = state
        .requests
        .send_event(&id, &name, &body, key, &account.name)
        .await?;
    // A send its key had already kept answers 200: nothing new was kept.
    let status = if kept {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(EventSent { id, name, kept })))
}
