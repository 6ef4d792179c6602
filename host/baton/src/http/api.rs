//! The HTTP JSON API (SPEC §7), `/healthz`, `/metrics` and the console routes.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use baton_core::RequestStatus;
use baton_store::{RequestFilter, RequestRow, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::accounts::{self, AccountError};
use crate::http::auth::Account;
use crate::http::credentials;
use crate::http::state::AppState;
use crate::http::status::HttpStatus;
use crate::requests::{DetailQuery, SubmitError};
use crate::vcs::deploy::{self, DeployError};

/// A failed API call: a status and a plain sentence, sent as `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header (a `429`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        Self {
            status: e.http_status(),
            retry_after: e.retry_after(),
            message: e.to_string(),
        }
    }
}

/// A typed error as the API answers it: [`HttpStatus`]'s status, the
/// error's sentence.
macro_rules! api_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Self::new(e.http_status(), e.to_string())
            }
        }
    )*};
}

api_error_from!(StoreError, SubmitError, DeployError);

type ApiResult<T> = Result<T, ApiError>;

/// The JSON API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/flows", post(deploy_flow).get(list_flows))
        .route("/api/flows/{name}/requests", post(start_request))
        .route("/api/requests", get(list_requests))
        .route("/api/requests/{id}", get(show_request))
        .route("/api/requests/{id}/reexecute", post(reexecute))
        .route("/api/requests/{id}/cancel", post(cancel))
        .route("/api/schedules", post(put_schedule).get(list_schedules))
        .route(
            "/api/schedules/{name}",
            axum::routing::delete(delete_schedule),
        )
        .route("/api/version-control", get(repository))
        .route("/api/version-control/update", post(update_flows))
        .route("/api/accounts", post(create_account).get(list_accounts))
        .route(
            "/api/accounts/{name}",
            axum::routing::delete(delete_account),
        )
        .route(
            "/api/accounts/{name}/tokens",
            post(issue_token).delete(revoke_tokens),
        )
        .route("/api/accounts/{name}/password", post(reset_password))
        .route("/api/accounts/{name}/disable", post(disable_account))
        .route("/api/accounts/{name}/enable", post(enable_account))
        .route("/api/accounts/{name}/role", post(set_role))
        .route("/api/password", post(change_password))
        .route("/api/tokens/revoke", post(revoke_token))
        .route("/api/servers", get(list_servers))
        .route("/api/servers/{id}/name", post(rename_server))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
}

/// The answer to a route that does not exist.
pub async fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

async fn deploy_flow(State(state): State<AppState>, body: Bytes) -> ApiResult<impl IntoResponse> {
    let deployed = deploy::deploy(
        &state.store,
        state.executor.runtime(),
        body.to_vec(),
        &state.config.connections,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(deployed)))
}

async fn list_flows(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let flows = state.store.flows().await?;
    Ok(axum::Json(Value::Array(
        flows
            .into_iter()
            .map(|flow| {
                json!({
                    "name": flow.name,
                    "version": flow.active.hash,
                    "size": flow.active.size,
                    "updated_at": flow.updated_at,
                    "properties": flow.active.properties,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    wait: bool,
    /// Seconds to wait at most (default 60).
    timeout: Option<f64>,
}

/// The header naming a start's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn start_request(
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
            axum::Json(json!({ "id": id, "created": submitted.created })),
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
            let mut view = json!({ "id": id, "status": request.status.as_str() });
            match request.status {
                RequestStatus::Succeeded => view["output"] = output(&state.store, &request).await,
                _ => view["error"] = json!(request.error),
            }
            return Ok((StatusCode::OK, axum::Json(view)).into_response());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let view = json!({ "id": id, "status": request.status.as_str() });
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

async fn output(store: &Store, request: &RequestRow) -> Value {
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
struct ListQuery {
    status: Option<String>,
    flow: Option<String>,
    server: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
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
        limit: query.limit.unwrap_or(50),
        ..Default::default()
    })
}

fn summary(request: &RequestRow) -> Value {
    json!({
        "id": request.id,
        "flow": request.flow,
        "version": request.version,
        "status": request.status.as_str(),
        "owner": request.owner,
        "attempts": request.attempts,
        "last_checkpoint": request.last_checkpoint,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
        "error": request.error,
    })
}

async fn list_requests(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let requests = state.store.list_requests(&filter(query)?).await?;
    Ok(axum::Json(Value::Array(
        requests.iter().map(summary).collect(),
    )))
}

async fn show_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> ApiResult<axum::Json<Value>> {
    let request =
        state.store.request(&id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("there is no request {id}"))
        })?;
    let page = query.page(&state.store, &id).await?;
    let mut view = summary(&request);
    view["failures"] = json!(request.failures);
    view["epoch"] = json!(request.epoch);
    view["generation"] = json!(request.generation);
    view["next_attempt_at"] = json!(request.next_attempt_at);
    view["output"] = output(&state.store, &request).await;
    view["checkpoints"] = page
        .checkpoints
        .iter()
        .map(|c| {
            json!({
                "seq": c.seq, "generation": c.generation, "name": c.name, "server": c.server,
                "epoch": c.epoch, "at": c.at, "size": c.payload.size,
            })
        })
        .collect();
    view["checkpoints_next"] = json!(page.checkpoints_next);
    view["events"] = json!(page.events);
    view["events_next"] = json!(page.events_next);
    Ok(axum::Json(view))
}

async fn reexecute(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.requests.reexecute(&id, &account.name).await?;
    Ok(axum::Json(
        json!({ "id": id, "status": "waiting_retry", "owner": state.cluster.id }),
    ))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.requests.cancel(&id, &account.name).await?;
    Ok(axum::Json(json!({ "id": id, "status": "cancelled" })))
}

async fn list_servers(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let servers = state.store.servers().await?;
    Ok(axum::Json(Value::Array(
        servers
            .into_iter()
            .map(|server| {
                json!({
                    "id": server.id,
                    "name": server.name,
                    "status": server.status.as_str(),
                    "address": server.address,
                    "incarnation": server.incarnation,
                    "heartbeat_age_ms": server.heartbeat_age_ms,
                    "owned": server.owned,
                    "flow_set": server.flow_set,
                    "flows_head": server.flows_head,
                    "renamed_by": server.renamed.as_ref().map(|r| &r.0),
                    "current": server.id == state.cluster.id,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn rename_server(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let rename: Rename = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"name\": \"…\"}}: {e}"),
        )
    })?;
    let name = rename.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a server name is 1 to 100 characters",
        ));
    }
    state.store.rename_server(&id, name, &account.name).await?;
    Ok(axum::Json(json!({ "id": id, "name": name })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(state.executor.running()),
    )
}

#[derive(Deserialize)]
struct NewSchedule {
    name: String,
    flow: String,
    cron: String,
    #[serde(default)]
    input: Option<Value>,
    /// Fire only on the server that receives this call (a local schedule).
    #[serde(default)]
    local: bool,
}

async fn put_schedule(State(state): State<AppState>, body: Bytes) -> ApiResult<impl IntoResponse> {
    let new: NewSchedule = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"name\", \"flow\", \"cron\", \"input\"?, \"local\"?}}: {e}"),
        )
    })?;
    let cron = crate::engine::schedule::Cron::parse(&new.cron)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if new.name.is_empty() || new.name.len() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a schedule name is 1 to 100 characters",
        ));
    }
    if state.store.active_version(&new.flow).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no flow named {:?}", new.flow),
        ));
    }
    let now = state.store.now_ms().await?;
    let schedule = baton_store::ScheduleRow {
        name: new.name,
        flow: new.flow,
        cron: new.cron,
        input: new.input.unwrap_or(Value::Null).to_string(),
        server: new.local.then(|| state.cluster.id.clone()),
        next_fire_at: cron.next_after(now).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "the cron expression never fires")
        })?,
        last_fired_at: None,
    };
    state.store.put_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, axum::Json(schedule)))
}

async fn list_schedules(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(json!(state.store.schedules().await?)))
}

async fn delete_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.store.delete_schedule(&name).await?;
    Ok(axum::Json(json!({ "name": name, "deleted": true })))
}

impl From<crate::vcs::repository::SyncError> for ApiError {
    fn from(e: crate::vcs::repository::SyncError) -> Self {
        use crate::vcs::repository::SyncError;
        let status = match &e {
            SyncError::NotConfigured => StatusCode::NOT_FOUND,
            SyncError::Refused(_) => StatusCode::CONFLICT,
            SyncError::Git(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

async fn repository(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let repo = state.config.flows_repo.clone();
    let view = tokio::task::spawn_blocking(move || crate::vcs::repository::state(repo.as_deref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(axum::Json(json!(view)))
}

async fn update_flows(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let report = crate::vcs::repository::update(
        state.config.flows_repo.as_deref(),
        state.config.build_flows,
        &state.store,
        state.executor.runtime(),
        &state.config.connections,
    )
    .await?;
    Ok(axum::Json(json!(report)))
}

#[derive(Deserialize)]
struct NewAccount {
    name: String,
    password: String,
    role: String,
}

async fn create_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let new: NewAccount = body_of(&body, "{\"name\", \"password\", \"role\"}")?;
    let role = accounts::create(&state, &account, &new.name, new.password, &new.role).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "name": new.name, "role": role.as_str() })),
    ))
}

async fn list_accounts(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
) -> ApiResult<axum::Json<Value>> {
    let accounts = accounts::list(&state, &account).await?;
    Ok(axum::Json(Value::Array(
        accounts
            .into_iter()
            .map(|a| json!({ "name": a.name, "role": a.role, "disabled": a.disabled }))
            .collect(),
    )))
}

async fn issue_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if state.store.account(&name).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no account {name}"),
        ));
    }
    let token = credentials::secret();
    state
        .store
        .create_token(
            &credentials::secret_hash(&token),
            &name,
            "issued through the API",
            state.config.token_ttl_ms,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "account": name, "token": token })),
    ))
}

/// A JSON body of type `T`, or a `400` saying what was expected.
fn body_of<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("expected {expected}: {e}")))
}

#[derive(Deserialize)]
struct PasswordChange {
    current: String,
    password: String,
}

/// The caller changes their own password; their console sessions end. A
/// wrong current password is throttled like a failed login.
async fn change_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    client: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let change: PasswordChange = body_of(&body, "{\"current\", \"password\"}")?;
    let address = client.map(|Extension(c)| c.0.ip());
    accounts::change_own_password(&state, &account, address, change.current, change.password)
        .await?;
    Ok(axum::Json(json!({ "name": account.name })))
}

#[derive(Deserialize)]
struct PasswordReset {
    password: String,
}

/// An admin sets an account's password; its console sessions end.
async fn reset_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let reset: PasswordReset = body_of(&body, "{\"password\"}")?;
    accounts::reset_password(&state, &account, &name, reset.password).await?;
    Ok(axum::Json(json!({ "name": name })))
}

#[derive(Deserialize)]
struct RoleChange {
    role: String,
}

/// An admin gives an account another role.
async fn set_role(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let change: RoleChange = body_of(&body, "{\"role\"}")?;
    let role = accounts::set_role(&state, &account, &name, &change.role).await?;
    Ok(axum::Json(json!({ "name": name, "role": role.as_str() })))
}

async fn disable_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    accounts::set_disabled(&state, &account, &name, true).await?;
    Ok(axum::Json(json!({ "name": name, "disabled": true })))
}

async fn enable_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    accounts::set_disabled(&state, &account, &name, false).await?;
    Ok(axum::Json(json!({ "name": name, "disabled": false })))
}

async fn delete_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    accounts::delete(&state, &account, &name).await?;
    Ok(axum::Json(json!({ "name": name, "deleted": true })))
}

/// An admin revokes every token of an account.
async fn revoke_tokens(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let revoked = accounts::revoke_tokens(&state, &account, &name).await?;
    Ok(axum::Json(json!({ "account": name, "revoked": revoked })))
}

#[derive(Deserialize)]
struct TokenRevocation {
    token: String,
}

/// Whoever holds a token may revoke it (their own one included).
async fn revoke_token(State(state): State<AppState>, body: Bytes) -> ApiResult<axum::Json<Value>> {
    let revocation: TokenRevocation = body_of(&body, "{\"token\"}")?;
    if !state
        .store
        .revoke_token(&credentials::secret_hash(revocation.token.trim()))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such token (already revoked or expired?)",
        ));
    }
    Ok(axum::Json(json!({ "revoked": true })))
}
